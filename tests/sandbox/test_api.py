"""What every sandbox API endpoint shares: authentication, revision, scopes, JSON:API errors, routing."""

from datetime import timedelta

import pytest
from django.utils import timezone

from klaviyo_sandbox import revisions
from klaviyo_sandbox.models import AccessToken
from tests.sandbox.support import (
    ACCOUNTS_URL,
    BLUEBELL,
    JSON_API,
    NORTHWIND,
    PROFILES,
    REVISION,
    added_profiles,
    api,
    api_get,
    assert_authentication_failed,
    connect,
    error_of,
    token_for,
)

pytestmark = pytest.mark.django_db

# --- /api: authentication, revision, scopes -------------------------------------------------


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


def test_accounts_accept_sparse_fieldsets_and_answer_for_their_own_id_only(client):
    token = token_for(BLUEBELL)
    body = api(client, "GET", "/accounts", token, **{"fields[account]": "contact_information.organization_name"}).json()
    assert body["data"][0]["attributes"] == {"contact_information": {"organization_name": "Bluebell Bakery"}}
    own = api(client, "GET", f"/accounts/{BLUEBELL}", token)
    assert own.status_code == 200
    assert own.json()["data"]["id"] == BLUEBELL
    assert error_of(api(client, "GET", f"/accounts/{NORTHWIND}", token), 404)["code"] == "not_found"


def test_api_failure_rate_injects_503s(client, settings):
    tokens = connect(client)
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 1.0
    response = api_get(client, PROFILES, tokens["access_token"])
    assert response.status_code == 503
    assert response.json()["errors"][0]["status"] == 503
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 0.0
    assert api_get(client, PROFILES, tokens["access_token"]).status_code == 200


# --- revision ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", ["2024-01-01", "2026-07-16", "2099-01-15", "2026-07-15.beta", "2024-10-15.pre"])
def test_api_rejects_a_well_formed_revision_klaviyo_never_released(client, revision):
    error = error_of(api(client, "GET", "/profiles", token_for(), revision=revision), 400)
    assert error["code"] == "invalid"
    assert error["source"] == {"parameter": "revision"}
    assert revision in error["detail"]


@pytest.mark.parametrize("revision", ["2023-02-22", "2024-10-15", REVISION, "2026-10-15", "2026-07-15.pre"])
def test_api_accepts_every_released_revision(client, revision):
    assert revision in revisions.KNOWN
    assert api(client, "GET", "/profiles", token_for(), revision=revision).status_code == 200


def test_the_revision_the_integration_sends_by_default_is_known(settings):
    from oauth_integration.conf import DEFAULTS

    assert DEFAULTS["KLAVIYO_REVISION"] in revisions.STABLE


def test_the_revision_the_official_python_sdk_sends_is_known():
    from klaviyo_api import KlaviyoAPI

    assert KlaviyoAPI._REVISION in revisions.STABLE


def test_revisions_are_listed_in_release_order_without_repeats():
    for listed in (revisions.STABLE, revisions.BETA):
        assert list(listed) == sorted(set(listed))


# --- scopes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "granted", "needed"),
    [
        ("GET", "/lists", "profiles:read", "lists:read"),
        ("POST", "/lists", "lists:read", "lists:write"),
        ("GET", "/lists/XyZ123/profiles", "lists:read", "profiles:read"),
        ("POST", "/profiles", "profiles:read", "profiles:write"),
        ("POST", "/events", "events:read", "events:write"),
        ("GET", "/events", "events:write", "events:read"),
        ("GET", "/metrics", "events:read", "metrics:read"),
    ],
)
def test_each_endpoint_needs_its_scopes_and_says_which_are_missing(client, method, path, granted, needed):
    error = error_of(api(client, method, path, token_for(scopes=granted), body={}), 403)
    assert error["code"] == "permission_denied"
    assert error["title"] == "You do not have permission to perform this action."
    assert needed in error["detail"]
    assert not added_profiles().exists()


# --- routing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/campaignz", "/profiles/01ABC/segments/extra", "/", "/lists/x/y/z"])
def test_an_unknown_path_is_a_json_api_404(client, path):
    error = error_of(api(client, "GET", path, token_for()), 404)
    assert error["code"] == "not_found"
    assert error["title"] == "Not found."


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/profiles", "GET, POST"),
        ("DELETE", "/profiles/01ABC", "GET, PATCH"),
        ("GET", "/profile-import", "POST"),
        ("PATCH", "/events", "GET, POST"),
        ("POST", "/accounts", "GET"),
    ],
)
def test_a_wrong_method_is_a_405_naming_the_allowed_ones(client, method, path, allowed):
    response = api(client, method, path, token_for(), body={})
    error = error_of(response, 405)
    assert error["code"] == "method_not_allowed"
    assert response["Allow"] == allowed


@pytest.mark.parametrize(
    "path", ["/accounts/", "/profiles/", "/lists/", "/events/", "/metrics/", f"/accounts/{NORTHWIND}/"]
)
def test_every_path_also_answers_with_a_trailing_slash(client, path):
    response = api(client, "GET", path, token_for())
    assert response.status_code == 200
    assert response["Content-Type"] == JSON_API


def test_two_trailing_slashes_are_not_the_same_path(client):
    assert error_of(api(client, "GET", "/profiles//", token_for()), 404)["code"] == "not_found"


# --- request bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{not json", JSON_API, 400, "parse_error"),
        (b"\xff\xfe", JSON_API, 400, "parse_error"),
        ("[1, 2]", JSON_API, 400, "invalid"),
        ('{"data": "profile"}', JSON_API, 400, "invalid"),
        ('{"data": {"type": "list", "attributes": {}}}', JSON_API, 400, "invalid"),
        ('{"data": {"type": "profile", "attributes": []}}', JSON_API, 400, "invalid"),
        ("email=a@b.co", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_a_malformed_body_is_a_4xx_with_a_source_and_creates_nothing(client, body, content_type, status, code):
    response = api(client, "POST", "/profiles", token_for(), body=body, content_type=content_type)
    error = error_of(response, status)
    assert error["code"] == code
    assert "pointer" in error["source"]
    assert not added_profiles().exists()


def test_a_plain_json_content_type_is_accepted_too(client):
    body = {"data": {"type": "profile", "attributes": {"email": "plain@example.com"}}}
    response = api(client, "POST", "/profiles", token_for(), body=body, content_type="application/json")
    assert response.status_code == 201
