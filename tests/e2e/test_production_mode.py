"""The product as deployed: DEBUG off, credentials set, Klaviyo elsewhere.

"Klaviyo" here is a separate server process (this project's sandbox, on its own port and
database), so the app under test runs in production mode: signed /start links only,
/profiles for staff only, and every call to Klaviyo over real HTTP to another host.
"""

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from playwright.sync_api import expect

from klaviyo_sandbox.accounts import profiles_of
from oauth_integration.klaviyo import close_sessions
from oauth_integration.links import build_start_link
from oauth_integration.models import OAuthToken, PkceCode
from tests.conftest import TEST_KEY
from tests.e2e.flows import NORTHWIND, log_in_to_admin

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID, CLIENT_SECRET = "production-client-id", "production-client-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def klaviyo_elsewhere(live_server, tmp_path) -> Iterator[str]:
    """The sandbox served by its own process, configured for our app's credentials and redirect URL."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "DATABASE_URL", "TOKEN_"))},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'klaviyo.sqlite3'}",
        "DEBUG": "true",
        "KLAVIYO_SANDBOX": "true",
        "KLAVIYO_CLIENT_ID": CLIENT_ID,
        "KLAVIYO_CLIENT_SECRET": CLIENT_SECRET,
        "KLAVIYO_REDIRECT_URL": f"{live_server.url}/authorize",
        "SECRET_KEY": "another-secret-key-for-the-klaviyo-stand-in",
        "TOKEN_ENCRYPTION_KEY": "ab" * 32,
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--nothreading"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the Klaviyo stand-in did not start") from None
                time.sleep(0.2)
        yield f"http://localhost:{port}"
    finally:
        close_sessions()
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def production_site(live_server, klaviyo_elsewhere, settings) -> str:
    port = urlsplit(klaviyo_elsewhere).port
    settings.DEBUG = False
    settings.KLAVIYO_SANDBOX = False
    settings.KLAVIYO_CLIENT_ID = CLIENT_ID
    settings.KLAVIYO_CLIENT_SECRET = CLIENT_SECRET
    settings.KLAVIYO_AUTHORIZE_URL = f"{klaviyo_elsewhere}/sandbox/oauth/authorize"
    settings.KLAVIYO_BASE_URL = f"http://127.0.0.1:{port}/sandbox"
    settings.KLAVIYO_REDIRECT_URL = f"{live_server.url}/authorize"
    settings.TOKEN_ENCRYPTION_KEY = TEST_KEY
    return live_server.url


def raw(sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_signed_link_to_klaviyo_and_back_then_staff_read_profiles(page, production_site, klaviyo_elsewhere):
    # An unsigned link is refused outright.
    page.goto(f"{production_site}/start/prod-customer")
    expect(page.locator("h1")).to_have_text("This connect link is not valid")

    link = build_start_link("prod-customer")
    page.goto(link)
    expect(page.locator("#customer")).to_have_text("prod-customer")
    assert PkceCode.objects.count() == 0  # opening the link changed nothing
    page.click("#continue")
    expect(page).to_have_url(re.compile(re.escape(f"{klaviyo_elsewhere}/sandbox/oauth/authorize?")))
    pending = PkceCode.objects.get()
    (stored_verifier,) = raw("SELECT code_verifier FROM oauth_integration_pkcecode")[0]
    assert pending.code_verifier not in stored_verifier

    page.check(f"input[name=account][value={NORTHWIND}]")
    page.click("button[value=allow]")
    expect(page.locator("h1")).to_have_text("Klaviyo connected")
    expect(page.locator("#customer")).to_have_text("prod-customer")

    row = OAuthToken.objects.get(customer_identifier="prod-customer")
    stored = " ".join(raw("SELECT access_token, refresh_token FROM oauth_integration_oauthtoken")[0])
    assert row.access_token not in stored
    assert row.refresh_token not in stored
    assert not raw("SELECT * FROM oauth_integration_pkcecode")

    # The link worked once: opened again, it is refused with a clear page.
    page.goto(link)
    expect(page.locator("h1")).to_have_text("This connect link was already used")
    expect(page.locator(".card")).to_contain_text("Ask the site that sent you for a new one")

    # /profiles needs a login with the view permission in production mode.
    anonymous = page.request.get(f"{production_site}/profiles/prod-customer")
    assert anonymous.status == 401
    get_user_model().objects.create_superuser("staff", "staff@example.com", "correct-horse-battery")
    log_in_to_admin(page, production_site, "staff", "correct-horse-battery", "/admin/")
    response = page.request.get(f"{production_site}/profiles/prod-customer?page_size=5")
    assert response.status == 200
    assert [p["id"] for p in response.json()["data"]] == [p.id for p in profiles_of(NORTHWIND)[:5]]


def test_staff_without_the_permission_are_refused(page, production_site, make_connection):
    make_connection("secret-shop")
    get_user_model().objects.create_user("intern", "intern@example.com", "correct-horse-battery", is_staff=True)
    log_in_to_admin(page, production_site, "intern", "correct-horse-battery", "/admin/")

    page.goto(f"{production_site}/")
    expect(page.locator("h1")).to_have_text("You do not have permission to do this.")
    expect(page.locator("body")).not_to_contain_text("secret-shop")
    page.goto(f"{production_site}/?customer=attacker-co")
    expect(page.locator("h1")).to_have_text("You do not have permission to do this.")
    response = page.request.get(f"{production_site}/profiles/secret-shop")
    assert response.status == 403
    assert response.json()["errors"][0]["code"] == "permission_denied"
