"""Staff find a customer in the admin, see its connection and revoke it, in a real browser."""

import re

import pytest
import requests
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from klaviyo_sandbox.models import Grant
from oauth_integration.models import ConnectionStatus, OAuthToken
from tests.e2e.flows import BLUEBELL, NORTHWIND, connect, log_in_to_admin

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHANGELIST = "/admin/oauth_integration/oauthtoken/"


def test_staff_find_a_customer_revoke_it_and_read_its_history(page, sandbox_site):
    connect(page, sandbox_site, "shop-to-revoke", NORTHWIND)
    connect(page, sandbox_site, "shop-to-keep", BLUEBELL)
    refresh_token = OAuthToken.objects.get(customer_identifier="shop-to-revoke").refresh_token

    get_user_model().objects.create_superuser("staff", "staff@example.com", "correct-horse-battery")
    log_in_to_admin(page, sandbox_site, "staff", "correct-horse-battery", CHANGELIST)

    page.fill("#searchbar", "shop-to-revoke")
    page.press("#searchbar", "Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Northwind Outfitters")
    expect(rows.first).to_contain_text("Active")

    rows.first.locator("input.action-select").check()
    page.select_option("select[name=action]", label="Revoke & disconnect")
    page.click("button[name=index]")
    expect(page.locator("#content")).to_contain_text("shop-to-revoke")
    page.click("input[value='Yes, revoke']")

    expect(page.locator(".messagelist")).to_contain_text(
        "Customer shop-to-revoke: revoked at Klaviyo and disconnected."
    )
    revoked = OAuthToken.objects.get(customer_identifier="shop-to-revoke")
    assert (revoked.status, revoked.refresh_token, revoked.access_token) == (ConnectionStatus.REVOKED, None, None)
    assert OAuthToken.objects.get(customer_identifier="shop-to-keep").status == ConnectionStatus.ACTIVE

    # Klaviyo (the sandbox) received the revoke: the old refresh token no longer works there.
    assert Grant.objects.filter(account_id=NORTHWIND, revoked_at__isnull=False).count() == 1
    answer = requests.post(
        f"{sandbox_site}/sandbox/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=("sandbox-client-id", "sandbox-client-secret"),
        timeout=10,
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")

    page.goto(f"{sandbox_site}{CHANGELIST}?q=shop-to-revoke")
    page.locator("#result_list tbody tr th a").first.click()
    history = page.locator("#content")
    expect(history).to_contain_text("Connection history")
    expect(history).to_contain_text("Revoked")
    expect(history).to_contain_text("Connected")
    assert refresh_token not in page.content()
    expect(page).to_have_url(re.compile(r"/change/"))
