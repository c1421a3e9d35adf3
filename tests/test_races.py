"""Races at the exact racy moment: a competing write committed by another database connection.

Each test hooks the point where our code is between two steps (Klaviyo answering a
refresh; the SELECT and the UPDATE of an encrypted update) and commits the competing
write there, from another thread with its own connection. Runs on SQLite and PostgreSQL.
"""

import json
import threading
from datetime import timedelta
from urllib.parse import parse_qsl

import pytest
from django.db import connection, connections
from django.utils import timezone
from responses import matchers

from oauth_integration import services
from oauth_integration.exceptions import AuthorizationStateError, ReauthorizationRequired
from oauth_integration.models import ConnectionEvent, ConnectionStatus, OAuthToken, PkceCode
from tests.conftest import (
    ACCOUNTS_URL,
    PROFILES_URL,
    REVOKE_URL,
    TOKEN_URL,
    accounts_body,
    grant,
    profiles_body,
    token_body,
)

pytestmark = pytest.mark.django_db(transaction=True)


def committed_elsewhere(write):
    """Run ``write`` in another thread (its own connection, autocommit) and wait for it."""
    failure = []

    def run():
        try:
            write()
        except Exception as exc:  # noqa: BLE001 (handed to the test)
            failure.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not failure, failure


def revoked_form(token):
    return matchers.urlencoded_params_matcher({"token": token, "token_type_hint": "refresh_token"})


def test_a_reconnect_committed_during_a_refresh_wins_and_the_refreshed_token_is_revoked(
    mocked_responses, make_connection
):
    make_connection("cust-1", expires_at=timezone.now() - timedelta(minutes=1), klaviyo_account_id="OLD")

    def klaviyo_answers_while_the_customer_reconnects(request):
        committed_elsewhere(
            lambda: OAuthToken.objects.store_grant(
                "cust-1", grant("at-reconnected", "rt-reconnected"), account_id="NEW", account_name="New Store"
            )
        )
        return 200, {}, json.dumps(token_body("at-refreshed", "rt-refreshed"))

    mocked_responses.add_callback("POST", TOKEN_URL, callback=klaviyo_answers_while_the_customer_reconnects)
    mocked_responses.post(REVOKE_URL, match=[revoked_form("rt-refreshed")], json={})
    mocked_responses.get(
        PROFILES_URL, match=[matchers.header_matcher({"Authorization": "Bearer at-reconnected"})], json=profiles_body()
    )

    services.get_profiles(customer_identifier="cust-1")  # the call goes on with the reconnect's token

    row = OAuthToken.objects.get()
    assert (row.klaviyo_account_id, row.access_token, row.refresh_token) == ("NEW", "at-reconnected", "rt-reconnected")
    assert (row.status, row.refresh_lease_owner) == (ConnectionStatus.ACTIVE, "")
    assert not ConnectionEvent.objects.filter(kind=ConnectionEvent.Kind.REFRESHED).exists()


class RotatingKlaviyo:
    """Klaviyo's token endpoint with refresh-token rotation: each refresh token works once."""

    def __init__(self, live):
        self.live = set(live)
        self.revoked = []
        self.refreshed_with = []

    def refresh(self, refresh_token, *, access, refresh):
        self.refreshed_with.append(refresh_token)
        if refresh_token not in self.live:
            return 400, {}, json.dumps({"error": "invalid_grant"})
        self.live.discard(refresh_token)
        self.live.add(refresh)
        return 200, {}, json.dumps(token_body(access, refresh))

    def revoke(self, request):
        token = dict(parse_qsl(request.body))["token"]
        self.revoked.append(token)
        self.live.discard(token)
        return 200, {}, "{}"


