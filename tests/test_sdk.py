"""Klaviyo's official SDK bound to a connected customer (oauth_integration.sdk): fresh tokens, one
refresh-and-retry on 401, this app's retry rules, cursors, metrics and history.

Most tests drive the SDK against the sandbox on the live server (real HTTP, real refreshes,
``counters`` telling what reached it); the rest against Klaviyo mocked with ``responses``.
"""

import importlib.metadata
import time
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from openapi_client.exceptions import ApiException
from responses import matchers

from klaviyo_sandbox import counters
from klaviyo_sandbox.accounts import profiles_of
from oauth_integration.exceptions import (
    KlaviyoAPIError,
    KlaviyoPathRefused,
    KlaviyoWriteUncertain,
    MissingScope,
    TokenNotFound,
)
from oauth_integration.models import ConnectionEvent, FailureReason, OAuthToken
from oauth_integration.sdk import BoundRestClient, klaviyo_api
from tests.conftest import KLAVIYO, PROFILES_URL, TOKEN_URL, profiles_body, token_body
from tests.test_observability import METRICS_TOKEN, samples, scrape, value

pytest_plugins = ["oauth_integration.testing"]

NORTHWIND = "SbxN7w"
SCOPES = "accounts:read profiles:read profiles:write events:write"
PLACED_ORDER = {
    "data": {
        "type": "event",
        "attributes": {
            "properties": {"OrderId": "1001"},
            "value": 12.5,
            "unique_id": "order-1001",
            "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
            "profile": {"data": {"type": "profile", "attributes": {"email": "ada@example.com"}}},
        },
    }
}


@pytest.fixture
def sandbox(klaviyo_sandbox, settings, caplog):
    """The sandbox on the live server, one customer connected to Northwind, the counters at zero."""
    settings.KLAVIYO_SCOPES = SCOPES
    settings.KLAVIYO_SANDBOX_RATE_LIMIT_SCALE = 10.0
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 0.0
    settings.METRICS_TOKEN = METRICS_TOKEN
    klaviyo_sandbox.connect("cust-1", account="northwind")
    counters.reset()
    yield klaviyo_sandbox
    caplog.get_records("call").clear()  # log records may hold a response (and its socket)


def expire(customer="cust-1"):
    OAuthToken.objects.filter(customer_identifier=customer).update(expires_at=timezone.now() - timedelta(seconds=5))


@pytest.mark.django_db(transaction=True)
def test_an_expired_access_token_is_refreshed_once_and_the_call_succeeds(sandbox):
    expire()
    before = OAuthToken.objects.get().version

    accounts = klaviyo_api("cust-1").Accounts.get_accounts()

    assert accounts.data[0].id == NORTHWIND  # parsed by the SDK's own models
    assert counters.counts().refreshes == 1
    assert counters.counts().api_requests == 1
    assert OAuthToken.objects.get().version == before + 1


@pytest.mark.django_db(transaction=True)
def test_a_401_refreshes_once_and_retries_once(sandbox):
    connection = OAuthToken.objects.get()
    connection.access_token = "an-access-token-the-sandbox-never-issued"
    connection.save()

    profiles = klaviyo_api("cust-1").Profiles.get_profiles(page_size=3)

    assert len(profiles.data) == 3
    assert counters.counts().refreshes == 1
    assert counters.counts().api_requests == 2  # the 401, then the retry with the new token
    assert OAuthToken.objects.get().access_token != "an-access-token-the-sandbox-never-issued"


@pytest.mark.django_db(transaction=True)
def test_a_429_waits_for_retry_after_and_succeeds(sandbox, settings):
    settings.KLAVIYO_SANDBOX_RATE_LIMIT_SCALE = 0.01  # get_profiles: 1 a second
    klaviyo = klaviyo_api("cust-1")
    klaviyo.Profiles.get_profiles(page_size=1)
    counters.reset()
    time.sleep(1 - time.time() % 1 + 0.01)  # the start of a second: both calls share one window
    klaviyo.Profiles.get_profiles(page_size=1)
    started = time.monotonic()

    second = klaviyo.Profiles.get_profiles(page_size=1)

    assert len(second.data) == 1
    assert time.monotonic() - started >= 0.9  # Retry-After: 1, honoured by this app's retry
    assert counters.counts().api_requests == 3  # the first call, the 429, the retry


