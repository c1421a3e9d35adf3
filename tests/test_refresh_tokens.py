"""Keep-alive: ``manage.py refresh_tokens`` and the services behind it."""

import json
import threading
import time
from datetime import timedelta
from io import StringIO
from urllib.parse import parse_qs

import pytest
import responses
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone
from responses import matchers

from oauth_integration import services
from oauth_integration.models import ConnectionEvent, ConnectionStatus, FailureReason, OAuthToken
from oauth_integration.services import RefreshOutcome
from tests.conftest import OTHER_KEY, TOKEN_URL, token_body

# Worker threads use their own database connections: they must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _prerefresh_in_use_connections(settings):
    """These tests exercise the opt-in pre-refresh of connections in use (10 minutes ahead) and a
    30-day idle window; the defaults are tested at the end of this module."""
    settings.KLAVIYO_KEEP_ALIVE_EXPIRING_WITHIN = 600
    settings.KLAVIYO_KEEP_ALIVE_UNUSED_DAYS = 30


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("refresh_tokens", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def expect_refresh(mocked_responses, old_refresh: str, *, access: str, refresh: str) -> None:
    mocked_responses.post(
        TOKEN_URL,
        match=[matchers.urlencoded_params_matcher({"grant_type": "refresh_token", "refresh_token": old_refresh})],
        json=token_body(access=access, refresh=refresh),
    )


def refresh_token_callback(calls: list[str], *, delay: float = 0.0):
    """Klaviyo's token endpoint for many customers: rt-X becomes at-X-2 / rt-X-2."""
    lock = threading.Lock()

    def callback(request):
        old = parse_qs(request.body)["refresh_token"][0]
        with lock:
            calls.append(old)
        time.sleep(delay)
        name = old.removeprefix("rt-")
        return 200, {}, json.dumps(token_body(access=f"at-{name}-2", refresh=f"rt-{name}-2"))

    return callback


def test_refreshes_expiring_and_idle_connections_and_leaves_the_rest_alone(make_connection, mocked_responses):
    now = timezone.now()
    make_connection("expiring", expires_at=now + timedelta(minutes=5))
    make_connection("idle", connected_at=now - timedelta(days=40))
    make_connection(
        "idle-since-refresh", connected_at=now - timedelta(days=80), last_refreshed_at=now - timedelta(days=31)
    )
    make_connection("fresh", connected_at=now - timedelta(days=40), last_refreshed_at=now - timedelta(days=2))
    make_connection("broken", expires_at=now - timedelta(minutes=5), status=ConnectionStatus.NEEDS_REAUTHORIZATION)
    make_connection("revoked", expires_at=None, access_token=None, refresh_token=None, status=ConnectionStatus.REVOKED)
    for name in ("expiring", "idle", "idle-since-refresh"):
        expect_refresh(mocked_responses, f"rt-{name}", access=f"at-{name}-2", refresh=f"rt-{name}-2")

    out, _ = run()

    assert "3 refreshed" in out
    assert "0 failed" in out
    for name in ("expiring", "idle", "idle-since-refresh"):
        row = OAuthToken.objects.get(customer_identifier=name)
        assert (row.access_token, row.refresh_token, row.version) == (f"at-{name}-2", f"rt-{name}-2", 2)
        assert row.expires_at > now + timedelta(minutes=50)
        assert row.refresh_lease_owner == ""
    for name in ("fresh", "broken", "revoked"):
        assert OAuthToken.objects.get(customer_identifier=name).version == 1
    refreshed = ConnectionEvent.objects.filter(kind=ConnectionEvent.Kind.REFRESHED)
    assert sorted(refreshed.values_list("connection__customer_identifier", flat=True)) == [
        "expiring",
        "idle",
        "idle-since-refresh",
    ]


def test_expiring_within_and_unused_days_set_the_windows(make_connection, mocked_responses):
    now = timezone.now()
    make_connection("in-20-minutes", expires_at=now + timedelta(minutes=20))
    make_connection("idle-10-days", connected_at=now - timedelta(days=10))

    out, _ = run()
    assert "No connection is due" in out

    expect_refresh(mocked_responses, "rt-in-20-minutes", access="at-a", refresh="rt-a")
    out, _ = run("--expiring-within", "1800")
    assert "1 refreshed" in out

    expect_refresh(mocked_responses, "rt-idle-10-days", access="at-b", refresh="rt-b")
    out, _ = run("--unused-days", "7")
    assert "1 refreshed" in out
    assert OAuthToken.objects.get(customer_identifier="idle-10-days").refresh_token == "rt-b"


def test_invalid_grant_counts_as_needs_reauthorization_without_failing_the_run(make_connection, mocked_responses):
    make_connection("uninstalled", expires_at=timezone.now() + timedelta(minutes=1))
    mocked_responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})

    out, _ = run()

    assert "1 need reauthorization, 0 failed" in out
    row = OAuthToken.objects.get(customer_identifier="uninstalled")
    assert row.status == ConnectionStatus.NEEDS_REAUTHORIZATION
    assert row.failure_reason == FailureReason.REVOKED


