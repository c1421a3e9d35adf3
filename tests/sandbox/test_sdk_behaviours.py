"""What the sandbox does, seen through Klaviyo's official Python SDK on a live server: each job, once the SDK
has polled it to ``complete``, has done its work (profiles imported into lists, events recorded, catalog
resources made, changed and deleted, coupon codes made, a profile deleted), and what the SDK creates reads
back with its links (an event's profile and metric, a variant's item, a segment's profiles)."""

import json
import time

import pytest
from openapi_client.exceptions import ApiException

from klaviyo_sandbox.accounts import profiles_of
from klaviyo_sandbox.models import Resource
from klaviyo_sandbox.scopes import KNOWN_SCOPES
from klaviyo_sandbox.services import add_profiles_to_segment
from tests.sandbox.support import NORTHWIND
from tests.sandbox.test_sdk import sdk  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def klaviyo(sdk, settings):  # noqa: F811 (the fixture imported above)
    settings.KLAVIYO_SANDBOX_JOB_DELAY = 0.2
    return sdk(scopes=" ".join(sorted(KNOWN_SCOPES)))


def completed(read, job_id, bound=5.0):
    """Polls a job as integration code does until it is complete; the statuses seen on the way."""
    seen = []
    deadline = time.monotonic() + bound
    while True:
        job = read(job_id)
        seen.append(job.data.attributes.status)
        if seen[-1] == "complete":
            return job, seen
        assert time.monotonic() < deadline, f"the job is still {seen[-1]} after {bound} s"
        time.sleep(0.05)


def post(klaviyo, path, body):
    """A POST through the SDK's configured host, token and revision, without its request models."""
    client = klaviyo.api_client
    headers = {
        "Authorization": f"Bearer {client.configuration.access_token}",
        "revision": client.default_headers.get("revision", "2026-07-15"),
        "Content-Type": "application/vnd.api+json",
        "Accept": "application/vnd.api+json",
    }
    response = client.rest_client.pool_manager.request(
        "POST", f"{client.configuration.host}{path}", body=json.dumps(body), headers=headers
    )
    assert response.status < 300, response.data
    return json.loads(response.data)


def new_list(klaviyo, name):
    return klaviyo.Lists.create_list({"data": {"type": "list", "attributes": {"name": name}}}).data.id


def test_a_profile_bulk_import_job_imports_profiles_into_its_list_and_reports_a_bad_one(klaviyo):
    list_id = new_list(klaviyo, "Backfill")
    seed = profiles_of(NORTHWIND)[0]
    rows = [
        {"email": "ann@example.com", "first_name": "Ann"},  # created by email
        {"phone_number": "+15005550006", "first_name": "Phil"},  # created by phone number
        {"external_id": "shop-42", "last_name": "Ext"},  # created by external id
        {"email": seed.email, "title": "Returning"},  # updates a profile that exists
        {"email": "not-an-email"},  # refused: an import error
    ]
    body = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": [{"type": "profile", "attributes": row} for row in rows]}},
            "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
        }
    }
    started = klaviyo.Profiles.bulk_import_profiles(body)
    assert started.data.attributes.status in ("queued", "processing")
    job, seen = completed(klaviyo.Profiles.get_bulk_import_profiles_job, started.data.id)
    assert seen[0] in ("queued", "processing")
    attributes = job.data.attributes
    assert (attributes.total_count, attributes.completed_count, attributes.failed_count) == (5, 4, 1)

    (error,) = klaviyo.Profiles.get_errors_for_bulk_import_profiles_job(started.data.id).data
    assert error.attributes.source.pointer == "/data/attributes/profiles/data/4/attributes/email"
    assert error.attributes.original_payload["attributes"] == {"email": "not-an-email"}

    ann = klaviyo.Profiles.get_profiles(filter='equals(email,"ann@example.com")').data[0]
    assert ann.attributes.first_name == "Ann"
    phil = klaviyo.Profiles.get_profiles(filter='equals(phone_number,"+15005550006")').data[0]
    assert phil.attributes.first_name == "Phil"
    ext = klaviyo.Profiles.get_profiles(filter='equals(external_id,"shop-42")').data[0]
    assert ext.attributes.last_name == "Ext"
    assert klaviyo.Profiles.get_profile(seed.id).data.attributes.title == "Returning"

    imported = {ann.id, phil.id, ext.id, seed.id}
    members = klaviyo.Lists.get_profiles_for_list(list_id).data
    assert {row.id for row in members} == imported
    job_profiles = klaviyo.Profiles.get_profiles_for_bulk_import_profiles_job(started.data.id).data
    assert {row.id for row in job_profiles} == imported
    assert [row.id for row in klaviyo.Profiles.get_list_for_bulk_import_profiles_job(started.data.id).data] == [list_id]
    # The profile's side of its lists.
    assert [row.id for row in klaviyo.Profiles.get_lists_for_profile(ann.id).data] == [list_id]
    assert [row.id for row in klaviyo.Profiles.get_list_ids_for_profile(ann.id).data] == [list_id]


