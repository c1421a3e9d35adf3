"""The HTTP boundary: request shapes, error mapping, retries."""

import base64
import gzip
import inspect
import itertools
import json
import tomllib
from pathlib import Path

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter
from responses import matchers

from oauth_integration.exceptions import (
    InvalidGrant,
    KlaviyoAPIError,
    KlaviyoPathRefused,
    KlaviyoThrottled,
    KlaviyoUnauthorized,
    KlaviyoUnavailable,
)
from oauth_integration.klaviyo import (
    KlaviyoAdapter,
    KlaviyoClient,
    KlaviyoRetry,
    KlaviyoSession,
    build_retry,
    oauth_session,
    page_cursor,
    send,
    shared_session,
)
from oauth_integration.klaviyo.transport import check_origin, prepare
from tests.conftest import PROFILES_URL, REVOKE_URL, TOKEN_URL, profiles_body, token_body
from tests.wire_faults import ScriptedServer

BASIC = "Basic " + base64.b64encode(b"client-id:client-secret").decode()
client = KlaviyoClient()


def test_authorize_url_carries_every_required_parameter():
    url = client.authorize_url(state="st4te", code_challenge="ch4llenge")
    assert url.startswith("https://www.klaviyo.com/oauth/authorize?")
    query = requests.utils.urlparse(url).query
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert params == {
        "response_type": "code",
        "client_id": "client-id",
        "redirect_uri": "http%3A%2F%2Ftestserver%2Fauthorize",
        "scope": "accounts%3Aread%20profiles%3Aread",
        "state": "st4te",
        "code_challenge_method": "S256",
        "code_challenge": "ch4llenge",
    }


def test_exchange_code_posts_a_form_with_basic_auth(mocked_responses):
    mocked_responses.post(
        TOKEN_URL,
        match=[
            matchers.header_matcher({"Authorization": BASIC, "Content-Type": "application/x-www-form-urlencoded"}),
            matchers.urlencoded_params_matcher(
                {
                    "grant_type": "authorization_code",
                    "code": "the-code",
                    "code_verifier": "the-verifier",
                    "redirect_uri": "http://testserver/authorize",
                }
            ),
        ],
        json=token_body(access="at-1", refresh="rt-1", expires_in=3600),
    )
    grant = client.exchange_code(code="the-code", code_verifier="the-verifier")
    assert (grant.access_token, grant.refresh_token, grant.scopes) == ("at-1", "rt-1", "accounts:read profiles:read")
    assert "at-1" not in repr(grant) and "rt-1" not in repr(grant)


def test_refresh_posts_the_refresh_grant(mocked_responses):
    mocked_responses.post(
        TOKEN_URL,
        match=[
            matchers.header_matcher({"Authorization": BASIC}),
            matchers.urlencoded_params_matcher({"grant_type": "refresh_token", "refresh_token": "rt-1"}),
        ],
        json=token_body(access="at-2", refresh=None),
    )
    grant = client.refresh(refresh_token="rt-1")
    assert grant.access_token == "at-2"
    assert grant.refresh_token is None  # nothing came back: the caller keeps the old one


def test_revoke_posts_token_and_hint(mocked_responses):
    mocked_responses.post(
        REVOKE_URL,
        match=[
            matchers.header_matcher({"Authorization": BASIC}),
            matchers.urlencoded_params_matcher({"token": "rt-1", "token_type_hint": "refresh_token"}),
        ],
        json={},
    )
    client.revoke(refresh_token="rt-1")


def test_invalid_grant_is_its_own_error(mocked_responses):
    mocked_responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(InvalidGrant) as excinfo:
        client.refresh(refresh_token="rt-1")
    assert excinfo.value.code == "invalid_grant"
    assert "rt-1" not in str(excinfo.value)


def test_invalid_client_is_an_api_error(mocked_responses):
    mocked_responses.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    with pytest.raises(KlaviyoAPIError) as excinfo:
        client.refresh(refresh_token="rt-1")
    assert not isinstance(excinfo.value, InvalidGrant)
    assert excinfo.value.code == "invalid_client"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": 200, "body": "<html>oops</html>"},
        {"status": 200, "json": ["not", "an", "object"]},
        {"status": 200, "json": {"access_token": "", "expires_in": 3600, "refresh_token": "r"}},
        {"status": 200, "json": {"access_token": "a", "expires_in": "soon", "refresh_token": "r"}},
        {"status": 200, "json": {"access_token": "a", "expires_in": 3600, "refresh_token": 5}},
        {"status": 500, "body": "Internal Server Error"},
        {"status": 503, "json": {"error": "temporarily_unavailable"}},
    ],
)
def test_unusable_token_responses_are_unavailable_errors(mocked_responses, kwargs):
    mocked_responses.post(TOKEN_URL, **kwargs)
    with pytest.raises(KlaviyoUnavailable):
        client.refresh(refresh_token="rt-1")