def test_a_failed_refresh_exits_non_zero_naming_the_customer_and_the_others_still_refresh(
    make_connection, mocked_responses, settings
):
    settings.KLAVIYO_MAX_RETRIES = 0
    soon = timezone.now() + timedelta(minutes=1)
    make_connection("klaviyo-down", expires_at=soon)
    make_connection("fine", expires_at=soon)
    mocked_responses.post(
        TOKEN_URL,
        match=[matchers.urlencoded_params_matcher({"grant_type": "refresh_token", "refresh_token": "rt-klaviyo-down"})],
        status=500,
        body="upstream exploded",
    )
    expect_refresh(mocked_responses, "rt-fine", access="at-fine-2", refresh="rt-fine-2")

    with pytest.raises(CommandError, match=r"1 refreshes failed: klaviyo-down\b"):
        run()

    broken = OAuthToken.objects.get(customer_identifier="klaviyo-down")
    assert (broken.status, broken.failure_reason, broken.version) == (
        ConnectionStatus.ACTIVE,
        FailureReason.KLAVIYO_UNAVAILABLE,
        1,
    )
    assert OAuthToken.objects.get(customer_identifier="fine").refresh_token == "rt-fine-2"


def test_undecryptable_tokens_fail_the_run_without_calling_klaviyo(make_connection, mocked_responses, settings):
    make_connection("old-key", expires_at=timezone.now() + timedelta(minutes=1))
    settings.TOKEN_ENCRYPTION_KEY = OTHER_KEY  # the key that sealed the row is gone

    with pytest.raises(CommandError, match="old-key"):
        run()

    assert len(mocked_responses.calls) == 0
    assert OAuthToken.objects.get(customer_identifier="old-key").failure_reason == FailureReason.UNDECRYPTABLE


def test_a_connection_being_refreshed_elsewhere_is_skipped(make_connection, mocked_responses):
    make_connection("busy", expires_at=timezone.now() + timedelta(minutes=1))
    assert OAuthToken.objects.claim_refresh_lease(
        "busy", version=1, owner="other-machine", until=timezone.now() + timedelta(minutes=1)
    )

    out, _ = run()

    assert "0 refreshed, 1 skipped" in out
    assert len(mocked_responses.calls) == 0


def test_refresh_if_due_rereads_the_row_and_skips_one_refreshed_since_it_was_listed(make_connection, mocked_responses):
    now = timezone.now()
    make_connection("raced", expires_at=now + timedelta(minutes=1))
    windows = {"expiring_before": now + timedelta(minutes=10), "unused_since": now - timedelta(days=30)}
    # Another machine refreshes it between our listing and our turn.
    lease_until = now + timedelta(minutes=1)
    assert OAuthToken.objects.claim_refresh_lease("raced", version=1, owner="elsewhere", until=lease_until)
    assert OAuthToken.objects.store_refreshed(
        "raced",
        version=1,
        owner="elsewhere",
        access_token="at-elsewhere",
        refresh_token="rt-elsewhere",
        expires_at=now + timedelta(hours=1),
        last_refreshed_at=now,
    )

    assert services.refresh_if_due(customer_identifier="raced", **windows) == RefreshOutcome.SKIPPED
    assert services.refresh_if_due(customer_identifier="never-connected", **windows) == RefreshOutcome.SKIPPED

    row = OAuthToken.objects.get(customer_identifier="raced")
    assert (row.refresh_token, row.version) == ("rt-elsewhere", 2)
    assert len(mocked_responses.calls) == 0


def test_pages_through_all_due_connections_exactly_once(make_connection, mocked_responses):
    soon = timezone.now() + timedelta(minutes=1)
    names = [f"cust-{i:02d}" for i in range(23)]
    for name in names:
        make_connection(name, expires_at=soon)
    calls: list[str] = []
    mocked_responses.add_callback(responses.POST, TOKEN_URL, callback=refresh_token_callback(calls))
    seen: list[int] = []

    report = services.refresh_due_connections(
        expiring_within=timedelta(minutes=10),
        unused_for=timedelta(days=30),
        concurrency=3,
        page_size=5,
        progress=lambda r: seen.append(r.processed),
    )

    assert (report.due, report.refreshed, report.processed) == (23, 23, 23)
    assert sorted(calls) == [f"rt-{name}" for name in names]
    assert seen == list(range(1, 24))
    assert all(row.refresh_token.endswith("-2") for row in OAuthToken.objects.all())


