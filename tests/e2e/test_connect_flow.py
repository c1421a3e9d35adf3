"""A person connects customers in a real browser, against the built-in Klaviyo sandbox."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from klaviyo_sandbox.accounts import profiles_of
from oauth_integration.models import OAuthToken
from tests.e2e.flows import BLUEBELL, NORTHWIND, connect, start_connecting

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def profile_ids(page: Page, site: str, customer: str) -> list[str]:
    response = page.request.get(f"{site}/profiles/{customer}")
    assert response.status == 200
    return [profile["id"] for profile in response.json()["data"]]


def test_a_customer_connects_and_their_sandbox_profiles_are_served(page, sandbox_site):
    connect(page, sandbox_site, "acme-store", NORTHWIND)
    expect(page.locator(".card")).to_contain_text("Northwind Outfitters")

    with page.expect_response(re.compile(r"/profiles/acme-store$")) as profiles:
        page.click("text=View this customer's profiles")
    body = profiles.value.json()
    assert profiles.value.status == 200
    assert [profile["id"] for profile in body["data"]] == [profile.id for profile in profiles_of(NORTHWIND)[:20]]
    assert body["data"][0]["attributes"]["email"].endswith("@northwind-outfitters.example")
    assert body["links"]["next"]


def test_declining_on_the_consent_page_shows_connection_declined(page, sandbox_site):
    start_connecting(page, sandbox_site, "undecided-shop")
    with page.expect_response(re.compile(r"/authorize\?error=access_denied")) as callback:
        page.click("button[value=deny]")
    assert callback.value.status == 403
    expect(page.locator("h1")).to_have_text("Connection declined")
    assert not OAuthToken.objects.filter(customer_identifier="undecided-shop").exists()


def test_two_customers_stay_separate_and_the_admin_lists_both(page, sandbox_site):
    connect(page, sandbox_site, "shop-north", NORTHWIND)
    connect(page, sandbox_site, "shop-blue", BLUEBELL)

    north, blue = profile_ids(page, sandbox_site, "shop-north"), profile_ids(page, sandbox_site, "shop-blue")
    assert north == [profile.id for profile in profiles_of(NORTHWIND)[:20]]
    assert blue == [profile.id for profile in profiles_of(BLUEBELL)[:20]]
    assert set(north).isdisjoint(blue)

    page.goto(f"{sandbox_site}/")
    rows = page.locator("#connections tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#connections")).to_contain_text("Northwind Outfitters")
    expect(page.locator("#connections")).to_contain_text("Bluebell Bakery")
    landing_html = page.content()

    get_user_model().objects.create_superuser("admin", "admin@example.com", "correct-horse-battery")
    page.goto(f"{sandbox_site}/admin/login/?next=/admin/oauth_integration/oauthtoken/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct-horse-battery")
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/oauth_integration/oauthtoken/$"))
    results = page.locator("#result_list")
    expect(results).to_contain_text("shop-north")
    expect(results).to_contain_text("shop-blue")
    admin_html = page.content()

    for row in OAuthToken.objects.all():
        for secret in (row.access_token, row.refresh_token):
            assert secret not in landing_html
            assert secret not in admin_html