@pytest.mark.parametrize("exc", [requests.ConnectTimeout(), requests.ReadTimeout(), requests.ConnectionError("reset")])
def test_transport_failures_are_unavailable_errors(mocked_responses, exc):
    mocked_responses.post(TOKEN_URL, body=exc)
    with pytest.raises(KlaviyoUnavailable):
        client.refresh(refresh_token="rt-1")


def test_exchange_requires_a_refresh_token(mocked_responses):
    mocked_responses.post(TOKEN_URL, json=token_body(refresh=None))
    with pytest.raises(KlaviyoUnavailable, match="no refresh_token"):
        client.exchange_code(code="c", code_verifier="v")


def test_api_get_sends_bearer_revision_and_json_api_accept(mocked_responses):
    mocked_responses.get(
        PROFILES_URL,
        match=[
            matchers.header_matcher(
                {"Authorization": "Bearer at-1", "revision": "2026-07-15", "Accept": "application/vnd.api+json"}
            ),
            matchers.query_param_matcher({"page[size]": "5"}),
        ],
        json=profiles_body("p1"),
    )
    body = client.get("/api/profiles", access_token="at-1", params={"page[size]": "5"})
    assert body["data"][0]["id"] == "p1"


def test_api_401_maps_to_unauthorized(mocked_responses):
    mocked_responses.get(PROFILES_URL, status=401, json={"errors": [{"code": "authentication_failed"}]})
    with pytest.raises(KlaviyoUnauthorized) as excinfo:
        client.get("/api/profiles", access_token="at-1")
    assert excinfo.value.code == "authentication_failed"


def test_429_is_retried_honouring_retry_after_then_succeeds(settings):
    """Through urllib3's own retry loop and KlaviyoRetry.sleep, against a real server on loopback."""
    throttled = {"errors": [{"code": "throttled", "detail": "Expected available in 1 second."}]}
    steps = [
        (429, {"retry-after": "1"}, throttled),
        (429, {"Retry-After": "1"}, throttled),
        (200, {}, profiles_body("p1")),
    ]
    with ScriptedServer(steps) as server:
        settings.KLAVIYO_BASE_URL = server.url
        assert client.get("/api/profiles", access_token="at-1")["data"][0]["id"] == "p1"
    times = [at for _, at in server.requests]
    assert len(times) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Retry-After: 1, in either header case; the backoff alone would be 0.25-0.75 s, both 1 s and more.
    assert all(0.95 <= gap < 1.6 for gap in gaps), gaps


def test_a_throttled_token_request_is_not_retried_over_the_wire(settings):
    with ScriptedServer([(429, {"Retry-After": "1"}, {"error": "throttled"})]) as server:
        settings.KLAVIYO_BASE_URL = server.url
        with pytest.raises(KlaviyoThrottled):
            client.refresh(refresh_token="rt-1")
    assert [path for path, _ in server.requests] == ["/oauth/token"]


def test_429_past_the_retry_attempts_is_throttled_with_retry_after(mocked_responses):
    for _ in range(3):
        mocked_responses.get(
            PROFILES_URL, status=429, json={"errors": [{"code": "throttled"}]}, headers={"Retry-After": "1"}
        )
    with pytest.raises(KlaviyoThrottled) as excinfo:
        client.get("/api/profiles", access_token="at-1")
    assert excinfo.value.retry_after == 1
    assert len(mocked_responses.calls) == 3  # 1 try + KLAVIYO_MAX_RETRIES (2)


def test_retry_after_beyond_the_wait_budget_is_not_waited_for(mocked_responses):
    mocked_responses.get(
        PROFILES_URL, status=429, json={"errors": [{"code": "throttled"}]}, headers={"Retry-After": "60"}
    )
    with pytest.raises(KlaviyoThrottled) as excinfo:
        client.get("/api/profiles", access_token="at-1")
    assert excinfo.value.retry_after == 60
    assert len(mocked_responses.calls) == 1


