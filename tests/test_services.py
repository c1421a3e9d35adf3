"""Use cases, driven through the real storage and database; only Klaviyo is mocked."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone
from responses import matchers

from oauth_integration import services
from oauth_integration.exceptions import (
    KlaviyoAPIError,
    KlaviyoThrottled,
    KlaviyoUnauthorized,
    KlaviyoUnavailable,
    ReauthorizationRequired,
    TokenNotFound,
)
from oauth_integration.models import ConnectionEvent, ConnectionStatus, FailureReason, OAuthToken
from tests.conftest import (
    ACCOUNTS_URL,
    PROFILES_URL,
    REVOKE_URL,
    TOKEN_URL,
    accounts_body,
    grant_permissions,
    profiles_body,
    token_body,
)

pytestmark = pytest.mark.django_db


def bearer(token):
    return matchers.header_matcher({"Authorization": f"Bearer {token}"})


def refresh_form(token):
    return matchers.urlencoded_params_matcher({"grant_type": "refresh_token", "refresh_token": token})


def events(customer="cust-1"):
    history = ConnectionEvent.objects.filter(connection__customer_identifier=customer).order_by("id")
    return list(history.values_list("kind", flat=True))


def test_valid_token_is_used_without_refreshing(mocked_responses, make_connection):
    make_connection()
    mocked_responses.get(PROFILES_URL, match=[bearer("at-cust-1")], json=profiles_body("p1"))
    body = services.get_profiles(customer_identifier="cust-1")
    assert body["data"][0]["id"] == "p1"


def test_a_call_with_a_valid_token_costs_one_query(mocked_responses, make_connection, django_assert_num_queries):
    make_connection()
    mocked_responses.get(PROFILES_URL, json=profiles_body("p1"))
    with django_assert_num_queries(1):
        services.get_profiles(customer_identifier="cust-1")


def test_token_expiring_within_the_margin_is_refreshed_first(mocked_responses, make_connection):
    make_connection(expires_at=timezone.now() + timedelta(seconds=30))
    mocked_responses.post(TOKEN_URL, match=[refresh_form("rt-cust-1")], json=token_body("at-2", "rt-2"))
    mocked_responses.get(PROFILES_URL, match=[bearer("at-2")], json=profiles_body("p1"))
    services.get_profiles(customer_identifier="cust-1")
    row = OAuthToken.objects.get()
    assert (row.access_token, row.refresh_token, row.version) == ("at-2", "rt-2", 2)
    assert row.expires_at > timezone.now() + timedelta(minutes=59)
    assert row.last_refreshed_at is not None
    assert events() == ["refreshed"]


def test_a_refresh_and_a_disconnect_stamp_updated_at(mocked_responses, make_connection):
    make_connection(expires_at=timezone.now() - timedelta(seconds=1))
    a_day_ago = timezone.now() - timedelta(days=1)
    OAuthToken.objects.update(updated_at=a_day_ago)
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    mocked_responses.get(PROFILES_URL, match=[bearer("at-2")], json=profiles_body())
    services.get_profiles(customer_identifier="cust-1")
    assert OAuthToken.objects.get().updated_at > a_day_ago + timedelta(hours=23)
    OAuthToken.objects.update(updated_at=a_day_ago)
    mocked_responses.post(REVOKE_URL, json={})
    services.disconnect(customer_identifier="cust-1")
    assert OAuthToken.objects.get().updated_at > a_day_ago + timedelta(hours=23)


def test_refresh_margin_is_configurable(mocked_responses, make_connection, settings):
    settings.KLAVIYO_REFRESH_MARGIN_SECONDS = 600
    make_connection(expires_at=timezone.now() + timedelta(minutes=5))
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    mocked_responses.get(PROFILES_URL, match=[bearer("at-2")], json=profiles_body())
    services.get_profiles(customer_identifier="cust-1")


def test_refresh_without_a_new_refresh_token_keeps_the_old_one(mocked_responses, make_connection):
    make_connection(expires_at=timezone.now() - timedelta(seconds=1))
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", refresh=None))
    mocked_responses.get(PROFILES_URL, match=[bearer("at-2")], json=profiles_body())
    services.get_profiles(customer_identifier="cust-1")
    assert OAuthToken.objects.get().refresh_token == "rt-cust-1"


def test_401_refreshes_once_and_retries_once(mocked_responses, make_connection):
    make_connection()
    mocked_responses.get(
        PROFILES_URL, match=[bearer("at-cust-1")], status=401, json={"errors": [{"code": "authentication_failed"}]}
    )
    mocked_responses.post(TOKEN_URL, match=[refresh_form("rt-cust-1")], json=token_body("at-2", "rt-2"))
    mocked_responses.get(PROFILES_URL, match=[bearer("at-2")], json=profiles_body("p9"))
    assert services.get_profiles(customer_identifier="cust-1")["data"][0]["id"] == "p9"
    assert [c.request.method for c in mocked_responses.calls] == ["GET", "POST", "GET"]


def test_a_second_401_is_reported_not_looped(mocked_responses, make_connection):
    make_connection()
    mocked_responses.get(PROFILES_URL, status=401, json={"errors": [{"code": "authentication_failed"}]})
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    with pytest.raises(KlaviyoUnauthorized):
        services.get_profiles(customer_identifier="cust-1")
    assert len(mocked_responses.calls) == 3
    assert OAuthToken.objects.get().status == ConnectionStatus.ACTIVE


def test_invalid_grant_marks_the_connection_and_deletes_nothing(mocked_responses, make_connection):
    make_connection(expires_at=timezone.now() - timedelta(minutes=1))
    mocked_responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(ReauthorizationRequired) as excinfo:
        services.get_profiles(customer_identifier="cust-1")
    assert excinfo.value.reason == FailureReason.REVOKED
    row = OAuthToken.objects.get()
    assert row.status == ConnectionStatus.NEEDS_REAUTHORIZATION
    assert row.failure_reason == FailureReason.REVOKED
    assert (row.access_token, row.refresh_token) == ("at-cust-1", "rt-cust-1")
    assert events() == ["needs_reauthorization"]


def test_invalid_grant_after_90_idle_days_is_expiry_from_inactivity(mocked_responses, make_connection):
    long_ago = timezone.now() - timedelta(days=95)
    make_connection(expires_at=long_ago, connected_at=long_ago, last_refreshed_at=long_ago)
    mocked_responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(ReauthorizationRequired):
        services.get_profiles(customer_identifier="cust-1")
    assert OAuthToken.objects.get().failure_reason == FailureReason.EXPIRED_INACTIVE


def test_broken_connection_is_refused_without_calling_klaviyo(mocked_responses, make_connection):
    make_connection(status=ConnectionStatus.NEEDS_REAUTHORIZATION, failure_reason=FailureReason.REVOKED)
    with pytest.raises(ReauthorizationRequired):
        services.get_profiles(customer_identifier="cust-1")


def test_unknown_customer_is_token_not_found(mocked_responses, db):
    with pytest.raises(TokenNotFound):
        services.get_profiles(customer_identifier="nobody")


def test_invalid_grant_after_another_worker_stored_new_tokens_uses_them(mocked_responses, make_connection):
    make_connection(expires_at=timezone.now() - timedelta(minutes=1))

    def rejected_while_another_worker_stores_new_tokens(request):
        # Our lease lapsed; another worker refreshed (with rotation) and stored meanwhile.
        OAuthToken.objects.filter(customer_identifier="cust-1").update(
            access_token="at-elsewhere",
            refresh_token="rt-elsewhere",
            expires_at=timezone.now() + timedelta(hours=1),
            version=F("version") + 1,
            refresh_lease_owner="",
            refresh_lease_until=None,
        )
        return 400, {}, json.dumps({"error": "invalid_grant"})

    mocked_responses.add_callback(
        "POST", TOKEN_URL, callback=rejected_while_another_worker_stores_new_tokens, match=[refresh_form("rt-cust-1")]
    )
    mocked_responses.get(PROFILES_URL, match=[bearer("at-elsewhere")], json=profiles_body())
    services.get_profiles(customer_identifier="cust-1")
    row = OAuthToken.objects.get()
    assert (row.status, row.failure_reason, row.refresh_token) == (ConnectionStatus.ACTIVE, "", "rt-elsewhere")
    assert len(mocked_responses.calls) == 2  # one refresh (not retried with the other worker's token), one call


def test_invalid_grant_after_a_disconnect_is_not_recorded_as_a_broken_connection(mocked_responses, make_connection):
    make_connection(expires_at=timezone.now() - timedelta(minutes=1))

    def rejected_while_staff_disconnect(request):
        OAuthToken.objects.forget_tokens("cust-1")
        return 400, {}, json.dumps({"error": "invalid_grant"})

    mocked_responses.add_callback("POST", TOKEN_URL, callback=rejected_while_staff_disconnect)
    with pytest.raises(ReauthorizationRequired):
        services.get_profiles(customer_identifier="cust-1")
    row = OAuthToken.objects.get()
    assert (row.status, row.failure_reason) == (ConnectionStatus.REVOKED, "")
    assert not ConnectionEvent.objects.filter(kind=ConnectionEvent.Kind.NEEDS_REAUTHORIZATION).exists()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"status": 503, "body": "down"}, FailureReason.KLAVIYO_UNAVAILABLE),
        ({"status": 200, "body": "<html>not json</html>"}, FailureReason.KLAVIYO_UNAVAILABLE),
        ({"status": 200, "json": {"access_token": None}}, FailureReason.KLAVIYO_UNAVAILABLE),
        ({"status": 429, "json": {"error": "slow_down"}, "headers": {"Retry-After": "30"}}, FailureReason.THROTTLED),
    ],
)
def test_failed_refresh_keeps_the_stored_tokens_usable(mocked_responses, make_connection, settings, kwargs, reason):
    settings.KLAVIYO_REFRESH_FAILURE_COOLDOWN = 0
    make_connection(expires_at=timezone.now() - timedelta(minutes=1))
    mocked_responses.post(TOKEN_URL, **kwargs)
    with pytest.raises((KlaviyoUnavailable, KlaviyoThrottled)):
        services.get_profiles(customer_identifier="cust-1")
    row = OAuthToken.objects.get()
    assert (row.access_token, row.refresh_token, row.status) == ("at-cust-1", "rt-cust-1", ConnectionStatus.ACTIVE)
    assert row.failure_reason == reason
    assert row.refresh_failed_until is not None  # marks the failure for the callers that waited on it
    assert row.refresh_lease_owner == ""  # and the lease is free again
    # Later, Klaviyo is back: the same connection refreshes fine.
    mocked_responses.post(TOKEN_URL, match=[refresh_form("rt-cust-1")], json=token_body("at-2", "rt-2"))
    mocked_responses.get(PROFILES_URL, match=[bearer("at-2")], json=profiles_body())
    services.get_profiles(customer_identifier="cust-1")
    assert OAuthToken.objects.get().failure_reason == ""


def test_after_a_failed_refresh_callers_fail_fast_until_the_cooldown_ends(mocked_responses, make_connection):
    make_connection(expires_at=timezone.now() - timedelta(minutes=1))
    mocked_responses.post(TOKEN_URL, status=503, body="down")
    with pytest.raises(KlaviyoUnavailable):
        services.get_profiles(customer_identifier="cust-1")
    with pytest.raises(KlaviyoUnavailable, match="failed in another worker"):
        services.get_profiles(customer_identifier="cust-1")  # no request: the strict mock has none left
    assert len(mocked_responses.calls) == 1
    OAuthToken.objects.update(refresh_failed_until=timezone.now() - timedelta(seconds=1))  # the cooldown ends
    mocked_responses.post(TOKEN_URL, match=[refresh_form("rt-cust-1")], json=token_body("at-2", "rt-2"))
    mocked_responses.get(PROFILES_URL, match=[bearer("at-2")], json=profiles_body())
    services.get_profiles(customer_identifier="cust-1")
    assert OAuthToken.objects.get().refresh_failed_until is None


def test_api_failures_are_recorded_on_the_connection(mocked_responses, make_connection):
    make_connection()
    mocked_responses.get(PROFILES_URL, status=403, json={"errors": [{"code": "permission_denied"}]})
    with pytest.raises(KlaviyoAPIError) as excinfo:
        services.get_profiles(customer_identifier="cust-1")
    assert excinfo.value.status == 403
    row = OAuthToken.objects.get()
    assert row.failure_reason == FailureReason.MISSING_SCOPE
    assert row.status == ConnectionStatus.ACTIVE


def test_disconnect_revokes_at_klaviyo_then_forgets_the_tokens(mocked_responses, make_connection):
    make_connection()
    mocked_responses.post(
        REVOKE_URL,
        match=[matchers.urlencoded_params_matcher({"token": "rt-cust-1", "token_type_hint": "refresh_token"})],
        json={},
    )
    result = services.disconnect(customer_identifier="cust-1")
    assert result.revoked_at_klaviyo
    row = OAuthToken.objects.get()
    assert (row.status, row.access_token, row.refresh_token) == (ConnectionStatus.REVOKED, None, None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM oauth_integration_oauthtoken")
        assert cursor.fetchone() == (None, None)
    assert events() == ["revoked"]
    with pytest.raises(ReauthorizationRequired):
        services.get_profiles(customer_identifier="cust-1")


def test_disconnect_still_forgets_locally_when_klaviyo_revoke_fails(mocked_responses, make_connection):
    make_connection()
    mocked_responses.post(REVOKE_URL, status=500, body="boom")
    result = services.disconnect(customer_identifier="cust-1")
    assert not result.revoked_at_klaviyo
    assert "500" in result.failure
    assert OAuthToken.objects.get().status == ConnectionStatus.REVOKED
    assert events() == ["revoke_failed", "revoked"]


def test_check_connection_calls_accounts_and_records_it(mocked_responses, make_connection):
    make_connection()
    mocked_responses.get(ACCOUNTS_URL, match=[bearer("at-cust-1")], json=accounts_body("ACC9", "Nine Ltd"))
    assert services.check_connection(customer_identifier="cust-1") == "OK: Klaviyo account Nine Ltd (ACC9)"
    assert events() == ["tested"]


def test_refresh_connection_refreshes_even_a_fresh_token(mocked_responses, make_connection):
    make_connection()
    mocked_responses.post(TOKEN_URL, match=[refresh_form("rt-cust-1")], json=token_body("at-2", "rt-2"))
    assert services.refresh_connection(customer_identifier="cust-1").version == 2


def test_disconnect_works_even_when_the_tokens_cannot_be_decrypted(mocked_responses, make_connection, settings):
    make_connection()
    settings.TOKEN_ENCRYPTION_KEY = "ab" * 32  # the key that encrypted the row is gone
    result = services.disconnect(customer_identifier="cust-1")
    assert not result.revoked_at_klaviyo
    assert "cannot be decrypted" in result.failure
    assert OAuthToken.objects.get().status == ConnectionStatus.REVOKED
    assert events() == ["revoke_failed", "revoked"]


def test_a_second_401_after_refresh_is_recorded(mocked_responses, make_connection):
    make_connection()
    mocked_responses.get(PROFILES_URL, status=401, json={"errors": [{"code": "authentication_failed"}]})
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    with pytest.raises(KlaviyoUnauthorized):
        services.get_profiles(customer_identifier="cust-1")
    assert events() == ["refreshed", "call_failed"]
    assert OAuthToken.objects.get().failure_reason == FailureReason.KLAVIYO_ERROR


def test_the_first_call_with_each_access_token_is_noted_once(mocked_responses, make_connection):
    make_connection(last_called_at=None)
    mocked_responses.get(PROFILES_URL, json=profiles_body())
    mocked_responses.get(PROFILES_URL, json=profiles_body())
    services.get_profiles(customer_identifier="cust-1")
    first = OAuthToken.objects.get().last_called_at
    assert first is not None
    services.get_profiles(customer_identifier="cust-1")
    assert OAuthToken.objects.get().last_called_at == first  # no write on later calls


def test_a_disconnect_during_a_refresh_revokes_the_token_issued_meanwhile(mocked_responses, make_connection):
    make_connection(expires_at=timezone.now() - timedelta(minutes=1))

    def refreshed_while_staff_disconnect(request):
        OAuthToken.objects.update(status=ConnectionStatus.REVOKED, access_token=None, refresh_token=None)
        return 200, {}, json.dumps(token_body("at-orphan", "rt-orphan"))

    mocked_responses.add_callback("POST", TOKEN_URL, callback=refreshed_while_staff_disconnect)
    mocked_responses.post(
        REVOKE_URL,
        match=[matchers.urlencoded_params_matcher({"token": "rt-orphan", "token_type_hint": "refresh_token"})],
    )
    with pytest.raises(ReauthorizationRequired):
        services.get_profiles(customer_identifier="cust-1")
    row = OAuthToken.objects.get()
    assert (row.status, row.access_token, row.refresh_token) == (ConnectionStatus.REVOKED, None, None)
    assert "refreshed" not in events()


def test_a_refreshing_call_costs_four_queries(mocked_responses, make_connection, django_assert_num_queries):
    # Read the row, claim the lease, store the new tokens (releasing the lease), record the event.
    make_connection(expires_at=timezone.now() - timedelta(seconds=1))
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    mocked_responses.get(PROFILES_URL, match=[bearer("at-2")], json=profiles_body("p1"))
    with django_assert_num_queries(4):
        services.get_profiles(customer_identifier="cust-1")
    row = OAuthToken.objects.get()
    assert (row.version, row.refresh_lease_owner, row.called_since_refresh) == (2, "", True)


def test_a_caller_waits_for_another_workers_refresh_no_longer_than_the_setting(make_connection, settings, client):
    import time as clock

    from django.contrib.auth import get_user_model

    from oauth_integration.exceptions import RefreshInProgress

    settings.KLAVIYO_REFRESH_WAIT_SECONDS = 0.4
    make_connection(expires_at=timezone.now() - timedelta(seconds=1))
    # Another worker holds the lease and is still waiting for Klaviyo.
    until = timezone.now() + timedelta(minutes=1)
    assert OAuthToken.objects.claim_refresh_lease("cust-1", version=1, owner="other-worker", until=until)
    started = clock.monotonic()
    with pytest.raises(RefreshInProgress):
        services.get_profiles(customer_identifier="cust-1")
    assert 0.4 <= clock.monotonic() - started < 2
    client.force_login(
        grant_permissions(get_user_model().objects.create_user("staff", is_staff=True), "view_oauthtoken")
    )
    response = client.get("/profiles/cust-1")
    assert (response.status_code, response["Retry-After"]) == (503, "5")
    assert OAuthToken.objects.get().refresh_lease_owner == "other-worker"  # its refresh carries on
