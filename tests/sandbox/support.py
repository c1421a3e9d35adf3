"""What the sandbox tests share: the OAuth dance through the test client, and API calls."""

import base64
import json
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.db import connection

from klaviyo_sandbox.accounts import ACCOUNTS, profiles_of
from klaviyo_sandbox.models import Profile
from klaviyo_sandbox.services import issue_tokens
from oauth_integration import pkce

AUTHORIZE = "/sandbox/oauth/authorize"
TOKEN = "/sandbox/oauth/token"
REVOKE = "/sandbox/oauth/revoke"
API = "/sandbox/api"
PROFILES = f"{API}/profiles"
ACCOUNTS_URL = f"{API}/accounts"
REDIRECT = "http://testserver/authorize"
REVISION = "2026-07-15"
VERIFIER = "a" * 43 + "-._~" + "B" * 10
NORTHWIND, BLUEBELL, JUNIPER = (account.id for account in ACCOUNTS)
EVERY_SCOPE = "accounts:read profiles:read profiles:write lists:read lists:write events:read events:write metrics:read"
JSON_API = "application/vnd.api+json"


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


def revoke(client, value, auth=None):
    form = {"token": value, "token_type_hint": "refresh_token"}
    return client.post(REVOKE, form, HTTP_AUTHORIZATION=auth or basic())


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


def token_for(account=NORTHWIND, scopes=EVERY_SCOPE):
    """An access token of a new grant, issued without the consent page."""
    return issue_tokens(account_id=account, scopes=scopes).access_token


def api(client, method, path, access_token, body=None, *, revision=REVISION, content_type=JSON_API, **params):
    """A call to the sandbox API; ``path`` is below /sandbox/api (or a whole link it answered), ``params`` its query."""
    path = path.removeprefix(f"http://testserver{API}")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {access_token}"}
    if revision is not None:
        headers["HTTP_REVISION"] = revision
    url = f"{API}{path}" + (f"?{urlencode(params)}" if params else "")
    payload = body if isinstance(body, str | bytes) else json.dumps(body) if body is not None else ""
    return client.generic(method, url, payload, content_type=content_type, **headers)


def error_of(response, status):
    """The one error of a JSON:API error document, after checking its shape."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON_API
    (error,) = response.json()["errors"]
    assert {"id", "status", "code", "title", "detail", "source"} <= set(error)
    assert error["status"] == status
    return error


def ids(response):
    return [item["id"] for item in response.json()["data"]]


def fresh_second():
    """Wait for the start of a second, so that a test's next calls share one burst window.

    Seed the account first (``ensure_seeded``): its first API call writes its profiles, which on
    a busy machine can take long enough for the calls after it to fall in the next second.
    """
    time.sleep(1 - time.time() % 1 + 0.01)


def added_profiles():
    """Profiles in the database besides the fixed accounts' own."""
    fixed = [profile.id for account in ACCOUNTS for profile in profiles_of(account.id)]
    return Profile.objects.exclude(pk__in=fixed)


# Ids that sort differently by code point (digits, upper case, lower case) and in a language's collation.
MIXED_CASE_IDS = ["aaaaaa", "BBBBBB", "cccccc", "DDDDDD", "000000", "eeeeee", "FFFFFF", "gggggg", "HHHHHH", "iiiiii"]


def in_a_language_collation(model, column="id"):
    """On PostgreSQL, the model's column compared as in a database made under en_US.UTF-8 (a, B, c)
    rather than by code point; the test's transaction undoes it."""
    if connection.vendor != "postgresql":
        pytest.skip("a column's collation is set on PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_collation WHERE collname = 'en-US-x-icu'")
        if cursor.fetchone() is None:
            pytest.skip("this PostgreSQL has no ICU collations")
        field, quote = model._meta.get_field(column), connection.ops.quote_name
        cursor.execute(
            f"ALTER TABLE {quote(model._meta.db_table)} ALTER COLUMN {quote(field.column)}"
            f' TYPE {field.db_type(connection)} COLLATE "en-US-x-icu"'
        )