@pytest.mark.parametrize("caller", ["refresh_now", "call"])
def test_with_rotation_a_reconnect_during_a_refresh_keeps_the_new_connection_alive(
    mocked_responses, make_connection, caller
):
    make_connection("cust-1", expires_at=timezone.now() - timedelta(minutes=1), klaviyo_account_id="OLD")
    klaviyo = RotatingKlaviyo(live={"rt-reconnected"})  # the reconnect revoked rt-cust-1 already

    def klaviyo_answers_after_the_reconnect_is_stored(request):
        sent = dict(parse_qsl(request.body))["refresh_token"]
        if sent == "rt-cust-1":
            committed_elsewhere(
                lambda: OAuthToken.objects.store_grant(
                    "cust-1", grant("at-reconnected", "rt-reconnected"), account_id="NEW", account_name="New Store"
                )
            )
        return klaviyo.refresh(sent, access="at-rotated", refresh="rt-rotated")

    mocked_responses.add_callback("POST", TOKEN_URL, callback=klaviyo_answers_after_the_reconnect_is_stored)
    mocked_responses.add_callback("POST", REVOKE_URL, callback=klaviyo.revoke)
    mocked_responses.assert_all_requests_are_fired = False
    if caller == "call":
        mocked_responses.get(
            PROFILES_URL,
            match=[matchers.header_matcher({"Authorization": "Bearer at-reconnected"})],
            json=profiles_body(),
        )
        services.get_profiles(customer_identifier="cust-1")
    else:
        returned = services.refresh_connection(customer_identifier="cust-1")
        assert returned.access_token == "at-reconnected"

    assert klaviyo.refreshed_with == ["rt-cust-1"]  # never the reconnect's token under the old lease
    assert klaviyo.revoked == []
    row = OAuthToken.objects.get()
    assert (row.klaviyo_account_id, row.access_token, row.refresh_token) == ("NEW", "at-reconnected", "rt-reconnected")
    assert (row.status, row.failure_reason, row.refresh_lease_owner) == (ConnectionStatus.ACTIVE, "", "")
    assert row.refresh_token in klaviyo.live  # the new grant still works at Klaviyo
    assert not ConnectionEvent.objects.filter(kind=ConnectionEvent.Kind.NEEDS_REAUTHORIZATION).exists()


def test_a_disconnect_committed_between_the_select_and_the_update_of_an_encrypted_update_wins(make_connection):
    make_connection("cust-1")
    make_connection("cust-2")
    disconnected = []

    def disconnect_after_the_select(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("SELECT") and not disconnected:
            disconnected.append(True)
            committed_elsewhere(lambda: OAuthToken.objects.forget_tokens("cust-1"))
        return result

    with connection.execute_wrapper(disconnect_after_the_select):
        updated = OAuthToken.objects.filter(status=ConnectionStatus.ACTIVE).update(access_token="at-written")

    assert disconnected
    assert updated == 1
    revoked, other = OAuthToken.objects.order_by("customer_identifier")
    assert (revoked.status, revoked.access_token, revoked.refresh_token) == (ConnectionStatus.REVOKED, None, None)
    assert other.access_token == "at-written"


def test_a_refresh_finishing_after_a_disconnect_stores_nothing_and_revokes_its_new_token(
    mocked_responses, make_connection
):
    make_connection("cust-1", expires_at=timezone.now() - timedelta(minutes=1))

    def klaviyo_answers_while_staff_disconnect(request):
        committed_elsewhere(lambda: OAuthToken.objects.forget_tokens("cust-1"))
        return 200, {}, json.dumps(token_body("at-orphan", "rt-orphan"))

    mocked_responses.add_callback("POST", TOKEN_URL, callback=klaviyo_answers_while_staff_disconnect)
    mocked_responses.post(REVOKE_URL, match=[revoked_form("rt-orphan")], json={})

    with pytest.raises(ReauthorizationRequired):
        services.get_profiles(customer_identifier="cust-1")

    row = OAuthToken.objects.get()
    assert (row.status, row.access_token, row.refresh_token) == (ConnectionStatus.REVOKED, None, None)


def test_of_two_callbacks_racing_with_one_state_only_one_exchanges_the_code(mocked_responses):
    # Both callbacks find the pending authorization; the other one removes it first (a double
    # click, or a browser retrying the redirect).
    state = "state-of-a-double-clicked-callback-0123456789"
    PkceCode.objects.store(
        state,
        customer_identifier="cust-1",
        code_verifier="v" * 86,
        browser_binding="the-browser",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    mocked_responses.post(TOKEN_URL, json=token_body("at-once", "rt-once"))
    mocked_responses.get(ACCOUNTS_URL, json=accounts_body())
    raced = []

    def the_other_callback_completes_after_our_select(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("SELECT") and "pkcecode" in sql.lower() and not raced:
            raced.append(True)
            committed_elsewhere(
                lambda: services.complete_authorization(state=state, code="the-code", browser_binding="the-browser")
            )
        return result

    with (
        connection.execute_wrapper(the_other_callback_completes_after_our_select),
        pytest.raises(AuthorizationStateError, match="already used"),
    ):
        services.complete_authorization(state=state, code="the-code", browser_binding="the-browser")

    assert raced
    assert [call.request.url for call in mocked_responses.calls].count(TOKEN_URL) == 1
    row = OAuthToken.objects.get()
    assert (row.access_token, row.refresh_token, row.version) == ("at-once", "rt-once", 1)
    assert not PkceCode.objects.exists()