@pytest.mark.django_db(transaction=True)
def test_a_503_on_a_post_is_not_retried_and_the_outcome_is_unknown(sandbox, settings):
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 1.0  # every API call answers 503

    with pytest.raises(KlaviyoWriteUncertain) as uncertain:
        klaviyo_api("cust-1").Events.create_event(PLACED_ORDER)

    assert uncertain.value.status == 503
    assert counters.counts().api_requests == 1  # sent once: the SDK's own retry loop is off, ours never retries it
    connection = OAuthToken.objects.get()
    assert connection.failure_reason == FailureReason.KLAVIYO_UNAVAILABLE
    failed = ConnectionEvent.objects.filter(connection=connection, kind=ConnectionEvent.Kind.CALL_FAILED).get()
    assert "POST /api/events" in failed.detail


@pytest.mark.django_db(transaction=True)
def test_cursor_paging_reaches_the_end_with_the_whole_links_next_as_cursor(sandbox):
    klaviyo = klaviyo_api("cust-1")
    seen, cursor, pages = [], None, 0
    while True:
        page = klaviyo.Profiles.get_profiles(page_size=7, page_cursor=cursor)
        pages += 1
        seen += [row.id for row in page.data]
        cursor = page.links.next  # http://... on the live server: the bound client takes it apart
        if cursor is None:
            break

    expected = [seed.id for seed in profiles_of(NORTHWIND)]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    assert pages == -(-len(expected) // 7)
    assert counters.counts().api_requests == pages


@pytest.mark.django_db(transaction=True)
def test_the_sdks_calls_are_counted_in_metrics(sandbox, client, settings):
    before = samples(scrape(client))
    klaviyo = klaviyo_api("cust-1")
    klaviyo.Accounts.get_accounts()
    klaviyo.Profiles.get_profiles(page_size=2)
    klaviyo.Events.create_event(PLACED_ORDER)
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 1.0
    with pytest.raises(KlaviyoWriteUncertain):
        klaviyo.Events.create_event(PLACED_ORDER)
    after = samples(scrape(client))

    def grew(**labels):
        return value(after, "klaviyo_api_requests_total", **labels) - value(
            before, "klaviyo_api_requests_total", **labels
        )

    assert grew(method="GET", endpoint="/api/accounts", status="200") == 1
    assert grew(method="GET", endpoint="/api/profiles", status="200") == 1
    assert grew(method="POST", endpoint="/api/events", status="202") == 1
    assert grew(method="POST", endpoint="/api/events", status="503") == 1


@pytest.mark.django_db(transaction=True)
def test_a_scope_never_granted_is_missing_scope_and_a_conflict_carries_klaviyos_errors(sandbox, settings):
    klaviyo = klaviyo_api("cust-1")
    with pytest.raises(MissingScope) as missing:
        klaviyo.Lists.get_lists()
    assert missing.value.scopes == ("lists:read",)

    created = klaviyo.Profiles.create_profile({"data": {"type": "profile", "attributes": {"email": "x@example.com"}}})
    with pytest.raises(KlaviyoAPIError) as conflict:
        klaviyo.Profiles.create_profile({"data": {"type": "profile", "attributes": {"email": "x@example.com"}}})
    assert (conflict.value.status, conflict.value.duplicate_profile_id) == (409, created.data.id)
    assert not isinstance(conflict.value, ApiException)


# --- against Klaviyo mocked -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_request_carries_the_stored_token_the_sdks_revision_and_its_query(make_connection, mocked_responses):
    make_connection("cust-1")
    query = {"page[size]": "5", "fields[profile]": "email,first_name", "filter": 'equals(email,"a@b.c")'}
    headers = {"Authorization": "Bearer at-cust-1", "revision": "2026-10-15"}
    mocked_responses.get(
        PROFILES_URL,
        match=[matchers.query_param_matcher(query), matchers.header_matcher(headers)],
        json=profiles_body("p1"),
    )

    page = klaviyo_api("cust-1").Profiles.get_profiles(
        page_size=5, fields_profile=["email", "first_name"], filter='equals(email,"a@b.c")'
    )

    assert page["data"][0]["id"] == "p1"  # sparse fields: the SDK answers with a dict
    assert "klaviyo-api-python" not in mocked_responses.calls[0].request.headers["User-Agent"]


@pytest.mark.django_db
def test_an_https_links_next_is_reduced_to_its_cursor(make_connection, mocked_responses):
    """The SDK's own wrapper would send "=abc" (it keeps the = of page[cursor]=abc)."""
    make_connection("cust-1")
    next_url = f"{PROFILES_URL}?page%5Bcursor%5D=bmV4dDo6aWQ6OjQz&page%5Bsize%5D=5"
    mocked_responses.get(
        PROFILES_URL,
        match=[
            matchers.query_param_matcher(
                {"page[cursor]": "bmV4dDo6aWQ6OjQz", "page[size]": "5", "fields[profile]": "email"}
            )
        ],
        json=profiles_body("p6"),
    )

    page = klaviyo_api("cust-1").Profiles.get_profiles(page_size=5, page_cursor=next_url, fields_profile=["email"])

    assert [row["id"] for row in page["data"]] == ["p6"]


@pytest.mark.django_db
def test_a_get_is_retried_by_this_apps_rules_only(make_connection, mocked_responses, settings):
    """503 on a GET: KLAVIYO_MAX_RETRIES retries (here 1) below the SDK, none of its own on top."""
    settings.KLAVIYO_MAX_RETRIES = 1
    make_connection("cust-1")
    mocked_responses.get(PROFILES_URL, status=503, json={"errors": []})
    mocked_responses.get(PROFILES_URL, json=profiles_body("p1"))

    page = klaviyo_api("cust-1").Profiles.get_profiles(fields_profile=["email"])

    assert [row["id"] for row in page["data"]] == ["p1"]
    assert len(mocked_responses.calls) == 2


@pytest.mark.django_db
def test_a_token_expiring_within_the_margin_is_refreshed_before_the_call(make_connection, mocked_responses):
    make_connection("cust-1", expires_at=timezone.now() + timedelta(seconds=10))
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    mocked_responses.get(
        f"{KLAVIYO}/api/accounts",
        match=[matchers.header_matcher({"Authorization": "Bearer at-2"})],
        json={"data": [{"type": "account", "id": "ACC1", "attributes": {"timezone": "UTC"}}], "links": {}},
    )

    klaviyo_api("cust-1").Accounts.get_accounts(fields_account=["timezone"])

    assert OAuthToken.objects.get().access_token == "at-2"


@pytest.mark.django_db
def test_a_customer_who_never_connected_is_token_not_found_before_anything_is_sent(mocked_responses):
    with pytest.raises(TokenNotFound):
        klaviyo_api("nobody").Accounts.get_accounts()


def test_a_url_off_klaviyo_base_url_is_refused(settings):
    bound = BoundRestClient("cust-1", host=KLAVIYO)
    assert bound.path_and_params(f"{KLAVIYO}/api/profiles?page%5Bsize%5D=2") == ("/api/profiles", {"page[size]": "2"})
    with pytest.raises(KlaviyoPathRefused):
        bound.path_and_params("https://elsewhere.example/api/profiles")
    with pytest.raises(KlaviyoPathRefused):
        bound.path_and_params(f"{KLAVIYO}.elsewhere.example/api/profiles")


def test_the_sdk_extra_pins_the_major_version_whose_seams_the_binding_uses():
    """sdk.py replaces ApiClient.rest_client and overrides KlaviyoAPI.retry_logic and _page_cursor_update:
    raise the bound only once this file passes with the new major version."""
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["optional-dependencies"]["sdk"] == ["klaviyo-api>=25,<26"]
    assert importlib.metadata.version("klaviyo-api").split(".")[0] == "25"
