"""What tests of the integration use: tokens issued without a browser, counts of what the sandbox served, delays."""

import time

import pytest
from django.db import connection

from klaviyo_sandbox import counters
from klaviyo_sandbox.crypto import digest
from klaviyo_sandbox.services import issue_tokens
from tests.sandbox.support import BLUEBELL, NORTHWIND, TOKEN, api, basic, refresh

pytestmark = pytest.mark.django_db


def test_issue_tokens_connects_an_account_with_the_callers_tokens(client):
    scopes = "accounts:read profiles:read"
    issued = issue_tokens(account_id=BLUEBELL, scopes=scopes, access_token="at-1", refresh_token="rt-1")
    assert (issued.access_token, issued.refresh_token, issued.scope) == ("at-1", "rt-1", scopes)
    assert issued.expires_in == 3600
    body = api(client, "GET", "/accounts", "at-1").json()
    assert body["data"][0]["id"] == BLUEBELL
    refreshed = refresh(client, "rt-1")
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] == "rt-1"
    assert "at-1" not in repr(issued) and "rt-1" not in repr(issued)


def test_issue_tokens_makes_random_tokens_stored_only_as_digests(settings):
    settings.KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME = 90
    issued = issue_tokens(account_id=NORTHWIND, scopes=["profiles:read"], expires_in=None)
    other = issue_tokens(account_id=NORTHWIND, scopes=["profiles:read"], expires_in=5)
    assert issued.access_token != other.access_token
    assert (issued.expires_in, other.expires_in) == (90, 5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT refresh_token_hash FROM klaviyo_sandbox_grant")
        stored = {row[0] for row in cursor.fetchall()}
    assert stored == {digest(issued.refresh_token), digest(other.refresh_token)}


@pytest.mark.parametrize(
    "arguments",
    [
        {"account_id": "NoSuch", "scopes": "profiles:read"},
        {"account_id": NORTHWIND, "scopes": "profiles:read template:write"},
        {"account_id": NORTHWIND, "scopes": ""},
        {"account_id": NORTHWIND, "scopes": "profiles:read", "expires_in": 0},
    ],
)
def test_issue_tokens_refuses_what_klaviyo_could_not_grant(arguments):
    with pytest.raises(ValueError, match=r"\w"):
        issue_tokens(**arguments)


def test_issue_tokens_refuses_a_token_already_in_use():
    issue_tokens(account_id=NORTHWIND, scopes="profiles:read", access_token="taken", refresh_token="rt-a")
    with pytest.raises(ValueError, match="already in use") as raised:
        issue_tokens(account_id=NORTHWIND, scopes="profiles:read", access_token="taken", refresh_token="rt-b")
    assert "taken" not in str(raised.value)


def test_the_sandbox_counts_refreshes_and_api_requests_per_grant_and_in_total(client):
    first = issue_tokens(account_id=NORTHWIND, scopes="profiles:read", refresh_token="rt-first")
    second = issue_tokens(account_id=NORTHWIND, scopes="profiles:read", refresh_token="rt-second")
    for _ in range(2):
        refresh(client, "rt-first")
        api(client, "GET", "/profiles", first.access_token)
    api(client, "GET", "/profiles", second.access_token)
    refresh(client, "rt-unknown")
    api(client, "GET", "/profiles", "not-a-token")
    api(client, "GET", "/no-such-endpoint", second.access_token)
    assert counters.counts(grant_id=first.grant_id) == counters.Counts(refreshes=2, api_requests=2)
    assert counters.counts(grant_id=second.grant_id) == counters.Counts(refreshes=0, api_requests=1)
    assert counters.counts() == counters.Counts(refreshes=3, api_requests=5)
    counters.reset()
    assert counters.counts() == counters.Counts(refreshes=0, api_requests=0)
    assert counters.counts(grant_id=first.grant_id) == counters.Counts(refreshes=0, api_requests=0)


def test_a_refresh_without_valid_client_credentials_is_not_counted(client):
    issue_tokens(account_id=NORTHWIND, scopes="profiles:read", refresh_token="rt-1")
    client.post(TOKEN, {"grant_type": "refresh_token", "refresh_token": "rt-1"}, HTTP_AUTHORIZATION=basic(secret="x"))
    assert counters.counts().refreshes == 0


def test_a_huge_number_of_failing_refreshes_makes_every_refresh_fail_and_reset_restarts_them(client, settings):
    settings.KLAVIYO_SANDBOX_FAIL_REFRESHES = 10**9
    issue_tokens(account_id=NORTHWIND, scopes="profiles:read", refresh_token="rt-1")
    assert [refresh(client, "rt-1").status_code for _ in range(3)] == [503] * 3
    settings.KLAVIYO_SANDBOX_FAIL_REFRESHES = 1
    assert refresh(client, "rt-1").status_code == 200
    counters.reset()
    assert refresh(client, "rt-1").status_code == 503


def test_the_refresh_and_api_delays_hold_the_answers_back(client, settings):
    issued = issue_tokens(account_id=NORTHWIND, scopes="profiles:read", refresh_token="rt-1")
    settings.KLAVIYO_SANDBOX_REFRESH_DELAY = 0.3
    started = time.monotonic()
    assert refresh(client, "rt-1").status_code == 200
    assert time.monotonic() - started >= 0.3
    settings.KLAVIYO_SANDBOX_API_DELAY = 0.2
    started = time.monotonic()
    assert api(client, "GET", "/profiles", issued.access_token).status_code == 200
    assert time.monotonic() - started >= 0.2
