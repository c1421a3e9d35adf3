from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from oauth_integration import services
from oauth_integration.links import verify_start_link
from oauth_integration.models import ConnectionStatus, FailureReason
from tests.conftest import grant_permissions

pytestmark = pytest.mark.django_db


@pytest.fixture
def relaxed(settings, open_access):
    settings.KLAVIYO_SANDBOX = True


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user("staff", password="pw-for-tests", is_staff=True)
    client.force_login(grant_permissions(user, "view_oauthtoken", "connect_customer"))
    return client


def start_token(location):
    return parse_qs(urlsplit(location).query)["token"][0]


def test_list_connections_returns_summaries_newest_first_without_secrets(make_connection):
    now = timezone.now()
    make_connection("older", connected_at=now - timedelta(days=2), klaviyo_account_name="Old Shop")
    make_connection(
        "newer",
        connected_at=now,
        status=ConnectionStatus.NEEDS_REAUTHORIZATION,
        failure_reason=FailureReason.REVOKED,
        klaviyo_account_id="SbxN7w",
    )
    summaries = services.list_connections()
    assert [s.customer_identifier for s in summaries] == ["newer", "older"]
    assert summaries[0].get_status_display() == "Needs reauthorization"
    assert summaries[0].get_failure_reason_display() == "Revoked or uninstalled in Klaviyo"
    assert summaries[0].klaviyo_account_id == "SbxN7w"
    assert summaries[1].klaviyo_account_name == "Old Shop"
    assert {"access_token", "refresh_token"} <= summaries[0].get_deferred_fields()  # never loaded


def test_home_offers_the_connect_form_and_admin_help(client, relaxed):
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="customer"' in html
    assert "No customer has connected yet." in html
    assert 'href="/admin/"' in html
    assert "manage.py createsuperuser" in html


def test_home_lists_connections_with_status_and_links_but_no_tokens(client, relaxed, make_connection):
    make_connection("shop-1", klaviyo_account_name="Northwind Outfitters")
    make_connection("shop-2", status=ConnectionStatus.REVOKED)
    html = client.get("/").content.decode()
    assert "shop-1" in html
    assert "Northwind Outfitters" in html
    assert "Revoked" in html
    assert 'href="/profiles/shop-1"' in html
    assert 'href="/?customer=shop-2"' in html  # a fresh link is made on click
    assert "at-shop-1" not in html
    assert "rt-shop-1" not in html


def test_home_sends_the_typed_identifier_to_a_signed_start_link(client, relaxed):
    response = client.get("/", {"customer": "acme-store-42"})
    assert response.status_code == 302
    assert urlsplit(response["Location"]).path == "/start/acme-store-42"
    verify_start_link("acme-store-42", start_token(response["Location"]))


@pytest.mark.parametrize("customer", ["", "has space", "x" * 256, "semi;colon"])
def test_home_rejects_an_invalid_identifier(client, relaxed, customer):
    response = client.get("/", {"customer": customer})
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()


def test_home_announces_sandbox_mode(client, settings, open_access):
    settings.KLAVIYO_SANDBOX = True
    html = client.get("/").content.decode()
    assert "SANDBOX MODE" in html


def test_home_outside_sandbox_asks_anonymous_users_to_log_in_without_development_hints(client, make_connection):
    make_connection("secret-shop")
    response = client.get("/", {"customer": "someone"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'href="/admin/login/?next=/"' in html
    assert "secret-shop" not in html
    assert 'name="customer"' not in html
    assert "createsuperuser" not in html
    assert ".venv" not in html


def test_home_outside_sandbox_is_for_users_with_permissions_only(client, make_connection):
    make_connection("secret-shop")
    user = get_user_model().objects.create_user("plain", password="pw-for-tests")
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 403
    assert "secret-shop" not in response.content.decode()


def test_home_outside_sandbox_gives_permitted_staff_signed_links_only(staff_client, make_connection):
    make_connection("shop-1")
    html = staff_client.get("/").content.decode()
    assert "shop-1" in html
    assert "createsuperuser" not in html
    assert 'href="/start/shop-1' not in html
    response = staff_client.get("/", {"customer": "new-shop"})
    assert response.status_code == 302
    link = verify_start_link("new-shop", start_token(response["Location"]))
    assert link.user_id == str(get_user_model().objects.get(username="staff").pk)