@pytest.mark.parametrize("status", [503, 504, 524])
def test_gateway_statuses_are_retried_then_reported_unavailable(mocked_responses, status):
    for _ in range(3):
        mocked_responses.get(PROFILES_URL, status=status, body="upstream trouble")
    with pytest.raises(KlaviyoUnavailable) as excinfo:
        client.get("/api/profiles", access_token="at-1")
    assert excinfo.value.status == status
    assert len(mocked_responses.calls) == 3


def test_token_endpoint_is_never_retried_on_status(mocked_responses):
    mocked_responses.post(TOKEN_URL, status=503, body="busy")
    with pytest.raises(KlaviyoUnavailable):
        client.refresh(refresh_token="rt-1")
    assert len(mocked_responses.calls) == 1


def test_500_and_502_are_not_retried(mocked_responses):
    mocked_responses.get(PROFILES_URL, status=500, body="boom")
    with pytest.raises(KlaviyoUnavailable):
        client.get("/api/profiles", access_token="at-1")
    assert len(mocked_responses.calls) == 1


class _FakeResponse:
    def __init__(self, status, headers):
        self.status = status
        self.headers = headers

    def get_redirect_location(self):
        return None


def test_retry_plans_the_retry_after_wait_and_adds_up_waits():
    from urllib3._collections import HTTPHeaderDict

    retry = build_retry(retries=3, max_wait=5)
    first = retry.increment("GET", "/api/profiles", response=_FakeResponse(429, HTTPHeaderDict({"retry-after": "2"})))
    assert first.planned_wait == 2
    second = first.increment("GET", "/api/profiles", response=_FakeResponse(429, HTTPHeaderDict({"Retry-After": "3"})))
    assert second.waited == 5
    from urllib3.exceptions import MaxRetryError

    with pytest.raises(MaxRetryError):
        second.increment("GET", "/api/profiles", response=_FakeResponse(429, HTTPHeaderDict({"Retry-After": "1"})))


def test_backoff_is_jittered_and_grows():
    retry = build_retry(retries=5, max_wait=100)
    waits = []
    for _ in range(3):
        retry = retry.increment("GET", "/x", response=_FakeResponse(503, {}))
        waits.append(retry.planned_wait)
    assert 0.25 <= waits[0] <= 0.75
    assert 0.375 <= waits[1] <= 1.125
    assert 0.5625 <= waits[2] <= 1.6875
    assert isinstance(retry, KlaviyoRetry)


# --- the pooled session reads the environment once per host -------------------------------


def test_the_shared_session_is_a_klaviyo_session():
    assert isinstance(shared_session(), KlaviyoSession)


def test_proxy_and_ca_bundle_variables_still_apply(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "skip.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/our-bundle.pem")
    session = KlaviyoSession()
    via_proxy = session.merge_environment_settings(PROFILES_URL, {}, None, None, None)
    assert via_proxy["proxies"]["https"] == "http://proxy.internal:3128"
    assert via_proxy["verify"] == "/etc/ssl/our-bundle.pem"
    bypassed = session.merge_environment_settings("https://skip.example/api", {}, None, None, None)
    assert "https" not in bypassed["proxies"]


def test_the_environment_is_read_once_per_host(monkeypatch):
    reads = []
    real = requests.sessions.get_environ_proxies
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", lambda *a, **kw: reads.append(a) or real(*a, **kw))
    session = KlaviyoSession()
    first = session.merge_environment_settings(PROFILES_URL, {}, None, None, None)
    first["proxies"]["https"] = "http://changed-by-a-caller:1"
    again = session.merge_environment_settings(f"{PROFILES_URL}?page[size]=5", {}, None, None, None)
    session.merge_environment_settings("https://other.example/x", {}, None, None, None)
    assert len(reads) == 2  # one per host
    assert again["proxies"].get("https") != "http://changed-by-a-caller:1"  # callers get copies


