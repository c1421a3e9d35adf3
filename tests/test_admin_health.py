"""The admin's "Klaviyo connections: health" page: counts, lists, charts, who may see it, what it costs."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth_integration.admin.health import WINDOWS, event_chart
from oauth_integration.models import ConnectionEvent, ConnectionStatus, FailureReason, OAuthToken
from tests.conftest import grant_permissions
from tests.test_admin import CONNECTIONS, add_bulk_connections, assert_shows_no_secret, change_url, secrets_of

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore:No directory at:UserWarning")]

HEALTH = f"{CONNECTIONS}health/"
Kind = ConnectionEvent.Kind
HOURS, DAYS = WINDOWS


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def ago(**delta: float) -> datetime:
    return timezone.now() - timedelta(**delta)


def counts_of(response) -> dict[str, int]:
    return {count.value: count.count for count in response.context["counts"]}


def numbers(chart) -> dict[str, tuple[int, ...]]:
    """Each bucket's label with its (refreshes, failures), for the buckets where something happened."""
    return {column.label: column.values for column in chart.columns if any(column.values)}


# --- what the page shows -------------------------------------------------------------------


def test_counts_by_status_match_the_connections_list_filters(admin_client, make_connection):
    for i in range(3):
        make_connection(f"active-{i}")
    make_connection("expired", expires_at=ago(minutes=5))
    make_connection("no-access-token", expires_at=None)
    make_connection("broken", status=ConnectionStatus.NEEDS_REAUTHORIZATION, failure_reason=FailureReason.REVOKED)
    make_connection("revoked", status=ConnectionStatus.REVOKED, access_token=None, refresh_token=None)

    response = admin_client.get(HEALTH)

    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>Klaviyo connections: health" in html
    assert counts_of(response) == {"active": 3, "access_expired": 2, "needs_reauthorization": 1, "revoked": 1}
    assert response.context["total"] == 7
    for count in response.context["counts"]:
        assert f'href="{CONNECTIONS}?status={count.value}"' in html
        filtered = admin_client.get(count.url)
        assert filtered.context["cl"].result_count == count.count, count.value
    assert re.search(r'id="count-access_expired">\s*<a [^>]*><span class="number">2</span>', html)


def test_the_connections_list_links_to_the_health_page(admin_client):
    assert f'href="{HEALTH}"' in admin_client.get(CONNECTIONS).content.decode()


def test_connections_needing_reauthorization_newest_first_with_reason_and_links(admin_client, make_connection):
    rows = [
        make_connection(
            f"broken-{i:02d}",
            status=ConnectionStatus.NEEDS_REAUTHORIZATION,
            failure_reason=FailureReason.EXPIRED_INACTIVE,
            failure_detail=f"invalid_grant {i}",
            failed_at=ago(hours=i),
        )
        for i in range(25)
    ]
    make_connection("fine")

    response = admin_client.get(HEALTH)

    listed = response.context["needing_reauthorization"]
    assert [row.customer_identifier for row in listed] == [f"broken-{i:02d}" for i in range(20)]
    html = response.content.decode()
    section = html[html.index('id="needs-reauthorization"') : html.index('id="refreshes-and-failures"')]
    assert f'<a href="{change_url(rows[0])}">broken-00</a>' in section
    assert "broken-20" not in section
    assert "Refresh token expired from inactivity" in section
    assert "invalid_grant 3" in section
    everyone = f'href="{CONNECTIONS}?status=needs_reauthorization" id="all-needing-reauthorization">25 connections'
    assert everyone in section
    assert re.search(r"The 20 most recent\s+of\s+<a", section)


