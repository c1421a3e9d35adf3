"""How requests reach Klaviyo: one ``send`` for every request (API, token, revoke), pooled
sessions, urllib3's retries with Klaviyo's backoff, bearer auth.

``send`` builds the URL from ``KLAVIYO_BASE_URL`` and a path that must be an API path
(``/api/...``) or exactly the token or revoke path, and refuses anything that could leave
Klaviyo's host before a token or the client secret is attached. No cookie is sent or kept,
no redirect is followed.

* 429 is retried for every method (Klaviyo did not process the request), honouring
  ``Retry-After`` within the wait budget;
* 503/504/524 and connection failures are retried only for idempotent methods (GET,
  HEAD, PUT, DELETE, OPTIONS);
* a connection that could not be opened is retried for every method (nothing was sent);
* the token and revoke endpoints (``oauth_session``) are never retried after an answer.
"""

from __future__ import annotations

import functools
import http.cookiejar
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, select_proxy
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ResponseError
from urllib3.util.retry import Retry

from oauth_integration import metrics
from oauth_integration.conf import conf
from oauth_integration.exceptions import KlaviyoPathRefused

RETRY_STATUSES = frozenset({429, 503, 504, 524})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Writes a caller may declare safe to send twice (an event with its unique_id, a profile import
# by e-mail): only then are they retried like the idempotent methods.
REPEATABLE_WRITES = frozenset({"POST", "PATCH"})
USER_AGENT = "klaviyo-django-oauth/1.1"
# What requests' Session would add to every request.
DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}
API_PREFIX = "/api/"
TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path, not a secret)
REVOKE_PATH = "/oauth/revoke"
OAUTH_PATHS = frozenset({TOKEN_PATH, REVOKE_PATH})


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


def build_retry(
    *, retries: int, max_wait: float, statuses: frozenset[int] = RETRY_STATUSES, repeatable: bool = False
) -> KlaviyoRetry:
    """Klaviyo's retry policy; ``statuses`` empty for endpoints never retried after an answer;
    ``repeatable``: writes too are retried after a 5xx or a lost connection (their caller said
    they may be applied twice)."""
    return KlaviyoRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        redirect=0,
        allowed_methods=IDEMPOTENT_METHODS | REPEATABLE_WRITES if repeatable else IDEMPOTENT_METHODS,
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
        # ``send`` never touches the jar; this holds for code that uses the session itself.
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
    one session serves every customer, so no cookie is ever kept or sent.

    The urllib3 pool for a host is looked up once: requests re-parses the URL and rebuilds
    the pool key on every call to find the same pool again (267 instead of 314 us of CPU for a
    ``relay`` of 20 profiles from a loopback server). urllib3 2 never closes a pool it drops from its
    manager, so a dropped pool stays usable here until the adapter is closed; a pool closed
    under the adapter (``pool.close()``) is looked up afresh, and calls through a proxy
    always are.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pools: dict[tuple[str, str, Any, Any], Any] = {}
        super().__init__(*args, **kwargs)

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: dict[str, str] | None = None, cert: Any = None
    ) -> Any:
        if proxies and select_proxy(request.url or "", proxies):
            return super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        scheme, netloc = urlsplit(request.url or "")[:2]
        key = (scheme, netloc, verify, cert if not isinstance(cert, list) else tuple(cert))
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # urllib3 sets .pool to None when it closes one
            pool = super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
            self._pools[key] = pool
        return pool

    def close(self) -> None:
        self._pools.clear()
        super().close()

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


def check_path(path: str, *, oauth: bool = False) -> str:
    """Return ``path`` if it is an API path that stays under ``/api/`` (``oauth``: exactly the
    token or revoke path).

    Raises KlaviyoPathRefused otherwise: anything but a leading ``/api/`` (so no scheme, no
    authority, no ``@``/``:``/``.`` glued onto the host), ``//``, a backslash, a ``.`` or
    ``..`` segment (also percent-encoded), a fragment, or a control character. A query
    (``?...``) may follow the path.
    """
    if not isinstance(path, str):
        raise KlaviyoPathRefused(path, "not a string")
    if oauth:
        if path not in OAUTH_PATHS:
            raise KlaviyoPathRefused(path, f"the OAuth endpoints are exactly {TOKEN_PATH} and {REVOKE_PATH}")
        return path
    if not path.startswith(API_PREFIX):
        raise KlaviyoPathRefused(path, f"an API path starts with {API_PREFIX}")
    if not path.isprintable():
        raise KlaviyoPathRefused(path, "control characters")
    if "\\" in path or "#" in path:
        raise KlaviyoPathRefused(path, "a backslash or a fragment")
    route = path.split("?", 1)[0]
    if "//" in route:
        raise KlaviyoPathRefused(path, "an empty segment (//)")
    if any(unquote(segment) in (".", "..") for segment in route.split("/")):
        raise KlaviyoPathRefused(path, "a . or .. segment")
    return path


