"""The generic engine: resources of every type round-trip through the operations of Klaviyo's description."""

import time

import pytest

from klaviyo_sandbox.scopes import KNOWN_SCOPES
from tests.sandbox.support import BLUEBELL, NORTHWIND, api, error_of, token_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def token():
    return token_for(scopes=" ".join(sorted(KNOWN_SCOPES)))


def catalog_item(external_id="SKU-1", title="Blue shirt", price=25.0):
    return {
        "data": {
            "type": "catalog-item",
            "attributes": {
                "external_id": external_id,
                "title": title,
                "description": "A shirt.",
                "url": f"https://shop.example/{external_id}",
                "price": price,
            },
        }
    }


def test_a_created_catalog_item_reads_back_lists_updates_and_deletes(client, token):
    created = api(client, "POST", "/catalog-items", token, body=catalog_item())
    assert created.status_code == 201, created.content
    item = created.json()["data"]
    assert item["type"] == "catalog-item"
    assert item["attributes"]["title"] == "Blue shirt"
    assert item["attributes"]["price"] == 25.0
    read = api(client, "GET", f"/catalog-items/{item['id']}", token)
    assert read.status_code == 200
    assert read.json()["data"]["attributes"]["external_id"] == "SKU-1"
    listed = api(client, "GET", "/catalog-items", token)
    assert [found["id"] for found in listed.json()["data"]] == [item["id"]]
    patch = {"data": {"type": "catalog-item", "id": item["id"], "attributes": {"title": "Red shirt"}}}
    updated = api(client, "PATCH", f"/catalog-items/{item['id']}", token, body=patch)
    assert updated.status_code == 200
    assert updated.json()["data"]["attributes"]["title"] == "Red shirt"
    assert updated.json()["data"]["attributes"]["price"] == 25.0
    assert api(client, "DELETE", f"/catalog-items/{item['id']}", token).status_code == 204
    assert error_of(api(client, "GET", f"/catalog-items/{item['id']}", token), 404)["code"] == "not_found"


def test_resources_belong_to_their_account(client, token):
    created = api(client, "POST", "/catalog-items", token, body=catalog_item()).json()["data"]
    other = token_for(account=BLUEBELL, scopes=" ".join(sorted(KNOWN_SCOPES)))
    assert error_of(api(client, "GET", f"/catalog-items/{created['id']}", other), 404)["code"] == "not_found"
    assert api(client, "GET", "/catalog-items", other).json()["data"] == []


@pytest.mark.parametrize("identifier", ["nope", "0" * 300, "%F0%9F%92%A9", "a.b", "-1", "%20"])
def test_an_unknown_id_of_any_shape_is_a_json_api_404(client, token, identifier):
    error = error_of(api(client, "GET", f"/coupons/{identifier}", token), 404)
    assert error["code"] == "not_found"
    assert error_of(api(client, "GET", f"/segments/{identifier}/profiles", token), 404)["code"] == "not_found"


def test_an_invalid_body_is_a_400_pointing_at_the_member_and_changes_nothing(client, token):
    body = catalog_item()
    body["data"]["attributes"]["price"] = "cheap"
    error = error_of(api(client, "POST", "/catalog-items", token, body=body), 400)
    assert error["code"] == "invalid"
    assert error["source"] == {"pointer": "/data/attributes/price"}
    del body["data"]["attributes"]["title"]
    body["data"]["attributes"]["price"] = 3
    error = error_of(api(client, "POST", "/catalog-items", token, body=body), 400)
    assert error["source"] == {"pointer": "/data/attributes"}
    assert "'title' is a required property" in error["detail"]
    assert api(client, "GET", "/catalog-items", token).json()["data"] == []


def test_query_parameters_are_checked_against_the_description(client, token):
    for name, value in [
        ("fields[catalog-item]", "title,colour"),
        ("sort", "colour"),
        ("page[size]", "101"),
        ("include", "nothing"),
        ("filter", "equals(colour,'blue')"),
        ("filter", "greater-than(title,'a')"),
        ("filter", "equals(title,"),
        ("page[cursor]", "not-a-cursor"),
        ("fields[nothing]", "a"),
    ]:
        error = error_of(api(client, "GET", "/catalog-items", token, **{name: value}), 400)
        assert error["code"] == "invalid"
        assert error["source"] == {"parameter": name}, (name, value)