def test_event_chart_counts_refreshes_and_failures_per_hour_and_per_day(make_connection):
    row = make_connection("cust-1")
    now = datetime(2026, 7, 15, 14, 30, tzinfo=UTC)
    for minutes, kind in [
        (1, Kind.REFRESHED),  # 14:29, the current hour
        (10, Kind.REFRESHED),
        (29, Kind.CALL_FAILED),  # 14:01
        (31, Kind.REFRESH_FAILED),  # 13:59
        (60 * 5, Kind.NEEDS_REAUTHORIZATION),  # 09:30
        (60 * 23 + 30, Kind.REFRESHED),  # 15:00 yesterday: the first hour shown
        (60 * 23 + 31, Kind.REFRESHED),  # 14:59 yesterday: a day ago, not in the last 24 hours
        (60 * 24 * 3, Kind.REFRESHED),  # 2026-07-12
        (60 * 24 * 29 + 60 * 14 + 29, Kind.CALL_FAILED),  # 2026-06-16 00:01: the first day shown
        (60 * 24 * 29 + 60 * 14 + 31, Kind.CALL_FAILED),  # 2026-06-15 23:59: too old
        (2, Kind.CONNECTED),  # not a refresh nor a failure
        (3, Kind.TESTED),
        (4, Kind.REVOKE_FAILED),
    ]:
        ConnectionEvent.objects.create(connection=row, kind=kind, created_at=now - timedelta(minutes=minutes))
    for later in (timedelta(hours=1), timedelta(hours=10)):  # 15:30 (today, after the last hour), 00:30 tomorrow
        ConnectionEvent.objects.create(connection=row, kind=Kind.REFRESHED, created_at=now + later)

    hours, days = event_chart(HOURS, now), event_chart(DAYS, now)

    assert len(hours.columns) == 24
    assert (hours.columns[0].label, hours.columns[-1].label) == ("2026-07-14 15:00", "2026-07-15 14:00")
    assert numbers(hours) == {
        "2026-07-14 15:00": (1, 0),
        "2026-07-15 09:00": (0, 1),
        "2026-07-15 13:00": (0, 1),
        "2026-07-15 14:00": (2, 1),
    }
    assert hours.totals == (3, 3)
    assert len(days.columns) == 30
    assert (days.columns[0].label, days.columns[-1].label) == ("2026-06-16 (Tue)", "2026-07-15 (Wed)")
    assert numbers(days) == {
        "2026-06-16 (Tue)": (0, 1),
        "2026-07-12 (Sun)": (1, 0),
        "2026-07-14 (Tue)": (2, 0),
        "2026-07-15 (Wed)": (3, 3),
    }
    every_third_hour = ["15:00", "18:00", "21:00", "00:00", "03:00", "06:00", "09:00", "12:00"]
    assert [tick.label for tick in hours.x_labels] == every_third_hour
    assert [tick.label for tick in days.x_labels] == ["Jun 20", "Jun 25", "Jun 30", "Jul 5", "Jul 10", "Jul 15"]


def test_the_page_draws_both_charts_with_their_numbers(admin_client, make_connection):
    row = make_connection("cust-1")
    for hours, kind in [(2, Kind.REFRESHED), (2, Kind.REFRESHED), (3, Kind.REFRESH_FAILED), (72, Kind.CALL_FAILED)]:
        ConnectionEvent.objects.create(connection=row, kind=kind, created_at=ago(hours=hours))

    html = admin_client.get(HEALTH).content.decode()

    for key, buckets, legend in [("hours", 24, ("2", "1")), ("days", 30, ("2", "2"))]:
        chart = html[html.index(f'id="chart-{key}"') :]
        chart = chart[: chart.index("</figure>")]
        svg = chart[chart.index("<svg") : chart.index("</svg>")]
        assert f'aria-labelledby="chart-{key}-title chart-{key}-desc"' in svg
        assert svg.count('<rect class="bar bar-refreshes"') == buckets
        assert svg.count('<rect class="bar bar-failures"') == buckets
        assert re.search(r'<rect class="bar bar-refreshes" [^>]*data-value="2"><title>[^<]*: 2 refreshes</title>', svg)
        assert f'<span class="total-refreshes">{legend[0]}</span>' in chart
        assert f'<span class="total-failures">{legend[1]}</span>' in chart
        assert chart.count('<tr><th scope="row">') == buckets  # the table of numbers
    assert "<desc" in html
    assert "2 refreshes, 1 failure;" in html


