"""The sandbox standing in for Klaviyo in the integration's hardest tests: racing refreshes, counted by the sandbox.

The sandbox is served by the live server; the callers are the integration's own services,
in threads, over real HTTP. ``issue_tokens`` connects the customer without a browser and
``counters`` tells what reached the sandbox.
"""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from klaviyo_sandbox import counters
from klaviyo_sandbox.services import issue_tokens
from oauth_integration import services
from oauth_integration.klaviyo import shared_session
from oauth_integration.models import ConnectionStatus, OAuthToken
from tests.concurrency_worker import run_threads
from tests.sandbox.support import NORTHWIND

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
CUSTOMER = "cust-1"


@pytest.fixture
def sandbox_url(live_server, settings, caplog):
    settings.KLAVIYO_BASE_URL = f"{live_server.url}/sandbox"
    settings.KLAVIYO_SANDBOX_REFRESH_DELAY = 0.2  # widen the window in which racing callers would refresh too
    yield settings.KLAVIYO_BASE_URL
    # A log record of a failed refresh holds its exception, and through it the response and its
    # socket: drop the test's records, so that closing the session closes every connection and
    # the live server's threads end and release their database connections.
    caplog.get_records("call").clear()
    shared_session().close()


@pytest.fixture
def expired_connection(make_connection):
    """A customer connected to a sandbox account, whose access token has just expired."""
    issued = issue_tokens(
        account_id=NORTHWIND, scopes="accounts:read profiles:read", access_token="at-cust-1", refresh_token="rt-cust-1"
    )
    make_connection(CUSTOMER, access_token="at-cust-1", refresh_token="rt-cust-1")
    OAuthToken.objects.update(expires_at=timezone.now() - timedelta(seconds=5))
    return issued


@pytest.mark.parametrize("rotate", [False, True], ids=["no-rotation", "rotation"])
def test_twenty_threads_on_an_expired_token_make_one_refresh_at_the_sandbox(
    sandbox_url, settings, expired_connection, rotate
):
    settings.KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS = rotate
    outcomes = run_threads(20, lambda: services.get_profiles(customer_identifier=CUSTOMER))
    assert outcomes == ["ok"] * 20
    assert counters.counts() == counters.Counts(refreshes=1, api_requests=20)
    assert counters.counts(grant_id=expired_connection.grant_id) == counters.Counts(refreshes=1, api_requests=20)
    row = OAuthToken.objects.get()
    assert (row.status, row.version, row.refresh_lease_owner) == (ConnectionStatus.ACTIVE, 2, "")
    assert (row.refresh_token != "rt-cust-1") is rotate


def test_when_every_refresh_fails_the_waiters_fail_fast_together(sandbox_url, settings, expired_connection):
    settings.KLAVIYO_SANDBOX_FAIL_REFRESHES = 10**9
    settings.KLAVIYO_SANDBOX_REFRESH_DELAY = 0.3
    outcomes = run_threads(20, lambda: services.get_profiles(customer_identifier=CUSTOMER))
    assert len(outcomes) == 20
    assert all(outcome.startswith("KlaviyoUnavailable") for outcome in outcomes), outcomes
    assert counters.counts() == counters.Counts(refreshes=1, api_requests=0)
    row = OAuthToken.objects.get()
    assert (row.status, row.refresh_token, row.access_token) == (ConnectionStatus.ACTIVE, "rt-cust-1", "at-cust-1")
