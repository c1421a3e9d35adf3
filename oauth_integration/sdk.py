"""Klaviyo's official Python SDK (``klaviyo-api``) bound to one connected customer.

Install the extra (``pip install "klaviyo-django-oauth[sdk]"``), then::

    from oauth_integration.sdk import klaviyo_api

    klaviyo = klaviyo_api("cust-42")
    page = klaviyo.Profiles.get_profiles(page_size=100)

The SDK builds each request and parses each answer into its models as usual; sending it
is ours. Its HTTP layer (``ApiClient.rest_client``) is replaced by one that goes out the
way ``call_klaviyo`` does (``services.calls.as_customer`` around ``klaviyo.client.request``):

* every request carries a fresh access token (the single-flight refresh), and a 401
  refreshes once and retries once;
* the retry rules are this app's (``KlaviyoRetry``): 429 waits for ``Retry-After`` within
  KLAVIYO_RETRY_MAX_WAIT, a POST or PATCH is never retried after a 5xx or a dropped
  connection (``KlaviyoWriteUncertain``). The SDK's own retry loop is switched off;
* each request is counted in /metrics, and failures go to the connection's history;
* requests go to KLAVIYO_BASE_URL (the sandbox in sandbox mode), with the SDK's ``revision``
  (the one its models were generated for) and the path checks of ``klaviyo.check_path``;
* a whole ``links.next`` URL given as ``page_cursor`` is reduced to its ``page[cursor]``
  whatever its scheme (the SDK does this itself only for https:// links).

A request Klaviyo refuses raises what ``call_klaviyo`` raises (``KlaviyoAPIError`` with
every ``errors[]`` entry, ``MissingScope``, ``KlaviyoThrottled``, ``KlaviyoWriteUncertain``,
``ReauthorizationRequired``...), not the SDK's ``ApiException``. File uploads sent as
multipart forms (``Images.upload_image_from_file``) are not supported: ``ValueError``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

try:
    from klaviyo_api import KlaviyoAPI
except ImportError as exc:  # pragma: no cover (the extra is installed in development)
    raise ImportError('oauth_integration.sdk needs Klaviyo\'s SDK: pip install "klaviyo-django-oauth[sdk]"') from exc

from oauth_integration.conf import conf
from oauth_integration.exceptions import KlaviyoPathRefused
from oauth_integration.klaviyo import client as klaviyo
from oauth_integration.klaviyo import page_cursor
from oauth_integration.services.calls import as_customer
from oauth_integration.validators import validate_customer_identifier

CURSOR = "page[cursor]"
# Stands in for the token the SDK insists on being given; the bound client never sends it.
_PLACEHOLDER_TOKEN = "bound-to-a-connection"  # noqa: S105 (not a secret)


def klaviyo_api(customer_identifier: str) -> KlaviyoAPI:
    """Klaviyo's ``KlaviyoAPI`` acting as ``customer_identifier``'s connection (see the module's docstring).

    Nothing is read or sent until the first call; each call then raises what
    ``call_klaviyo`` raises (``TokenNotFound`` for a customer who never connected).
    Raises InvalidCustomerIdentifier at once.
    """
    validate_customer_identifier(customer_identifier)
    host = conf.base_url.rstrip("/")
    api = BoundKlaviyoAPI(api_key=None, access_token=_PLACEHOLDER_TOKEN, test_host=host)
    api.api_client.rest_client = BoundRestClient(customer_identifier, host=host)
    return api


class BoundKlaviyoAPI(KlaviyoAPI):
    """``KlaviyoAPI`` whose methods are the generated ones, unwrapped: no retry loop of its own
    (ours apply below it, in ``transport.KlaviyoRetry``), and cursors passed on as given
    (``BoundRestClient`` takes a ``links.next`` URL apart, http or https; the SDK's own
    wrapper keeps an ``=`` in front of the cursor it cuts out of an https:// link)."""

    @classmethod
    def _page_cursor_update(cls, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return func

    def retry_logic(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return func


class BoundRestClient:
    """The SDK's ``RESTClientObject`` for one customer: each request sent as ``call_klaviyo`` sends it."""

    def __init__(self, customer_identifier: str, *, host: str) -> None:
        self.customer_identifier = customer_identifier
        self.host = host

    def __repr__(self) -> str:
        return f"BoundRestClient({self.customer_identifier!r})"

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,  # KLAVIYO_HTTP_TIMEOUT applies
    ) -> SDKResponse:
        """Send what the SDK built; the answer as the SDK reads it (2xx only: failures raise ours)."""
        if post_params:
            raise ValueError("Multipart uploads are not supported through the SDK bound to a customer.")
        path, params = self.path_and_params(url)
        revision = (headers or {}).get("revision", "")
        method = method.upper()

        def send(access_token: str) -> Any:
            return klaviyo.request(method, path, access_token=access_token, params=params, json=body, revision=revision)

        return SDKResponse(as_customer(self.customer_identifier, method, path, send))

    def path_and_params(self, url: str) -> tuple[str, dict[str, str]]:
        """The API path and query parameters of a URL the SDK built on ``host``.

        A ``page[cursor]`` holding a whole ``links.next`` URL becomes that URL's cursor.
        Raises KlaviyoPathRefused for a URL on another host (an SDK call given ``_host``).
        """
        if not url.startswith(self.host + "/"):
            raise KlaviyoPathRefused(url, "the SDK built a URL that is not on KLAVIYO_BASE_URL")
        parts = urlsplit(url[len(self.host) :])
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if params.get(CURSOR):
            params[CURSOR] = page_cursor(params[CURSOR])
        return parts.path, params


class SDKResponse(io.IOBase):
    """An answer, read in full, as the SDK's ``RESTResponse`` shows it."""

    def __init__(self, response: Any) -> None:
        super().__init__()
        self.status: int = response.status_code
        self.reason: str = response.reason
        self.data: bytes = response.content
        self.headers = response.headers

    def read(self) -> bytes:
        return self.data

    def getheaders(self) -> Any:
        return self.headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)
