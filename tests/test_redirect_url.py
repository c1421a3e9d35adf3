"""Without KLAVIYO_REDIRECT_URL the redirect URL comes from the request that starts the flow, kept for the exchange."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from responses import matchers

from klaviyo_sandbox.forms import AuthorizationRequestForm
from oauth_integration import checks
from oauth_integration.links import build_start_link, callback_url
from oauth_integration.models import OAuthToken, PkceCode
from tests.conftest import ACCOUNTS_URL, TOKEN_URL, accounts_body, open_start_link, token_body
from tests.sandbox.support import AUTHORIZE, NORTHWIND, authorize_params
from tests.test_admin import CONNECTIONS, post_action

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_redirect_url(settings):
    settings.KLAVIYO_REDIRECT_URL = ""


def start(client, **extra):
    link = build_start_link("cust-1", absolute=False)
    answer = open_start_link(client, link) if not extra else client.post(link, **extra)
    assert answer.status_code == 302, answer.content
    return {key: values[0] for key, values in parse_qs(urlsplit(answer["Location"]).query).items()}


def test_the_redirect_url_is_the_authorize_view_on_the_requests_origin(client):
    assert start(client)["redirect_uri"] == "http://testserver/authorize"
    assert PkceCode.objects.get().redirect_uri == "http://testserver/authorize"


def test_the_requests_host_and_scheme_make_the_redirect_url(client, settings):
    settings.ALLOWED_HOSTS = ["connect.example.com"]
    query = start(client, HTTP_HOST="connect.example.com", secure=True)
    assert query["redirect_uri"] == "https://connect.example.com/authorize"


def test_the_exchange_sends_the_redirect_url_the_authorization_sent_even_after_a_settings_change(
    client, mocked_responses, settings
):
    state = start(client)["state"]
    settings.KLAVIYO_REDIRECT_URL = "https://elsewhere.example.com/authorize"  # changed meanwhile
    mocked_responses.post(
        TOKEN_URL,
        match=[
            matchers.urlencoded_params_matcher(
                {"grant_type": "authorization_code", "redirect_uri": "http://testserver/authorize"},
                allow_blank=True,
                strict_match=False,
            )
        ],
        json=token_body("at-1", "rt-1"),
    )
    mocked_responses.get(ACCOUNTS_URL, json=accounts_body())

    answer = client.get("/authorize", {"code": "code-1", "state": state})

    assert answer.status_code == 200, answer.content
    assert OAuthToken.objects.get().access_token == "at-1"


def test_a_pending_authorization_stored_without_one_exchanges_with_the_setting(client, mocked_responses, settings):
    state = start(client)["state"]
    PkceCode.objects.update(redirect_uri="")  # made before the redirect URL was stored with it
    settings.KLAVIYO_REDIRECT_URL = "http://testserver/authorize"
    mocked_responses.post(
        TOKEN_URL,
        match=[
            matchers.urlencoded_params_matcher(
                {"redirect_uri": "http://testserver/authorize"}, allow_blank=True, strict_match=False
            )
        ],
        json=token_body(),
    )
    mocked_responses.get(ACCOUNTS_URL, json=accounts_body())
    assert client.get("/authorize", {"code": "code-1", "state": state}).status_code == 200


def test_absolute_start_links_need_a_request_or_the_setting(settings):
    with pytest.raises(ImproperlyConfigured, match=r"KLAVIYO_REDIRECT_URL is not set.*/authorize"):
        build_start_link("cust-1")
    with pytest.raises(ImproperlyConfigured, match="KLAVIYO_REDIRECT_URL"):
        callback_url()
    request = RequestFactory().get("/anything", HTTP_HOST="testserver", secure=True)
    assert build_start_link("cust-1", request=request).startswith("https://testserver/start/cust-1?token=")
    assert build_start_link("cust-1", absolute=False).startswith("/start/cust-1?token=")
    settings.KLAVIYO_REDIRECT_URL = "https://connect.example.com/authorize"
    assert build_start_link("cust-1", request=request).startswith("https://connect.example.com/start/cust-1?")


def test_the_admins_fresh_start_links_use_the_requests_origin(admin_client, make_connection):
    row = make_connection("cust-1")
    html = post_action(admin_client, "show_start_links", row).content.decode()
    assert re.search(r'value="http://testserver/start/cust-1\?token=[^"]+"', html)
    assert admin_client.get(CONNECTIONS).status_code == 200


def test_an_empty_redirect_url_passes_the_checks_and_check_deploy_asks_for_one(settings):
    assert checks.check_klaviyo_settings() == []
    [warning] = checks.check_redirect_url_registered()
    assert warning.id == "oauth_integration.W002"
    assert "/authorize" in warning.hint and "https://" in warning.hint
    settings.KLAVIYO_SANDBOX = True
    assert checks.check_redirect_url_registered() == []
    settings.KLAVIYO_SANDBOX = False
    settings.KLAVIYO_REDIRECT_URL = "https://connect.example.com/authorize"
    assert checks.check_redirect_url_registered() == []
    settings.KLAVIYO_REDIRECT_URL = "connect.example.com/authorize"
    assert [m.id for m in checks.check_klaviyo_settings()] == ["oauth_integration.E005"]


@pytest.mark.parametrize(
    ("redirect_uri", "registered"),
    [
        ("http://testserver/authorize", True),
        ("https://testserver/authorize", True),
        ("http://evil.example/authorize", False),
        ("http://testserver/authorize/", False),
        ("http://testserver/authorize?next=x", False),
        ("http://testserver/start/x", False),
        ("javascript://testserver/authorize", False),
    ],
)
def test_without_a_registered_url_the_sandbox_accepts_this_sites_callback_only(settings, redirect_uri, registered):
    settings.KLAVIYO_SANDBOX = True
    form = AuthorizationRequestForm(authorize_params(client_id="client-id", redirect_uri=redirect_uri))
    assert form.is_valid() is registered, form.errors


@pytest.mark.parametrize(
    ("allowed_hosts", "debug"),
    [(["localhost", "127.0.0.1", "[::1]"], False), ([], True)],  # the development defaults, then DEBUG's
)
@pytest.mark.parametrize("redirect_uri", ["http://localhost:8000/authorize", "http://[::1]:8000/authorize"])
def test_without_a_registered_url_the_sandbox_accepts_the_callback_on_a_development_server_port(
    client, settings, allowed_hosts, debug, redirect_uri
):
    settings.KLAVIYO_SANDBOX = True
    settings.ALLOWED_HOSTS, settings.DEBUG = allowed_hosts, debug
    host = urlsplit(redirect_uri).netloc  # runserver's own address
    params = authorize_params(redirect_uri=redirect_uri)

    assert client.get(AUTHORIZE, params, HTTP_HOST=host).status_code == 200
    answer = client.post(AUTHORIZE, {**params, "account": NORTHWIND, "decision": "allow"}, HTTP_HOST=host)

    assert answer.status_code == 302, answer.content
    assert answer["Location"].startswith(f"{redirect_uri}?code=")


@pytest.mark.parametrize("redirect_uri", ["http://evil.example:8000/authorize", "http://evil.example/authorize"])
def test_without_a_registered_url_the_sandbox_refuses_a_host_this_site_does_not_serve_at_any_port(
    client, settings, redirect_uri
):
    settings.KLAVIYO_SANDBOX = True
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
    response = client.get(AUTHORIZE, authorize_params(redirect_uri=redirect_uri))
    assert response.status_code == 400
    assert "<code>redirect_uri</code>" in response.content.decode()
