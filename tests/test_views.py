"""Every branch of /start, /authorize, /profiles and /healthz."""

import base64
import hashlib
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from responses import matchers

from oauth_integration.links import build_start_link
from oauth_integration.models import ConnectionEvent, ConnectionStatus, OAuthToken, PkceCode
from tests.conftest import (
    ACCOUNTS_URL,
    PROFILES_URL,
    REVOKE_URL,
    TOKEN_URL,
    accounts_body,
    grant_permissions,
    open_start_link,
    profiles_body,
    token_body,
)

pytestmark = pytest.mark.django_db


def counts():
    return (OAuthToken.objects.count(), PkceCode.objects.count(), ConnectionEvent.objects.count())


def start(client, customer="cust-1", signed=True):
    response = open_start_link(client, build_start_link(customer)) if signed else client.get(f"/start/{customer}")
    assert response.status_code == 302, response.content
    query = parse_qs(urlsplit(response["Location"]).query)
    return response, {k: v[0] for k, v in query.items()}


def mock_exchange(mocked_responses, code="code-1", access="at-1", refresh="rt-1", account=("ACC1", "Acme")):
    mocked_responses.post(
        TOKEN_URL,
        match=[
            matchers.urlencoded_params_matcher(
                {"grant_type": "authorization_code", "code": code}, allow_blank=True, strict_match=False
            )
        ],
        json=token_body(access, refresh),
    )
    mocked_responses.get(ACCOUNTS_URL, json=accounts_body(*account))


# --- /start ---------------------------------------------------------------------------------


