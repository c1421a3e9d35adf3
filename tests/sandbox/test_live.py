"""The real integration services against the sandbox, over real HTTP (live server, no mocks)."""

import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from klaviyo_sandbox.accounts import profiles_of
from klaviyo_sandbox.models import AccessToken, Grant
from oauth_integration import services
from oauth_integration.klaviyo import close_sessions, page_cursor
from oauth_integration.models import ConnectionEvent, OAuthToken

CUSTOMER = "live-shop"
BINDING = "browser-binding-of-the-test"


@pytest.fixture
def sandbox(live_server, settings):
    settings.KLAVIYO_SANDBOX = True
    settings.KLAVIYO_AUTHORIZE_URL = f"{live_server.url}/sandbox/oauth/authorize"
    settings.KLAVIYO_BASE_URL = f"{live_server.url}/sandbox"
    settings.KLAVIYO_REDIRECT_URL = f"{live_server.url}/authorize"
    settings.KLAVIYO_REFRESH_MARGIN_SECONDS = 0
    settings.KLAVIYO_MAX_RETRIES = 0
    settings.KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME = 1
    yield live_server
    # Drop the client's kept-alive connections, so the server threads serving them end
    # and release their database connections before the test database is dropped.
    close_sessions()


def allow_in_sandbox(authorize_url, account):
    """Play the customer on the sandbox's consent page; return (code, state) from the redirect."""
    parts = urlsplit(authorize_url)
    params = {key: values[0] for key, values in parse_qs(parts.query).items()}
    browser = Client()
    assert browser.get(parts.path, params).status_code == 200
    response = browser.post(parts.path, {**params, "account": account, "decision": "allow"})
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    return query["code"][0], query["state"][0]


def refreshes():
    return ConnectionEvent.objects.filter(connection__customer_identifier=CUSTOMER, kind="refreshed").count()


def ids(body):
    return [profile["id"] for profile in body["data"]]


@pytest.mark.parametrize("rotate", [False, True])
def test_integration_connects_refreshes_reads_and_disconnects_through_the_sandbox(sandbox, settings, rotate):
    settings.KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS = rotate
    expected = [profile.id for profile in profiles_of("SbxB4k")]

    authorize_url = services.begin_authorization(customer_identifier=CUSTOMER, browser_binding=BINDING)
    assert authorize_url.startswith(f"{sandbox.url}/sandbox/oauth/authorize?")
    code, state = allow_in_sandbox(authorize_url, "SbxB4k")
    connected = services.complete_authorization(state=state, code=code, browser_binding=BINDING)
    assert connected.klaviyo_account_id == "SbxB4k"
    assert connected.klaviyo_account_name == "Bluebell Bakery"
    first_refresh_token = OAuthToken.objects.get(customer_identifier=CUSTOMER).refresh_token

    # The access token lives one second: the next call must refresh before it reads.
    time.sleep(1.2)
    settings.KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME = 3600
    first_page = services.get_profiles(customer_identifier=CUSTOMER)
    assert ids(first_page) == expected[:20]
    row = OAuthToken.objects.get(customer_identifier=CUSTOMER)
    assert row.last_refreshed_at is not None
    assert (row.refresh_token != first_refresh_token) is rotate
    assert refreshes() == 1

    second_page = services.get_profiles(customer_identifier=CUSTOMER, cursor=page_cursor(first_page["links"]["next"]))
    assert ids(second_page) == expected[20:40]

    # Klaviyo rejects the access token before its expiry: one refresh, one retry.
    AccessToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    last_page = services.get_profiles(
        customer_identifier=CUSTOMER, page_size=20, cursor=page_cursor(second_page["links"]["next"])
    )
    assert ids(last_page) == expected[40:]
    assert last_page["links"]["next"] is None
    assert refreshes() == 2

    disconnected = services.disconnect(customer_identifier=CUSTOMER)
    assert disconnected.revoked_at_klaviyo
    assert Grant.objects.get().revoked_at is not None
    assert not AccessToken.objects.exists()
