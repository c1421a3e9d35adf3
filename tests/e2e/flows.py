"""Steps a person takes in the browser, shared by the end-to-end tests."""

import re

from playwright.sync_api import Page, expect

NORTHWIND = "SbxN7w"
BLUEBELL = "SbxB4k"


def start_connecting(page: Page, site: str, customer: str) -> None:
    page.goto(f"{site}/")
    expect(page.locator("#sandbox-notice")).to_contain_text("SANDBOX MODE")
    page.fill("#id_customer", customer)
    page.click("#connect")
    confirm(page, customer)
    expect(page).to_have_url(re.compile(r"/sandbox/oauth/authorize\?"))
    expect(page.locator(".sandbox-banner")).to_contain_text("SANDBOX")
    expect(page.locator("#scopes")).to_contain_text("profiles:read")


def confirm(page: Page, customer: str) -> None:
    """The start link's page names the customer; its button goes on to Klaviyo."""
    expect(page.locator("h1")).to_have_text(f"Connect Klaviyo to {customer}")
    page.click("#continue")


def connect(page: Page, site: str, customer: str, account: str) -> None:
    start_connecting(page, site, customer)
    page.check(f"input[name=account][value={account}]")
    page.click("button[value=allow]")
    expect(page.locator("h1")).to_have_text("Klaviyo connected")
    expect(page.locator("#customer")).to_have_text(customer)


def log_in_to_admin(page: Page, site: str, username: str, password: str, next_path: str) -> None:
    page.goto(f"{site}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(next_path) + "$"))
