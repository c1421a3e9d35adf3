"""The host site's signals: sent once, after the commit, never on rollback; a failing receiver is harmless."""

import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import transaction
from django.utils import timezone

from oauth_integration import services, signals
from oauth_integration.exceptions import ReauthorizationRequired
from oauth_integration.models import FailureReason, OAuthToken
from tests.conftest import ACCOUNTS_URL, PROFILES_URL, REVOKE_URL, TOKEN_URL, accounts_body, profiles_body, token_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def received():
    """Every signal of the module, recorded as (name, kwargs without the signal object)."""
    seen = []
    receivers = {}
    for name in ("connected", "refreshed", "needs_reauthorization", "disconnected"):

        def receiver(sender, name=name, **kwargs):
            kwargs.pop("signal")
            seen.append((name, sender, kwargs))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    yield seen
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def connect(mocked_responses, customer="cust-1", account="ACC1"):
    state = parse_qs(urlsplit(services.begin_authorization(customer_identifier=customer, browser_binding="b")).query)[
        "state"
    ][0]
    mocked_responses.post(TOKEN_URL, json=token_body(f"at-{customer}", f"rt-{customer}"))
    mocked_responses.get(ACCOUNTS_URL, json=accounts_body(account, "Shop"))
    return services.complete_authorization(state=state, code="code", browser_binding="b")


def test_connected_is_sent_once_after_the_commit_first_time_and_on_reconnect(
    mocked_responses, received, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        connect(mocked_responses)
    assert received == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert received == [
        (
            "connected",
            OAuthToken,
            {
                "customer_identifier": "cust-1",
                "klaviyo_account_id": "ACC1",
                "klaviyo_account_name": "Shop",
                "scopes": "accounts:read profiles:read",
                "reconnected": False,
            },
        )
    ]
    with django_capture_on_commit_callbacks(execute=True):
        connect(mocked_responses, account="ACC2")
    assert received[1] == (
        "connected",
        OAuthToken,
        {
            "customer_identifier": "cust-1",
            "klaviyo_account_id": "ACC2",
            "klaviyo_account_name": "Shop",
            "scopes": "accounts:read profiles:read",
            "reconnected": True,
        },
    )


def test_refreshed_needs_reauthorization_and_disconnected_are_each_sent_once(
    mocked_responses, make_connection, received, django_capture_on_commit_callbacks
):
    make_connection("cust-1", expires_at=timezone.now() - timedelta(seconds=1), klaviyo_account_id="ACC1")
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    mocked_responses.get(PROFILES_URL, json=profiles_body())
    with django_capture_on_commit_callbacks(execute=True):
        services.get_profiles(customer_identifier="cust-1")
    OAuthToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    mocked_responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ReauthorizationRequired):
        services.get_profiles(customer_identifier="cust-1")
    mocked_responses.post(REVOKE_URL, json={})
    with django_capture_on_commit_callbacks(execute=True):
        services.disconnect(customer_identifier="cust-1")

    assert [(name, kwargs) for name, _, kwargs in received] == [
        ("refreshed", {"customer_identifier": "cust-1", "klaviyo_account_id": "ACC1"}),
        (
            "needs_reauthorization",
            {"customer_identifier": "cust-1", "klaviyo_account_id": "ACC1", "reason": FailureReason.REVOKED.value},
        ),
        ("disconnected", {"customer_identifier": "cust-1", "klaviyo_account_id": "ACC1"}),
    ]


@pytest.mark.django_db(transaction=True)
def test_nothing_is_sent_when_the_transaction_rolls_back(mocked_responses, received):
    class Abandoned(Exception):
        pass

    def connect_then_give_up():
        with transaction.atomic():
            connect(mocked_responses)
            assert received == []
            raise Abandoned

    with pytest.raises(Abandoned):
        connect_then_give_up()
    assert received == []
    assert not OAuthToken.objects.exists()
    with transaction.atomic():
        connect(mocked_responses)
        assert received == []  # still inside the transaction
    assert [name for name, _, _ in received] == ["connected"]


def test_a_receiver_that_raises_is_logged_and_changes_nothing(
    mocked_responses, received, caplog, django_capture_on_commit_callbacks
):
    def broken_receiver(sender, **kwargs):
        raise RuntimeError("the host's receiver is broken")

    signals.connected.connect(broken_receiver)
    try:
        with (
            caplog.at_level(logging.ERROR, logger="oauth_integration.signals"),
            django_capture_on_commit_callbacks(execute=True),
        ):
            result = connect(mocked_responses)
    finally:
        signals.connected.disconnect(broken_receiver)
    assert result.customer_identifier == "cust-1"
    row = OAuthToken.objects.get()
    assert (row.access_token, row.refresh_token) == ("at-cust-1", "rt-cust-1")
    assert [name for name, _, _ in received] == ["connected"]  # the other receivers still ran
    [record] = [r for r in caplog.records if r.name == "oauth_integration.signals"]
    assert "receiver of a Klaviyo connection signal failed" in record.getMessage()
    assert record.exc_info[0] is RuntimeError
