"""Bad input on every route: a clear 4xx, never a 5xx, nothing stored, no call to Klaviyo.

Every test runs with the strict ``mocked_responses`` fixture and nothing registered, so
any HTTP call to Klaviyo raises (and would surface as a 502 or a failed assertion).
"""

import time
from datetime import timedelta
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from oauth_integration import pkce
from oauth_integration.links import build_start_link
from oauth_integration.models import ConnectionEvent, OAuthToken, PkceCode
from tests.conftest import ACCOUNTS_URL, TOKEN_URL, accounts_body, grant_permissions, open_start_link, token_body

pytestmark = pytest.mark.django_db

CONNECTED = "connected-customer-8c1f"
OTHER_BROWSER_STATE = "state-started-in-another-browser-0123456789"
MODES = ["strict", "debug", "sandbox"]


@pytest.fixture(params=MODES)
def mode(request, settings):
    """strict and debug: production rules (signed /start links, /profiles by permission); sandbox: as
    `make run` has it, relaxed by open access (which needs DEBUG)."""
    settings.DEBUG = request.param in ("debug", "sandbox")
    settings.KLAVIYO_SANDBOX = settings.KLAVIYO_OPEN_ACCESS = request.param == "sandbox"
    return request.param


@pytest.fixture
def world(make_connection, mocked_responses):
    """A connected customer and a pending authorization begun in another browser."""
    make_connection(CONNECTED)
    PkceCode.objects.store(
        OTHER_BROWSER_STATE,
        customer_identifier=CONNECTED,
        code_verifier="v" * 86,
        browser_binding="the-other-browser",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    return mocked_responses


def snapshot() -> tuple:
    return (
        sorted(
            OAuthToken.objects.values_list(
                "customer_identifier", "version", "status", "failure_reason", "refresh_lease_owner"
            )
        ),
        sorted(PkceCode.objects.values_list("state_hash", "customer_identifier")),
        ConnectionEvent.objects.count(),
    )


@pytest.fixture
def staff_client(db):
    user = get_user_model().objects.create_user("staff", is_staff=True)
    client = Client()
    client.force_login(grant_permissions(user, "view_oauthtoken"))
    return client


def reader(mode: str, client: Client, staff_client: Client) -> Client:
    """Who may read /profiles in this mode: anyone in sandbox mode, staff allowed to view otherwise."""
    return client if mode == "sandbox" else staff_client


def assert_refused(client: Client, method: str, url: str, expected: int, world) -> None:
    before = snapshot()
    response = getattr(client, method)(url)
    assert response.status_code == expected, response.content[:500]
    assert snapshot() == before
    assert len(world.calls) == 0
    body = response.content.decode("utf-8", "replace")
    assert "<script>" not in body  # echoed input is escaped


# --- customer identifiers in the path (/start and /profiles) -------------------------------

BAD_IDENTIFIERS = [
    pytest.param("", 404, id="missing"),
    pytest.param("a" * 256, 400, id="256-chars"),
    pytest.param("a" * 10_000, 400, id="10kB"),
    pytest.param("a" * 100_000, 400, id="100kB"),
    pytest.param("%00", 400, id="nul"),
    pytest.param("cust%00", 400, id="trailing-nul"),
    pytest.param("a%0D%0Ab", 400, id="crlf"),
    pytest.param("a%09b", 400, id="tab"),
    pytest.param("a%20b", 400, id="space"),
    pytest.param("%7F", 400, id="del"),
    pytest.param(quote("\u202ecust-1"), 400, id="rtl-override"),
    pytest.param(quote("\u0639\u0645\u064a\u0644\u200f"), 400, id="arabic-with-rtl-mark"),
    pytest.param(quote("cust\U0001f600"), 400, id="emoji"),
    pytest.param(quote("\uff43\uff55\uff53\uff54-1"), 400, id="nfkc-fullwidth"),
    pytest.param(quote("\ufb01nance"), 400, id="nfkc-ligature"),
    pytest.param(quote("cust\u00b2"), 400, id="nfkc-superscript"),
    pytest.param(quote("\u2102ust"), 400, id="nfkc-double-struck"),
    pytest.param(quote("cafe\u0301"), 400, id="combining-accent"),
    pytest.param(quote("cu\u200bst"), 400, id="zero-width-space"),
    pytest.param("%FF%FE", 400, id="invalid-utf8"),
    pytest.param("a%2Fb", 404, id="encoded-slash"),
    pytest.param("100%25", 400, id="percent"),
    pytest.param(quote("<script>"), 400, id="html"),
    pytest.param(quote("a'b\"c"), 400, id="quotes"),
    pytest.param("a%5Cb", 400, id="backslash"),
]


@pytest.mark.parametrize(("segment", "expected"), BAD_IDENTIFIERS)
def test_start_refuses_bad_customer_identifiers(mode, client, world, segment, expected):
    assert_refused(client, "get", f"/start/{segment}", expected, world)


@pytest.mark.parametrize(("segment", "expected"), BAD_IDENTIFIERS)
def test_profiles_refuses_bad_customer_identifiers(mode, client, staff_client, world, segment, expected):
    assert_refused(reader(mode, client, staff_client), "get", f"/profiles/{segment}", expected, world)


# --- signed /start links (strict mode) ----------------------------------------------------


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


def expired_token() -> str:
    """A correctly signed link for CONNECTED whose expiry passed two minutes ago."""
    payload = {"c": CONNECTED, "i": "expired-link-id0", "e": int(time.time()) - 120}
    return signing.dumps(payload, salt="oauth_integration.start-link.v2", compress=False)


START_TOKENS = [
    pytest.param(lambda: "", id="no-token"),
    pytest.param(lambda: "token=", id="empty"),
    pytest.param(lambda: "token=garbage", id="garbage"),
    pytest.param(lambda: "token=" + quote(token_of(build_start_link(CONNECTED))[:-1] + "x"), id="tampered"),
    pytest.param(lambda: "token=" + quote(token_of(build_start_link(CONNECTED))[:-6]), id="truncated"),
    pytest.param(lambda: "token=" + quote(token_of(build_start_link("someone-else"))), id="other-customer"),
    pytest.param(lambda: "token=" + quote(expired_token()), id="expired"),
    pytest.param(lambda: "token=" + "t" * 10_000, id="10kB"),
    pytest.param(lambda: "token=" + quote("\u202e\U0001f600"), id="unicode"),
    pytest.param(lambda: "token=a%0D%0Ab", id="crlf"),
    pytest.param(lambda: "token=garbage&token=" + quote(token_of(build_start_link("x"))), id="repeated"),
]


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("query", START_TOKENS)
def test_start_refuses_unsigned_tampered_and_expired_links_in_strict_mode(client, world, settings, query, method):
    settings.KLAVIYO_START_LINK_MAX_AGE = 60
    assert_refused(client, method, f"/start/{CONNECTED}?{query()}", 403, world)


def test_start_refuses_a_nul_in_the_token(client, world):
    assert_refused(client, "get", f"/start/{CONNECTED}?token=a%00b", 400, world)


# --- Klaviyo's redirect back (/authorize) --------------------------------------------------

AUTHORIZE_QUERIES = [
    pytest.param("", 400, id="nothing"),
    pytest.param("code=abc", 400, id="no-state"),
    pytest.param("state=abc", 400, id="no-code"),
    pytest.param("code=&state=", 400, id="empty"),
    pytest.param("code=abc&state=unknown-state", 400, id="unknown-state"),
    pytest.param(f"code=a&code=b&state={OTHER_BROWSER_STATE}", 400, id="repeated-code"),
    pytest.param(f"code=abc&state=x&state={OTHER_BROWSER_STATE}", 400, id="repeated-state"),
    pytest.param("code[]=abc&state[]=x", 400, id="array-syntax"),
    pytest.param("code=" + "c" * 10_000 + "&state=x", 400, id="10kB-code"),
    pytest.param("code=abc&state=" + "s" * 10_000, 400, id="10kB-state"),
    pytest.param("code=abc&state=" + "s" * 100_000, 400, id="100kB-state"),
    pytest.param("code=a%00b&state=x", 400, id="nul-in-code"),
    pytest.param("code=abc&state=x%00", 400, id="nul-in-state"),
    pytest.param("code=a%0D%0Ab&state=x", 400, id="crlf-in-code"),
    pytest.param("code=a%09b&state=x", 400, id="tab-in-code"),
    pytest.param("code=abc&state=" + quote("\U0001f600"), 400, id="emoji-state"),
    pytest.param("code=abc&state=" + quote("st\u202eate"), 400, id="rtl-state"),
    pytest.param("code=" + quote("\uff43ode") + "&state=x", 400, id="fullwidth-code"),
    pytest.param("error=access_denied&state=x", 403, id="access-denied"),
    pytest.param("error=server_error&error_description=" + quote("<script>alert(1)</script>"), 400, id="xss"),
    pytest.param("error=Access_Denied", 400, id="malformed-error"),
    pytest.param("error=" + "e" * 65, 400, id="long-error"),
    pytest.param("error=x&error_description=" + "d" * 10_000, 400, id="10kB-description"),
    pytest.param("error=x&error_description=a%0D%0Ab%09c", 400, id="control-chars-in-description"),
    pytest.param("&".join(f"p{i}=1" for i in range(1200)), 400, id="too-many-parameters"),
]


@pytest.mark.parametrize(("query", "expected"), AUTHORIZE_QUERIES)
def test_authorize_refuses_bad_callbacks(mode, client, world, query, expected):
    assert_refused(client, "get", f"/authorize?{query}", expected, world)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(f"code=abc&state={OTHER_BROWSER_STATE}", 400, id="state-of-another-browser"),
        pytest.param(f"error=access_denied&state={OTHER_BROWSER_STATE}&code=abc", 403, id="access-denied-with-code"),
    ],
)
def test_authorize_refuses_another_browsers_state_and_cancels_it(mode, client, world, query, expected):
    tokens, _, events = snapshot()
    response = client.get(f"/authorize?{query}")
    assert response.status_code == expected, response.content[:500]
    assert snapshot() == (tokens, [], events)  # only the pending authorization is gone
    assert len(world.calls) == 0


