"""Races at the exact racy moment: a competing write committed by another database connection.

Each test hooks the point where our code is between two steps (Klaviyo answering a
refresh; the SELECT and the UPDATE of an encrypted update) and commits the competing
write there, from another thread with its own connection. Runs on SQLite and PostgreSQL.
"""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone
from responses import matchers

from oauth_integration import services
from oauth_integration.exceptions import ReauthorizationRequired
from oauth_integration.models import ConnectionEvent, ConnectionStatus, OAuthToken
from tests.conftest import PROFILES_URL, REVOKE_URL, TOKEN_URL, grant, profiles_body, token_body

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
            lambda: services.token_storage.save(
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


def test_a_disconnect_committed_between_the_select_and_the_update_of_an_encrypted_update_wins(make_connection):
    make_connection("cust-1")
    make_connection("cust-2")
    disconnected = []

    def disconnect_after_the_select(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("SELECT") and not disconnected:
            disconnected.append(True)
            committed_elsewhere(lambda: services.token_storage.remove("cust-1"))
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
        committed_elsewhere(lambda: services.token_storage.remove("cust-1"))
        return 200, {}, json.dumps(token_body("at-orphan", "rt-orphan"))

    mocked_responses.add_callback("POST", TOKEN_URL, callback=klaviyo_answers_while_staff_disconnect)
    mocked_responses.post(REVOKE_URL, match=[revoked_form("rt-orphan")], json={})

    with pytest.raises(ReauthorizationRequired):
        services.get_profiles(customer_identifier="cust-1")

    row = OAuthToken.objects.get()
    assert (row.status, row.access_token, row.refresh_token) == (ConnectionStatus.REVOKED, None, None)