def test_an_event_bulk_create_job_records_events_readable_with_their_profile_and_metric(klaviyo):
    def event(sku, value):
        return {
            "type": "event",
            "attributes": {
                "properties": {"sku": sku},
                "value": value,
                "time": "2026-03-01T12:00:00Z",
                "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
            },
        }

    body = {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {
                "events-bulk-create": {
                    "data": [
                        {
                            "type": "event-bulk-create",
                            "attributes": {
                                "profile": {"data": {"type": "profile", "attributes": {"email": "bulk@example.com"}}},
                                "events": {"data": [event("A1", 10.0), event("B2", 20.0)]},
                            },
                        }
                    ]
                }
            },
        }
    }
    assert klaviyo.Events.bulk_create_events(body) is None
    buyer = klaviyo.Profiles.get_profiles(filter='equals(email,"bulk@example.com")').data[0]
    events = klaviyo.Events.get_events(filter=f'equals(profile_id,"{buyer.id}")').data
    assert sorted(row.attributes.event_properties["sku"] for row in events) == ["A1", "B2"]
    one = klaviyo.Events.get_event(events[0].id, include=["metric", "profile"])
    assert one.data.relationships.profile.data.id == buyer.id
    metric_id = one.data.relationships.metric.data.id
    included = {(row["type"], row["id"]) for row in one.to_dict().get("included", [])}
    assert {("metric", metric_id), ("profile", buyer.id)} <= included
    assert klaviyo.Events.get_event_metric(events[0].id).data.attributes.name == "Placed Order"
    assert klaviyo.Events.get_event_profile(events[0].id).data.attributes.email == "bulk@example.com"


def catalog_item(external_id, title, price):
    return {
        "type": "catalog-item",
        "attributes": {
            "external_id": external_id,
            "title": title,
            "description": f"{title}, cotton",
            "url": f"https://shop.example.com/{external_id}",
            "price": price,
            "catalog_type": "$default",
            "integration_type": "$custom",
        },
    }


def catalog_variant(external_id, item_id, sku, quantity=5):
    return {
        "type": "catalog-variant",
        "attributes": {
            "external_id": external_id,
            "title": f"Variant {sku}",
            "description": "A size",
            "sku": sku,
            "inventory_quantity": quantity,
            "inventory_policy": 1,
            "price": 25.0,
            "url": f"https://shop.example.com/{sku}",
            "catalog_type": "$default",
            "integration_type": "$custom",
        },
        "relationships": {"item": {"data": {"type": "catalog-item", "id": item_id}}},
    }


