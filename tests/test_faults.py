"""Faults from a real (loopback) HTTP server: timeouts, resets, 5xx, garbage, 429 storms.

Stored tokens are never lost or overwritten, callers get a clear error, the connection
records what happened, and nothing retries forever.
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from oauth_integration import services
from oauth_integration.exceptions import KlaviyoThrottled, KlaviyoUnavailable
from oauth_integration.models import ConnectionStatus, FailureReason, OAuthToken
from tests.wire_faults import ScriptedServer

pytestmark = pytest.mark.django_db(transaction=True)

THROTTLED = (429, {"Retry-After": "1"}, {"errors": [{"code": "throttled", "title": "Request was throttled."}]})
GOOD_TOKEN = (200, {}, {"access_token": "at-2", "refresh_token": "rt-2", "expires_in": 3600, "token_type": "Bearer"})
PROFILES = (200, {}, {"data": [{"type": "profile", "id": "p1"}], "links": {"self": "", "next": None}})


@pytest.fixture
def expired(make_connection):
    return make_connection(expires_at=timezone.now() - timedelta(minutes=1))


def assert_tokens_intact():
    row = OAuthToken.objects.get()
    assert (row.access_token, row.refresh_token, row.status) == ("at-cust-1", "rt-cust-1", ConnectionStatus.ACTIVE)
    return row


def test_a_429_storm_is_waited_out_as_retry_after_says_then_reported(settings, make_connection):
    make_connection()
    with ScriptedServer([THROTTLED, THROTTLED, THROTTLED, THROTTLED]) as server:
        settings.KLAVIYO_BASE_URL = server.url
        started = time.monotonic()
        with pytest.raises(KlaviyoThrottled) as excinfo:
            services.get_profiles(customer_identifier="cust-1")
        elapsed = time.monotonic() - started
        times = [t for _, t in server.requests]
    assert len(times) == 3  # one try and KLAVIYO_MAX_RETRIES=2 retries
    assert times[1] - times[0] >= 0.95  # Retry-After: 1 was honoured
    assert times[2] - times[1] >= 0.95
    assert elapsed < 5
    assert excinfo.value.retry_after == 1
    assert assert_tokens_intact().failure_reason == FailureReason.THROTTLED


def test_throttling_recovers_within_the_retry_budget(settings, make_connection):
    make_connection()
    with ScriptedServer([THROTTLED, PROFILES]) as server:
        settings.KLAVIYO_BASE_URL = server.url
        assert services.get_profiles(customer_identifier="cust-1")["data"][0]["id"] == "p1"


def test_the_total_wait_is_bounded(settings, make_connection):
    settings.KLAVIYO_MAX_RETRIES = 10
    settings.KLAVIYO_RETRY_MAX_WAIT = 2
    make_connection()
    with ScriptedServer([THROTTLED] * 11) as server:
        settings.KLAVIYO_BASE_URL = server.url
        started = time.monotonic()
        with pytest.raises(KlaviyoThrottled):
            services.get_profiles(customer_identifier="cust-1")
        assert time.monotonic() - started < 3.5
        assert len(server.requests) == 3  # waits of 1 s + 1 s fit in 2 s; a third would not
        server.steps.clear()


def test_read_timeout_on_refresh_keeps_tokens(settings, expired):
    settings.KLAVIYO_HTTP_TIMEOUT = 0.3
    with ScriptedServer([("sleep", 1.0)]) as server:
        settings.KLAVIYO_BASE_URL = server.url
        with pytest.raises(KlaviyoUnavailable):
            services.get_profiles(customer_identifier="cust-1")
    assert assert_tokens_intact().failure_reason == FailureReason.KLAVIYO_UNAVAILABLE


def test_connection_reset_on_refresh_keeps_tokens(settings, expired):
    with ScriptedServer([("reset",)]) as server:
        settings.KLAVIYO_BASE_URL = server.url
        with pytest.raises(KlaviyoUnavailable):
            services.get_profiles(customer_identifier="cust-1")
    assert_tokens_intact()


def test_connect_failure_is_unavailable(settings, expired):
    settings.KLAVIYO_BASE_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.KLAVIYO_MAX_RETRIES = 0
    with pytest.raises(KlaviyoUnavailable):
        services.get_profiles(customer_identifier="cust-1")
    assert_tokens_intact()


@pytest.mark.parametrize(
    "step",
    [
        (502, {}, "<html>Bad gateway</html>"),
        (200, {"Content-Type": "application/json"}, '{"access_token": "at-x", "expires_in": 36'),
        (200, {}, {"access_token": "at-x"}),
        (200, {}, '"just a string"'),
    ],
    ids=["502-html", "truncated-json", "missing-fields", "json-string"],
)
def test_garbage_from_the_token_endpoint_never_overwrites_tokens(settings, expired, step):
    with ScriptedServer([step]) as server:
        settings.KLAVIYO_BASE_URL = server.url
        with pytest.raises(KlaviyoUnavailable):
            services.get_profiles(customer_identifier="cust-1")
    assert_tokens_intact()


def test_tokens_work_again_after_the_outage(settings, expired):
    settings.KLAVIYO_REFRESH_FAILURE_COOLDOWN = 0
    with ScriptedServer([(503, {}, "down"), GOOD_TOKEN, PROFILES]) as server:
        settings.KLAVIYO_BASE_URL = server.url
        with pytest.raises(KlaviyoUnavailable):
            services.get_profiles(customer_identifier="cust-1")
        assert services.get_profiles(customer_identifier="cust-1")["data"][0]["id"] == "p1"
    row = OAuthToken.objects.get()
    assert (row.access_token, row.refresh_token, row.failure_reason) == ("at-2", "rt-2", "")