def test_filter_sort_sparse_fields_and_cursor_pages(client, token):
    for number in range(5):
        api(client, "POST", "/catalog-items", token, body=catalog_item(f"SKU-{number}", f"Item {number}"))
    found = api(client, "GET", "/catalog-items", token, filter="any(ids,['$custom:::$default:::SKU-1','x'])")
    assert [item["id"] for item in found.json()["data"]] == ["$custom:::$default:::SKU-1"]
    first = api(client, "GET", "/catalog-items", token, **{"page[size]": "2", "sort": "-created"})
    assert first.status_code == 200, first.content
    pages, link = [first.json()], first.json()["links"].get("next")
    while link:
        response = api(client, "GET", link, token)
        pages.append(response.json())
        link = response.json()["links"].get("next")
    titles = [item["attributes"]["title"] for page in pages for item in page["data"]]
    assert sorted(titles) == [f"Item {number}" for number in range(5)]
    assert len(pages) == 3
    sparse = api(client, "GET", "/catalog-items", token, **{"fields[catalog-item]": "title"})
    assert {tuple(item["attributes"]) for item in sparse.json()["data"]} == {("title",)}
    named = api(client, "GET", "/catalog-items", token, filter='contains(title,"m 3")')
    assert [item["attributes"]["title"] for item in named.json()["data"]] == ["Item 3"]


def test_a_job_is_queued_then_complete_after_the_configured_delay(client, token, settings):
    settings.KLAVIYO_SANDBOX_JOB_DELAY = 0.5
    body = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": [{"type": "profile", "attributes": {"email": "a@example.com"}}]}},
        }
    }
    created = api(client, "POST", "/profile-bulk-import-jobs", token, body=body)
    assert created.status_code == 202, created.content
    job = created.json()["data"]
    assert job["attributes"]["status"] == "queued"
    assert job["attributes"]["total_count"] == 1
    time.sleep(0.6)
    done = api(client, "GET", f"/profile-bulk-import-jobs/{job['id']}", token).json()["data"]
    assert done["attributes"]["status"] == "complete"
    assert done["attributes"]["completed_count"] == 1


def test_relationships_are_kept_and_answered(client, token):
    category = {"data": {"type": "catalog-category", "attributes": {"external_id": "c1", "name": "Shirts"}}}
    made = api(client, "POST", "/catalog-categories", token, body=category)
    assert made.status_code == 201, made.content
    category_id = made.json()["data"]["id"]
    item = api(client, "POST", "/catalog-items", token, body=catalog_item()).json()["data"]
    link = {"data": [{"type": "catalog-item", "id": item["id"]}]}
    added = api(client, "POST", f"/catalog-categories/{category_id}/relationships/items", token, body=link)
    assert added.status_code == 204, added.content
    ids = api(client, "GET", f"/catalog-categories/{category_id}/relationships/items", token)
    assert ids.json()["data"] == [{"type": "catalog-item", "id": item["id"]}]
    related = api(client, "GET", f"/catalog-categories/{category_id}/items", token)
    assert [found["id"] for found in related.json()["data"]] == [item["id"]]
    removed = api(client, "DELETE", f"/catalog-categories/{category_id}/relationships/items", token, body=link)
    assert removed.status_code == 204
    assert api(client, "GET", f"/catalog-categories/{category_id}/relationships/items", token).json()["data"] == []