def test_catalog_items_round_trip_and_bulk_jobs_create_update_and_delete_them(klaviyo):
    catalogs = klaviyo.Catalogs
    created = catalogs.create_catalog_item({"data": catalog_item("SHIRT", "Shirt", 25.0)})
    item_id = created.data.id
    assert item_id == "$custom:::$default:::SHIRT"
    assert catalogs.get_catalog_item(item_id).data.attributes.title == "Shirt"
    patch = {"data": {"type": "catalog-item", "id": item_id, "attributes": {"price": 19.0}}}
    assert catalogs.update_catalog_item(item_id, patch).data.attributes.price == 19.0
    assert catalogs.get_catalog_item(item_id).data.attributes.price == 19.0

    # Categories: one made with the item in it; the item's side shows it.
    category = {
        "data": {
            "type": "catalog-category",
            "attributes": {"external_id": "TOPS", "name": "Tops"},
            "relationships": {"items": {"data": [{"type": "catalog-item", "id": item_id}]}},
        }
    }
    category_id = catalogs.create_catalog_category(category).data.id
    assert [row.id for row in catalogs.get_items_for_catalog_category(category_id).data] == [item_id]
    assert [row.id for row in catalogs.get_categories_for_catalog_item(item_id).data] == [category_id]

    # Variants belong to their item.
    variant = catalogs.create_catalog_variant({"data": catalog_variant("SHIRT-M", item_id, "SHIRT-M")})
    assert [row.id for row in catalogs.get_variants_for_catalog_item(item_id).data] == [variant.data.id]
    bulk = {"type": "catalog-variant-bulk-create-job", "attributes": {"variants": {"data": [
        catalog_variant("X-1", "$custom:::$default:::NOPE", "X-1")]}}}  # fmt: skip
    with pytest.raises(ApiException) as orphan:
        catalogs.bulk_create_catalog_variants({"data": bulk})
    assert orphan.value.status == 400
    (error,) = json.loads(orphan.value.body)["errors"]
    assert error["source"]["pointer"] == "/data/attributes/variants/data/0/relationships/item/data/id"

    # A bulk create job makes its items once complete, and says which.
    job = {
        "data": {
            "type": "catalog-item-bulk-create-job",
            "attributes": {"items": {"data": [catalog_item("HAT", "Hat", 10.0), catalog_item("CAP", "Cap", 8.0)]}},
        }
    }
    started = catalogs.bulk_create_catalog_items(job)
    done, _ = completed(catalogs.get_bulk_create_catalog_items_job, started.data.id)
    assert (done.data.attributes.total_count, done.data.attributes.completed_count) == (2, 2)
    made = {row.id: row.attributes.title for row in catalogs.get_catalog_items().data}
    assert made == {item_id: "Shirt", "$custom:::$default:::HAT": "Hat", "$custom:::$default:::CAP": "Cap"}
    job_items = catalogs.get_bulk_create_catalog_items_job(started.data.id, include=["items"])
    assert {row["id"] for row in job_items.to_dict()["included"]} == {
        "$custom:::$default:::HAT",
        "$custom:::$default:::CAP",
    }

    # A duplicate makes none of them (all or nothing).
    again = {"data": {**job["data"], "attributes": {"items": {"data": [catalog_item("SOCK", "Sock", 3.0),
        catalog_item("HAT", "Hat", 10.0)]}}}}  # fmt: skip
    with pytest.raises(ApiException) as duplicate:
        catalogs.bulk_create_catalog_items(again)
    assert duplicate.value.status == 409
    assert "$custom:::$default:::SOCK" not in {row.id for row in catalogs.get_catalog_items().data}

    update = {
        "data": {
            "type": "catalog-item-bulk-update-job",
            "attributes": {
                "items": {
                    "data": [{"type": "catalog-item", "id": "$custom:::$default:::HAT", "attributes": {"price": 12.0}}]
                }
            },
        }
    }
    completed(catalogs.get_bulk_update_catalog_items_job, catalogs.bulk_update_catalog_items(update).data.id)
    assert catalogs.get_catalog_item("$custom:::$default:::HAT").data.attributes.price == 12.0

    delete = {
        "data": {
            "type": "catalog-item-bulk-delete-job",
            "attributes": {"items": {"data": [{"type": "catalog-item", "id": "$custom:::$default:::CAP"}]}},
        }
    }
    completed(catalogs.get_bulk_delete_catalog_items_job, catalogs.bulk_delete_catalog_items(delete).data.id)
    with pytest.raises(ApiException) as gone:
        catalogs.get_catalog_item("$custom:::$default:::CAP")
    assert gone.value.status == 404
    catalogs.delete_catalog_item(item_id)
    assert [row.id for row in catalogs.get_catalog_items().data] == ["$custom:::$default:::HAT"]


