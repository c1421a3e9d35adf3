"""Sending the customer back to the host product after connecting, or declining."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from oauth_integration import checks
from oauth_integration.exceptions import InvalidReturnURL
from oauth_integration.links import build_start_link
from oauth_integration.models import OAuthToken, PkceCode
from tests.conftest import ACCOUNTS_URL, TOKEN_URL, accounts_body, open_start_link, token_body

pytestmark = pytest.mark.django_db


def begin(browser: Client, **link_options) -> str:
    """Open a start link and press its button; the state Klaviyo will send back."""
    answer = open_start_link(browser, build_start_link("cust-1", **link_options))
    assert answer.status_code == 302
    return parse_qs(urlsplit(answer["Location"]).query)["state"][0]


def klaviyo_grants(mocked_responses) -> None:
    mocked_responses.post(TOKEN_URL, json=token_body("at-1", "rt-1"))
    mocked_responses.get(ACCOUNTS_URL, json=accounts_body())


@pytest.mark.parametrize(
    ("next_url", "lands_on"),
    [
        ("/settings/klaviyo", "/settings/klaviyo?klaviyo=connected&klaviyo_customer=cust-1"),
        ("/settings?tab=apps&klaviyo=old", "/settings?tab=apps&klaviyo=connected&klaviyo_customer=cust-1"),
        ("http://testserver/settings", "http://testserver/settings?klaviyo=connected&klaviyo_customer=cust-1"),
    ],
)
def test_a_same_origin_return_url_receives_the_browser_after_connecting(mocked_responses, next_url, lands_on):
    browser = Client()
    state = begin(browser, next=next_url)
    klaviyo_grants(mocked_responses)

    response = browser.get("/authorize", {"code": "code-1", "state": state})

    assert response.status_code == 302
    assert response["Location"] == lands_on
    assert OAuthToken.objects.get().refresh_token == "rt-1"


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/phish",
        "//evil.example/phish",
        "///evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "settings",
        "https://app.example.com/settings",  # not listed in KLAVIYO_RETURN_URL_HOSTS
        "/" + "a" * 3000,
    ],
)
def test_foreign_and_scheme_relative_return_urls_are_refused_when_the_link_is_made(next_url):
    with pytest.raises(InvalidReturnURL, match="path on this site"):
        build_start_link("cust-1", next=next_url)


def test_hosts_listed_in_a_setting_are_accepted_over_https_when_https_is_on(settings):
    settings.KLAVIYO_RETURN_URL_HOSTS = ["app.example.com"]
    assert build_start_link("cust-1", next="https://app.example.com/settings")
    settings.SESSION_COOKIE_SECURE = True
    with pytest.raises(InvalidReturnURL, match="over https"):
        build_start_link("cust-1", next="http://app.example.com/settings")


def test_declining_sends_the_browser_back_with_the_declined_status(client):
    state = begin(client, next="/settings/klaviyo")

    response = client.get("/authorize", {"error": "access_denied", "state": state})

    assert response.status_code == 302
    assert response["Location"] == "/settings/klaviyo?klaviyo=declined&klaviyo_customer=cust-1"
    assert PkceCode.objects.count() == OAuthToken.objects.count() == 0


def test_another_browsers_state_does_not_learn_the_return_url(client):
    state = begin(client, next="/settings/klaviyo")
    response = Client().get("/authorize", {"error": "access_denied", "state": state})
    assert response.status_code == 403
    assert b"Connection declined" in response.content
    assert b"/settings/klaviyo" not in response.content
    assert PkceCode.objects.count() == 0  # cancelled: its own browser can no longer complete it


def test_the_default_return_url_serves_links_that_name_none(settings, mocked_responses):
    settings.KLAVIYO_RETURN_URL = "/account/integrations"
    browser = Client()
    state = begin(browser)
    klaviyo_grants(mocked_responses)
    response = browser.get("/authorize", {"code": "code-1", "state": state})
    assert response["Location"] == "/account/integrations?klaviyo=connected&klaviyo_customer=cust-1"


def test_a_return_url_no_longer_allowed_is_ignored_at_the_callback(settings, mocked_responses):
    settings.KLAVIYO_RETURN_URL_HOSTS = ["app.example.com"]
    browser = Client()
    state = begin(browser, next="http://app.example.com/settings")
    settings.KLAVIYO_RETURN_URL_HOSTS = []
    klaviyo_grants(mocked_responses)

    response = browser.get("/authorize", {"code": "code-1", "state": state})

    assert response.status_code == 200
    assert b"Klaviyo connected" in response.content


def test_a_default_return_url_elsewhere_is_a_check_error(settings):
    settings.KLAVIYO_RETURN_URL = "https://evil.example/"
    assert [m.id for m in checks.check_klaviyo_settings()] == ["oauth_integration.E013"]


UNPARSABLE_OR_CONTROL = [
    pytest.param("https://evil.com\uff03@app.example.com/", id="fullwidth-number-sign"),
    pytest.param("https://evil.com\u2100@app.example.com", id="account-of-sign"),
    pytest.param("/\x00/evil.com", id="nul"),
    pytest.param("/settings\x7f", id="delete"),
    pytest.param("/settings\x85", id="c1-next-line"),
]


@pytest.mark.parametrize("next_url", UNPARSABLE_OR_CONTROL)
def test_return_urls_python_cannot_parse_or_with_control_characters_are_refused(settings, next_url):
    settings.KLAVIYO_RETURN_URL_HOSTS = ["app.example.com"]
    with pytest.raises(InvalidReturnURL, match="path on this site"):
        build_start_link("cust-1", next=next_url)
    settings.KLAVIYO_RETURN_URL = next_url
    assert [m.id for m in checks.check_klaviyo_settings()] == ["oauth_integration.E013"]


@pytest.mark.parametrize("next_url", UNPARSABLE_OR_CONTROL)
def test_the_start_link_command_refuses_them_with_a_clear_message(settings, next_url):
    settings.KLAVIYO_RETURN_URL_HOSTS = ["app.example.com"]
    with pytest.raises(CommandError, match="return URL"):
        call_command("start_link", "cust-1", "--next", next_url)


def test_a_default_return_url_python_cannot_parse_sends_nobody_anywhere(settings, mocked_responses):
    settings.KLAVIYO_RETURN_URL_HOSTS = ["app.example.com"]
    browser = Client()
    state = begin(browser)
    settings.KLAVIYO_RETURN_URL = "https://evil.com\uff03@app.example.com/"
    klaviyo_grants(mocked_responses)

    response = browser.get("/authorize", {"code": "code-1", "state": state})

    assert response.status_code == 200
    assert b"Klaviyo connected" in response.content