def test_a_subscribe_job_naming_an_unknown_list_or_profile_is_a_400_and_changes_nothing(client, token):
    from klaviyo_sandbox.models import Consent, Profile

    def job(list_id, profile_id=None):
        consent = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
        entry = {"type": "profile", "attributes": {"email": "x@example.com", "subscriptions": consent}}
        if profile_id:
            entry["id"] = profile_id
        return {
            "data": {
                "type": "profile-subscription-bulk-create-job",
                "attributes": {"profiles": {"data": [entry]}},
                "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
            }
        }

    api(client, "GET", "/accounts", token)  # the account's fixed profiles are written on first use
    subscribed = set(Profile.objects.filter(email_consent=Consent.SUBSCRIBED).values_list("pk", flat=True))
    error = error_of(api(client, "POST", "/profile-subscription-bulk-create-jobs", token, body=job("NoSuch")), 400)
    assert error["source"] == {"pointer": "/data/relationships/list/data/id"}
    list_id = api(client, "POST", "/lists", token, body={"data": {"type": "list", "attributes": {"name": "L"}}})
    list_id = list_id.json()["data"]["id"]
    response = api(client, "POST", "/profile-subscription-bulk-create-jobs", token, body=job(list_id, "01NOPE"))
    assert error_of(response, 400)["source"] == {"pointer": "/data/attributes/profiles/data/0/id"}
    assert not Profile.objects.filter(email="x@example.com").exists()
    assert set(Profile.objects.filter(email_consent=Consent.SUBSCRIBED).values_list("pk", flat=True)) == subscribed
    done = api(client, "POST", "/profile-subscription-bulk-create-jobs", token, body=job(list_id))
    assert done.status_code == 202
    assert done.content == b""
    assert Profile.objects.get(email="x@example.com").email_consent == Consent.SUBSCRIBED


def test_a_date_time_member_must_be_rfc_3339(client, token):
    coupon = api(
        client, "POST", "/coupons", token, body={"data": {"type": "coupon", "attributes": {"external_id": "TEN"}}}
    )
    assert coupon.status_code == 201, coupon.content
    code = {
        "data": {
            "type": "coupon-code",
            "attributes": {"unique_code": "ABC123", "expires_at": "tomorrow"},
            "relationships": {"coupon": {"data": {"type": "coupon", "id": coupon.json()["data"]["id"]}}},
        }
    }
    error = error_of(api(client, "POST", "/coupon-codes", token, body=code), 400)
    assert error["source"] == {"pointer": "/data/attributes/expires_at"}
    code["data"]["attributes"]["expires_at"] = "2030-01-31T00:00:00Z"
    created = api(client, "POST", "/coupon-codes", token, body=code)
    assert created.status_code == 200, created.content  # the description's status for create_coupon_code
    assert created.json()["data"]["attributes"]["unique_code"] == "ABC123"
    assert created.json()["data"]["attributes"]["expires_at"] == "2030-01-31T00:00:00Z"


def test_a_profile_bulk_import_job_creates_and_updates_the_profiles_and_fills_its_lists(client, token):
    from klaviyo_sandbox.accounts import profiles_of
    from klaviyo_sandbox.models import Profile

    api(client, "GET", "/accounts", token)  # the account's fixed profiles are written on first use
    seed = profiles_of(NORTHWIND)[0]
    list_id = api(client, "POST", "/lists", token, body={"data": {"type": "list", "attributes": {"name": "Import"}}})
    list_id = list_id.json()["data"]["id"]

    def job(*attributes, lists=(list_id,)):
        return {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {"profiles": {"data": [{"type": "profile", "attributes": a} for a in attributes]}},
                "relationships": {"lists": {"data": [{"type": "list", "id": one} for one in lists]}},
            }
        }

    unknown = job({"email": "fine@example.com"}, lists=("NoSuch",))
    error = error_of(api(client, "POST", "/profile-bulk-import-jobs", token, body=unknown), 400)
    assert error["source"] == {"pointer": "/data/relationships/lists/data/0/id"}
    assert not Profile.objects.filter(email="fine@example.com").exists()
    bad = job({"email": "other@example.com"}, {"email": "not-an-email"})
    partial = api(client, "POST", "/profile-bulk-import-jobs", token, body=bad).json()["data"]
    assert Profile.objects.filter(email="other@example.com").exists()  # a bad profile is left out alone
    (import_error,) = api(client, "GET", f"/profile-bulk-import-jobs/{partial['id']}/import-errors", token).json()[
        "data"
    ]
    assert import_error["attributes"]["source"] == {"pointer": "/data/attributes/profiles/data/1/attributes/email"}
    assert import_error["attributes"]["original_payload"] == {
        "type": "profile",
        "attributes": {"email": "not-an-email"},
    }

    good = job({"email": "fine@example.com", "first_name": "Fay"}, {"email": seed.email, "title": "Buyer"})
    created = api(client, "POST", "/profile-bulk-import-jobs", token, body=good)
    assert created.status_code == 202, created.content
    assert created.json()["data"]["attributes"]["total_count"] == 2
    assert Profile.objects.get(email="fine@example.com").first_name == "Fay"
    assert Profile.objects.get(pk=seed.id).title == "Buyer"
    members = api(client, "GET", f"/lists/{list_id}/profiles", token).json()["data"]
    assert sorted(row["attributes"]["email"] for row in members) == sorted(
        ["fine@example.com", "other@example.com", seed.email]
    )


