"""The only module that talks HTTP: Klaviyo's OAuth endpoints and API.

One pooled ``requests.Session`` per retry policy, a timeout on every call, HTTP Basic
client auth and form bodies at the token endpoints, JSON:API bodies on the API, frozen
dataclass results, and every failure mapped to an exception from ``exceptions.py``
(chained with ``from``). Retries are urllib3's ``Retry``, extended with Klaviyo's backoff
and a bound on the total time spent waiting:

* 429 is retried for every method (Klaviyo did not process the request), honouring
  ``Retry-After`` within the wait budget;
* 503/504/524 and connection failures are retried only for idempotent methods (GET,
  HEAD, PUT, DELETE, OPTIONS); a POST or PATCH that fails that way raises
  ``KlaviyoWriteUncertain``: the write may or may not have been applied;
* a connection that could not be opened is retried for every method (nothing was sent);
* the token and revoke endpoints are never retried after an answer.
"""

from __future__ import annotations

import functools
import http.cookiejar
import json as json_module
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import requests
from django.utils import timezone
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ResponseError
from urllib3.util.retry import Retry

from oauth_integration import metrics
from oauth_integration.conf import conf
from oauth_integration.exceptions import (
    InvalidGrant,
    KlaviyoAPIError,
    KlaviyoErrorDetail,
    KlaviyoForbidden,
    KlaviyoThrottled,
    KlaviyoUnauthorized,
    KlaviyoUnavailable,
    KlaviyoWriteUncertain,
)

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503, 504, 524})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
JSON_API = "application/vnd.api+json"
USER_AGENT = "klaviyo-django-oauth/1.1"
# What requests' Session would add to every request.
DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What the token endpoint granted. Secrets never appear in ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)  # None when Klaviyo sends none back
    expires_at: datetime
    scopes: str


class KlaviyoRetry(Retry):
    """urllib3 ``Retry`` with Klaviyo's backoff (0.5 s x 1.5^n, +/-50 % jitter) and a wait budget.

    ``Retry-After`` (seconds or HTTP date, any header case) is honoured by urllib3; a retry
    whose wait would push the total past ``max_wait`` is not attempted, and the last
    response is returned to the caller instead.
    """

    def __init__(self, *args: Any, max_wait: float = 10.0, waited: float = 0.0, **kwargs: Any) -> None:
        self.max_wait = max_wait
        self.waited = waited
        self.planned_wait = 0.0
        super().__init__(*args, **kwargs)

    def new(self, **kw: Any) -> KlaviyoRetry:
        kw.setdefault("max_wait", self.max_wait)
        kw.setdefault("waited", self.waited)
        return super().new(**kw)  # type: ignore[return-value]

    def get_backoff_time(self) -> float:
        attempts = len(self.history)
        if attempts == 0:
            return 0.0
        base = min(self.backoff_factor * 1.5 ** (attempts - 1), self.backoff_max)
        return base * random.uniform(0.5, 1.5)  # noqa: S311 (jitter, not cryptography)

    def increment(self, method: str | None = None, url: str | None = None, *args: Any, **kwargs: Any) -> KlaviyoRetry:
        new_retry: KlaviyoRetry = super().increment(method, url, *args, **kwargs)  # type: ignore[assignment]
        response = kwargs.get("response")
        wait = new_retry.get_retry_after(response) if response is not None else None
        if wait is None:
            wait = new_retry.get_backoff_time()
        if self.waited + wait > self.max_wait:
            raise MaxRetryError(kwargs.get("_pool"), url or "", ResponseError("retry wait budget exhausted"))
        new_retry.waited = self.waited + wait
        new_retry.planned_wait = wait
        error = kwargs.get("error")
        metrics.observe_retry(url or "", str(response.status) if response is not None else _retry_reason(error))
        return new_retry

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        # A 429 was not processed: retrying it is safe whatever the method.
        if status_code == 429 and status_code in (self.status_forcelist or ()):
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def sleep(self, response: Any = None) -> None:
        if self.planned_wait > 0:
            time.sleep(self.planned_wait)


def _retry_reason(error: Exception | None) -> str:
    return "connect" if isinstance(error, NewConnectionError | ConnectTimeoutError) else "connection"