def test_variant_and_category_bulk_jobs_make_them_under_their_item(klaviyo):
    catalogs = klaviyo.Catalogs
    item_id = catalogs.create_catalog_item({"data": catalog_item("BAG", "Bag", 40.0)}).data.id
    variants = {
        "data": {
            "type": "catalog-variant-bulk-create-job",
            "attributes": {"variants": {"data": [catalog_variant(f"BAG-{n}", item_id, f"BAG-{n}") for n in (1, 2)]}},
        }
    }
    completed(catalogs.get_bulk_create_variants_job, catalogs.bulk_create_catalog_variants(variants).data.id)
    under = catalogs.get_variants_for_catalog_item(item_id).data
    assert sorted(row.attributes.sku for row in under) == ["BAG-1", "BAG-2"]
    categories = {
        "data": {
            "type": "catalog-category-bulk-create-job",
            "attributes": {
                "categories": {
                    "data": [
                        {
                            "type": "catalog-category",
                            "attributes": {"external_id": "BAGS", "name": "Bags"},
                            "relationships": {"items": {"data": [{"type": "catalog-item", "id": item_id}]}},
                        }
                    ]
                }
            },
        }
    }
    completed(catalogs.get_bulk_create_categories_job, catalogs.bulk_create_catalog_categories(categories).data.id)
    assert [row.attributes.name for row in catalogs.get_categories_for_catalog_item(item_id).data] == ["Bags"]


def test_a_coupon_code_bulk_create_job_makes_codes_under_the_coupon(klaviyo):
    coupons = klaviyo.Coupons
    coupon = coupons.create_coupon({"data": {"type": "coupon", "attributes": {"external_id": "TENOFF"}}})
    assert coupon.data.id == "TENOFF"

    def code(unique_code):
        return {
            "type": "coupon-code",
            "attributes": {"unique_code": unique_code, "expires_at": "2030-01-31T00:00:00Z"},
            "relationships": {"coupon": {"data": {"type": "coupon", "id": "TENOFF"}}},
        }

    job = {
        "data": {
            "type": "coupon-code-bulk-create-job",
            "attributes": {"coupon-codes": {"data": [code("A1"), code("B2")]}},
        }
    }
    started = coupons.bulk_create_coupon_codes(job)
    done, _ = completed(coupons.get_bulk_create_coupon_codes_job, started.data.id)
    assert done.data.attributes.completed_count == 2
    under = coupons.get_codes_for_coupon("TENOFF").data
    assert sorted(row.attributes.unique_code for row in under) == ["A1", "B2"]
    assert coupons.get_coupon_for_coupon_code(under[0].id).data.id == "TENOFF"
    unknown = {"data": {**job["data"], "attributes": {"coupon-codes": {"data": [
        {**code("C3"), "relationships": {"coupon": {"data": {"type": "coupon", "id": "NOPE"}}}}]}}}}  # fmt: skip
    with pytest.raises(ApiException) as refused:
        coupons.bulk_create_coupon_codes(unknown)
    assert refused.value.status == 400
    assert len(coupons.get_codes_for_coupon("TENOFF").data) == 2