def test_start_redirects_to_klaviyo_with_pkce_and_a_random_state(client):
    response, query = start(client)
    assert response["Location"].startswith("https://www.klaviyo.com/oauth/authorize?")
    assert query["response_type"] == "code"
    assert query["client_id"] == "client-id"
    assert query["redirect_uri"] == "http://testserver/authorize"
    assert query["scope"] == "accounts:read profiles:read"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["state"] != "cust-1" and len(query["state"]) >= 43
    row = PkceCode.objects.get()
    assert row.customer_identifier == "cust-1"
    assert row.state_hash == hashlib.sha256(query["state"].encode()).hexdigest()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(row.code_verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == query["code_challenge"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT state_hash, code_verifier FROM oauth_integration_pkcecode")
        stored = " ".join(cursor.fetchone())
    assert query["state"] not in stored and row.code_verifier not in stored


def test_each_start_gets_its_own_state(client):
    _, first = start(client)
    _, second = start(client)
    assert first["state"] != second["state"]
    assert PkceCode.objects.count() == 2


def test_unsigned_start_link_is_refused_outside_debug_and_sandbox(client):
    response = client.get("/start/cust-1")
    assert response.status_code == 403
    assert b"not signed" in response.content
    assert counts() == (0, 0, 0)


def test_tampered_start_link_is_refused(client):
    good = build_start_link("cust-1", absolute=False)
    response = client.get(good.replace("/start/cust-1", "/start/cust-2"))
    assert response.status_code == 403
    assert b"different customer" in response.content
    response = client.get(good[:-3] + "xyz")
    assert response.status_code == 403
    assert counts() == (0, 0, 0)


def test_expired_start_link_is_refused(client, settings, monkeypatch):
    settings.KLAVIYO_START_LINK_MAX_AGE = 60
    made = timezone.now() - timedelta(seconds=61)
    monkeypatch.setattr("oauth_integration.links.timezone.now", lambda: made)
    link = build_start_link("cust-1", absolute=False)  # made 61 s ago, for 60 s
    monkeypatch.undo()
    response = client.get(link)
    assert response.status_code == 403
    assert b"expired" in response.content


def test_unsigned_start_goes_straight_to_klaviyo_with_open_access(client, settings, open_access):
    settings.KLAVIYO_SANDBOX = True
    settings.KLAVIYO_CLIENT_ID = "sandbox-client-id"
    settings.KLAVIYO_AUTHORIZE_URL = "http://testserver/sandbox/oauth/authorize"
    response, query = start(client, "cust-1", signed=False)
    location = urlsplit(response["Location"])
    assert (location.scheme, location.netloc, location.path) == ("http", "testserver", "/sandbox/oauth/authorize")
    assert query["response_type"] == "code"
    assert query["client_id"] == "sandbox-client-id"
    assert query["redirect_uri"] == "http://testserver/authorize"
    assert query["code_challenge_method"] == "S256"
    verifier = PkceCode.objects.get(customer_identifier="cust-1").code_verifier
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert query["code_challenge"] == challenge
    assert query["state"] != "cust-1" and "cust-1" not in query["state"] and len(query["state"]) >= 43


def test_invalid_customer_identifier_is_a_400(client, settings):
    settings.KLAVIYO_SANDBOX = True
    response = client.get("/start/" + "x" * 300)
    assert response.status_code == 400
    assert b"longer than 255" in response.content
    assert client.get("/start/bad%20id").status_code == 400
    assert counts() == (0, 0, 0)


def test_start_moves_to_the_callback_host_first(client, settings):
    settings.KLAVIYO_REDIRECT_URL = "http://localhost:8000/authorize"
    link = build_start_link("cust-1", absolute=False)
    response = client.get(link)
    assert response.status_code == 302
    assert response["Location"] == f"http://localhost:8000{link}"
    assert counts() == (0, 0, 0)


def test_start_link_command_prints_a_working_signed_link(client, capsys):
    call_command("start_link", "cust-7")
    link = capsys.readouterr().out.strip()
    assert link.startswith("http://testserver/start/cust-7?token=")
    assert open_start_link(client, link).status_code == 302


# --- /authorize ----------------------------------------------------------------------------


def test_full_flow_stores_encrypted_tokens_and_names_the_customer(client, mocked_responses):
    _, query = start(client, "cust-1")
    verifier = PkceCode.objects.get().code_verifier
    mocked_responses.post(
        TOKEN_URL,
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "grant_type": "authorization_code",
                    "code": "code-1",
                    "code_verifier": verifier,
                    "redirect_uri": "http://testserver/authorize",
                }
            )
        ],
        json=token_body("at-1", "rt-1"),
    )
    mocked_responses.get(
        ACCOUNTS_URL,
        match=[matchers.header_matcher({"Authorization": "Bearer at-1", "revision": "2026-07-15"})],
        json=accounts_body("ACC1", "Acme Store"),
    )
    response = client.get("/authorize", {"code": "code-1", "state": query["state"]})
    assert response.status_code == 200
    assert b"cust-1" in response.content and b"Acme Store" in response.content
    row = OAuthToken.objects.get()
    assert (row.customer_identifier, row.access_token, row.refresh_token) == ("cust-1", "at-1", "rt-1")
    assert (row.klaviyo_account_id, row.status) == ("ACC1", ConnectionStatus.ACTIVE)
    assert PkceCode.objects.count() == 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM oauth_integration_oauthtoken")
        stored = " ".join(cursor.fetchone())
    assert "at-1" not in stored and "rt-1" not in stored
    assert list(ConnectionEvent.objects.values_list("kind", flat=True)) == ["connected"]


def test_replayed_state_is_refused_and_stores_nothing_more(client, mocked_responses):
    _, query = start(client)
    mock_exchange(mocked_responses)
    assert client.get("/authorize", {"code": "code-1", "state": query["state"]}).status_code == 200
    before = counts()
    response = client.get("/authorize", {"code": "code-1", "state": query["state"]})
    assert response.status_code == 400
    assert b"already used" in response.content
    assert counts() == before


def test_unknown_state_is_refused(client):
    response = client.get("/authorize", {"code": "code-1", "state": "made-up-state"})
    assert response.status_code == 400
    assert counts() == (0, 0, 0)


def test_expired_state_is_refused(client):
    _, query = start(client)
    PkceCode.objects.update(expires_at="2000-01-01T00:00:00Z")
    response = client.get("/authorize", {"code": "code-1", "state": query["state"]})
    assert response.status_code == 400
    assert b"expired" in response.content
    assert OAuthToken.objects.count() == 0