def build_retry(*, retries: int, max_wait: float, statuses: frozenset[int] = RETRY_STATUSES) -> KlaviyoRetry:
    """Klaviyo's retry policy; ``statuses`` empty for endpoints never retried after an answer."""
    return KlaviyoRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        redirect=0,
        allowed_methods=IDEMPOTENT_METHODS,
        status_forcelist=statuses,
        backoff_factor=0.5,
        backoff_max=max_wait,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
        max_wait=max_wait,
    )


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer``, set as requests auth so that a ``.netrc`` entry for the
    host cannot replace it (requests consults .netrc only when no auth is given)."""

    def __init__(self, access_token: str) -> None:
        self._access_token = access_token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._access_token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<secret>)"


class KlaviyoSession(requests.Session):
    """A ``requests.Session`` that reads proxy and CA-bundle variables from the environment once per host.

    Plain ``requests`` scans the whole process environment on every request (``*_PROXY``,
    ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``): a third of the CPU of a call to Klaviyo. The
    environment of a running process does not change, so the answer is kept per host.
    Explicit per-call ``proxies``/``verify``/``cert``/``stream`` still go through requests.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment_settings: dict[tuple[str, str], dict[str, Any]] = {}
        # One session serves every customer: never carry a cookie from one call to the next.
        self.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        if proxies or stream is not None or verify is not None or cert is not None or not isinstance(url, str):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        settings = self._environment_settings.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, {}, None, None, None)
            self._environment_settings[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}


class KlaviyoAdapter(HTTPAdapter):
    """requests' adapter (urllib3 pool, retries, timeouts), building responses without cookies:
    one session serves every customer, so no cookie is ever kept or sent."""

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url or ""
        response.request = req
        response.connection = self
        return response


