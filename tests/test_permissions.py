"""Who may read profiles, list connections and make start links: permissions, not merely is_staff."""

import pytest
from django.test import Client

from tests.conftest import PROFILES_URL, grant_permissions, profiles_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def login(django_user_model):
    """A logged-in browser for a staff user holding only ``codenames`` (superuser=True: everything)."""

    def log_in(*codenames: str, superuser: bool = False) -> Client:
        user = django_user_model.objects.create_user(
            f"user-{django_user_model.objects.count()}", password="not-used-123", is_staff=True, is_superuser=superuser
        )
        browser = Client()
        browser.force_login(grant_permissions(user, *codenames))
        return browser

    return log_in


def test_staff_without_permissions_read_no_profiles_list_nothing_and_make_no_links(login, make_connection):
    make_connection("cust-A")
    staff = login()

    profiles = staff.get("/profiles/cust-A")
    landing = staff.get("/")
    mint = staff.get("/", {"customer": "attacker-co"})

    assert profiles.status_code == 403
    assert profiles.json()["errors"][0]["code"] == "permission_denied"
    assert "@example.com" not in profiles.content.decode()
    assert landing.status_code == 403
    assert "cust-A" not in landing.content.decode()
    assert mint.status_code == 403
    assert "Location" not in mint
    assert "/start/" not in mint.content.decode()


def test_the_view_permission_reads_profiles_and_lists_connections_but_makes_no_links(
    login, make_connection, mocked_responses
):
    make_connection("cust-A")
    mocked_responses.get(PROFILES_URL, json=profiles_body("p1"))
    viewer = login("view_oauthtoken")

    assert viewer.get("/profiles/cust-A").status_code == 200
    landing = viewer.get("/").content.decode()
    assert "cust-A" in landing
    assert 'name="customer"' not in landing
    assert "Reconnect" not in landing
    assert viewer.get("/", {"customer": "attacker-co"}).status_code == 403


def test_the_connect_permission_makes_links_but_lists_nothing(login, make_connection):
    make_connection("cust-A")
    connector = login("connect_customer")

    landing = connector.get("/").content.decode()
    assert 'name="customer"' in landing
    assert "cust-A" not in landing
    minted = connector.get("/", {"customer": "new-shop"})
    assert minted.status_code == 302
    assert minted["Location"].startswith("/start/new-shop?token=")
    assert connector.get("/profiles/cust-A").status_code == 403


def test_superusers_keep_everything(login, make_connection, mocked_responses):
    make_connection("cust-A")
    mocked_responses.get(PROFILES_URL, json=profiles_body("p1"))
    root = login(superuser=True)

    assert root.get("/profiles/cust-A").status_code == 200
    assert "cust-A" in root.get("/").content.decode()
    assert root.get("/", {"customer": "new-shop"}).status_code == 302


def test_debug_with_real_credentials_relaxes_nothing(client, settings, make_connection):
    settings.DEBUG = True  # sandbox stays off: credentials are set
    make_connection("cust-A")

    assert client.get("/profiles/cust-A").status_code == 401
    unsigned = client.get("/start/cust-A")
    assert unsigned.status_code == 403
    assert b"not signed" in unsigned.content
    assert client.get("/").status_code == 200  # the log-in page
    assert "cust-A" not in client.get("/").content.decode()