def test_authorize_names_a_repeated_parameter(client, world):
    response = client.get(f"/authorize?code=a&code=b&state={OTHER_BROWSER_STATE}")
    assert response.status_code == 400
    assert b"code: Give this parameter only once." in response.content


def test_a_state_presented_by_another_browser_can_no_longer_be_completed_by_its_own(client, world):
    browser = Client()
    location = open_start_link(browser, build_start_link(CONNECTED))["Location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    before = snapshot()

    assert client.get(f"/authorize?code=victims-code&state={state}").status_code == 400
    response = browser.get(f"/authorize?code=victims-code&state={state}")

    assert response.status_code == 400
    assert b"unknown or was already used" in response.content
    tokens, pending, events = before
    assert snapshot() == (tokens, [row for row in pending if row[0] != pkce.digest(state)], events)
    assert OAuthToken.objects.get(customer_identifier=CONNECTED).refresh_token == f"rt-{CONNECTED}"
    assert len(world.calls) == 0


def test_a_completed_authorization_cannot_be_replayed(client, world):
    location = open_start_link(client, build_start_link("newcomer"))["Location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    world.post(TOKEN_URL, json=token_body(access="at-first", refresh="rt-first"))
    world.get(ACCOUNTS_URL, json=accounts_body())
    callback = f"/authorize?code=the-code&state={state}"
    assert client.get(callback).status_code == 200
    calls = len(world.calls)
    before = snapshot()

    replay = client.get(callback)

    assert replay.status_code == 400
    assert b"unknown or was already used" in replay.content
    assert snapshot() == before
    assert len(world.calls) == calls


# --- /profiles query parameters -------------------------------------------------------------


def cursor(url: str) -> str:
    return urlencode({"cursor": url})


PROFILES_QUERIES = [
    pytest.param("page_size=abc", id="page_size-letters"),
    pytest.param("page_size=-1", id="page_size-negative"),
    pytest.param("page_size=0", id="page_size-zero"),
    pytest.param("page_size=101", id="page_size-too-big"),
    pytest.param("page_size=1e3", id="page_size-exponent"),
    pytest.param("page_size=1.5", id="page_size-fraction"),
    pytest.param("page_size=0x10", id="page_size-hex"),
    pytest.param("page_size=" + "9" * 10_000, id="page_size-10kB"),
    pytest.param("page_size=" + quote("\U0001f600"), id="page_size-emoji"),
    pytest.param("page_size=1&page_size=2", id="page_size-repeated"),
    pytest.param("page_size=%00", id="page_size-nul"),
    pytest.param("page_size=1%0D%0A2", id="page_size-crlf"),
    pytest.param(cursor("https://a.klaviyo.com/api/profiles"), id="cursor-url-without-cursor"),
    pytest.param(cursor("https://a.klaviyo.com/api/profiles?page%5Bcursor%5D="), id="cursor-url-empty-cursor"),
    pytest.param(cursor("https://a.klaviyo.com/api/profiles?page%5Bsize%5D=5"), id="cursor-url-other-params"),
    pytest.param(cursor("https://a.klaviyo.com/api/profiles?page%5Bcursor%5D=a%00b"), id="cursor-url-nul"),
    pytest.param(cursor("https://a.klaviyo.com/api/profiles?page%5Bcursor%5D=a%0D%0Ab"), id="cursor-url-crlf"),
    pytest.param(cursor("https://a.klaviyo.com/api/profiles?page%5Bcursor%5D=%E2%80%AE"), id="cursor-url-rtl"),
    pytest.param(cursor("https://a.klaviyo.com/api/profiles?page%5Bcursor%5D=a%20b"), id="cursor-url-space"),
    pytest.param(cursor("https://[::1/?page%5Bcursor%5D=x"), id="cursor-url-malformed"),
    pytest.param("cursor=" + quote("curs\U0001f600r"), id="cursor-emoji"),
    pytest.param("cursor=a%20b", id="cursor-space"),
    pytest.param("cursor=a%09b", id="cursor-tab"),
    pytest.param("cursor=" + "c" * 10_000, id="cursor-10kB"),
    pytest.param("cursor=a&cursor=b", id="cursor-repeated"),
    pytest.param("cursor=%00", id="cursor-nul"),
]


@pytest.mark.parametrize("query", PROFILES_QUERIES)
def test_profiles_refuses_bad_query_parameters(mode, client, staff_client, world, query):
    assert_refused(reader(mode, client, staff_client), "get", f"/profiles/{CONNECTED}?{query}", 400, world)


def test_profiles_error_names_the_bad_parameter_as_json(client, staff_client, world):
    response = staff_client.get(f"/profiles/{CONNECTED}?page_size=1&page_size=2")
    assert response.status_code == 400
    assert response.json()["errors"][0]["detail"] == "page_size: Give this parameter only once."


@pytest.mark.parametrize("query", ["", "page_size=abc", "cursor=%00"])
def test_profiles_needs_staff_in_strict_mode_whatever_the_input(client, world, query):
    assert_refused(client, "get", f"/profiles/{CONNECTED}?{query}", 401 if "%00" not in query else 400, world)
    user = get_user_model().objects.create_user("not-staff")
    client.force_login(user)
    assert_refused(client, "get", f"/profiles/{CONNECTED}?{query}", 403 if "%00" not in query else 400, world)


# --- methods, hosts, health check, admin login ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", f"/start/{CONNECTED}"),
        ("post", "/authorize?code=a&state=b"),
        ("put", "/authorize?code=a&state=b"),
        ("delete", f"/profiles/{CONNECTED}"),
        ("post", "/healthz"),
        ("patch", "/healthz"),
    ],
)
def test_wrong_methods_are_refused(mode, client, world, method, path):
    assert_refused(client, method, path, 405, world)


