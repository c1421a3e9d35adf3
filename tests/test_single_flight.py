"""Single-flight refresh: N concurrent callers on an expired token cause exactly one refresh.

Runs against the configured database (SQLite by default, PostgreSQL when DATABASE_URL
points at it) and the sandbox standing in for Klaviyo, served by the live server: the
callers are the integration's own services (threads, and separate processes), over real
HTTP; ``issue_tokens`` connects customers without a browser and ``counters`` tells what
reached the sandbox.
"""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from klaviyo_sandbox import counters
from klaviyo_sandbox.services import issue_tokens
from oauth_integration import services
from oauth_integration.klaviyo import close_sessions
from oauth_integration.models import ConnectionStatus, OAuthToken
from tests.concurrency_worker import run_threads
from tests.conftest import TEST_KEY

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
NORTHWIND = "SbxN7w"


@pytest.fixture
def sandbox(live_server, settings, caplog):
    """The sandbox on the live server, its counters at zero, refreshes slowed to widen the races."""
    settings.KLAVIYO_SANDBOX = True
    settings.KLAVIYO_BASE_URL = f"{live_server.url}/sandbox"
    settings.KLAVIYO_SANDBOX_RATE_LIMIT_SCALE = 0
    settings.KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS = False
    settings.KLAVIYO_SANDBOX_FAIL_REFRESHES = 0
    settings.KLAVIYO_SANDBOX_REFRESH_FAILURE = "503"
    settings.KLAVIYO_SANDBOX_REFRESH_DELAY = 0.2
    counters.reset()
    yield live_server
    # Drop the client's kept-alive connections (and log records that may hold a response),
    # so that the live server's threads end and release their database connections.
    caplog.get_records("call").clear()
    close_sessions()


def expire(customer="cust-1"):
    OAuthToken.objects.filter(customer_identifier=customer).update(expires_at=timezone.now() - timedelta(seconds=5))


@pytest.fixture
def connected(make_connection):
    """Connect customers to a sandbox account without a browser; their access tokens expired."""

    def make(customer="cust-1"):
        issue_tokens(
            account_id=NORTHWIND,
            scopes="accounts:read profiles:read",
            access_token=f"at-{customer}",
            refresh_token=f"rt-{customer}",
        )
        make_connection(customer, access_token=f"at-{customer}", refresh_token=f"rt-{customer}")
        expire(customer)

    return make


def refreshes():
    return counters.counts().refreshes


@pytest.mark.parametrize("rotate", [False, True], ids=["no-rotation", "rotation"])
def test_twenty_threads_on_an_expired_token_refresh_once(sandbox, settings, connected, rotate):
    settings.KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS = rotate
    connected()
    outcomes = run_threads(20, lambda: services.get_profiles(customer_identifier="cust-1"))
    assert outcomes == ["ok"] * 20
    assert counters.counts() == counters.Counts(refreshes=1, api_requests=20)
    row = OAuthToken.objects.get()
    assert row.status == ConnectionStatus.ACTIVE
    assert row.version == 2
    assert row.refresh_lease_owner == ""
    assert (row.refresh_token != "rt-cust-1") is rotate


def test_twenty_threads_asking_for_a_fresh_access_token_cause_one_refresh(sandbox, connected):
    connected()
    tokens = []
    outcomes = run_threads(20, lambda: tokens.append(services.fresh_access_token(customer_identifier="cust-1")))
    assert outcomes == ["ok"] * 20
    assert counters.counts() == counters.Counts(refreshes=1, api_requests=0)
    assert {token.access_token for token in tokens} == {OAuthToken.objects.get().access_token}


def test_when_the_one_refresh_fails_its_waiters_fail_fast_together(sandbox, settings, connected):
    settings.KLAVIYO_SANDBOX_FAIL_REFRESHES = 10**9  # every refresh fails with a 503
    settings.KLAVIYO_SANDBOX_REFRESH_DELAY = 0.3
    connected()
    outcomes = run_threads(20, lambda: services.get_profiles(customer_identifier="cust-1"))
    assert len(outcomes) == 20
    assert all(o.startswith("KlaviyoUnavailable") for o in outcomes), outcomes
    assert counters.counts() == counters.Counts(refreshes=1, api_requests=0)
    row = OAuthToken.objects.get()
    assert (row.status, row.refresh_token, row.access_token) == (ConnectionStatus.ACTIVE, "rt-cust-1", "at-cust-1")


def test_a_rotation_storm_loses_no_connection(sandbox, settings, connected):
    settings.KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS = True
    settings.KLAVIYO_SANDBOX_REFRESH_DELAY = 0.05
    connected()
    for round_number in range(1, 6):
        outcomes = run_threads(10, lambda: services.get_profiles(customer_identifier="cust-1"))
        assert outcomes == ["ok"] * 10
        assert refreshes() == round_number
        expire()
    row = OAuthToken.objects.get()
    assert row.status == ConnectionStatus.ACTIVE
    assert row.refresh_token.startswith("sbx_rt_")  # rotated by the sandbox, and still accepted


def test_customers_refresh_independently(sandbox, connected):
    for customer in ("a", "b", "c"):
        connected(customer)
    outcomes = run_threads(12, lambda: [services.get_profiles(customer_identifier=c) for c in ("a", "b", "c")])
    assert outcomes == ["ok"] * 12
    assert refreshes() == 3


def test_a_lapsed_lease_is_taken_over(sandbox, settings, connected):
    settings.KLAVIYO_SANDBOX_REFRESH_DELAY = 0
    connected()
    # A worker died while holding the lease; it lapsed a moment ago.
    OAuthToken.objects.update(
        refresh_lease_owner="dead-worker", refresh_lease_until=timezone.now() - timedelta(seconds=1)
    )
    services.get_profiles(customer_identifier="cust-1")
    assert refreshes() == 1


def _database_url_for_subprocess():
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        user = db.get("USER") or "postgres"
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    pytest.skip(f"no subprocess URL for {connection.vendor}")


@pytest.mark.parametrize("rotate", [False, True], ids=["no-rotation", "rotation"])
def test_four_processes_of_five_threads_refresh_once(sandbox, settings, connected, rotate):
    settings.KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS = rotate
    settings.KLAVIYO_SANDBOX_REFRESH_DELAY = 0.3
    connected()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url_for_subprocess(),
        "KLAVIYO_BASE_URL": settings.KLAVIYO_BASE_URL,
        "KLAVIYO_CLIENT_ID": "client-id",
        "KLAVIYO_CLIENT_SECRET": "client-secret",
        "KLAVIYO_SANDBOX": "false",
        "TOKEN_ENCRYPTION_KEY": TEST_KEY,
        "TOKEN_ENCRYPTION_KEY_FALLBACKS": "",
        "DEBUG": "false",
        "SECRET_KEY": "test-secret-key-for-signing-links-only",
    }
    start_at = time.time() + 4  # after every process has imported Django
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.concurrency_worker", "cust-1", "5", str(start_at)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
        outcomes += json.loads(out.strip().splitlines()[-1])
    assert outcomes == ["ok"] * 20
    assert refreshes() == 1
    assert OAuthToken.objects.get().status == ConnectionStatus.ACTIVE