def test_an_event_bulk_create_job_records_every_event_or_none(client, token):
    from klaviyo_sandbox.models import Event

    def job(*events, email="buyer@example.com"):
        return {
            "data": {
                "type": "event-bulk-create-job",
                "attributes": {
                    "events-bulk-create": {
                        "data": [
                            {
                                "type": "event-bulk-create",
                                "attributes": {
                                    "profile": {"data": {"type": "profile", "attributes": {"email": email}}},
                                    "events": {"data": [{"type": "event", "attributes": e} for e in events]},
                                },
                            }
                        ]
                    }
                },
            }
        }

    def order(value, **extra):
        metric = {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}}
        return {"properties": {"OrderId": value}, "metric": metric, "value": value, **extra}

    bad = job(order(10), order(20, time="yesterday"))
    error = error_of(api(client, "POST", "/event-bulk-create-jobs", token, body=bad), 400)
    assert error["source"]["pointer"].startswith("/data/attributes/events-bulk-create/data/0/attributes/events/data/1")
    assert not Event.objects.exists()
    done = api(client, "POST", "/event-bulk-create-jobs", token, body=job(order(10), order(20)))
    assert done.status_code == 202, done.content
    listed = api(client, "GET", "/events", token, sort="datetime").json()["data"]
    assert sorted(row["attributes"]["event_properties"]["OrderId"] for row in listed) == [10, 20]


def test_a_data_privacy_deletion_job_deletes_the_profile_with_its_events_and_memberships(client, token):
    from klaviyo_sandbox.accounts import profiles_of
    from klaviyo_sandbox.models import Event, ListMembership, Profile

    api(client, "GET", "/accounts", token)  # the account's fixed profiles are written on first use
    seed = profiles_of(NORTHWIND)[0]
    list_id = api(client, "POST", "/lists", token, body={"data": {"type": "list", "attributes": {"name": "L"}}})
    list_id = list_id.json()["data"]["id"]
    members = {"data": [{"type": "profile", "id": seed.id}]}
    assert api(client, "POST", f"/lists/{list_id}/relationships/profiles", token, body=members).status_code == 204
    metric = {"data": {"type": "metric", "attributes": {"name": "Viewed"}}}
    profile = {"data": {"type": "profile", "attributes": {"email": seed.email}}}
    event = {"data": {"type": "event", "attributes": {"properties": {}, "metric": metric, "profile": profile}}}
    assert api(client, "POST", "/events", token, body=event).status_code == 202

    def job(attributes):
        data = {"type": "profile", "attributes": attributes}
        return {"data": {"type": "data-privacy-deletion-job", "attributes": {"profile": {"data": data}}}}

    error = error_of(api(client, "POST", "/data-privacy-deletion-jobs", token, body=job({})), 400)
    assert error["source"] == {"pointer": "/data/attributes/profile/data/attributes"}
    assert Profile.objects.filter(pk=seed.id).exists()
    done = api(client, "POST", "/data-privacy-deletion-jobs", token, body=job({"email": seed.email}))
    assert done.status_code == 202, done.content
    assert not Profile.objects.filter(pk=seed.id).exists()
    assert not Event.objects.filter(profile_id=seed.id).exists()
    assert not ListMembership.objects.filter(profile_id=seed.id).exists()
    assert error_of(api(client, "GET", f"/profiles/{seed.id}", token), 404)["code"] == "not_found"