def test_an_unknown_host_is_refused(client, world):
    before = snapshot()
    assert client.get("/healthz", HTTP_HOST="evil.example").status_code == 400
    assert client.get(f"/start/{CONNECTED}", HTTP_HOST="evil.example").status_code == 400
    assert snapshot() == before


@pytest.mark.parametrize("query", ["x=1", "page_size=abc&cursor=" + "c" * 10_000, quote("\U0001f600") + "=1"])
def test_healthz_ignores_query_parameters(mode, client, world, query):
    before = snapshot()
    assert client.get(f"/healthz?{query}").json() == {"status": "ok"}
    assert snapshot() == before


@pytest.mark.parametrize(
    "username",
    ["a\x00b", "a" * 10_000, "\u202eadmin", "admin\r\n", "\uff41dmin"],
    ids=["nul", "10kB", "rtl", "crlf", "fullwidth"],
)
def test_admin_login_refuses_bad_credentials_without_error(client, world, settings, username):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; hashing is not tested
    get_user_model().objects.create_superuser("admin", password="correct-horse-battery")
    before = snapshot()
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": "p" * 10_000})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert snapshot() == before


@pytest.mark.parametrize(
    "cookie",
    # A WSGI server hands header bytes over decoded as ISO-8859-1, whatever they are.
    ['"\\000abcdefghijklmnop"', "abc\x00defghijklmnop", "x" * 10_000, "\U0001f600".encode().decode("latin-1") * 10],
    ids=["octal-escaped-nul", "raw-nul", "10kB", "emoji"],
)
def test_a_malformed_session_cookie_never_breaks_a_page(mode, client, world, cookie):
    client.cookies["sessionid"] = cookie
    before = snapshot()
    for path in (f"/start/{CONNECTED}", f"/authorize?code=a&state={OTHER_BROWSER_STATE}", "/admin/login/"):
        assert client.get(path).status_code < 500
    after = snapshot()
    assert after[0] == before[0]
    assert after[2] == before[2]
    assert len(world.calls) == 0


