"""Klaviyo's official Python SDK (klaviyo-api) against the sandbox on a live server, parsed by its strict models.

The SDK reaches the sandbox exactly as it reaches Klaviyo: ``test_host`` replaces
https://a.klaviyo.com, the access token comes from ``issue_tokens``, and the SDK sends
its own ``revision``. Plain dicts stand in for request models where the SDK accepts them.
"""

import gc
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException
from openapi_client.models import (
    ListCreateQuery,
    ListCreateQueryResourceObject,
    ListCreateQueryResourceObjectAttributes,
    ProfileCreateQuery,
    ProfileCreateQueryResourceObject,
    ProfileCreateQueryResourceObjectAttributes,
    ProfileEnum,
)
from openapi_client.models.list_enum import ListEnum

from klaviyo_sandbox import counters
from klaviyo_sandbox.accounts import profiles_of
from klaviyo_sandbox.services import issue_tokens
from tests.sandbox.support import BLUEBELL, EVERY_SCOPE, NORTHWIND, fresh_second

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sdk(live_server):
    """Makes SDK clients connected to a sandbox account; closes their kept-alive connections afterwards,
    so the live server's threads end and release their database connections."""
    clients = []

    def connect(account=NORTHWIND, scopes=EVERY_SCOPE):
        token = issue_tokens(account_id=account, scopes=scopes).access_token
        clients.append(
            KlaviyoAPI(api_key=None, access_token=token, test_host=f"{live_server.url}/sandbox", max_delay=5)
        )
        return clients[-1]

    yield connect
    for client in clients:
        client.api_client.rest_client.pool_manager.clear()
    gc.collect()  # the SDK keeps each response in a reference cycle; collecting it closes the socket


@pytest.fixture
def klaviyo(sdk):
    """The SDK, as a customer connected to Northwind with every scope the sandbox imitates."""
    return sdk()


def cursor_of(link):
    """The SDK takes cursors out of https links only; the live server speaks http."""
    return parse_qs(urlsplit(link).query)["page[cursor]"][0]


def profile(email, **attributes):
    return {"data": {"type": "profile", "attributes": {"email": email, **attributes}}}


def test_the_sdk_reads_the_account(klaviyo):
    accounts = klaviyo.Accounts.get_accounts()
    assert accounts.data[0].id == NORTHWIND
    assert accounts.data[0].attributes.contact_information.organization_name == "Northwind Outfitters"
    assert klaviyo.Accounts.get_account(NORTHWIND).data.id == NORTHWIND


def test_the_sdk_reads_profiles_with_filter_sort_pages_and_subscriptions(klaviyo):
    seeds = sorted(profiles_of(NORTHWIND), key=lambda seed: seed.created, reverse=True)
    first = klaviyo.Profiles.get_profiles(
        page_size=5, sort="-created", filter="greater-than(created,2023-01-01T00:00:00Z)",
        additional_fields_profile=["subscriptions"],
    )  # fmt: skip
    assert [row.id for row in first.data] == [seed.id for seed in seeds[:5]]
    assert first.data[0].attributes.subscriptions.email.marketing.consent in ("SUBSCRIBED", "NEVER_SUBSCRIBED")
    second = klaviyo.Profiles.get_profiles(page_size=5, sort="-created", page_cursor=cursor_of(first.links.next))
    assert [row.id for row in second.data] == [seed.id for seed in seeds[5:10]]
    found = klaviyo.Profiles.get_profiles(filter=f'equals(email,"{seeds[3].email}")')
    assert [row.id for row in found.data] == [seeds[3].id]
    one = klaviyo.Profiles.get_profile(seeds[0].id)
    assert one.data.attributes.email == seeds[0].email
    sparse = klaviyo.Profiles.get_profiles(fields_profile=["email"], page_size=1)
    assert sparse["data"][0]["attributes"] == {"email": profiles_of(NORTHWIND)[0].email}