def test_two_machines_running_at_once_refresh_each_connection_once(make_connection, mocked_responses):
    soon = timezone.now() + timedelta(minutes=1)
    names = [f"shared-{i:02d}" for i in range(40)]
    for name in names:
        make_connection(name, expires_at=soon)
    calls: list[str] = []
    mocked_responses.add_callback(responses.POST, TOKEN_URL, callback=refresh_token_callback(calls, delay=0.01))
    reports = []
    start = threading.Barrier(2)

    def machine() -> None:
        start.wait()
        try:
            reports.append(
                services.refresh_due_connections(
                    expiring_within=timedelta(minutes=10), unused_for=timedelta(days=30), concurrency=4
                )
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=machine) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(calls) == [f"rt-{name}" for name in names]  # one refresh per connection, in all
    assert sum(r.refreshed for r in reports) == 40
    assert sum(r.refreshed + r.skipped for r in reports) == sum(r.due for r in reports)
    assert all(r.failed == 0 for r in reports)
    assert set(OAuthToken.objects.values_list("version", flat=True)) == {2}


def test_big_runs_print_a_few_progress_lines_not_one_per_row(make_connection, mocked_responses):
    soon = timezone.now() + timedelta(minutes=1)
    for i in range(60):
        make_connection(f"many-{i:02d}", expires_at=soon)
    mocked_responses.add_callback(responses.POST, TOKEN_URL, callback=refresh_token_callback([]))

    out, err = run("--concurrency", "8")

    lines = err.splitlines()
    assert 1 <= len(lines) <= 21
    assert lines[0].startswith("processed 3/60: ")
    assert all(line.startswith("processed ") for line in lines)
    assert out == (
        "Done: 60 connections due; 60 refreshed, 0 skipped (refreshed elsewhere or no longer due), "
        "0 need reauthorization, 0 failed.\n"
    )


def test_verbosity_zero_prints_nothing(make_connection, mocked_responses):
    make_connection("quiet", expires_at=timezone.now() + timedelta(minutes=1))
    expect_refresh(mocked_responses, "rt-quiet", access="at-q", refresh="rt-q")

    out, err = run("-v", "0")

    assert (out, err) == ("", "")
    assert OAuthToken.objects.get(customer_identifier="quiet").refresh_token == "rt-q"


@pytest.mark.parametrize(
    "args",
    [
        ("--unused-days", "90"),
        ("--unused-days", "0"),
        ("--concurrency", "0"),
        ("--concurrency", "33"),
        ("--expiring-within", "-1"),
        ("--expiring-within", "ten"),
    ],
)
def test_rejects_out_of_range_options(args, mocked_responses):
    with pytest.raises(CommandError, match=args[0]):
        run(*args)


def test_a_missing_encryption_key_stops_before_touching_anything(make_connection, mocked_responses, settings):
    make_connection("cust", expires_at=timezone.now() + timedelta(minutes=1))
    settings.TOKEN_ENCRYPTION_KEY = ""

    with pytest.raises(CommandError, match="TOKEN_ENCRYPTION_KEY is not set"):
        run()
    assert OAuthToken.objects.get(customer_identifier="cust").version == 1
    assert not ConnectionEvent.objects.exists()


def test_idle_connections_are_not_kept_refreshed_just_because_their_token_expires(make_connection, mocked_responses):
    now = timezone.now()
    make_connection("idle-since-refresh", expires_at=now + timedelta(minutes=5), last_called_at=None)
    make_connection(
        "called-before-last-refresh",
        expires_at=now + timedelta(minutes=5),
        last_refreshed_at=now - timedelta(minutes=50),
        last_called_at=now - timedelta(minutes=55),
    )
    out, _ = run()
    assert out == "No connection is due for a refresh.\n"
    assert len(mocked_responses.calls) == 0


def test_by_default_only_refresh_tokens_close_to_the_idle_limit_are_refreshed(
    settings, make_connection, mocked_responses
):
    settings.KLAVIYO_KEEP_ALIVE_EXPIRING_WITHIN = None
    settings.KLAVIYO_KEEP_ALIVE_UNUSED_DAYS = None
    now = timezone.now()
    make_connection("in-use-expiring", expires_at=now + timedelta(minutes=1))  # its next call refreshes it
    make_connection("idle-40-days", connected_at=now - timedelta(days=40))
    make_connection("idle-80-days", connected_at=now - timedelta(days=100), last_refreshed_at=now - timedelta(days=80))
    expect_refresh(mocked_responses, "rt-idle-80-days", access="at-x", refresh="rt-x")

    out, _ = run()

    assert "1 refreshed" in out
    assert OAuthToken.objects.get(customer_identifier="idle-80-days").refresh_token == "rt-x"
    assert OAuthToken.objects.get(customer_identifier="in-use-expiring").version == 1


def test_pre_refreshing_connections_in_use_is_opt_in(settings, make_connection, mocked_responses):
    settings.KLAVIYO_KEEP_ALIVE_EXPIRING_WITHIN = 0
    make_connection("in-use-expiring", expires_at=timezone.now() + timedelta(minutes=1))
    assert "No connection is due" in run()[0]
    expect_refresh(mocked_responses, "rt-in-use-expiring", access="at-x", refresh="rt-x")
    assert "1 refreshed" in run("--expiring-within", "600")[0]
