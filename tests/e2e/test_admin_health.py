"""Staff open the connections' health page in a real browser: the counts, the charts, the lists."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from oauth_integration.models import ConnectionEvent, ConnectionStatus, FailureReason, OAuthToken
from tests.e2e.flows import log_in_to_admin

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHANGELIST = "/admin/oauth_integration/oauthtoken/"
Kind = ConnectionEvent.Kind


def seed() -> None:
    """Two active connections (one unused for 80 days), one expired access token, one broken, one revoked."""
    now = timezone.now()

    def connection(customer: str, **values) -> OAuthToken:
        defaults = {"expires_at": now + timedelta(hours=1), "klaviyo_account_name": "Northwind Outfitters"}
        return OAuthToken.objects.create(
            customer_identifier=customer,
            access_token=f"at-{customer}",
            refresh_token=f"rt-{customer}",
            klaviyo_account_id="SbxN7w",
            **{**defaults, **values},
        )

    busy = connection("shop-busy", connected_at=now - timedelta(days=20), last_refreshed_at=now - timedelta(hours=1))
    connection("shop-idle", connected_at=now - timedelta(days=80))
    connection("shop-expired", expires_at=now - timedelta(minutes=5))
    broken = connection(
        "shop-broken",
        status=ConnectionStatus.NEEDS_REAUTHORIZATION,
        failure_reason=FailureReason.REVOKED,
        failure_detail="invalid_grant",
        failed_at=now - timedelta(hours=2),
    )
    connection("shop-revoked", status=ConnectionStatus.REVOKED)
    for hours_ago, row, kind in [
        (2, busy, Kind.REFRESHED),
        (2, busy, Kind.REFRESHED),
        (2, busy, Kind.REFRESHED),
        (2, broken, Kind.REFRESH_FAILED),
        (2, broken, Kind.NEEDS_REAUTHORIZATION),
        (24 * 5, busy, Kind.REFRESHED),
    ]:
        ConnectionEvent.objects.create(connection=row, kind=kind, created_at=now - timedelta(hours=hours_ago))


def test_staff_open_the_health_page_and_see_the_counts_and_the_charts(page, live_server):
    seed()
    get_user_model().objects.create_superuser("staff", "staff@example.com", "correct-horse-battery")
    log_in_to_admin(page, live_server.url, "staff", "correct-horse-battery", CHANGELIST)

    page.click("#health-link")

    expect(page).to_have_url(re.compile(r"/admin/oauth_integration/oauthtoken/health/$"))
    expect(page.locator("h1")).to_have_text("Klaviyo connections: health")
    for status, count in [
        ("active", "2"),
        ("access_expired", "1"),
        ("needs_reauthorization", "1"),
        ("revoked", "1"),
        ("all", "5"),
    ]:
        expect(page.locator(f"#count-{status} .number")).to_have_text(count)

    hours = page.locator("#chart-hours svg")
    expect(hours).to_be_visible()
    expect(hours.locator("rect.bar-refreshes")).to_have_count(24)
    expect(hours.locator("rect.bar-failures")).to_have_count(24)
    refreshes = hours.locator('rect.bar-refreshes[data-value="3"]')
    failures = hours.locator('rect.bar-failures[data-value="2"]')
    expect(refreshes).to_have_count(1)
    expect(failures).to_have_count(1)
    tall, short = refreshes.bounding_box(), failures.bounding_box()
    assert tall and short
    assert tall["height"] > 40
    assert short["height"] == pytest.approx(tall["height"] * 2 / 3, rel=0.05)
    expect(page.locator("#chart-hours .total-refreshes")).to_have_text("3")
    expect(page.locator("#chart-hours .total-failures")).to_have_text("2")

    days = page.locator("#chart-days svg")
    expect(days).to_be_visible()
    expect(days.locator("rect.bar-refreshes")).to_have_count(30)
    expect(days.locator("rect.bar-failures")).to_have_count(30)
    expect(page.locator("#chart-days .total-refreshes")).to_have_text("4")

    page.click("#chart-days summary")
    expect(page.locator("#chart-days table.chart-numbers tbody tr")).to_have_count(30)

    idle = page.locator("#idle-refresh-tokens tbody tr")
    expect(idle.first).to_contain_text("shop-idle")
    expect(idle.first).to_have_class("near-limit")
    assert "rt-shop-idle" not in page.content()

    page.locator("#needs-reauthorization a", has_text="shop-broken").click()
    expect(page).to_have_url(re.compile(r"/change/$"))
    expect(page.locator("#content")).to_contain_text("shop-broken")