def test_explicit_per_call_settings_bypass_the_cache(monkeypatch):
    session = KlaviyoSession()
    session.merge_environment_settings(PROFILES_URL, {}, None, None, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://late.internal:3128")
    explicit = session.merge_environment_settings(PROFILES_URL, {}, None, False, None)
    assert explicit["verify"] is False
    assert explicit["proxies"]["https"] == "http://late.internal:3128"


def test_calls_through_the_session_still_reach_klaviyo(mocked_responses):
    mocked_responses.get(PROFILES_URL, json=profiles_body("p1"))
    mocked_responses.get(PROFILES_URL, json=profiles_body("p2"))
    assert client.get("/api/profiles", access_token="at-1")["data"][0]["id"] == "p1"
    assert client.get("/api/profiles", access_token="at-1")["data"][0]["id"] == "p2"


def test_a_netrc_entry_for_the_host_cannot_replace_the_bearer_token(mocked_responses, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine a.klaviyo.com login someone password something\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    mocked_responses.get(PROFILES_URL, match=[matchers.header_matcher({"Authorization": "Bearer at-1"})], json={})
    client.get("/api/profiles", access_token="at-1")


@pytest.mark.parametrize("session", [None, requests.Session], ids=["pooled-sessions", "a-plain-requests-session"])
def test_cookies_from_one_call_never_ride_along_on_the_next(mocked_responses, session):
    """Token, revoke and API requests all go out without a cookie jar, whatever the session."""
    session = session and session()
    own = KlaviyoClient(session=session)
    set_cookie = {"Set-Cookie": "visitor=cust-a; Path=/"}
    mocked_responses.post(TOKEN_URL, json=token_body(access="at-a"), headers=set_cookie)
    mocked_responses.post(TOKEN_URL, json=token_body(access="at-b"), headers=set_cookie)
    mocked_responses.post(REVOKE_URL, json={}, headers=set_cookie)
    mocked_responses.get(PROFILES_URL, json={}, headers=set_cookie)
    mocked_responses.get(PROFILES_URL, json={})
    own.refresh(refresh_token="rt-a")
    own.refresh(refresh_token="rt-b")
    own.revoke(refresh_token="rt-b")
    own.get("/api/profiles", access_token="at-a")
    own.get("/api/profiles", access_token="at-b")
    assert [call.request.headers.get("Cookie") for call in mocked_responses.calls] == [None] * 5
    if session is not None:
        assert not session.cookies  # none kept either


@pytest.mark.parametrize("pooled", [shared_session, oauth_session])
def test_the_pooled_sessions_keep_no_cookie_even_when_used_directly(mocked_responses, pooled):
    mocked_responses.get(PROFILES_URL, json={}, headers={"Set-Cookie": "visitor=cust-a; Path=/"})
    mocked_responses.get(PROFILES_URL, json={})
    pooled().get(PROFILES_URL, timeout=5)
    pooled().get(PROFILES_URL, timeout=5)
    assert "Cookie" not in mocked_responses.calls[1].request.headers
    assert not pooled().cookies


# --- one way out: a path can never take a request (or its token) off Klaviyo's host -------

LEAVING_PATHS = [
    "@attacker.example/api/profiles",
    ":x@attacker.example/api/lists",
    ":443@attacker.example/api/lists",
    ".attacker.example/api/profiles",
    "api/profiles",
    "//attacker.example/api/profiles",
    "https://attacker.example/api/profiles",
    "/\\attacker.example/api/profiles",
    "/api\\..\\oauth/token",
    "/api/../oauth/token",
    "/api/%2e%2E/oauth/token",
    "/api/./profiles",
    "/api//profiles",
    "/api/profiles#@attacker.example",
    "/api/profiles\r\nHost: attacker.example",
    "/api/profiles\x00",
    "/api/profiles\t",
    "/oauth/token",
    "/profiles",
    "/api",
    "",
]


@pytest.mark.parametrize("path", LEAVING_PATHS)
def test_an_api_path_that_could_leave_klaviyo_is_refused_before_anything_is_sent(mocked_responses, path):
    with pytest.raises(KlaviyoPathRefused) as excinfo:
        client.get(path, access_token="at-secret")
    assert isinstance(excinfo.value, ValueError)  # a programming error, not an answer from Klaviyo
    assert "at-secret" not in str(excinfo.value)
    assert len(mocked_responses.calls) == 0


@pytest.mark.parametrize("path", ["/oauth/token/", "/oauth/token?x=1", "/oauth/revoke/../token", "/api/profiles", ""])
def test_the_token_and_revoke_endpoints_take_only_their_exact_paths(mocked_responses, path):
    with pytest.raises(KlaviyoPathRefused, match="exactly /oauth/token and /oauth/revoke"):
        send("POST", path, auth=requests.auth.HTTPBasicAuth("client-id", "client-secret"), headers={}, oauth=True)
    assert len(mocked_responses.calls) == 0


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://127.0.0.1:8201/", "http://127.0.0.1:8201@127.0.0.1:8250/api/profiles"),
        ("https://a.klaviyo.com/", "https://a.klaviyo.com.attacker.example/api/profiles"),
        ("https://a.klaviyo.com/", "https://attacker.example/api/profiles"),
        ("https://a.klaviyo.com/", "http://a.klaviyo.com/api/profiles"),
        ("https://a.klaviyo.com/", "https://a.klaviyo.com:8443/api/profiles"),
        ("https://a.klaviyo.com/", "https://user@a.klaviyo.com/api/profiles"),
        ("http://127.0.0.1:8201/sandbox/", "http://127.0.0.1:8201/api/profiles"),
        ("http://127.0.0.1:8201/sandbox/", "http://127.0.0.1:8201/sandboxed/api/profiles"),
    ],
)
def test_a_url_off_the_base_urls_scheme_host_and_port_is_refused(base, url):
    with pytest.raises(KlaviyoPathRefused, match="scheme, host and port"):
        check_origin(base, url, "/api/profiles")


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://a.klaviyo.com", "https://a.klaviyo.com/api/profiles?page%5Bsize%5D=5"),
        ("https://A.Klaviyo.com/", "https://a.klaviyo.com/api/profiles"),
        ("http://127.0.0.1:8201/sandbox", "http://127.0.0.1:8201/sandbox/api/profiles"),
    ],
)
def test_a_url_on_the_base_url_passes(base, url):
    prepared = prepare("GET", base, "/api/profiles", params={"page[size]": "5"}, headers={}, body=None)
    assert prepared.url.split("?")[0] == url.split("?")[0]
    check_origin(base.rstrip("/") + "/", url, "/api/profiles")


