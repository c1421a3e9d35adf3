"""The sandbox's OAuth side: consent page, token endpoint (codes, refreshes, injected failures), revocation."""

import base64
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from klaviyo_sandbox.accounts import ACCOUNTS
from klaviyo_sandbox.models import AuthorizationCode
from oauth_integration import pkce
from tests.sandbox.support import (
    ACCOUNTS_URL,
    API,
    AUTHORIZE,
    BLUEBELL,
    NORTHWIND,
    PROFILES,
    REDIRECT,
    REVOKE,
    TOKEN,
    VERIFIER,
    api_get,
    authorize_params,
    basic,
    connect,
    consent,
    exchange,
    issue_code,
    query_of,
    refresh,
    revoke,
)

pytestmark = pytest.mark.django_db


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
        ("post", f"{API}/events"),
        ("delete", f"{API}/lists/XyZ123"),
        ("get", f"{API}/no-such-endpoint"),
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
