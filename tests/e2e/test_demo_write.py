"""A newcomer tries a write in the browser: add a profile to a list in the sandbox, see it listed as a member."""

import pytest
from playwright.sync_api import Page, expect

from klaviyo_sandbox.accounts import profiles_of
from klaviyo_sandbox.models import ListMembership, ProfileList
from oauth_integration.models import OAuthToken
from tests.e2e.flows import NORTHWIND, connect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# What `make run` asks for in sandbox mode (klaviyo_site/settings.py; tests/test_demo.py checks it).
SANDBOX_SCOPES = "accounts:read profiles:read profiles:write lists:read lists:write"


def open_demo(page: Page, site: str, customer: str) -> None:
    """From the landing page, the customer's row's "Try a write" link."""
    page.goto(f"{site}/")
    page.locator("#connections tbody tr", has_text=customer).get_by_role("link", name="Try a write").click()
    expect(page.locator("h1")).to_have_text("Try a write")
    expect(page.locator("#customer")).to_have_text(customer)


def add_to_list(page: Page, email: str, list_name: str) -> None:
    page.fill("#id_email", email)
    page.fill("#id_list_name", list_name)
    page.click("#add")


def test_a_profile_added_to_a_list_is_listed_as_a_member(page, sandbox_site, settings):
    settings.KLAVIYO_SCOPES = SANDBOX_SCOPES
    connect(page, sandbox_site, "acme-store", NORTHWIND)
    assert set(OAuthToken.objects.get(customer_identifier="acme-store").scopes.split()) == set(SANDBOX_SCOPES.split())
    open_demo(page, sandbox_site, "acme-store")
    expect(page.locator("#scopes-needed")).to_have_count(0)

    add_to_list(page, "ada@example.com", "Newsletter")
    expect(page.locator("#result h2").first).to_have_text("Added ada@example.com to “Newsletter”")
    members = page.locator("#members tbody tr")
    expect(members).to_have_count(1)
    expect(members.first).to_contain_text("ada@example.com")
    expect(page.locator("#steps")).to_contain_text("201 Created: list")

    existing = profiles_of(NORTHWIND)[0]
    add_to_list(page, existing.email, "Newsletter")  # a profile the account has, the same list
    expect(page.locator("#result")).to_contain_text(f"Profile {existing.id} (already in Klaviyo)")
    expect(members).to_have_count(2)
    expect(page.locator("#members tr.this-one")).to_contain_text(existing.email)
    expect(page.locator("#members")).to_contain_text("ada@example.com")

    newsletter = ProfileList.objects.get(account_id=NORTHWIND, name="Newsletter")
    assert ListMembership.objects.filter(profile_list=newsletter).count() == 2


def test_without_the_scopes_the_page_says_which_to_add_and_to_reconnect(page, sandbox_site, settings):
    settings.KLAVIYO_SCOPES = "accounts:read profiles:read"
    connect(page, sandbox_site, "old-shop", NORTHWIND)
    open_demo(page, sandbox_site, "old-shop")
    expect(page.locator("#scopes-needed")).to_contain_text("profiles:write, lists:read, lists:write")

    add_to_list(page, "ada@example.com", "Newsletter")
    problem = page.locator("#problem")
    expect(problem).to_contain_text("Klaviyo refused POST /api/profiles: this customer never granted profiles:write.")
    expect(problem).to_contain_text("the customer must reconnect")
    expect(page.locator("#id_email")).to_have_value("ada@example.com")
    assert not ProfileList.objects.exists()