# --- requests prepared and sent without requests' per-call parsing ------------------------


@pytest.mark.parametrize(
    ("base", "path", "params"),
    [
        ("https://a.klaviyo.com", "/api/profiles", None),
        ("https://a.klaviyo.com/", "/api/profiles", {"page[size]": "5", "page[cursor]": "bmV4dDo6MTI="}),
        ("https://A.Klaviyo.com", "/api/lists/Xy Z/relationships/profiles/", {"filter": 'equals(email,"a+b@x.com")'}),
        ("http://127.0.0.1:8080", "/api/profiles?fields[profile]=email", {"page[size]": "10"}),
    ],
)
def test_requests_are_prepared_as_requests_would_prepare_them(base, path, params):
    ours = prepare("GET", base, path, params=params, headers={"revision": "2026-07-15"}, body=None)
    theirs = requests.Request("GET", base.rstrip("/") + path, params=params, headers={"revision": "2026-07-15"})
    expected = theirs.prepare()
    assert (ours.method, ours.url, ours.body) == (expected.method, expected.url, expected.body)
    assert ours.headers == expected.headers


def test_header_values_with_line_breaks_are_refused():
    with pytest.raises(requests.exceptions.InvalidHeader):
        prepare(
            "GET", "https://a.klaviyo.com", "/api/profiles", params=None, headers={"revision": "x\r\nX: y"}, body=None
        )


