"""A host project mounts the integration and the sandbox under its own prefixes; KLAVIYO_REDIRECT_URL may be empty."""

import io
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from klaviyo_sandbox.accounts import ACCOUNTS
from oauth_integration import services
from oauth_integration.models import OAuthToken, PkceCode
from tests.conftest import grant_permissions
from tests.prefixed_urls import INTEGRATION_PREFIX, SANDBOX_PREFIX

pytest_plugins = ["oauth_integration.testing"]
pytestmark = [pytest.mark.urls("tests.prefixed_urls"), pytest.mark.django_db(transaction=True)]

BLUEBELL = next(account.id for account in ACCOUNTS if account.organization_name == "Bluebell Bakery")
CALLBACK = f"http://testserver{INTEGRATION_PREFIX}authorize"


def query(url):
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def store_owner(django_user_model):
    return django_user_model.objects.create_user("store-owner", password="not-used-123")


def press_connect(client, owner):
    """The host's "Connect Klaviyo" button, its start link's page and the page's button: the sandbox's consent URL."""
    client.force_login(owner)
    link = client.get("/store/klaviyo/connect")
    assert link.status_code == 302
    assert link["Location"].startswith(f"http://testserver{INTEGRATION_PREFIX}start/store-{owner.pk}?token=")
    page = client.get(link["Location"])
    assert page.status_code == 200
    assert f'action="{INTEGRATION_PREFIX}start/store-{owner.pk}?token=' in page.content.decode()
    to_klaviyo = client.post(link["Location"])
    assert to_klaviyo.status_code == 302, to_klaviyo.content
    return to_klaviyo["Location"]


def consent(client, authorize_url, decision):
    """The customer on the sandbox's consent page (served under its own prefix): Allow or Deny."""
    page = client.get(authorize_url)
    assert page.status_code == 200, page.content
    html = page.content.decode()
    action = re.search(r'<form method="post" action="([^"]+)" id="consent">', html)[1]
    assert action == f"{SANDBOX_PREFIX}oauth/authorize"
    assert f"<code>{SANDBOX_PREFIX}</code>" in html
    answer = client.post(action, {**query(authorize_url), "account": BLUEBELL, "decision": decision})
    assert answer.status_code == 302
    return answer["Location"]


def test_a_customer_connects_through_the_sandbox_under_prefixes_and_returns_to_the_host_page(
    klaviyo_sandbox, settings, store_owner
):
    settings.KLAVIYO_REDIRECT_URL = ""  # derived from the request that starts the flow
    client = Client()

    authorize_url = press_connect(client, store_owner)
    assert authorize_url.startswith(f"{klaviyo_sandbox.url}/oauth/authorize?")
    assert urlsplit(klaviyo_sandbox.url).path == SANDBOX_PREFIX.rstrip("/")
    assert query(authorize_url)["redirect_uri"] == CALLBACK
    assert PkceCode.objects.get().redirect_uri == CALLBACK

    back = consent(client, authorize_url, "allow")
    assert back.startswith(f"{CALLBACK}?code=")
    returned = client.get(back)  # the code exchange (over HTTP, to the sandbox) sends the same redirect_uri

    assert returned.status_code == 302, returned.content
    assert returned["Location"] == f"/store/settings?klaviyo=connected&klaviyo_customer=store-{store_owner.pk}"
    assert client.get(returned["Location"]).content == b"Store settings; Klaviyo: connected"
    connection = OAuthToken.objects.get()
    assert (connection.customer_identifier, connection.klaviyo_account_id) == (f"store-{store_owner.pk}", BLUEBELL)
    body = services.call_klaviyo(
        customer_identifier=f"store-{store_owner.pk}", path="/api/profiles", params={"page[size]": "3"}
    )
    assert len(body["data"]) == 3
    assert body["links"]["self"].startswith(f"{klaviyo_sandbox.url}/api/profiles")


def test_a_declined_connection_returns_to_the_host_page_under_prefixes(klaviyo_sandbox, settings, store_owner):
    settings.KLAVIYO_REDIRECT_URL = ""
    client = Client()

    back = consent(client, press_connect(client, store_owner), "deny")
    returned = client.get(back)

    assert returned["Location"] == f"/store/settings?klaviyo=declined&klaviyo_customer=store-{store_owner.pk}"
    assert not OAuthToken.objects.exists()


def test_a_configured_redirect_url_under_the_prefix_is_sent_as_it_is(klaviyo_sandbox, settings, store_owner):
    # sandbox_settings registered the live server's URL of the prefixed callback.
    assert settings.KLAVIYO_REDIRECT_URL.endswith(f"{INTEGRATION_PREFIX}authorize")
    client = Client()
    client.force_login(store_owner)
    link = client.get("/store/klaviyo/connect")["Location"]
    # The start link is on the redirect URL's origin, where the callback (and so the session) will be.
    assert link.startswith(f"{klaviyo_sandbox.url.removesuffix(SANDBOX_PREFIX.rstrip('/'))}{INTEGRATION_PREFIX}start/")


def test_the_landing_page_admin_links_and_the_start_link_command_use_the_prefix(settings, django_user_model):
    staff = grant_permissions(
        django_user_model.objects.create_user("staff", password="not-used-123", is_staff=True),
        "view_oauthtoken",
        "connect_customer",
    )
    client = Client()
    client.force_login(staff)
    home = client.get(INTEGRATION_PREFIX)
    assert home.status_code == 200
    assert f'action="{INTEGRATION_PREFIX}"' in home.content.decode()
    made = client.get(INTEGRATION_PREFIX, {"customer": "cust-1"})
    assert made.status_code == 302
    assert made["Location"].startswith(f"{INTEGRATION_PREFIX}start/cust-1?token=")

    settings.KLAVIYO_REDIRECT_URL = "https://connect.example.com/integrations/klaviyo/authorize"
    out = io.StringIO()
    call_command("start_link", "cust-1", stdout=out)
    assert out.getvalue().startswith(f"https://connect.example.com{INTEGRATION_PREFIX}start/cust-1?token=")
    settings.KLAVIYO_REDIRECT_URL = ""
    with pytest.raises(CommandError, match=f"KLAVIYO_REDIRECT_URL is not set.*{INTEGRATION_PREFIX}authorize"):
        call_command("start_link", "cust-1")