def test_the_sdk_pages_through_every_profile_with_the_whole_links_next_as_its_cursor(klaviyo):
    """Klaviyo's SDK takes a cursor out of an https link only: given the sandbox's http link, it
    sends the whole URL as page[cursor], which the sandbox accepts as Klaviyo would its cursor."""
    seen, cursor, pages = [], None, 0
    while True:
        page = klaviyo.Profiles.get_profiles(page_size=7, sort="id", page_cursor=cursor)
        seen += [row.id for row in page.data]
        pages += 1
        cursor = page.links.next
        if cursor is None:
            break
        assert cursor.startswith("http://")  # not an https link: the SDK sends it whole
        assert pages < 100
    expected = sorted(seed.id for seed in profiles_of(NORTHWIND))
    assert seen == expected  # every profile once, in order
    assert pages == -(-len(expected) // 7)


def test_the_sdk_creates_updates_and_imports_profiles(klaviyo):
    query = ProfileCreateQuery(
        data=ProfileCreateQueryResourceObject(
            type=ProfileEnum.PROFILE,
            attributes=ProfileCreateQueryResourceObjectAttributes(email="sdk@example.com", first_name="Sam"),
        )
    )
    created = klaviyo.Profiles.create_profile(query)
    assert created.data.attributes.first_name == "Sam"
    body = {"data": {"type": "profile", "id": created.data.id, "attributes": {"last_name": "Dev"}}}
    updated = klaviyo.Profiles.update_profile(created.data.id, body)
    assert (updated.data.attributes.first_name, updated.data.attributes.last_name) == ("Sam", "Dev")
    imported = klaviyo.Profiles.create_or_update_profile(profile("sdk@example.com", title="Tester"))
    assert (imported.data.id, imported.data.attributes.title) == (created.data.id, "Tester")
    with pytest.raises(ApiException) as conflict:
        klaviyo.Profiles.create_profile(profile("sdk@example.com"))
    assert conflict.value.status == 409
    (error,) = json.loads(conflict.value.body)["errors"]
    assert (error["code"], error["meta"]["duplicate_profile_id"]) == ("duplicate_profile", created.data.id)


def test_the_sdk_manages_lists_and_their_profiles(klaviyo):
    query = ListCreateQuery(
        data=ListCreateQueryResourceObject(
            type=ListEnum.LIST, attributes=ListCreateQueryResourceObjectAttributes(name="VIP")
        )
    )
    created = klaviyo.Lists.create_list(query)
    list_id = created.data.id
    assert [row.id for row in klaviyo.Lists.get_lists().data] == [list_id]
    renamed = klaviyo.Lists.update_list(
        list_id, {"data": {"type": "list", "id": list_id, "attributes": {"name": "VIPs"}}}
    )
    assert renamed.data.attributes.name == "VIPs"
    seeds = profiles_of(NORTHWIND)[:3]
    members = {"data": [{"type": "profile", "id": seed.id} for seed in seeds]}
    assert klaviyo.Lists.add_profiles_to_list(list_id, members) is None
    assert klaviyo.Lists.get_list(list_id, additional_fields_list=["profile_count"]).data.attributes.profile_count == 3
    in_list = klaviyo.Lists.get_profiles_for_list(list_id)
    assert sorted(row.id for row in in_list.data) == sorted(seed.id for seed in seeds)
    assert all(row.attributes.joined_group_at is not None for row in in_list.data)
    klaviyo.Lists.remove_profiles_from_list(list_id, {"data": [{"type": "profile", "id": seeds[0].id}]})
    ids = sorted(row.id for row in klaviyo.Lists.get_profile_ids_for_list(list_id).data)
    assert ids == sorted(seed.id for seed in seeds[1:])
    klaviyo.Lists.delete_list(list_id)
    with pytest.raises(ApiException) as missing:
        klaviyo.Lists.get_list(list_id)
    assert missing.value.status == 404


def test_the_sdk_records_events_and_reads_them_and_their_metric(klaviyo):
    event = {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {"sku": "A1"},
                "value": 9.5,
                "time": "2026-03-01T12:00:00Z",
                "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": "buyer@example.com"}}},
            },
        }
    }
    assert klaviyo.Events.create_event(event) is None
    metrics = klaviyo.Metrics.get_metrics()
    (metric,) = metrics.data
    assert metric.attributes.name == "Placed Order"
    assert klaviyo.Metrics.get_metric(metric.id).data.attributes.name == "Placed Order"
    events = klaviyo.Events.get_events(filter=f'equals(metric_id,"{metric.id}")', sort="-datetime")
    (recorded,) = events.data
    assert recorded.attributes.event_properties == {"sku": "A1", "$value": 9.5}
    assert recorded.relationships.metric.data.id == metric.id
    buyer = klaviyo.Profiles.get_profiles(filter='equals(email,"buyer@example.com")').data[0]
    assert recorded.relationships.profile.data.id == buyer.id