def test_a_back_in_stock_subscription_needs_a_variant_and_ties_the_profile_to_it(klaviyo):
    catalogs = klaviyo.Catalogs
    item_id = catalogs.create_catalog_item({"data": catalog_item("BOOT", "Boot", 90.0)}).data.id
    variant_id = catalogs.create_catalog_variant({"data": catalog_variant("BOOT-42", item_id, "BOOT-42", 0)}).data.id

    def subscription(variant):
        return {
            "data": {
                "type": "back-in-stock-subscription",
                "attributes": {
                    "channels": ["EMAIL"],
                    "profile": {"data": {"type": "profile", "attributes": {"email": "waiting@example.com"}}},
                },
                "relationships": {"variant": {"data": {"type": "catalog-variant", "id": variant}}},
            }
        }

    with pytest.raises(ApiException) as unknown:
        catalogs.create_back_in_stock_subscription(subscription("$custom:::$default:::NOPE"))
    assert unknown.value.status == 400
    assert klaviyo.Profiles.get_profiles(filter='equals(email,"waiting@example.com")').data == []
    assert catalogs.create_back_in_stock_subscription(subscription(variant_id)) is None
    waiting = klaviyo.Profiles.get_profiles(filter='equals(email,"waiting@example.com")').data[0]
    # Klaviyo's API has no endpoint that reads subscriptions back; the sandbox keeps them in its database.
    (kept,) = Resource.objects.filter(account_id=NORTHWIND, type="back-in-stock-subscription")
    assert kept.relationships["variant"] == {"type": "catalog-variant", "id": variant_id}
    assert kept.relationships["profile"] == {"type": "profile", "id": waiting.id}


def test_a_data_privacy_deletion_job_deletes_the_profile(klaviyo):
    seed = profiles_of(NORTHWIND)[1]
    assert klaviyo.Profiles.get_profile(seed.id).data.id == seed.id
    body = {
        "data": {
            "type": "data-privacy-deletion-job",
            "attributes": {"profile": {"data": {"type": "profile", "attributes": {"email": seed.email}}}},
        }
    }
    assert klaviyo.Data_Privacy.request_profile_deletion(body) is None
    with pytest.raises(ApiException) as gone:
        klaviyo.Profiles.get_profile(seed.id)
    assert gone.value.status == 404
    assert klaviyo.Profiles.get_profiles(filter=f'equals(email,"{seed.email}")').data == []


def test_a_segment_reads_back_with_the_profiles_added_to_it(klaviyo):
    definition = {
        "condition_groups": [
            {
                "conditions": [
                    {
                        "type": "profile-property",
                        "property": "properties['vip']",
                        "filter": {"type": "boolean", "operator": "equals", "value": True},
                    }
                ]
            }
        ]
    }
    body = {"data": {"type": "segment", "attributes": {"name": "VIPs", "definition": definition}}}
    segment_id = klaviyo.Segments.create_segment(body).data.id
    assert klaviyo.Segments.get_segment(segment_id).data.attributes.name == "VIPs"
    assert [row.id for row in klaviyo.Segments.get_segments().data] == [segment_id]
    assert klaviyo.Segments.get_profiles_for_segment(segment_id).data == []
    # The sandbox does not evaluate definitions: a segment's members are the profiles its test kit adds.
    seeds = profiles_of(NORTHWIND)[:2]
    add_profiles_to_segment(account_id=NORTHWIND, segment_id=segment_id, profile_ids=[seed.id for seed in seeds])
    members = klaviyo.Segments.get_profiles_for_segment(segment_id).data
    assert {row.attributes.email for row in members} == {seed.email for seed in seeds}
    assert {row.id for row in klaviyo.Segments.get_profile_ids_for_segment(segment_id).data} == {s.id for s in seeds}
    assert [row.id for row in klaviyo.Profiles.get_segments_for_profile(seeds[0].id).data] == [segment_id]