def _origin(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme, parts.netloc.lower(), port, parts.path


@functools.lru_cache(maxsize=256)
def _url(base_url: str, path: str, oauth: bool) -> str:
    """``base_url`` + ``path`` exactly as requests sends it, worked out once per pair.

    The path is checked first, then the result must have the base URL's scheme, host and
    port (and sit under its path): KlaviyoPathRefused otherwise.
    """
    check_path(path, oauth=oauth)
    base = base_url.rstrip("/")
    prepared = requests.PreparedRequest()
    prepared.prepare_url(base + path, None)
    url = prepared.url or ""
    expected = requests.PreparedRequest()
    expected.prepare_url(base + "/", None)
    check_origin(expected.url or "", url, path)
    return url


def check_origin(base_url: str, url: str, path: str) -> None:
    """Raise KlaviyoPathRefused unless ``url`` has the scheme, host and port of ``base_url``
    (and no other user part) and its path lies under the base's path."""
    scheme, netloc, port, base_path = _origin(base_url)
    found_scheme, found_netloc, found_port, found_path = _origin(url)
    same = (scheme, netloc, port) == (found_scheme, found_netloc, found_port) and port != -1
    if not same or not found_path.startswith(base_path.rstrip("/") + "/"):
        raise KlaviyoPathRefused(path, "the URL would not be on KLAVIYO_BASE_URL's scheme, host and port")


def prepare(
    method: str,
    base_url: str,
    path: str,
    *,
    params: dict[str, str] | None,
    headers: dict[str, str],
    body: bytes | dict[str, str] | None,
    oauth: bool = False,
) -> requests.PreparedRequest:
    """The request ``Session.prepare_request`` would build, without re-parsing the URL on every call.

    requests parses and normalises the URL (host, path, IDNA) once per base and path; the
    parameters are encoded per call, as requests encodes them. Header values are still
    validated by requests. A dict ``body`` is sent as a form. Raises KlaviyoPathRefused
    (see ``check_path``).
    """
    url = _url(base_url, path, oauth)
    if params:
        url += ("&" if "?" in url else "?") + urlencode(params)
    prepared = requests.PreparedRequest()
    prepared.method = method
    prepared.url = url
    prepared.prepare_headers(headers)
    prepared.prepare_body(body, None)
    return prepared


def send(
    method: str,
    path: str,
    *,
    auth: Callable[[requests.PreparedRequest], requests.PreparedRequest],
    headers: dict[str, str],
    params: dict[str, str] | None = None,
    body: bytes | dict[str, str] | None = None,
    session: requests.Session | None = None,
    oauth: bool = False,
    base_url: str = "",
) -> requests.Response:
    """Send one request to Klaviyo and return its answer, the body read: every request goes here.

    The URL is ``base_url`` (``KLAVIYO_BASE_URL``; in sandbox mode the sandbox of the site a
    redirect URI names, ``conf.base_url_for``) + ``path`` (+ ``params``); a path that is not an API
    path (``oauth``: not exactly the token or revoke path), or a URL that would leave the base URL's scheme,
    host and port, raises KlaviyoPathRefused before ``auth`` adds the token or the client
    credentials. The request goes straight to the session's adapter (its urllib3 pool,
    timeouts and ``KlaviyoRetry``): no cookie jar is read or filled, no redirect followed.
    By default the API goes through ``shared_session`` and the token and revoke endpoints
    through ``oauth_session`` (never retried after an answer).

    Raises KlaviyoPathRefused, or requests' exceptions (failures reading the body included).
    """
    prepared = prepare(method, base_url or conf.base_url, path, params=params, headers=headers, body=body, oauth=oauth)
    auth(prepared)
    if session is None:
        session = oauth_session() if oauth else shared_session()
    url = prepared.url or ""
    environment = session.merge_environment_settings(url, {}, None, None, None)
    response = session.get_adapter(url).send(prepared, timeout=conf.http_timeout, **environment)
    read_body(response)  # now: errors surface here, not in a caller
    return response


def read_body(response: requests.Response) -> bytes:
    """Read the whole body now, in one read, and keep it as ``response.content``.

    ``Response.content`` reads 10 KB at a time through urllib3's streaming machinery;
    reading in one go costs a third as much for a page of profiles. Failures are
    wrapped by requests exactly as ``content`` wraps them.
    """
    if not response._content_consumed:
        response._content = b"".join(response.iter_content(chunk_size=None))
    return response.content


@functools.lru_cache(maxsize=8)
def _session(retries: int, max_wait: float, statuses: frozenset[int], repeatable: bool = False) -> requests.Session:
    session = KlaviyoSession()
    retry = build_retry(retries=retries, max_wait=max_wait, statuses=statuses, repeatable=repeatable)
    adapter = KlaviyoAdapter(max_retries=retry, pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def shared_session(*, repeatable: bool = False) -> requests.Session:
    """The process-wide pooled session for the API, with the configured retry policy
    (``repeatable``: the one that also retries writes, for writes that may be sent twice)."""
    return _session(conf.max_retries, conf.retry_max_wait, RETRY_STATUSES, repeatable)


def oauth_session() -> requests.Session:
    """The pooled session for the token and revoke endpoints: never retried after an answer."""
    return _session(conf.max_retries, conf.retry_max_wait, frozenset())


def close_sessions() -> None:
    """Close the pooled connections of both sessions (so that a server a test started can stop)."""
    shared_session().close()
    shared_session(repeatable=True).close()
    oauth_session().close()