def test_the_sdk_retries_a_429_after_its_retry_after_and_succeeds(klaviyo, settings):
    settings.KLAVIYO_SANDBOX_RATE_LIMIT_SCALE = 0.01  # get_profiles: 1 a second
    klaviyo.Accounts.get_accounts()  # seeds the account and opens the kept-alive connection
    counters.reset()
    fresh_second()
    klaviyo.Profiles.get_profiles(page_size=1)
    started = time.monotonic()
    second = klaviyo.Profiles.get_profiles(page_size=1)
    assert len(second.data) == 1
    assert time.monotonic() - started >= 1  # it honoured Retry-After: 1
    assert counters.counts().api_requests == 3  # the first call, the 429, the retry


def test_the_sdk_sees_403_for_a_scope_it_was_not_granted(sdk):
    klaviyo = sdk(BLUEBELL, scopes="accounts:read")
    with pytest.raises(ApiException) as denied:
        klaviyo.Profiles.get_profiles()
    assert denied.value.status == 403
    assert json.loads(denied.value.body)["errors"][0]["code"] == "permission_denied"


def test_the_sdk_subscribes_and_unsubscribes_profiles_with_consent_and_list_membership(sdk):
    klaviyo = sdk(scopes=f"{EVERY_SCOPE} subscriptions:write")
    list_id = klaviyo.Lists.create_list({"data": {"type": "list", "attributes": {"name": "Newsletter"}}}).data.id
    seed = profiles_of(NORTHWIND)[0]
    subscribe = {
        "data": {
            "type": "profile-subscription-bulk-create-job",
            "attributes": {
                "custom_source": "Checkout",
                "profiles": {
                    "data": [
                        {
                            "type": "profile",
                            "attributes": {
                                "email": "new-subscriber@example.com",
                                "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}},
                            },
                        },
                        {
                            "type": "profile",
                            "attributes": {
                                "email": seed.email,
                                "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}},
                            },
                        },
                    ]
                },
            },
            "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
        }
    }
    assert klaviyo.Profiles.bulk_subscribe_profiles(subscribe) is None
    members = klaviyo.Lists.get_profiles_for_list(list_id, additional_fields_profile=["subscriptions"])
    by_email = {row.attributes.email: row for row in members.data}
    assert set(by_email) == {"new-subscriber@example.com", seed.email}
    marketing = by_email[seed.email].attributes.subscriptions.email.marketing
    assert (marketing.consent, marketing.can_receive_email_marketing) == ("SUBSCRIBED", True)
    assert marketing.consent_timestamp is not None

    unsubscribe = {
        "data": {
            "type": "profile-subscription-bulk-delete-job",
            "attributes": {
                "profiles": {
                    "data": [
                        {
                            "type": "profile",
                            "attributes": {
                                "email": seed.email,
                                "subscriptions": {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}},
                            },
                        }
                    ]
                }
            },
            "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
        }
    }
    assert klaviyo.Profiles.bulk_unsubscribe_profiles(unsubscribe) is None
    left = klaviyo.Lists.get_profiles_for_list(list_id)
    assert [row.attributes.email for row in left.data] == ["new-subscriber@example.com"]
    profile_now = klaviyo.Profiles.get_profile(seed.id, additional_fields_profile=["subscriptions"])
    marketing = profile_now.data.attributes.subscriptions.email.marketing
    assert (marketing.consent, marketing.can_receive_email_marketing) == ("UNSUBSCRIBED", False)
