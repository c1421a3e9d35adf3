"""Klaviyo's OAuth endpoints and JSON:API, for one app: what the services call.

HTTP Basic client auth and form bodies at the token endpoints, JSON:API bodies on the
API, frozen dataclass results, and every failure mapped to an exception from
``exceptions.py`` (see ``answers.py``). A POST or PATCH that gets no usable answer raises
``KlaviyoWriteUncertain``: the write may or may not have been applied.
"""

from __future__ import annotations

import json as json_module
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import requests
from django.utils import timezone

from oauth_integration import metrics
from oauth_integration.conf import conf
from oauth_integration.exceptions import KlaviyoUnavailable
from oauth_integration.klaviyo.answers import api_error, json_object, token_endpoint_error, transport_error
from oauth_integration.klaviyo.transport import (
    DEFAULT_HEADERS,
    REVOKE_PATH,
    TOKEN_PATH,
    BearerAuth,
    send,
    shared_session,
)

logger = logging.getLogger(__name__)

METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
JSON_API = "application/vnd.api+json"


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What the token endpoint granted. Secrets never appear in ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)  # None when Klaviyo sends none back
    expires_at: datetime
    scopes: str


class KlaviyoClient:
    """Klaviyo's OAuth endpoints and JSON:API, for one app (client id and secret)."""

    def __init__(self, *, session: requests.Session | None = None) -> None:
        self._session = session

    @property
    def session(self) -> requests.Session:
        return self._session or shared_session()

    # --- OAuth ---------------------------------------------------------------------------

    def authorize_url(self, *, state: str, code_challenge: str, redirect_uri: str = "") -> str:
        """The browser URL that asks the customer to grant our scopes (PKCE S256).

        ``redirect_uri``: where Klaviyo sends the browser back ("": KLAVIYO_REDIRECT_URL).
        """
        query = urlencode(
            {
                "response_type": "code",
                "client_id": conf.client_id,
                "redirect_uri": redirect_uri or conf.redirect_url,
                "scope": conf.scopes,
                "state": state,
                "code_challenge_method": "S256",
                "code_challenge": code_challenge,
            },
            quote_via=quote,  # spaces as %20, as Klaviyo's SDK sends them
        )
        return f"{conf.authorize_url_for(redirect_uri or conf.redirect_url)}?{query}"

    def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str = "") -> TokenGrant:
        """Trade an authorization code for tokens, sending the ``redirect_uri`` the authorization sent
        ("": KLAVIYO_REDIRECT_URL). Raises InvalidGrant, KlaviyoAPIError, KlaviyoUnavailable."""
        redirect_uri = redirect_uri or conf.redirect_url
        grant = self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": code_verifier,
                "redirect_uri": redirect_uri,
            },
            base_url=conf.base_url_for(redirect_uri),
        )
        if not grant.refresh_token:
            raise KlaviyoUnavailable("Klaviyo's token response has no refresh_token")
        return grant

    def refresh(self, *, refresh_token: str) -> TokenGrant:
        """Use a refresh token. Raises InvalidGrant, KlaviyoAPIError, KlaviyoUnavailable."""
        return self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def revoke(self, *, refresh_token: str) -> None:
        """Revoke a refresh token (and so the connection). Raises KlaviyoAPIError, KlaviyoUnavailable."""
        response = self._post(REVOKE_PATH, {"token": refresh_token, "token_type_hint": "refresh_token"})
        if not response.ok:
            raise token_endpoint_error(response)

    def _token_request(self, form: dict[str, str], *, base_url: str = "") -> TokenGrant:
        started = timezone.now()
        response = self._post(TOKEN_PATH, form, base_url=base_url)
        if not response.ok:
            raise token_endpoint_error(response)
        payload = json_object(response)
        access_token = payload.get("access_token")
        refresh_token = payload.get("refresh_token")
        expires_in = payload.get("expires_in")
        if (
            not isinstance(access_token, str)
            or not access_token
            or not isinstance(expires_in, int | float)
            or isinstance(expires_in, bool)
            or expires_in <= 0
            or (refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token))
        ):
            raise KlaviyoUnavailable("Klaviyo's token response is missing access_token or expires_in")
        scope = payload.get("scope")
        return TokenGrant(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=started + timedelta(seconds=float(expires_in)),
            scopes=" ".join(scope.split()) if isinstance(scope, str) else "",
        )

    def _post(self, path: str, form: dict[str, str], *, base_url: str = "") -> requests.Response:
        try:
            response = send(
                "POST",
                path,
                auth=requests.auth.HTTPBasicAuth(conf.client_id, conf.client_secret),
                headers={**DEFAULT_HEADERS, "Accept": "application/json"},
                body=form,
                session=self._session,
                oauth=True,
                base_url=base_url,
            )
        except requests.RequestException as exc:
            raise KlaviyoUnavailable(f"Klaviyo {path} unreachable ({type(exc).__name__})") from exc
        logger.debug("POST %s -> %s", path, response.status_code)
        return response

    # --- API ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        access_token: str,
        params: dict[str, str] | None = None,
        json: Any = None,
        revision: str = "",
        repeatable: bool = False,
    ) -> requests.Response:
        """Send one API request as the customer; return the successful (2xx) response, its body read.

        ``json`` is sent as a JSON:API body; ``revision`` is the ``revision`` header ("":
        KLAVIYO_REVISION; Klaviyo's SDK sends the one its models were made for). ``repeatable``:
        the caller says this write may be applied twice (it carries its own idempotency key, such
        as an event's ``unique_id``), so a 5xx or a lost connection is retried as for a GET, and
        a failure after the retries is KlaviyoUnavailable rather than KlaviyoWriteUncertain. Raises
        KlaviyoUnauthorized, KlaviyoForbidden, KlaviyoThrottled, KlaviyoAPIError, KlaviyoUnavailable
        or KlaviyoWriteUncertain.

        Sent by ``transport.send``, the one way out to Klaviyo: a ``path`` that is not an API
        path (``/api/...``) raises KlaviyoPathRefused (a ValueError) before anything is sent.
        """
        method = method.upper()
        if method not in METHODS:
            raise ValueError(f"Unsupported HTTP method {method!r}; use one of {', '.join(sorted(METHODS))}")
        headers = {**DEFAULT_HEADERS, "revision": revision or conf.revision, "Accept": JSON_API}
        body = None
        if json is not None:
            body = json_module.dumps(json, separators=(",", ":")).encode()
            headers["Content-Type"] = JSON_API
        started = time.perf_counter()
        try:
            response = send(
                method,
                path,
                auth=BearerAuth(access_token),
                headers=headers,
                params=params,
                body=body,
                session=self._session or (shared_session(repeatable=True) if repeatable else None),
            )
        except requests.RequestException as exc:
            metrics.observe_call(method, path, "error", time.perf_counter() - started)
            raise transport_error(method, path, exc, repeatable=repeatable) from exc
        metrics.observe_call(method, path, response.status_code, time.perf_counter() - started)
        logger.debug("%s %s -> %s", method, path, response.status_code)
        if response.ok:
            return response
        raise api_error(response, method=method, path=path, repeatable=repeatable)

    def call(
        self,
        method: str,
        path: str,
        *,
        access_token: str,
        params: dict[str, str] | None = None,
        json: Any = None,
        repeatable: bool = False,
    ) -> dict[str, Any] | None:
        """``request``, returning the parsed JSON body, or None for 202/204 (no body)."""
        response = self.request(
            method, path, access_token=access_token, params=params, json=json, repeatable=repeatable
        )
        if response.status_code in (202, 204) or not response.content:
            return None
        return json_object(response)

    def relay(self, path: str, *, access_token: str, params: dict[str, str] | None = None) -> bytes:
        """GET a JSON:API document as the customer and return it as Klaviyo sent it, for passing on
        unchanged. A body that is not a JSON object raises KlaviyoUnavailable, as ``call`` does."""
        content = self.request("GET", path, access_token=access_token, params=params).content
        if content.strip()[:1] == b"{" and content.rstrip()[-1:] == b"}":
            return content  # an object; parsing 20 KB just to serialise it again costs ~0.2 ms
        raise KlaviyoUnavailable("Klaviyo answered with a body that is not a JSON object")

    def get(self, path: str, *, access_token: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET a JSON:API resource as the customer (see ``request`` for what it raises)."""
        return json_object(self.request("GET", path, access_token=access_token, params=params))


client = KlaviyoClient()  # reads no settings when constructed
