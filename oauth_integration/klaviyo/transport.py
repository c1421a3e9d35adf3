"""How requests reach Klaviyo: pooled sessions, urllib3's retries with Klaviyo's backoff, bearer auth.

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
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, select_proxy
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ResponseError
from urllib3.util.retry import Retry

from oauth_integration import metrics
from oauth_integration.conf import conf

RETRY_STATUSES = frozenset({429, 503, 504, 524})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
USER_AGENT = "klaviyo-django-oauth/1.1"
# What requests' Session would add to every request.
DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}


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
    one session serves every customer, so no cookie is ever kept or sent.

    The urllib3 pool for a host is looked up once: requests re-parses the URL and rebuilds
    the pool key on every call to find the same pool again. A pool the manager has closed
    (evicted, or the adapter closed) is looked up afresh; calls through a proxy always are.
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


@functools.lru_cache(maxsize=256)
def _url(base_url: str, path: str) -> str:
    """``base_url`` + ``path`` exactly as requests sends it, worked out once per pair."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(base_url.rstrip("/") + path, None)
    return prepared.url or ""


def prepare(
    method: str, base_url: str, path: str, *, params: dict[str, str] | None, headers: dict[str, str], body: bytes | None
) -> requests.PreparedRequest:
    """The request ``Session.prepare_request`` would build, without re-parsing the URL on every call.

    requests parses and normalises the URL (host, path, IDNA) once per base and path; the
    parameters are encoded per call, as requests encodes them. Header values are still
    validated by requests.
    """
    url = _url(base_url, path)
    if params:
        url += ("&" if "?" in url else "?") + urlencode(params)
    prepared = requests.PreparedRequest()
    prepared.method = method
    prepared.url = url
    prepared.prepare_headers(headers)
    prepared.prepare_body(body, None)
    return prepared


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