@functools.lru_cache(maxsize=8)
def _session(retries: int, max_wait: float, statuses: frozenset[int]) -> requests.Session:
    session = KlaviyoSession()
    retry = build_retry(retries=retries, max_wait=max_wait, statuses=statuses)
    adapter = KlaviyoAdapter(max_retries=retry, pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def shared_session() -> requests.Session:
    """The process-wide pooled session for the API, with the configured retry policy."""
    return _session(conf.max_retries, conf.retry_max_wait, RETRY_STATUSES)


def oauth_session() -> requests.Session:
    """The pooled session for the token and revoke endpoints: never retried after an answer."""
    return _session(conf.max_retries, conf.retry_max_wait, frozenset())


def close_sessions() -> None:
    """Close the pooled connections of both sessions (so that a server a test started can stop)."""
    shared_session().close()
    oauth_session().close()


class KlaviyoClient:
    """Klaviyo's OAuth endpoints and JSON:API, for one app (client id and secret)."""

    def __init__(self, *, session: requests.Session | None = None) -> None:
        self._session = session

    @property
    def session(self) -> requests.Session:
        return self._session or shared_session()

    # --- OAuth ---------------------------------------------------------------------------

    def authorize_url(self, *, state: str, code_challenge: str) -> str:
        """The browser URL that asks the customer to grant our scopes (PKCE S256)."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": conf.client_id,
                "redirect_uri": conf.redirect_url,
                "scope": conf.scopes,
                "state": state,
                "code_challenge_method": "S256",
                "code_challenge": code_challenge,
            },
            quote_via=quote,  # spaces as %20, as Klaviyo's SDK sends them
        )
        return f"{conf.authorize_url}?{query}"

    def exchange_code(self, *, code: str, code_verifier: str) -> TokenGrant:
        """Trade an authorization code for tokens. Raises InvalidGrant, KlaviyoAPIError, KlaviyoUnavailable."""
        grant = self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": code_verifier,
                "redirect_uri": conf.redirect_url,
            }
        )
        if not grant.refresh_token:
            raise KlaviyoUnavailable("Klaviyo's token response has no refresh_token")
        return grant

    def refresh(self, *, refresh_token: str) -> TokenGrant:
        """Use a refresh token. Raises InvalidGrant, KlaviyoAPIError, KlaviyoUnavailable."""
        return self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def revoke(self, *, refresh_token: str) -> None:
        """Revoke a refresh token (and so the connection). Raises KlaviyoAPIError, KlaviyoUnavailable."""
        response = self._post("/oauth/revoke", {"token": refresh_token, "token_type_hint": "refresh_token"})
        if not response.ok:
            raise _token_endpoint_error(response)

    def _token_request(self, form: dict[str, str]) -> TokenGrant:
        started = timezone.now()
        response = self._post("/oauth/token", form)
        if not response.ok:
            raise _token_endpoint_error(response)
        payload = _json_object(response)
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

    def _post(self, path: str, form: dict[str, str]) -> requests.Response:
        try:
            response = (self._session or oauth_session()).post(
                f"{conf.base_url}{path}",
                data=form,
                auth=(conf.client_id, conf.client_secret),
                headers={"Accept": "application/json"},
                timeout=conf.http_timeout,
                allow_redirects=False,
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
    ) -> requests.Response:
        """Send one API request as the customer; return the successful (2xx) response, its body read.

        ``json`` is sent as a JSON:API body. Raises KlaviyoUnauthorized, KlaviyoForbidden,
        KlaviyoThrottled, KlaviyoAPIError, KlaviyoUnavailable or KlaviyoWriteUncertain.

        The request goes straight to the session's adapter (its urllib3 pool, timeouts and
        retries): the session's own machinery (cookies, hooks, redirects, re-reading the
        environment) costs as much CPU as the rest of the call and none of it applies here.
        """
        method = method.upper()
        if method not in METHODS:
            raise ValueError(f"Unsupported HTTP method {method!r}; use one of {', '.join(sorted(METHODS))}")
        url = f"{conf.base_url}{path}"
        headers = {**DEFAULT_HEADERS, "revision": conf.revision, "Accept": JSON_API}
        body = None
        if json is not None:
            body = json_module.dumps(json, separators=(",", ":")).encode()
            headers["Content-Type"] = JSON_API
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        prepared.prepare_url(url, params)
        prepared.prepare_headers(headers)
        prepared.prepare_body(body, None)
        prepared.prepare_auth(BearerAuth(access_token))
        session = self.session
        environment = session.merge_environment_settings(url, {}, None, None, None)
        started = time.perf_counter()
        try:
            response = session.get_adapter(url).send(prepared, timeout=conf.http_timeout, **environment)
            response.content  # noqa: B018 (read the body now: errors surface here, not in a caller)
        except requests.RequestException as exc:
            metrics.observe_call(method, path, "error", time.perf_counter() - started)
            raise _transport_error(method, path, exc) from exc
        metrics.observe_call(method, path, response.status_code, time.perf_counter() - started)
        logger.debug("%s %s -> %s", method, path, response.status_code)
        if response.ok:
            return response
        raise _api_error(response, method=method, path=path)

    def call(
        self,
        method: str,
        path: str,
        *,
        access_token: str,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> dict[str, Any] | None:
        """``request``, returning the parsed JSON body, or None for 202/204 (no body)."""
        response = self.request(method, path, access_token=access_token, params=params, json=json)
        if response.status_code in (202, 204) or not response.content:
            return None
        return _json_object(response)

    def relay(self, path: str, *, access_token: str, params: dict[str, str] | None = None) -> bytes:
        """GET a JSON:API document as the customer and return it as Klaviyo sent it, for passing on
        unchanged. A body that is not a JSON object raises KlaviyoUnavailable, as ``call`` does."""
        content = self.request("GET", path, access_token=access_token, params=params).content
        if content.strip()[:1] == b"{" and content.rstrip()[-1:] == b"}":
            return content  # an object; parsing 20 KB just to serialise it again costs ~0.2 ms
        raise KlaviyoUnavailable("Klaviyo answered with a body that is not a JSON object")

    def get(self, path: str, *, access_token: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET a JSON:API resource as the customer (see ``request`` for what it raises)."""
        return _json_object(self.request("GET", path, access_token=access_token, params=params))


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError as exc:
        raise KlaviyoUnavailable(f"Klaviyo answered HTTP {response.status_code} with a body that is not JSON") from exc
    if not isinstance(payload, dict):
        raise KlaviyoUnavailable(f"Klaviyo answered HTTP {response.status_code} with unexpected JSON")
    return payload