def test_state_from_another_browser_is_refused_and_burned(client, mocked_responses):
    # The callback lands in another browser (a victim sent the attacker's authorize URL): if
    # the state survived, the browser that started it could redeem the victim's code later.
    from django.test import Client

    _, query = start(client)
    callback = {"code": "victims-code", "state": query["state"]}
    response = Client().get("/authorize", callback)
    assert response.status_code == 400
    assert b"different browser" in response.content
    assert b"share" in response.content
    assert counts() == (0, 0, 0)

    response = client.get("/authorize", callback)  # the browser that started it, same URL
    assert response.status_code == 400
    assert b"unknown or was already used" in response.content
    assert counts() == (0, 0, 0)
    assert len(mocked_responses.calls) == 0


@pytest.mark.parametrize("params", [{}, {"code": "c"}, {"state": "s"}, {"code": "", "state": ""}])
def test_missing_code_or_state_is_a_400(client, params):
    assert client.get("/authorize", params).status_code == 400
    assert counts() == (0, 0, 0)


def test_access_denied_is_a_clear_page(client):
    _, query = start(client)
    response = client.get("/authorize", {"error": "access_denied", "state": query["state"]})
    assert response.status_code == 403
    assert b"Connection declined" in response.content
    assert OAuthToken.objects.count() == 0


def test_other_oauth_errors_show_a_fixed_message(client):
    response = client.get(
        "/authorize", {"error": "invalid_scope", "error_description": "<script>x</script>", "state": "s"}
    )
    assert response.status_code == 400
    assert b"Klaviyo refused the requested permissions (scopes)." in response.content
    assert b"script" not in response.content


def test_klaviyo_down_during_exchange_is_a_502_and_nothing_is_half_stored(client, mocked_responses):
    _, query = start(client)
    mocked_responses.post(TOKEN_URL, body=requests.ConnectionError("connection reset"))
    response = client.get("/authorize", {"code": "code-1", "state": query["state"]})
    assert response.status_code == 502
    assert b"Nothing was stored" in response.content
    assert OAuthToken.objects.count() == 0
    assert ConnectionEvent.objects.count() == 0


def test_rejected_code_is_a_400(client, mocked_responses):
    _, query = start(client)
    mocked_responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    response = client.get("/authorize", {"code": "stale", "state": query["state"]})
    assert response.status_code == 400
    assert OAuthToken.objects.count() == 0


def test_account_lookup_failure_does_not_lose_the_connection(client, mocked_responses):
    _, query = start(client)
    mocked_responses.post(TOKEN_URL, json=token_body("at-1", "rt-1"))
    mocked_responses.get(ACCOUNTS_URL, status=500, body="boom")
    assert client.get("/authorize", {"code": "c", "state": query["state"]}).status_code == 200
    row = OAuthToken.objects.get()
    assert (row.refresh_token, row.klaviyo_account_id) == ("rt-1", "")


