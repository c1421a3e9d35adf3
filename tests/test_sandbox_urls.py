"""Sandbox mode without KLAVIYO_AUTHORIZE_URL or KLAVIYO_BASE_URL: its URLs come from the request and reverse()."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from klaviyo_sandbox.models import AuthorizationCode
from oauth_integration.conf import conf
from oauth_integration.links import build_start_link
from oauth_integration.models import OAuthToken
from tests.conftest import accounts_body, token_body

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sandbox_without_urls(settings):
    settings.KLAVIYO_SANDBOX = True
    settings.KLAVIYO_AUTHORIZE_URL = ""
    settings.KLAVIYO_BASE_URL = None
    settings.KLAVIYO_REDIRECT_URL = ""
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]


def test_the_consent_page_and_the_exchange_are_on_the_host_and_port_the_browser_used(client, mocked_responses):
    link = urlsplit(build_start_link("cust-1", absolute=False))
    path = f"{link.path}?{link.query}"
    assert client.get(path, HTTP_HOST="localhost:8123").status_code == 200
    answer = client.post(path, HTTP_HOST="localhost:8123")
    location = urlsplit(answer["Location"])
    query = {key: values[0] for key, values in parse_qs(location.query).items()}
    assert (location.scheme, location.netloc, location.path) == ("http", "localhost:8123", "/sandbox/oauth/authorize")
    assert query["redirect_uri"] == "http://localhost:8123/authorize"

    _sandbox_code(query["redirect_uri"])  # the sandbox's consent page issued the code
    mocked_responses.post("http://localhost:8123/sandbox/oauth/token", json=token_body("at-1", "rt-1"))
    mocked_responses.get("http://localhost:8123/sandbox/api/accounts", json=accounts_body())
    answer = client.get("/authorize", {"code": "code-1", "state": query["state"]}, HTTP_HOST="localhost:8123")

    assert answer.status_code == 200, answer.content
    assert OAuthToken.objects.get().access_token == "at-1"


def _sandbox_code(redirect_uri):
    now = timezone.now()
    AuthorizationCode.objects.create(
        code_hash=f"{abs(hash(redirect_uri)):064d}"[:64],
        client_id="sandbox-client-id",
        redirect_uri=redirect_uri,
        scopes="accounts:read",
        code_challenge="c" * 43,
        account_id="SbxN7w",
        expires_at=now,
    )


def test_outside_a_request_the_api_is_where_a_browser_last_connected_through_the_sandbox(settings):
    with pytest.raises(ImproperlyConfigured, match="KLAVIYO_REDIRECT_URL"):
        conf.base_url  # noqa: B018 (nobody connected yet: the address is unknown)

    _sandbox_code("http://127.0.0.1:8555/authorize")
    assert conf.base_url == "http://127.0.0.1:8555/sandbox"

    settings.KLAVIYO_REDIRECT_URL = "http://localhost:9000/authorize"
    assert conf.base_url == "http://localhost:9000/sandbox"
    assert conf.authorize_url_for(conf.redirect_url) == "http://localhost:9000/sandbox/oauth/authorize"

    settings.KLAVIYO_BASE_URL = "http://sandbox.example.com/k"
    settings.KLAVIYO_AUTHORIZE_URL = "http://sandbox.example.com/k/oauth/authorize"
    assert conf.base_url == "http://sandbox.example.com/k"
    assert conf.authorize_url_for(conf.redirect_url) == "http://sandbox.example.com/k/oauth/authorize"


def test_outside_sandbox_mode_nothing_is_worked_out(settings):
    settings.KLAVIYO_SANDBOX = False
    assert conf.base_url == "https://a.klaviyo.com"
    assert conf.authorize_url_for("http://localhost:8000/authorize") == "https://www.klaviyo.com/oauth/authorize"