def test_a_compressed_page_is_relayed_decompressed(mocked_responses):
    body = json.dumps(profiles_body("p1")).encode()
    mocked_responses.get(PROFILES_URL, body=gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert client.relay("/api/profiles", access_token="at-1") == body


def test_the_adapter_finds_a_hosts_pool_once_and_again_once_closed():
    adapter = KlaviyoAdapter()
    klaviyo = prepare("GET", "https://a.klaviyo.com", "/api/profiles", params=None, headers={}, body=None)
    elsewhere = prepare("GET", "https://b.example.com", "/api/profiles", params=None, headers={}, body=None)
    pool = adapter.get_connection_with_tls_context(klaviyo, True)
    assert adapter.get_connection_with_tls_context(klaviyo, True) is pool
    assert adapter.get_connection_with_tls_context(elsewhere, True) is not pool
    assert adapter.get_connection_with_tls_context(klaviyo, "/etc/ssl/other.pem") is not pool  # TLS settings differ
    proxied = adapter.get_connection_with_tls_context(klaviyo, True, proxies={"https": "http://proxy.internal:3128"})
    assert proxied is not pool
    adapter.close()
    reopened = adapter.get_connection_with_tls_context(klaviyo, True)
    assert reopened is not pool
    assert reopened.pool is not None  # open, usable


def only_pool(adapter):
    (key,) = adapter.poolmanager.pools.keys()
    return adapter.poolmanager.pools[key]


def test_calls_go_on_when_urllib3_drops_a_pool_or_a_pool_is_closed(settings):
    """urllib3 (2.x) keeps ``pool_connections`` hosts' pools and drops the least recently used one
    without closing it; a pool can also be closed under the adapter (``pool.close()``, as urllib3
    1.x did on eviction). The adapter keeps using an open pool and never a closed one."""
    session = KlaviyoSession()
    adapter = KlaviyoAdapter(pool_connections=1)
    session.mount("http://", adapter)
    own = KlaviyoClient(session=session)
    ok = (200, {}, profiles_body("p1"))
    with ScriptedServer([ok, ok, ok]) as klaviyo, ScriptedServer([ok]) as elsewhere:
        settings.KLAVIYO_BASE_URL = klaviyo.url
        own.get("/api/profiles", access_token="at-1")
        first = only_pool(adapter)
        settings.KLAVIYO_BASE_URL = elsewhere.url
        own.get("/api/profiles", access_token="at-1")
        assert only_pool(adapter) is not first  # dropped by urllib3 to make room
        settings.KLAVIYO_BASE_URL = klaviyo.url
        assert own.get("/api/profiles", access_token="at-1")["data"][0]["id"] == "p1"
        first.close()
        assert own.get("/api/profiles", access_token="at-1")["data"][0]["id"] == "p1"
        again = only_pool(adapter)
        assert again is not first
        assert again.pool is not None
        assert len(klaviyo.requests) == 3
    adapter.close()


def test_the_private_parts_of_requests_and_urllib3_the_transport_relies_on_are_there():
    """transport.py reaches into requests and urllib3 (for speed, and for KlaviyoRetry); pyproject.toml
    pins their upper bounds. When this fails, check transport.py against the new release before
    moving the pin."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert {"requests>=2.32.2,<2.35", "urllib3>=2.2,<2.9"} <= set(dependencies)
    pin = "requests>=2.32.2,<2.35 in pyproject.toml"
    response = requests.Response()
    assert response._content is False and response._content_consumed is False, f"read_body: {pin}"
    assert list(inspect.signature(HTTPAdapter.get_connection_with_tls_context).parameters) == [
        "self",
        "request",
        "verify",
        "proxies",
        "cert",
    ], f"KlaviyoAdapter.get_connection_with_tls_context: {pin}"
    assert list(inspect.signature(HTTPAdapter.build_response).parameters) == ["self", "req", "resp"], (
        f"KlaviyoAdapter.build_response: {pin}"
    )
    pin = "urllib3>=2.2,<2.9 in pyproject.toml"
    pool = urllib3.HTTPConnectionPool("127.0.0.1")
    pool.close()
    assert pool.pool is None, f"KlaviyoAdapter's closed-pool check: {pin}"
    increment = inspect.signature(urllib3.util.Retry.increment).parameters
    assert {"method", "url", "response", "error", "_pool"} <= set(increment), f"KlaviyoRetry.increment: {pin}"
    assert list(inspect.signature(urllib3.util.Retry.sleep).parameters) == ["self", "response"], (
        f"KlaviyoRetry.sleep: {pin}"
    )
    assert "has_retry_after" in inspect.signature(urllib3.util.Retry.is_retry).parameters, f"KlaviyoRetry: {pin}"


def test_page_cursor_accepts_a_bare_cursor_or_the_links_next_url():
    assert page_cursor("abc123") == "abc123"
    nxt = "https://a.klaviyo.com/api/profiles?page%5Bcursor%5D=bmV4dDo6MTI&page%5Bsize%5D=5"
    assert page_cursor(nxt) == "bmV4dDo6MTI"
    with pytest.raises(ValueError, match="page\\[cursor\\]"):
        page_cursor("https://a.klaviyo.com/api/profiles?page%5Bsize%5D=5")
    with pytest.raises(ValueError, match="malformed"):
        page_cursor("https://[::1/?page%5Bcursor%5D=x")
