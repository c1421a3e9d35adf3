"""An install that starts in (imitated) Klaviyo, in a real browser: the sandbox's app listing,
the host's login, the choice of what to connect, the confirmation and the consent."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from oauth_integration.models import OAuthToken
from tests.e2e.flows import BLUEBELL

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def customers_of(user):
    """The host's function (KLAVIYO_INSTALL_CUSTOMERS): this test site's stores per user."""
    return {"owner": ["north-shop", "blue-shop"]}.get(user.get_username(), [])


def test_an_anonymous_visitor_installs_from_the_listing_logs_in_chooses_and_connects(page, sandbox_site, settings):
    settings.KLAVIYO_OPEN_ACCESS = False  # the install works for logged-in users of the host only
    settings.KLAVIYO_INSTALL_CUSTOMERS = "tests.e2e.test_install_from_klaviyo.customers_of"
    get_user_model().objects.create_user("owner", password="correct-horse-battery", is_staff=True)

    page.goto(f"{sandbox_site}/sandbox/apps")
    expect(page.locator(".sandbox-banner")).to_contain_text("SANDBOX")
    page.click("#install")

    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/install$"))  # the host's LOGIN_URL
    page.fill("#id_username", "owner")
    page.fill("#id_password", "correct-horse-battery")
    page.click("input[type=submit]")

    expect(page).to_have_url(re.compile(r"/install$"))
    expect(page.locator("h1")).to_have_text("Choose what to connect to Klaviyo")
    expect(page.locator("#customers a")).to_have_count(2)
    page.click("text=blue-shop")

    expect(page.locator("h1")).to_have_text("Connect Klaviyo to blue-shop")
    page.click("#continue")
    expect(page).to_have_url(re.compile(r"/sandbox/oauth/authorize\?"))
    page.check(f"input[name=account][value={BLUEBELL}]")
    page.click("button[value=allow]")

    expect(page.locator("h1")).to_have_text("Klaviyo connected")
    expect(page.locator("#customer")).to_have_text("blue-shop")
    connection = OAuthToken.objects.get()
    assert (connection.customer_identifier, connection.klaviyo_account_id) == ("blue-shop", BLUEBELL)