def test_reconnecting_records_the_account_change(client, mocked_responses):
    _, query = start(client)
    mock_exchange(mocked_responses, account=("ACC1", "Acme"))
    client.get("/authorize", {"code": "code-1", "state": query["state"]})
    _, query = start(client)
    mock_exchange(mocked_responses, code="code-2", access="at-2", refresh="rt-2", account=("ACC2", "Other"))
    mocked_responses.post(REVOKE_URL, match=[matchers.urlencoded_params_matcher({"token": "rt-1"}, strict_match=False)])
    assert client.get("/authorize", {"code": "code-2", "state": query["state"]}).status_code == 200
    kinds = list(ConnectionEvent.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["connected", "reconnected", "account_changed", "revoked"]
    assert OAuthToken.objects.get().refresh_token == "rt-2"


def test_authorize_rejects_other_methods(client):
    assert client.post("/authorize").status_code == 405


# --- /profiles ----------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(grant_permissions(user, "view_oauthtoken"))
    return client


def test_profiles_returns_klaviyos_json_api_body(staff_client, mocked_responses, make_connection):
    make_connection()
    nxt = "https://a.klaviyo.com/api/profiles?page%5Bcursor%5D=CURSOR2"
    mocked_responses.get(
        PROFILES_URL,
        match=[matchers.query_param_matcher({"page[size]": "2", "page[cursor]": "CURSOR1"})],
        json=profiles_body("p1", "p2", next_url=nxt),
    )
    response = staff_client.get("/profiles/cust-1", {"page_size": 2, "cursor": "CURSOR1"})
    assert response.status_code == 200
    body = response.json()
    assert [p["id"] for p in body["data"]] == ["p1", "p2"]
    assert body["data"][0]["attributes"]["first_name"] == "Ada"
    assert body["links"]["next"] == nxt


def test_profiles_accepts_the_full_links_next_url_as_cursor(staff_client, mocked_responses, make_connection):
    make_connection()
    mocked_responses.get(
        PROFILES_URL, match=[matchers.query_param_matcher({"page[cursor]": "CURSOR2"})], json=profiles_body()
    )
    nxt = "https://a.klaviyo.com/api/profiles?page%5Bcursor%5D=CURSOR2"
    assert staff_client.get("/profiles/cust-1", {"cursor": nxt}).status_code == 200


def test_profiles_requires_the_view_permission_without_open_access(client, django_user_model, make_connection):
    make_connection()
    assert client.get("/profiles/cust-1").status_code == 401
    client.force_login(django_user_model.objects.create_user("user", password="pw"))
    assert client.get("/profiles/cust-1").status_code == 403


def test_profiles_is_open_with_open_access(client, settings, open_access, mocked_responses, make_connection):
    settings.KLAVIYO_SANDBOX = True
    make_connection()
    mocked_responses.get(PROFILES_URL, json=profiles_body("p1"))
    assert client.get("/profiles/cust-1").status_code == 200


def test_unknown_customer_is_404_json(staff_client):
    response = staff_client.get("/profiles/nobody")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_connected"


def test_needs_reauthorization_is_409_json(staff_client, make_connection):
    make_connection(status=ConnectionStatus.NEEDS_REAUTHORIZATION, failure_reason="revoked")
    response = staff_client.get("/profiles/cust-1")
    assert response.status_code == 409
    assert response.json()["errors"][0]["code"] == "needs_reauthorization"
    assert "revoked" in response.json()["errors"][0]["detail"]


@pytest.mark.parametrize(
    "params", [{"page_size": "0"}, {"page_size": "101"}, {"page_size": "abc"}, {"cursor": "https://x/?a=b"}]
)
def test_bad_profiles_parameters_are_400_json(staff_client, make_connection, params):
    make_connection()
    response = staff_client.get("/profiles/cust-1", params)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        (
            {"status": 429, "json": {"errors": [{"code": "throttled"}]}, "headers": {"Retry-After": "45"}},
            429,
            "throttled",
        ),
        ({"status": 403, "json": {"errors": [{"code": "permission_denied"}]}}, 403, "permission_denied"),
        ({"status": 400, "json": {"errors": [{"code": "invalid"}]}}, 400, "invalid"),
        ({"status": 500, "body": "boom"}, 502, "klaviyo_unavailable"),
        ({"body": requests.ReadTimeout()}, 502, "klaviyo_unavailable"),
        ({"status": 200, "body": "not json"}, 502, "klaviyo_unavailable"),
    ],
)
def test_klaviyo_errors_become_clear_json(staff_client, mocked_responses, make_connection, kwargs, status, code):
    make_connection()
    mocked_responses.get(PROFILES_URL, **kwargs)
    response = staff_client.get("/profiles/cust-1")
    assert response.status_code == status
    assert response.json()["errors"][0]["code"] == code
    if status == 429:
        assert response["Retry-After"] == "45"
    assert OAuthToken.objects.get().refresh_token == "rt-cust-1"


def test_undecryptable_tokens_are_a_clear_error(staff_client, make_connection, settings):
    make_connection()
    settings.TOKEN_ENCRYPTION_KEY = "ab" * 32
    response = staff_client.get("/profiles/cust-1")
    assert response.status_code == 500
    assert "TOKEN_ENCRYPTION_KEY" in response.json()["errors"][0]["title"]


# --- /healthz -------------------------------------------------------------------------------


def test_healthz_answers_when_the_database_does(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_answers_head_for_load_balancers(client):
    response = client.head("/healthz")
    assert response.status_code == 200
    assert response.content == b""