def test_tags_and_webhooks_are_created_read_back_and_listed(klaviyo):
    group = klaviyo.Tags.create_tag_group({"data": {"type": "tag-group", "attributes": {"name": "Seasons"}}})
    tag = {
        "data": {
            "type": "tag",
            "attributes": {"name": "Summer"},
            "relationships": {"tag-group": {"data": {"type": "tag-group", "id": group.data.id}}},
        }
    }
    tag_id = klaviyo.Tags.create_tag(tag).data.id
    assert klaviyo.Tags.get_tag(tag_id).data.attributes.name == "Summer"
    assert [row.id for row in klaviyo.Tags.get_tags().data] == [tag_id]
    assert [row.id for row in klaviyo.Tags.get_tags_for_tag_group(group.data.id).data] == [tag_id]

    webhook = {
        "data": {
            "type": "webhook",
            "attributes": {
                "name": "Orders",
                "endpoint_url": "https://shop.example.com/hooks",
                "secret_key": "s3cret",
            },
            "relationships": {"webhook-topics": {"data": [{"type": "webhook-topic", "id": "event:klaviyo.sent_sms"}]}},
        }
    }
    webhook_id = klaviyo.Webhooks.create_webhook(webhook).data.id
    read = klaviyo.Webhooks.get_webhook(webhook_id).data
    assert (read.attributes.name, read.attributes.endpoint_url) == ("Orders", "https://shop.example.com/hooks")
    assert [row.id for row in klaviyo.Webhooks.get_webhooks().data] == [webhook_id]


def test_templates_campaigns_and_flows_are_created_read_back_and_listed(klaviyo):
    template = {
        "data": {"type": "template", "attributes": {"name": "Welcome", "editor_type": "CODE", "html": "<p>Hi</p>"}}
    }
    template_id = klaviyo.Templates.create_template(template).data.id
    assert klaviyo.Templates.get_template(template_id).data.attributes.html == "<p>Hi</p>"
    assert [row.id for row in klaviyo.Templates.get_templates().data] == [template_id]

    list_id = new_list(klaviyo, "Campaign audience")
    campaign = {
        "data": {
            "type": "campaign",
            "attributes": {
                "name": "Summer sale",
                "audiences": {"included": [list_id]},
                "campaign-messages": {
                    "data": [
                        {
                            "type": "campaign-message",
                            "attributes": {
                                "definition": {
                                    "channel": "email",
                                    "content": {"subject": "Sale", "from_email": "shop@example.com"},
                                }
                            },
                        }
                    ]
                },
            },
        }
    }
    # klaviyo-api 25's create_campaign sends a later revision's body (attributes.definition), which the
    # sandbox's description (revision 2026-07-15) does not take: the campaign is created with that revision's
    # body through the SDK's own HTTP client, then read back through the SDK.
    campaign_id = post(klaviyo, "/api/campaigns", campaign)["data"]["id"]
    # Its answers too are that revision's shape, which the SDK's models (a later one's) refuse: read raw.
    read = json.loads(klaviyo.Campaigns.get_campaign_without_preload_content(campaign_id).data)
    assert read["data"]["attributes"]["name"] == "Summer sale"
    listed = klaviyo.Campaigns.get_campaigns_without_preload_content(filter="equals(messages.channel,'email')")
    assert listed.status == 200  # the sandbox does not yet match messages.channel against a campaign's messages

    flow = {
        "data": {
            "type": "flow",
            "attributes": {
                "name": "Welcome series",
                "definition": {
                    "triggers": [{"type": "list", "id": list_id}],
                    "profile_filter": None,
                    "entry_action_id": "1",
                    "actions": [
                        {
                            "temporary_id": "1",
                            "type": "send-email",
                            "links": {"next": None},
                            "data": {
                                "message": {
                                    "from_email": "shop@example.com",
                                    "from_label": "Shop",
                                    "reply_to_email": None,
                                    "cc_email": None,
                                    "bcc_email": None,
                                    "subject_line": "Welcome",
                                    "preview_text": "",
                                    "template_id": template_id,
                                    "smart_sending_enabled": True,
                                    "transactional": False,
                                    "add_tracking_params": False,
                                    "custom_tracking_params": None,
                                    "additional_filters": None,
                                    "name": "Welcome email",
                                },
                                "status": "draft",
                            },
                        }
                    ],
                },
            },
        }
    }
    flow_id = klaviyo.Flows.create_flow(flow).data.id
    assert klaviyo.Flows.get_flow(flow_id).data.attributes.name == "Welcome series"
    assert [row.id for row in klaviyo.Flows.get_flows().data] == [flow_id]
