import base64
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.core.checks import run_checks
from django.db import connection
from django.test import Client
from django.utils import timezone

from klaviyo_sandbox.accounts import ACCOUNTS, profiles_of
from klaviyo_sandbox.models import AccessToken, AuthorizationCode, Grant
from oauth_integration import pkce

pytestmark = pytest.mark.django_db

AUTHORIZE = "/sandbox/oauth/authorize"
TOKEN = "/sandbox/oauth/token"
REVOKE = "/sandbox/oauth/revoke"
PROFILES = "/sandbox/api/profiles"
ACCOUNTS_URL = "/sandbox/api/accounts"
REDIRECT = "http://testserver/authorize"
REVISION = "2026-07-15"
VERIFIER = "a" * 43 + "-._~" + "B" * 10
NORTHWIND, BLUEBELL, JUNIPER = (account.id for account in ACCOUNTS)


@pytest.fixture(autouse=True)
def _sandbox_on(settings):
    settings.KLAVIYO_SANDBOX = True
    settings.KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME = 3600
    settings.KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS = False
    settings.KLAVIYO_SANDBOX_RATE_LIMIT = 600
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 0.0
    settings.KLAVIYO_SANDBOX_FAIL_REFRESHES = 0
    settings.KLAVIYO_SANDBOX_REFRESH_FAILURE = "503"


def basic(client_id="client-id", secret="client-secret"):  # noqa: S107 (the test client's secret)
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def authorize_params(**overrides):
    params = {
        "response_type": "code",
        "client_id": "client-id",
        "redirect_uri": REDIRECT,
        "scope": "accounts:read profiles:read",
        "state": "state-123",
        "code_challenge_method": "S256",
        "code_challenge": pkce.code_challenge(VERIFIER),
    }
    params.update(overrides)
    return {key: value for key, value in params.items() if value is not None}


def consent(client, *, account=NORTHWIND, decision="allow", **overrides):
    return client.post(AUTHORIZE, {**authorize_params(**overrides), "account": account, "decision": decision})


def query_of(response):
    return {key: values[0] for key, values in parse_qs(urlsplit(response["Location"]).query).items()}


def issue_code(client, **overrides):
    response = consent(client, **overrides)
    assert response.status_code == 302
    return query_of(response)["code"]


def exchange(client, code, verifier=VERIFIER, redirect_uri=REDIRECT, auth=None):
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": redirect_uri}
    return client.post(TOKEN, form, HTTP_AUTHORIZATION=auth or basic())


def refresh(client, refresh_token):
    return client.post(
        TOKEN, {"grant_type": "refresh_token", "refresh_token": refresh_token}, HTTP_AUTHORIZATION=basic()
    )


def connect(client, account=NORTHWIND, scope="accounts:read profiles:read"):
    response = exchange(client, issue_code(client, account=account, scope=scope))
    assert response.status_code == 200
    return response.json()


def api_get(client, path, access_token, revision=REVISION, **params):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {access_token}"}
    if revision is not None:
        headers["HTTP_REVISION"] = revision
    return client.get(path, params, **headers)


# --- availability -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", AUTHORIZE),
        ("post", AUTHORIZE),
        ("post", TOKEN),
        ("get", TOKEN),
        ("post", REVOKE),
        ("get", PROFILES),
        ("get", ACCOUNTS_URL),
    ],
)
def test_every_sandbox_route_is_404_when_the_sandbox_is_off(client, settings, method, path):
    settings.KLAVIYO_SANDBOX = False
    response = getattr(client, method)(path, authorize_params() if path == AUTHORIZE else {})
    assert response.status_code == 404


def test_sandbox_setting_is_read_at_request_time(client, settings):
    assert client.get(AUTHORIZE, authorize_params()).status_code == 200
    settings.KLAVIYO_SANDBOX = False
    assert client.get(AUTHORIZE, authorize_params()).status_code == 404


# --- /oauth/authorize ---------------------------------------------------------------------