# --- property: arbitrary input never causes a 5xx, a change or a call to Klaviyo ------------

identifiers = st.one_of(
    st.text(),
    st.text(min_size=250, max_size=300),
    st.from_regex(r"[\w.@+\-:~]{1,260}", fullmatch=True),
)
parameter_names = st.one_of(
    st.sampled_from(["code", "state", "error", "error_description", "token", "page_size", "cursor", "next"]),
    st.text(max_size=8),
)
parameter_values = st.one_of(
    st.text(),
    st.sampled_from(["", "0", "-1", "101", "1e3", "access_denied", OTHER_BROWSER_STATE, "https://a.klaviyo.com/?x"]),
    st.integers().map(str),
)
queries = st.dictionaries(parameter_names, st.lists(parameter_values, min_size=1, max_size=3), max_size=5)


@pytest.mark.parametrize("mode", MODES, indirect=True)
@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customer=identifiers, params=queries)
def test_arbitrary_input_never_causes_a_server_error(mode, client, staff_client, world, customer, params):
    query = urlencode(params, doseq=True)
    segment = quote(customer, safe="")
    for who, path in (
        (client, f"/start/{segment}"),
        (reader(mode, client, staff_client), f"/profiles/{segment}"),
        (client, "/authorize"),
        (client, "/healthz"),
    ):
        before = snapshot()
        response = who.get(f"{path}?{query}")
        assert response.status_code < 500, (path, query, response.content[:300])
        if response.status_code >= 400:
            assert snapshot() == before, (path, query)
        assert len(world.calls) == 0
