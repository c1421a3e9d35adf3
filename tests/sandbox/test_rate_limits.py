"""Rate limits: Klaviyo's tiers per app, account and endpoint, burst and steady windows, scaled by a knob."""

import time

import pytest

from klaviyo_sandbox.models import RateWindow
from klaviyo_sandbox.store.seeding import ensure_seeded
from tests.sandbox.support import BLUEBELL, NORTHWIND, api, error_of, fresh_second, token_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def klaviyos_own_limits(settings):
    settings.KLAVIYO_SANDBOX_RATE_LIMIT_SCALE = 1


# Klaviyo's tiers, from each operation's x-klaviyo-ratelimit in its OpenAPI description.
TIERS = {
    "/accounts": "1, 1;w=1, 15;w=60",
    "/profiles": "75, 75;w=1, 750;w=60",
    "/lists": "75, 75;w=1, 750;w=60",
    "/metrics": "10, 10;w=1, 150;w=60",
    "/events": "350, 350;w=1, 3500;w=60",
}


@pytest.mark.usefixtures("klaviyos_own_limits")
def test_each_endpoint_has_its_klaviyo_tier_in_the_headers(client):
    token = token_for()
    fresh_second()
    for path, limit in TIERS.items():
        response = api(client, "GET", path, token)
        assert response.status_code == 200
        assert response["RateLimit-Limit"] == limit
        assert response["RateLimit-Remaining"] == str(int(limit.split(",")[0]) - 1)
        assert response["RateLimit-Reset"] == "0"


@pytest.mark.usefixtures("klaviyos_own_limits")
def test_create_list_also_has_a_daily_window(client):
    response = api(client, "POST", "/lists", token_for(), body={"data": {"type": "list", "attributes": {"name": "A"}}})
    assert response["RateLimit-Limit"] == "10, 10;w=1, 150;w=60, 150;w=86400"


def test_the_scale_multiplies_every_limit(client, settings):
    settings.KLAVIYO_SANDBOX_RATE_LIMIT_SCALE = 0.1
    assert api(client, "GET", "/profiles", token_for())["RateLimit-Limit"] == "7, 7;w=1, 75;w=60"
    settings.KLAVIYO_SANDBOX_RATE_LIMIT_SCALE = 0.01
    assert api(client, "GET", "/accounts", token_for())["RateLimit-Limit"] == "1, 1;w=1, 1;w=60"


@pytest.mark.usefixtures("klaviyos_own_limits")
def test_past_the_burst_limit_calls_are_throttled_with_a_short_retry_after(client):
    token = token_for()
    ensure_seeded(NORTHWIND)
    fresh_second()
    assert api(client, "GET", "/accounts", token).status_code == 200
    response = api(client, "GET", "/accounts", token)
    error = error_of(response, 429)
    assert error["code"] == "throttled"
    assert error["title"] == "Request was throttled."
    assert error["detail"] == "Request was throttled. Expected available in 1 second."
    assert error["source"] == {"pointer": "/data"}
    assert response["Retry-After"] == "1"
    assert not [name for name in response.headers if name.lower().startswith("ratelimit")]


@pytest.mark.usefixtures("klaviyos_own_limits")
def test_past_the_steady_limit_calls_wait_for_the_minute(client):
    token = token_for()
    api(client, "GET", "/accounts", token)
    RateWindow.objects.update(steady_count=15, steady_window=int(time.time() // 60), burst_window=0)
    response = api(client, "GET", "/accounts", token)
    retry_after = int(response["Retry-After"])
    unit = "second" if retry_after == 1 else "seconds"
    assert error_of(response, 429)["detail"] == f"Request was throttled. Expected available in {retry_after} {unit}."
    assert 1 <= retry_after <= 60
    RateWindow.objects.update(steady_window=0)
    assert api(client, "GET", "/accounts", token).status_code == 200


@pytest.mark.usefixtures("klaviyos_own_limits")
def test_limits_are_per_endpoint_and_per_account(client):
    north, blue = token_for(NORTHWIND), token_for(BLUEBELL)
    ensure_seeded(NORTHWIND)
    fresh_second()
    assert api(client, "GET", "/accounts", north).status_code == 200
    assert api(client, "GET", "/accounts", north).status_code == 429
    assert api(client, "GET", "/profiles", north).status_code == 200
    assert api(client, "GET", "/accounts", blue).status_code == 200


@pytest.mark.usefixtures("klaviyos_own_limits")
def test_grants_of_one_account_share_its_limits(client):
    first, second = token_for(), token_for()
    ensure_seeded(NORTHWIND)
    fresh_second()
    assert api(client, "GET", "/accounts", first).status_code == 200
    assert api(client, "GET", "/accounts", second).status_code == 429


@pytest.mark.usefixtures("klaviyos_own_limits")
def test_a_throttled_call_does_not_count(client):
    token = token_for()
    ensure_seeded(NORTHWIND)
    fresh_second()
    api(client, "GET", "/accounts", token)
    api(client, "GET", "/accounts", token)
    assert RateWindow.objects.get().burst_count == 1
    assert RateWindow.objects.get().steady_count == 1


def test_errors_after_admission_carry_the_rate_limit_headers(client):
    response = api(client, "GET", "/profiles", token_for(), **{"page[size]": "0"})
    assert error_of(response, 400)["source"] == {"parameter": "page[size]"}
    assert "RateLimit-Limit" in response


def test_a_scale_of_zero_turns_limiting_off(client, settings):
    settings.KLAVIYO_SANDBOX_RATE_LIMIT_SCALE = 0
    token = token_for()
    for _ in range(3):
        response = api(client, "GET", "/accounts", token)
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response
    assert not RateWindow.objects.exists()


def test_by_default_several_customers_of_one_account_can_connect_at_once(client, settings):
    settings.KLAVIYO_SANDBOX_RATE_LIMIT_SCALE = None  # the default
    fresh_second()
    outcomes = [api(client, "GET", "/accounts", token_for()).status_code for _ in range(10)]
    assert outcomes == [200] * 10