def _error_details(response: requests.Response) -> tuple[str | None, tuple[KlaviyoErrorDetail, ...]]:
    """The OAuth ``error`` or the first JSON:API ``errors[].code``, and every ``errors[]`` entry."""
    try:
        payload = response.json()
    except ValueError:
        return None, ()
    if not isinstance(payload, dict):
        return None, ()
    errors = payload.get("errors")
    details = (
        tuple(KlaviyoErrorDetail.from_json(entry) for entry in errors if isinstance(entry, dict))
        if isinstance(errors, list)
        else ()
    )
    code = payload.get("error")
    if code is None and details:
        code = details[0].code
    return (code[:64] if isinstance(code, str) else None), details


def _retry_after(response: requests.Response) -> int | None:
    raw = response.headers.get("Retry-After", "")
    return int(raw) if raw.isdigit() else None


def _unavailable(response: requests.Response, *, method: str = "GET", path: str = "") -> KlaviyoUnavailable:
    if method not in IDEMPOTENT_METHODS:
        return KlaviyoWriteUncertain(
            f"{method} {path}: Klaviyo answered HTTP {response.status_code}", status=response.status_code
        )
    return KlaviyoUnavailable(f"Klaviyo answered HTTP {response.status_code}", status=response.status_code)


def _transport_error(method: str, path: str, exc: requests.RequestException) -> KlaviyoUnavailable:
    """A request that got no answer. A write that may have reached Klaviyo is uncertain."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    nothing_sent = isinstance(exc, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)
    if method not in IDEMPOTENT_METHODS and not nothing_sent:
        return KlaviyoWriteUncertain(f"{method} {path}: no answer from Klaviyo ({type(exc).__name__})")
    return KlaviyoUnavailable(f"Klaviyo {path} unreachable ({type(exc).__name__})")


def _token_endpoint_error(response: requests.Response) -> Exception:
    if response.status_code >= 500:
        return _unavailable(response)
    code, details = _error_details(response)
    if code == "invalid_grant":
        return InvalidGrant(status=response.status_code, code=code, errors=details)
    if response.status_code == 429:
        return KlaviyoThrottled(status=429, code=code, retry_after=_retry_after(response), errors=details)
    return KlaviyoAPIError(status=response.status_code, code=code, errors=details)


def _api_error(response: requests.Response, *, method: str, path: str) -> Exception:
    status = response.status_code
    if status >= 500 or (status in RETRY_STATUSES and status != 429):
        return _unavailable(response, method=method, path=path)
    code, details = _error_details(response)
    if status == 401:
        return KlaviyoUnauthorized(status=status, code=code, errors=details)
    if status == 429:
        return KlaviyoThrottled(status=status, code=code, retry_after=_retry_after(response), errors=details)
    if status == 403:
        return KlaviyoForbidden(status=status, code=code, errors=details)
    return KlaviyoAPIError(status=status, code=code, errors=details)


def account_id_and_name(body: dict[str, Any]) -> tuple[str, str]:
    """The id and organization name of the first account in a ``GET /api/accounts`` body ("" if absent)."""
    data = body.get("data")
    first = data[0] if isinstance(data, list) and data else data
    if not isinstance(first, dict):
        return "", ""
    attributes = first.get("attributes") if isinstance(first.get("attributes"), dict) else {}
    contact = attributes.get("contact_information") if isinstance(attributes.get("contact_information"), dict) else {}
    name = contact.get("organization_name") or attributes.get("name") or ""
    return str(first.get("id") or "")[:64], str(name)[:255]


def page_cursor(value: str) -> str:
    """Accept a bare cursor or Klaviyo's full ``links.next`` URL; return the bare cursor.

    Raises ValueError when a URL is malformed or carries no ``page[cursor]``.
    """
    if not value.startswith(("http://", "https://")):
        return value
    try:
        found = parse_qs(urlsplit(value).query).get("page[cursor]")
    except ValueError as exc:
        raise ValueError("The cursor URL is malformed.") from exc
    if not found or not found[0]:
        raise ValueError("The URL has no page[cursor] parameter.")
    return found[0]


client = KlaviyoClient()  # reads no settings when constructed
