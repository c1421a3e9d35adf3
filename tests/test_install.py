"""Installs that start in Klaviyo: the sandbox's app listing, /install, and the host's KLAVIYO_INSTALL_CUSTOMERS.

The browser is Django's test client; Klaviyo is the sandbox, mounted in this project: its
pages answer the test client, and the code exchange reaches it over HTTP on the live server.
"""

from urllib.parse import parse_qsl, urlsplit

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from klaviyo_sandbox import counters
from oauth_integration.models import OAuthToken
from oauth_integration.services.install import installable_customers
from oauth_integration.testing import sandbox_settings
from tests.conftest import open_start_link

# The host's function: which customers each user of this test site may connect.
CUSTOMERS = {"solo": ["shop-1"], "duo": ["shop-2", "shop-3"], "nobody": [], "odd": ["shop-1", "not valid", "shop-1"]}


def customers_of(user):
    return CUSTOMERS.get(user.get_username(), [])


@pytest.fixture
def sandbox(live_server, settings):
    """The sandbox as Klaviyo: its pages on the test client's host, its token endpoint on the live server."""
    for name, value in sandbox_settings(live_server.url).items():
        setattr(settings, name, value)
    settings.KLAVIYO_AUTHORIZE_URL = "http://testserver/sandbox/oauth/authorize"
    settings.KLAVIYO_REDIRECT_URL = "http://testserver/authorize"
    settings.KLAVIYO_INSTALL_CUSTOMERS = "tests.test_install.customers_of"
    counters.reset()


@pytest.fixture
def user(django_user_model):
    def make(name):
        return django_user_model.objects.create_user(name, password="pw")

    return make


def path_of(url):
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def install_from_the_listing(client):
    """Press Install on the sandbox's app listing: where the app's install URL sends the browser."""
    listing = client.get("/sandbox/apps")
    assert listing.status_code == 200
    assert b'id="install" href="/install"' in listing.content
    return client.get("/install")


def allow_in_the_sandbox(client, start_link):
    """Continue from the start page, allow on the sandbox's consent page, come back to /authorize."""
    to_klaviyo = open_start_link(client, start_link)
    assert to_klaviyo.status_code == 302
    assert client.get(path_of(to_klaviyo["Location"])).status_code == 200  # the consent page
    request = dict(parse_qsl(urlsplit(to_klaviyo["Location"]).query))
    back = client.post("/sandbox/oauth/authorize", {**request, "account": "SbxB4k", "decision": "allow"})
    assert back.status_code == 302
    return client.get(path_of(back["Location"]))


@pytest.mark.django_db(transaction=True)
def test_a_user_with_one_customer_goes_from_the_listing_to_its_confirmation_page_and_connects(sandbox, client, user):
    client.force_login(user("solo"))
    response = install_from_the_listing(client)
    assert response.status_code == 302
    assert response["Location"].startswith("/start/shop-1?token=")

    connected = allow_in_the_sandbox(client, response["Location"])

    assert connected.status_code == 200
    assert b"Bluebell Bakery" in connected.content
    connection = OAuthToken.objects.get(customer_identifier="shop-1")
    assert connection.is_active and connection.klaviyo_account_id == "SbxB4k"


@pytest.mark.django_db(transaction=True)
def test_a_user_with_two_customers_chooses_one_and_connects_it(sandbox, client, user):
    client.force_login(user("duo"))
    choice = install_from_the_listing(client)
    assert choice.status_code == 200
    assert b'href="?customer=shop-2"' in choice.content and b'href="?customer=shop-3"' in choice.content

    chosen = client.get("/install?customer=shop-3")
    assert chosen.status_code == 302 and chosen["Location"].startswith("/start/shop-3?token=")
    assert allow_in_the_sandbox(client, chosen["Location"]).status_code == 200

    assert list(OAuthToken.objects.values_list("customer_identifier", flat=True)) == ["shop-3"]


@pytest.mark.django_db(transaction=True)
def test_an_anonymous_visitor_logs_in_comes_back_and_connects(sandbox, client, user):
    solo = user("solo")
    solo.is_staff = True  # the example site's LOGIN_URL is the admin's login page
    solo.save()
    to_login = install_from_the_listing(client)
    assert to_login.status_code == 302
    login_page = urlsplit(to_login["Location"])
    assert login_page.path == "/admin/login/" and dict(parse_qsl(login_page.query)) == {"next": "/install"}

    logged_in = client.post(path_of(to_login["Location"]), {"username": "solo", "password": "pw", "next": "/install"})
    assert logged_in.status_code == 302 and logged_in["Location"] == "/install"
    start = client.get("/install")
    assert start["Location"].startswith("/start/shop-1?token=")
    assert allow_in_the_sandbox(client, start["Location"]).status_code == 200

    assert OAuthToken.objects.get().customer_identifier == "shop-1"


@pytest.mark.django_db
def test_a_user_with_no_customer_gets_a_403_page(sandbox, client, user):
    client.force_login(user("nobody"))
    response = install_from_the_listing(client)
    assert response.status_code == 403
    assert b"No account to connect" in response.content


@pytest.mark.django_db
def test_a_customer_that_is_not_the_users_is_refused(sandbox, client, user):
    client.force_login(user("duo"))
    response = client.get("/install?customer=shop-1")
    assert response.status_code == 403
    assert not OAuthToken.objects.exists()


@pytest.mark.django_db
def test_the_start_link_is_made_for_the_user_who_installed(sandbox, client, user, django_user_model):
    client.force_login(user("solo"))
    link = client.get("/install")["Location"]
    client.force_login(user("duo"))
    assert client.get(link).status_code == 403  # another user cannot use it


@pytest.mark.django_db
def test_install_is_a_404_until_the_host_names_its_function(client, settings, user):
    settings.KLAVIYO_INSTALL_CUSTOMERS = ""
    client.force_login(user("solo"))
    assert client.get("/install").status_code == 404


@pytest.mark.django_db
def test_the_hosts_list_is_cleaned_of_repeats_and_invalid_identifiers(settings, user):
    settings.KLAVIYO_INSTALL_CUSTOMERS = "tests.test_install.customers_of"
    assert installable_customers(user("odd")) == ["shop-1"]


@pytest.mark.django_db  # Django 6's check command also runs the database checks
def test_a_function_that_cannot_be_imported_is_a_system_check_error(settings):
    settings.KLAVIYO_INSTALL_CUSTOMERS = "tests.test_install.no_such_function"
    with pytest.raises(SystemCheckError, match="KLAVIYO_INSTALL_CUSTOMERS"):
        call_command("check")


def test_the_listing_has_no_install_button_when_the_sandbox_is_off(client, settings):
    settings.KLAVIYO_SANDBOX = False
    assert client.get("/sandbox/apps").status_code == 404
