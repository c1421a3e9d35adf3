"""Start links: opening one changes nothing, its button uses it once, and it can be bound to a user."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from oauth_integration.exceptions import InvalidCustomerIdentifier
from oauth_integration.forms import ConnectForm
from oauth_integration.links import build_start_link
from oauth_integration.models import PkceCode
from oauth_integration.validators import validate_customer_identifier

pytestmark = pytest.mark.django_db


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def stored() -> tuple[int, int]:
    return PkceCode.objects.count(), Session.objects.count()


def test_opening_a_start_link_shows_the_customer_and_changes_nothing():
    link = path_of(build_start_link("cust-A"))

    for _ in range(20):  # a person, a link scanner, a preview bot: none of them keep cookies
        page = Client().get(link)
        assert page.status_code == 200
    head = Client().head(link)

    html = page.content.decode()
    assert 'Connect Klaviyo to <span id="customer">cust-A</span>' in html
    assert re.search(r'<form method="post" action="/start/cust-A\?token=[^"]+"', html)
    assert 'name="csrfmiddlewaretoken"' in html
    assert "profiles:read" in html
    assert head.status_code == 200
    assert stored() == (0, 0)


def test_the_button_uses_the_link_once_and_a_second_use_is_refused_clearly():
    link = path_of(build_start_link("cust-A"))
    first, second = Client(), Client()
    assert first.get(link).status_code == 200

    used = first.post(link)
    again = second.post(link)
    reopened = second.get(link)

    assert used.status_code == 302
    assert used["Location"].startswith("https://www.klaviyo.com/oauth/authorize?")
    for refused in (again, reopened):
        assert refused.status_code == 410
        assert b"already used" in refused.content
        assert b"Ask the site that sent you for a new one" in refused.content
    assert stored() == (1, 1)


def test_the_button_needs_the_pages_csrf_token():
    link = path_of(build_start_link("cust-A"))
    browser = Client(enforce_csrf_checks=True)
    page = browser.get(link)

    forged = browser.post(link)
    assert forged.status_code == 403
    assert stored() == (0, 0)

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]
    assert browser.post(link, {"csrfmiddlewaretoken": token}).status_code == 302
    assert PkceCode.objects.count() == 1


def test_a_link_made_for_a_user_works_for_that_user_only(django_user_model):
    alice = django_user_model.objects.create_user("alice", password="not-used-123")
    bob = django_user_model.objects.create_user("bob", password="not-used-123")
    link = path_of(build_start_link("cust-A", user=alice))

    anonymous = Client().get(link)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/?next=/start/cust-A")

    intruder = Client()
    intruder.force_login(bob)
    for answer in (intruder.get(link), intruder.post(link)):
        assert answer.status_code == 403
        assert b"made for another user" in answer.content
    assert PkceCode.objects.count() == 0

    owner = Client()
    owner.force_login(alice)
    assert owner.get(link).status_code == 200
    assert owner.post(link).status_code == 302


def test_start_links_live_ten_minutes_by_default(settings):
    settings.KLAVIYO_START_LINK_MAX_AGE = None  # unset: the default
    page = Client().get(path_of(build_start_link("cust-A")))

    until = re.search(r"until (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", page.content.decode())
    assert until, page.status_code
    expires = datetime.strptime(until[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert abs(expires - (timezone.now() + timedelta(minutes=10))) < timedelta(minutes=1)


def test_start_link_command_binds_a_user_and_a_return_url(django_user_model, capsys):
    alice = django_user_model.objects.create_user("alice", password="not-used-123")
    call_command("start_link", "cust-A", "--user", "alice", "--next", "/settings/klaviyo")
    link = path_of(capsys.readouterr().out.strip())

    assert Client().get(link).status_code == 302  # anonymous: off to log in first
    owner = Client()
    owner.force_login(alice)
    assert owner.post(link).status_code == 302
    assert PkceCode.objects.get().return_url == "/settings/klaviyo"

    with pytest.raises(CommandError, match="No user is called 'nobody'"):
        call_command("start_link", "cust-A", "--user", "nobody")


# --- identifiers a URL would rewrite --------------------------------------------------------


@pytest.mark.parametrize("identifier", [".", ".."])
def test_dot_segments_are_refused_everywhere_a_customer_identifier_enters(client, identifier):
    with pytest.raises(InvalidCustomerIdentifier, match=r"cannot be \. or \.\."):
        validate_customer_identifier(identifier)
    with pytest.raises(InvalidCustomerIdentifier):
        build_start_link(identifier)
    with pytest.raises(CommandError, match=r"cannot be \. or \.\."):
        call_command("start_link", identifier)
    assert not ConnectForm({"customer": identifier}).is_valid()
    response = client.get(f"/start/{identifier}")
    assert response.status_code == 400
    assert stored() == (0, 0)


@pytest.mark.parametrize("identifier", ["a.b", ".hidden", "a..b", "...", "v1.2"])
def test_identifiers_with_dots_that_urls_keep_are_accepted(identifier):
    assert validate_customer_identifier(identifier) == identifier
    assert urlsplit(build_start_link(identifier)).path == f"/start/{identifier}"
