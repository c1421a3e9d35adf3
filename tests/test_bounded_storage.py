"""Storage stays bounded: pending authorizations are capped, and purge_expired clears what expired."""

from datetime import timedelta
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from oauth_integration.links import build_start_link
from oauth_integration.models import ConnectionEvent, PkceCode
from tests.conftest import open_start_link

pytestmark = pytest.mark.django_db


def test_one_link_opened_many_times_without_cookies_stores_nothing_and_its_button_one_authorization():
    link = build_start_link("cust-A")
    parts = urlsplit(link)
    for _ in range(20):
        Client().get(f"{parts.path}?{parts.query}")
    assert (PkceCode.objects.count(), Session.objects.count()) == (0, 0)

    answers = [Client().post(f"{parts.path}?{parts.query}").status_code for _ in range(20)]

    assert answers.count(302) == 1
    assert (PkceCode.objects.count(), Session.objects.count()) == (1, 1)


def test_one_browser_keeps_a_bounded_number_of_pending_authorizations(settings):
    settings.KLAVIYO_MAX_PENDING_PER_BROWSER = 5
    browser = Client()
    for number in range(20):
        assert open_start_link(browser, build_start_link(f"cust-{number}")).status_code == 302
    assert list(PkceCode.objects.order_by("created_at", "id").values_list("customer_identifier", flat=True)) == [
        f"cust-{number}" for number in range(15, 20)
    ]


def test_an_unsigned_sandbox_link_keeps_a_bounded_number_of_pending_authorizations(settings, open_access):
    settings.KLAVIYO_SANDBOX = True
    settings.KLAVIYO_MAX_PENDING_PER_LINK = 3
    settings.KLAVIYO_MAX_PENDING_PER_BROWSER = 5
    same_browser = Client()
    for _ in range(20):
        assert same_browser.get("/start/cust-A").status_code == 302
    for _ in range(20):
        assert Client().get("/start/cust-A").status_code == 302
    assert PkceCode.objects.filter(customer_identifier="cust-A").count() == 3


def session(expires_in: timedelta) -> str:
    store = SessionStore()
    store["anything"] = 1
    store.set_expiry(timezone.now() + expires_in)
    store.save()
    return store.session_key


def event(connection, age: timedelta) -> int:
    return ConnectionEvent.objects.create(connection=connection, kind="tested", created_at=timezone.now() - age).pk


def test_purge_expired_clears_sessions_authorizations_and_old_history_in_batches(settings, make_connection):
    settings.KLAVIYO_EVENT_RETENTION_DAYS = None  # unset: a year
    connection = make_connection("cust-A")
    old = [event(connection, timedelta(days=366 + n)) for n in range(5)]
    recent = event(connection, timedelta(days=364))
    expired_sessions = [session(timedelta(seconds=-1)) for _ in range(3)]
    live_session = session(timedelta(days=1))
    link, browser = build_start_link("cust-B"), Client()
    open_start_link(browser, link)  # one pending authorization, and the browser's session
    PkceCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    out, err = StringIO(), StringIO()

    call_command("purge_expired", "--batch-size", "2", stdout=out, stderr=err)

    assert ConnectionEvent.objects.filter(pk__in=old).count() == 0
    assert ConnectionEvent.objects.filter(pk=recent).exists()
    assert set(Session.objects.values_list("session_key", flat=True)) == {live_session, browser.session.session_key}
    assert not Session.objects.filter(session_key__in=expired_sessions).exists()
    assert PkceCode.objects.count() == 0
    assert "connection events: 2/5 deleted" in err.getvalue()
    assert "connection events: 5/5 deleted" in err.getvalue()
    assert out.getvalue() == (
        "Deleted 1 pending authorizations, 0 used start links, 5 connection events, 3 sessions.\n"
    )
    parts = urlsplit(link)
    assert Client().get(f"{parts.path}?{parts.query}").status_code == 410  # the used link is still refused


def test_the_retention_of_history_is_a_setting(settings, make_connection):
    settings.KLAVIYO_EVENT_RETENTION_DAYS = 30
    connection = make_connection("cust-A")
    kept, dropped = event(connection, timedelta(days=29)), event(connection, timedelta(days=31))
    call_command("purge_expired", "-v", "0", stdout=StringIO(), stderr=StringIO())
    assert list(ConnectionEvent.objects.values_list("pk", flat=True)) == [kept]
    assert dropped != kept