def test_oldest_unused_refresh_tokens_with_days_left_before_klaviyos_limit(admin_client, make_connection, settings):
    make_connection("fresh", connected_at=ago(days=100), last_refreshed_at=ago(days=2))
    make_connection("idle-80", connected_at=ago(days=200), last_refreshed_at=ago(days=80, hours=1))
    make_connection("never-refreshed-95", connected_at=ago(days=95))
    make_connection("idle-60", connected_at=ago(days=60, hours=1))
    make_connection(
        "broken-old", connected_at=ago(days=300), status=ConnectionStatus.NEEDS_REAUTHORIZATION, failed_at=ago(days=1)
    )
    make_connection("revoked-old", connected_at=ago(days=300), status=ConnectionStatus.REVOKED)

    response = admin_client.get(HEALTH)

    idle = response.context["idle_tokens"]
    assert [(row.connection.customer_identifier, row.unused.days, row.days_left, row.near_limit) for row in idle] == [
        ("never-refreshed-95", 95, "none: past the limit", True),
        ("idle-80", 80, "9", True),
        ("idle-60", 60, "29", False),
        ("fresh", 2, "87", False),
    ]
    assert response.context["near_limit"] == 2
    html = response.content.decode()
    section = html[html.index('id="idle-refresh-tokens"') :]
    assert section.count('class="near-limit"') == 2
    assert "<strong>9</strong>" in section
    assert "manage.py refresh_tokens" in section
    assert "unused for 75 days" in section
    assert re.search(r'id="near-limit-count">2 active\s+connections</span>', section)
    assert f'<a href="{change_url(idle[0].connection)}">never-refreshed-95</a>' in section


def test_idle_tokens_list_at_most_twenty(admin_client, make_connection):
    for i in range(25):
        make_connection(f"cust-{i:02d}", connected_at=ago(days=i))

    idle = admin_client.get(HEALTH).context["idle_tokens"]

    assert [row.connection.customer_identifier for row in idle] == [f"cust-{i:02d}" for i in range(24, 4, -1)]


def test_an_empty_installation_shows_zeros_and_flat_charts(admin_client):
    response = admin_client.get(HEALTH)

    assert response.status_code == 200
    assert set(counts_of(response).values()) == {0}
    html = response.content.decode()
    assert "None: no connection needs its customer to connect again." in html
    assert "No active connection." in html
    assert html.count('height="0.0"') == 2 * (24 + 30)


# --- who may see it ----------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get(HEALTH)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_the_view_permission_get_a_403(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("staff", password="not-used-123", is_staff=True))

    assert client.get(HEALTH).status_code == 403


def test_staff_who_may_view_connections_see_the_page(client, django_user_model, make_connection):
    make_connection("cust-1")
    user = django_user_model.objects.create_user("viewer", password="not-used-123", is_staff=True)
    client.force_login(grant_permissions(user, "view_oauthtoken"))

    response = client.get(HEALTH)

    assert response.status_code == 200
    assert counts_of(response)["active"] == 1


# --- no secret, bounded cost ---------------------------------------------------------------------


def test_the_page_never_loads_a_token_nor_shows_one(admin_client, make_connection):
    make_connection("cust-idle", connected_at=ago(days=80))
    broken = make_connection("cust-broken", status=ConnectionStatus.NEEDS_REAUTHORIZATION, failed_at=ago(hours=1))
    ConnectionEvent.objects.create(connection=broken, kind=Kind.NEEDS_REAUTHORIZATION)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(HEALTH)

    html = response.content.decode()
    assert "cust-idle" in html
    assert "cust-broken" in html
    assert_shows_no_secret(html, secrets_of("cust-idle", "cust-broken"))
    assert not [query["sql"] for query in queries if "access_token" in query["sql"] or "refresh_token" in query["sql"]]


def test_query_count_does_not_grow_with_connections_or_events(admin_client):
    kinds = (Kind.REFRESHED, Kind.REFRESH_FAILED, Kind.CALL_FAILED, Kind.NEEDS_REAUTHORIZATION, Kind.CONNECTED)

    def queries_made() -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(HEALTH)
        assert response.status_code == 200
        return [query["sql"] for query in queries]

    add_bulk_connections(0, 200, kinds)
    admin_client.get(HEALTH)  # the first request puts the session and the user in the cache (where it can)
    small = queries_made()
    add_bulk_connections(200, 2000, kinds)
    large = queries_made()

    assert OAuthToken.objects.count() == 2000
    assert len(small) == len(large)
    # The counts, two lists, two charts; and the session and the user when the cache does not have them.
    assert len([sql for sql in large if "oauth_integration_" in sql]) == 5
    assert len(large) <= 7