def test_authorize_shows_a_consent_page_marked_as_sandbox(client):
    response = client.get(AUTHORIZE, authorize_params())
    html = response.content.decode()
    assert response.status_code == 200
    assert "SANDBOX" in html
    assert "Klaviyo Connections (development app)" in html
    assert "<code>profiles:read</code>" in html
    assert "<code>accounts:read</code>" in html
    for account in ACCOUNTS:
        assert account.id in html
        assert account.organization_name.replace("&", "&amp;") in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'value="allow"' in html
    assert 'value="deny"' in html


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"response_type": "token"}, "response_type"),
        ({"response_type": None}, "response_type"),
        ({"client_id": "someone-else"}, "client_id"),
        ({"client_id": None}, "client_id"),
        ({"redirect_uri": "https://evil.example/authorize"}, "redirect_uri"),
        ({"redirect_uri": REDIRECT + "/"}, "redirect_uri"),
        ({"redirect_uri": None}, "redirect_uri"),
        ({"scope": ""}, "scope"),
        ({"scope": "   "}, "scope"),
        ({"scope": "profiles:read template:write"}, "scope"),
        ({"scope": None}, "scope"),
        ({"state": None}, "state"),
        ({"code_challenge_method": "plain"}, "code_challenge_method"),
        ({"code_challenge_method": None}, "code_challenge_method"),
        ({"code_challenge": "too-short"}, "code_challenge"),
        ({"code_challenge": "+" * 43}, "code_challenge"),
        ({"code_challenge": "a" * 44}, "code_challenge"),
        ({"code_challenge": None}, "code_challenge"),
    ],
)
def test_invalid_authorization_request_gets_a_400_page_and_no_redirect(client, overrides, field):
    response = client.get(AUTHORIZE, authorize_params(**overrides))
    html = response.content.decode()
    assert response.status_code == 400
    assert "Invalid authorization request" in html
    assert f"<code>{field}</code>" in html
    assert "Location" not in response
    assert "evil.example" not in html


def test_unknown_scopes_are_named_on_the_error_page(client):
    response = client.get(AUTHORIZE, authorize_params(scope="profiles:read template:write"))
    assert "Unknown scope(s): template:write." in response.content.decode()


def test_allow_redirects_to_the_app_with_a_code_and_the_state(client):
    response = consent(client)
    assert response.status_code == 302
    assert response["Location"].startswith(REDIRECT + "?")
    query = query_of(response)
    assert set(query) == {"code", "state"}
    assert query["state"] == "state-123"
    assert AuthorizationCode.objects.get().account_id == NORTHWIND


def test_deny_redirects_to_the_app_with_access_denied_and_the_state(client):
    response = consent(client, decision="deny")
    assert response.status_code == 302
    assert query_of(response) == {"error": "access_denied", "state": "state-123"}
    assert not AuthorizationCode.objects.exists()


def test_consent_keeps_existing_query_parameters_of_the_redirect_uri(client, settings):
    settings.KLAVIYO_REDIRECT_URL = "http://testserver/authorize?source=klaviyo"
    response = consent(client, redirect_uri="http://testserver/authorize?source=klaviyo")
    assert query_of(response)["source"] == "klaviyo"
    assert "code" in query_of(response)


def test_consent_post_requires_the_csrf_token():
    response = consent(Client(enforce_csrf_checks=True))
    assert response.status_code == 403
    assert not AuthorizationCode.objects.exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": "https://evil.example/authorize"},
        {"account": "NoSuch"},
        {"decision": "maybe"},
        {"code_challenge": None},
    ],
)
def test_tampered_consent_post_is_rejected_without_redirect(client, overrides):
    account = overrides.pop("account", NORTHWIND)
    decision = overrides.pop("decision", "allow")
    response = consent(client, account=account, decision=decision, **overrides)
    assert response.status_code == 400
    assert "Location" not in response
    assert not AuthorizationCode.objects.exists()


