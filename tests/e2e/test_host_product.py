"""The host product's view: a customer comes back to it after connecting; staff use the admin at 1280 px."""

import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from oauth_integration.links import build_start_link
from oauth_integration.models import ConnectionStatus, FailureReason, OAuthToken
from tests.e2e.flows import NORTHWIND, confirm, log_in_to_admin

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class SettingsPage(BaseHTTPRequestHandler):
    """The host product's own settings page, on another origin."""

    def do_GET(self) -> None:
        body = b"<!doctype html><title>Acme settings</title><h1>Acme settings: integrations</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def host_product() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SettingsPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_connecting_with_a_return_url_lands_on_the_host_products_page(page, sandbox_site, host_product, settings):
    settings.KLAVIYO_RETURN_URL_HOSTS = [host_product]
    link = build_start_link("acme-store", next=f"http://{host_product}/settings/integrations")

    page.goto(link)
    confirm(page, "acme-store")
    page.check(f"input[name=account][value={NORTHWIND}]")
    page.click("button[value=allow]")

    expect(page).to_have_url(
        f"http://{host_product}/settings/integrations?klaviyo=connected&klaviyo_customer=acme-store"
    )
    expect(page.locator("h1")).to_have_text("Acme settings: integrations")
    assert OAuthToken.objects.get(customer_identifier="acme-store").klaviyo_account_id == NORTHWIND


def test_the_connections_list_fits_a_1280_pixel_window(page, sandbox_site, make_connection, settings):
    settings.KLAVIYO_SCOPES = "accounts:read profiles:read events:write lists:read"
    now = timezone.now()
    make_connection(
        "a-rather-long-customer-identifier-0001@example.com",
        klaviyo_account_id="SbxN7w",
        klaviyo_account_name="Juniper & Co. Home Furnishings",
        last_refreshed_at=now,
    )
    make_connection(
        "cust-broken",
        status=ConnectionStatus.NEEDS_REAUTHORIZATION,
        failure_reason=FailureReason.EXPIRED_INACTIVE,
        failure_detail="refresh: Klaviyo returned HTTP 400 (invalid_grant)",
        failed_at=now,
        expires_at=now - timedelta(hours=2),
    )
    get_user_model().objects.create_superuser("staff", "staff@example.com", "correct-horse-battery")
    log_in_to_admin(page, sandbox_site, "staff", "correct-horse-battery", "/admin/oauth_integration/oauthtoken/")

    expect(page.locator("#result_list")).to_contain_text("needs events:write lists:read")
    assert page.viewport_size["width"] == 1280
    # The admin scrolls a wide list inside its own box: neither the page nor that box may need to.
    overflow = page.evaluate(
        """() => Math.max(
            document.documentElement.scrollWidth - document.documentElement.clientWidth,
            ...[...document.querySelectorAll('#changelist .results')].map(box => box.scrollWidth - box.clientWidth))"""
    )
    assert overflow <= 0, f"the list is {overflow} px wider than the window"
    expect(page).to_have_url(re.compile(r"/admin/oauth_integration/oauthtoken/$"))