# --- /oauth/token: client authentication and request shape ---------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic(secret="wrong-secret"),
        basic(client_id="other-client"),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Bearer client-secret",
    ],
)
def test_token_endpoint_requires_http_basic_client_authentication(client, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.post(TOKEN, {"grant_type": "refresh_token", "refresh_token": "x"}, **headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic")


def test_token_endpoint_requires_grant_type(client):
    response = client.post(TOKEN, {}, HTTP_AUTHORIZATION=basic())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_token_endpoint_rejects_unknown_grant_types(client):
    response = client.post(TOKEN, {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic())
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_token_endpoint_only_reads_form_bodies(client):
    code = issue_code(client)
    body = {"grant_type": "authorization_code", "code": code, "code_verifier": VERIFIER, "redirect_uri": REDIRECT}
    response = client.post(TOKEN, body, content_type="application/json", HTTP_AUTHORIZATION=basic())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_token_endpoint_does_not_need_a_csrf_token():
    response = Client(enforce_csrf_checks=True).post(TOKEN, {"grant_type": "nope"}, HTTP_AUTHORIZATION=basic())
    assert response.status_code == 400


# --- /oauth/token: authorization_code --------------------------------------------------------


def test_code_exchange_returns_klaviyo_shaped_tokens(client):
    response = exchange(client, issue_code(client))
    body = response.json()
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "accounts:read profiles:read"
    assert body["access_token"] != body["refresh_token"]


def test_expires_in_follows_the_access_token_lifetime_setting(client, settings):
    settings.KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME = 42
    assert exchange(client, issue_code(client)).json()["expires_in"] == 42


def test_code_is_single_use(client):
    code = issue_code(client)
    assert exchange(client, code).status_code == 200
    second = exchange(client, code)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"


def test_code_expires_after_five_minutes(client):
    code = issue_code(client)
    issued = AuthorizationCode.objects.get()
    assert timedelta(minutes=4) < issued.expires_at - timezone.now() <= timedelta(minutes=5)
    AuthorizationCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = exchange(client, code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_unknown_code_is_an_invalid_grant(client):
    response = exchange(client, "not-a-code")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_pkce_mismatch_is_rejected_and_burns_the_code(client):
    code = issue_code(client)
    response = exchange(client, code, verifier="b" * 50)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "Code challenge failed."}
    assert exchange(client, code).json()["error"] == "invalid_grant"


@pytest.mark.parametrize("verifier", ["a" * 42, "a" * 129, "a" * 42 + "!", "a" * 42 + " "])
def test_malformed_code_verifier_is_rejected(client, verifier):
    response = exchange(client, issue_code(client), verifier=verifier)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": 'Invalid "code_verifier".'}


def test_verifier_of_128_characters_is_accepted(client):
    verifier = "Z" * 128
    code = issue_code(client, code_challenge=pkce.code_challenge(verifier))
    assert exchange(client, code, verifier=verifier).status_code == 200


def test_redirect_uri_must_match_the_authorization_request(client):
    response = exchange(client, issue_code(client), redirect_uri="http://testserver/elsewhere")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("missing", ["code", "code_verifier", "redirect_uri"])
def test_code_exchange_needs_code_verifier_and_redirect_uri(client, missing):
    form = {"grant_type": "authorization_code", "code": "c", "code_verifier": VERIFIER, "redirect_uri": REDIRECT}
    del form[missing]
    response = client.post(TOKEN, form, HTTP_AUTHORIZATION=basic())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert missing in response.json()["error_description"]


# --- /oauth/token: refresh_token ------------------------------------------------------------


def test_refresh_without_rotation_keeps_the_refresh_token_and_the_old_access_token(client):
    tokens = connect(client)
    response = refresh(client, tokens["refresh_token"])
    body = response.json()
    assert response.status_code == 200
    assert body["refresh_token"] == tokens["refresh_token"]
    assert body["access_token"] != tokens["access_token"]
    assert api_get(client, ACCOUNTS_URL, tokens["access_token"]).status_code == 200
    assert api_get(client, ACCOUNTS_URL, body["access_token"]).status_code == 200
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_refresh_with_rotation_replaces_the_refresh_token(client, settings):
    settings.KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS = True
    tokens = connect(client)
    body = refresh(client, tokens["refresh_token"]).json()
    assert body["refresh_token"] != tokens["refresh_token"]
    stale = refresh(client, tokens["refresh_token"])
    assert stale.status_code == 400
    assert stale.json()["error"] == "invalid_grant"
    assert refresh(client, body["refresh_token"]).status_code == 200


def test_refresh_with_an_unknown_token_is_an_invalid_grant(client):
    response = refresh(client, "sbx_rt_unknown")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_refresh_without_refresh_token_is_an_invalid_request(client):
    response = client.post(TOKEN, {"grant_type": "refresh_token"}, HTTP_AUTHORIZATION=basic())
    assert response.json()["error"] == "invalid_request"


def test_first_refreshes_can_be_made_to_fail_with_503(client, settings):
    settings.KLAVIYO_SANDBOX_FAIL_REFRESHES = 2
    tokens = connect(client)
    for _ in range(2):
        failed = refresh(client, tokens["refresh_token"])
        assert failed.status_code == 503
        assert failed.json()["error"] == "temporarily_unavailable"
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_refresh_failure_can_be_an_invalid_grant_that_loses_the_connection(client, settings):
    settings.KLAVIYO_SANDBOX_FAIL_REFRESHES = 1
    settings.KLAVIYO_SANDBOX_REFRESH_FAILURE = "invalid_grant"
    tokens = connect(client)
    assert refresh(client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert api_get(client, ACCOUNTS_URL, tokens["access_token"]).status_code == 401


# --- /oauth/revoke ----------------------------------------------------------------------------


def revoke(client, value, auth=None):
    form = {"token": value, "token_type_hint": "refresh_token"}
    return client.post(REVOKE, form, HTTP_AUTHORIZATION=auth or basic())


def test_revoke_kills_the_refresh_token_and_every_access_token_of_the_grant(client):
    tokens = connect(client)
    second_access = refresh(client, tokens["refresh_token"]).json()["access_token"]
    other = connect(client, account=BLUEBELL)
    response = revoke(client, tokens["refresh_token"])
    assert response.status_code == 200
    assert response.json() == {}
    for access_token in (tokens["access_token"], second_access):
        denied = api_get(client, PROFILES, access_token)
        assert denied.status_code == 401
        assert denied.json()["errors"][0]["code"] == "authentication_failed"
    assert refresh(client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert api_get(client, PROFILES, other["access_token"]).status_code == 200


def test_revoke_requires_client_authentication(client):
    tokens = connect(client)
    response = revoke(client, tokens["refresh_token"], auth=basic(secret="wrong"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_revoking_an_unknown_token_succeeds_quietly(client):
    assert revoke(client, "sbx_rt_never-issued").json() == {}


def test_revoke_needs_a_token(client):
    response = client.post(REVOKE, {"token_type_hint": "refresh_token"}, HTTP_AUTHORIZATION=basic())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# --- /api: authentication, revision, scopes -------------------------------------------------


def assert_authentication_failed(response):
    assert response.status_code == 401
    (error,) = response.json()["errors"]
    assert error.pop("id")
    assert error == {
        "status": 401,
        "code": "authentication_failed",
        "title": "Incorrect authentication credentials.",
        "detail": "Incorrect authentication credentials.",
        "source": {"pointer": "/data/"},
    }


@pytest.mark.parametrize("path", [PROFILES, ACCOUNTS_URL])
@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer not-a-token", "Klaviyo-API-Key pk_123"])
def test_api_rejects_missing_or_unknown_bearer_tokens(client, path, authorization):
    connect(client)
    headers = {"HTTP_REVISION": REVISION}
    if authorization:
        headers["HTTP_AUTHORIZATION"] = authorization
    assert_authentication_failed(client.get(path, **headers))


def test_api_rejects_an_expired_access_token(client):
    tokens = connect(client)
    AccessToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_authentication_failed(api_get(client, PROFILES, tokens["access_token"]))


@pytest.mark.parametrize("revision", [None, "", "latest", "2026-7-15"])
def test_api_requires_a_revision_header(client, revision):
    tokens = connect(client)
    response = api_get(client, PROFILES, tokens["access_token"], revision=revision)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["code"] == "invalid"
    assert error["source"] == {"parameter": "revision"}


def test_api_accepts_a_beta_revision(client):
    tokens = connect(client)
    assert api_get(client, PROFILES, tokens["access_token"], revision="2026-10-15.pre").status_code == 200


def test_profiles_need_the_profiles_read_scope(client):
    tokens = connect(client, scope="accounts:read")
    response = api_get(client, PROFILES, tokens["access_token"])
    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "permission_denied"
    assert api_get(client, ACCOUNTS_URL, tokens["access_token"]).status_code == 200


def test_accounts_need_the_accounts_read_scope(client):
    tokens = connect(client, scope="profiles:read")
    assert api_get(client, ACCOUNTS_URL, tokens["access_token"]).status_code == 403


# --- /api/profiles -----------------------------------------------------------------------------


def test_profiles_look_like_klaviyos(client):
    tokens = connect(client)
    response = api_get(client, PROFILES, tokens["access_token"])
    body = response.json()
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.api+json"
    assert len(body["data"]) == 20
    profile = body["data"][0]
    assert profile["type"] == "profile"
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", profile["id"])
    assert set(profile["attributes"]) == {
        "email",
        "phone_number",
        "external_id",
        "first_name",
        "last_name",
        "organization",
        "locale",
        "title",
        "image",
        "created",
        "updated",
        "last_event_date",
        "location",
        "properties",
    }
    assert profile["attributes"]["email"].endswith("@northwind-outfitters.example")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", profile["attributes"]["created"])
    assert {"city", "country", "region", "zip", "timezone"} <= set(profile["attributes"]["location"])
    assert set(profile["relationships"]) == {"lists", "segments", "push-tokens", "conversations"}
    assert profile["links"]["self"] == f"http://testserver{PROFILES}/{profile['id']}/"
    assert body["links"]["self"] == f"http://testserver{PROFILES}"
    assert body["links"]["prev"] is None
    assert body["links"]["next"].startswith(f"http://testserver{PROFILES}?")


def test_pagination_walks_every_profile_once_and_back(client):
    tokens = connect(client)
    expected = [profile.id for profile in profiles_of(NORTHWIND)]
    seen, pages, url = [], [], f"{PROFILES}?{urlencode({'page[size]': 25})}"
    while url:
        body = api_get(client, url, tokens["access_token"]).json()
        pages.append(body)
        seen += [profile["id"] for profile in body["data"]]
        url = body["links"]["next"]
    assert seen == expected
    assert len(expected) == 57
    assert [len(page["data"]) for page in pages] == [25, 25, 7]
    assert pages[-1]["links"]["next"] is None
    assert "page%5Bsize%5D=25" in pages[1]["links"]["next"]
    back = api_get(client, pages[2]["links"]["prev"], tokens["access_token"]).json()
    assert back["data"] == pages[1]["data"]
    first = api_get(client, back["links"]["prev"], tokens["access_token"]).json()
    assert first["data"] == pages[0]["data"]
    assert first["links"]["prev"] is None


def test_profiles_accept_the_trailing_slash(client):
    tokens = connect(client)
    assert api_get(client, PROFILES + "/", tokens["access_token"]).status_code == 200


@pytest.mark.parametrize(("size", "count"), [("1", 1), ("100", 57), ("20", 20)])
def test_page_size_between_1_and_100_is_honoured(client, size, count):
    tokens = connect(client)
    assert len(api_get(client, PROFILES, tokens["access_token"], **{"page[size]": size}).json()["data"]) == count


@pytest.mark.parametrize("size", ["0", "101", "-1", "ten", "2.5"])
def test_page_size_out_of_range_is_a_400(client, size):
    tokens = connect(client)
    response = api_get(client, PROFILES, tokens["access_token"], **{"page[size]": size})
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["code"] == "invalid"
    assert error["source"] == {"parameter": "page[size]"}
    assert "RateLimit-Limit" in response


@pytest.mark.parametrize("cursor", ["%%%", "bm9wZQ", base64.urlsafe_b64encode(b"sideways::id::X").decode()])
def test_an_invalid_cursor_is_a_400(client, cursor):
    tokens = connect(client)
    response = api_get(client, PROFILES, tokens["access_token"], **{"page[cursor]": cursor})
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": "page[cursor]"}


def test_each_account_has_its_own_profiles(client):
    first = connect(client, account=NORTHWIND)
    second = connect(client, account=JUNIPER)
    everything = {"page[size]": 100}
    ids_first = {p["id"] for p in api_get(client, PROFILES, first["access_token"], **everything).json()["data"]}
    body = api_get(client, PROFILES, second["access_token"], **everything).json()
    ids_second = {p["id"] for p in body["data"]}
    assert len(ids_second) == 24
    assert ids_first.isdisjoint(ids_second)
    assert all(p["attributes"]["email"].endswith("@juniper-home.example") for p in body["data"])


def test_profiles_are_the_same_on_every_call(client):
    tokens = connect(client)
    assert (
        api_get(client, PROFILES, tokens["access_token"]).json()["data"]
        == (api_get(client, PROFILES, tokens["access_token"]).json()["data"])
    )


# --- /api/accounts -------------------------------------------------------------------------------


def test_accounts_returns_the_account_of_the_token(client):
    tokens = connect(client, account=BLUEBELL)
    response = api_get(client, ACCOUNTS_URL, tokens["access_token"])
    body = response.json()
    assert response.status_code == 200
    (account,) = body["data"]
    assert account["type"] == "account"
    assert account["id"] == BLUEBELL
    assert account["attributes"]["contact_information"]["organization_name"] == "Bluebell Bakery"
    assert body["links"] == {"self": f"http://testserver{ACCOUNTS_URL}", "next": None, "prev": None}


# --- rate limits and injected failures ---------------------------------------------------------------


def test_every_call_reports_its_rate_limit(client, settings):
    settings.KLAVIYO_SANDBOX_RATE_LIMIT = 50
    tokens = connect(client)
    first = api_get(client, PROFILES, tokens["access_token"])
    second = api_get(client, ACCOUNTS_URL, tokens["access_token"])
    assert first["RateLimit-Limit"] == "50, 50;w=60"
    assert first["RateLimit-Remaining"] == "49"
    assert second["RateLimit-Remaining"] == "48"
    assert 1 <= int(first["RateLimit-Reset"]) <= 60


def test_calls_past_the_rate_limit_are_throttled_with_retry_after(client, settings):
    settings.KLAVIYO_SANDBOX_RATE_LIMIT = 3
    tokens = connect(client)
    other = connect(client, account=BLUEBELL)
    for _ in range(3):
        assert api_get(client, PROFILES, tokens["access_token"]).status_code == 200
    response = api_get(client, PROFILES, tokens["access_token"])
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    (error,) = response.json()["errors"]
    assert error["code"] == "throttled"
    assert error["title"] == "Request was throttled."
    unit = "second" if retry_after == 1 else "seconds"
    assert error["detail"] == f"Request was throttled. Expected available in {retry_after} {unit}."
    assert api_get(client, PROFILES, other["access_token"]).status_code == 200


def test_the_rate_limit_window_resets_each_minute(client, settings):
    settings.KLAVIYO_SANDBOX_RATE_LIMIT = 1
    tokens = connect(client)
    assert api_get(client, PROFILES, tokens["access_token"]).status_code == 200
    assert api_get(client, PROFILES, tokens["access_token"]).status_code == 429
    Grant.objects.update(rate_window=0)
    assert api_get(client, PROFILES, tokens["access_token"]).status_code == 200


def test_rate_limit_zero_turns_limiting_off(client, settings):
    settings.KLAVIYO_SANDBOX_RATE_LIMIT = 0
    tokens = connect(client)
    for _ in range(3):
        response = api_get(client, PROFILES, tokens["access_token"])
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response


def test_api_failure_rate_injects_503s(client, settings):
    tokens = connect(client)
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 1.0
    response = api_get(client, PROFILES, tokens["access_token"])
    assert response.status_code == 503
    assert response.json()["errors"][0]["status"] == 503
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 0.0
    assert api_get(client, PROFILES, tokens["access_token"]).status_code == 200


# --- secrets at rest and in pages -------------------------------------------------------------------


def test_codes_and_tokens_are_stored_only_as_sha256_digests(client):
    code = issue_code(client)
    tokens = exchange(client, code).json()
    refresh(client, tokens["refresh_token"])
    dump = []
    with connection.cursor() as cursor:
        for table in ("klaviyo_sandbox_authorizationcode", "klaviyo_sandbox_grant", "klaviyo_sandbox_accesstoken"):
            cursor.execute(f"SELECT * FROM {table}")
            dump += [str(value) for row in cursor.fetchall() for value in row]
    stored = " ".join(dump)
    for secret in (code, tokens["access_token"], tokens["refresh_token"], VERIFIER):
        assert secret not in stored
    assert pkce.digest(tokens["refresh_token"]) in stored


def test_consent_page_shows_no_client_secret(client, settings):
    settings.KLAVIYO_CLIENT_SECRET = "very-secret-client-secret"
    html = client.get(AUTHORIZE, authorize_params()).content.decode()
    assert "very-secret-client-secret" not in html


# --- system checks -------------------------------------------------------------------------------------


def check_ids():
    return {message.id for message in run_checks()}


def test_check_warns_when_the_sandbox_runs_without_debug(settings):
    settings.DEBUG = False
    assert "klaviyo_sandbox.W001" in check_ids()
    settings.KLAVIYO_SANDBOX = False
    assert "klaviyo_sandbox.W001" not in check_ids()


def test_checks_reject_out_of_range_failure_settings(settings):
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 1.5
    settings.KLAVIYO_SANDBOX_REFRESH_FAILURE = "500"
    assert {"klaviyo_sandbox.E001", "klaviyo_sandbox.E002"} <= check_ids()


def test_no_secret_reaches_the_logs(client, caplog, settings):
    settings.KLAVIYO_SANDBOX_FAIL_REFRESHES = 1
    caplog.set_level("DEBUG")
    code = issue_code(client)
    tokens = exchange(client, code).json()
    refresh(client, tokens["refresh_token"])
    refresh(client, tokens["refresh_token"])
    api_get(client, PROFILES, tokens["access_token"])
    revoke(client, tokens["refresh_token"])
    assert "Sandbox fails refresh 1 of account SbxN7w on purpose" in caplog.text
    for secret in (code, tokens["access_token"], tokens["refresh_token"], VERIFIER, "client-secret"):
        assert secret not in caplog.text
