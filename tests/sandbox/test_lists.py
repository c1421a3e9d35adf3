"""Lists: create, read, rename, delete; profiles in a list: add, remove, page through, filter."""

import pytest
from django.utils import timezone

from klaviyo_sandbox.accounts import profiles_of
from klaviyo_sandbox.models import ListMembership, ProfileList
from tests.sandbox.support import (
    BLUEBELL,
    MIXED_CASE_IDS,
    NORTHWIND,
    api,
    error_of,
    ids,
    in_a_language_collation,
    token_for,
)

pytestmark = pytest.mark.django_db


def new_list(name="Newsletter", **attributes):
    return {"data": {"type": "list", "attributes": {"name": name, **attributes}}}


def members(*profile_ids):
    return {"data": [{"type": "profile", "id": profile_id} for profile_id in profile_ids]}


def create_list(client, token, name="Newsletter", **attributes):
    response = api(client, "POST", "/lists", token, body=new_list(name, **attributes))
    assert response.status_code == 201, response.content
    return response.json()["data"]


def test_create_list_answers_201_like_klaviyo(client):
    response = api(client, "POST", "/lists", token_for(), body=new_list("VIP", opt_in_process="double_opt_in"))
    body = response.json()
    created = body["data"]
    assert response.status_code == 201
    assert created["type"] == "list"
    assert len(created["id"]) == 6
    assert created["attributes"]["name"] == "VIP"
    assert created["attributes"]["opt_in_process"] == "double_opt_in"
    assert created["attributes"]["created"] == created["attributes"]["updated"]
    assert set(created["relationships"]) == {"profiles", "tags", "flow-triggers"}
    assert created["links"]["self"] == f"http://testserver/sandbox/api/lists/{created['id']}/"
    assert body["links"] == {"self": "http://testserver/sandbox/api/lists"}


@pytest.mark.parametrize(
    ("attributes", "pointer"),
    [
        ({"name": ""}, "/data/attributes/name"),
        ({"name": None}, "/data/attributes/name"),
        ({"name": "A", "opt_in_process": "triple_opt_in"}, "/data/attributes/opt_in_process"),
    ],
)
def test_an_invalid_list_is_a_400_and_creates_nothing(client, attributes, pointer):
    body = {"data": {"type": "list", "attributes": attributes}}
    assert error_of(api(client, "POST", "/lists", token_for(), body=body), 400)["source"] == {"pointer": pointer}
    assert not ProfileList.objects.exists()


def test_lists_page_by_ten_in_id_order_and_filter_by_name(client):
    token = token_for()
    created = [create_list(client, token, f"List {number}")["id"] for number in range(12)]
    first = api(client, "GET", "/lists", token)
    assert ids(first) == sorted(created)[:10]
    assert ids(api(client, "GET", first.json()["links"]["next"], token)) == sorted(created)[10:]
    assert error_of(api(client, "GET", "/lists", token, **{"page[size]": 11}), 400)["source"] == {
        "parameter": "page[size]"
    }
    named = api(client, "GET", "/lists", token, filter='any(name,["List 3","List 7"])', sort="-name")
    assert [item["attributes"]["name"] for item in named.json()["data"]] == ["List 7", "List 3"]
    error = error_of(api(client, "GET", "/lists", token, filter="less-than(created,2024-01-01)"), 400)
    assert error["source"] == {"parameter": "filter"}


def test_lists_come_in_code_point_order_of_their_ids_whatever_the_databases_collation(client):
    in_a_language_collation(ProfileList)
    now, token = timezone.now(), token_for()
    list_ids = [*MIXED_CASE_IDS, "jjjjjj", "KKKKKK"]  # two pages
    for list_id in list_ids:
        ProfileList.objects.create(id=list_id, account_id=NORTHWIND, name=list_id, created=now, updated=now)
    in_order = sorted(list_ids)
    first = api(client, "GET", "/lists", token)
    assert ids(first) == in_order[:10]
    assert ids(api(client, "GET", first.json()["links"]["next"], token)) == in_order[10:]
    assert ids(api(client, "GET", "/lists", token, sort="-id")) == in_order[::-1][:10]


def test_lists_belong_to_their_account(client):
    mine = create_list(client, token_for(NORTHWIND))
    other = token_for(BLUEBELL)
    assert ids(api(client, "GET", "/lists", other)) == []
    assert error_of(api(client, "GET", f"/lists/{mine['id']}", other), 404)["code"] == "not_found"


def test_get_list_counts_its_profiles_when_asked(client):
    token = token_for()
    created = create_list(client, token)
    seeds = profiles_of(NORTHWIND)
    api(client, "POST", f"/lists/{created['id']}/relationships/profiles", token, body=members(seeds[0].id, seeds[1].id))
    plain = api(client, "GET", f"/lists/{created['id']}", token).json()["data"]["attributes"]
    assert "profile_count" not in plain
    counted = api(client, "GET", f"/lists/{created['id']}", token, **{"additional-fields[list]": "profile_count"})
    assert counted.json()["data"]["attributes"]["profile_count"] == 2


def test_update_and_delete_a_list(client):
    token = token_for()
    created = create_list(client, token)
    body = {"data": {"type": "list", "id": created["id"], "attributes": {"name": "Renamed"}}}
    renamed = api(client, "PATCH", f"/lists/{created['id']}", token, body=body)
    assert renamed.status_code == 200
    assert renamed.json()["data"]["attributes"]["name"] == "Renamed"
    assert renamed.json()["data"]["attributes"]["opt_in_process"] == "single_opt_in"
    api(
        client,
        "POST",
        f"/lists/{created['id']}/relationships/profiles",
        token,
        body=members(profiles_of(NORTHWIND)[0].id),
    )
    deleted = api(client, "DELETE", f"/lists/{created['id']}", token)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert error_of(api(client, "GET", f"/lists/{created['id']}", token), 404)["code"] == "not_found"
    assert not ListMembership.objects.exists()


def test_adding_and_removing_profiles(client):
    token = token_for()
    list_id = create_list(client, token)["id"]
    seeds = profiles_of(NORTHWIND)
    relationship = f"/lists/{list_id}/relationships/profiles"
    added = api(client, "POST", relationship, token, body=members(seeds[2].id, seeds[0].id, seeds[1].id))
    assert (added.status_code, added.content) == (204, b"")
    assert api(client, "POST", relationship, token, body=members(seeds[0].id)).status_code == 204  # idempotent
    in_list = api(client, "GET", f"/lists/{list_id}/profiles", token)
    assert sorted(ids(in_list)) == sorted(seed.id for seed in seeds[:3])
    assert all("joined_group_at" in profile["attributes"] for profile in in_list.json()["data"])
    assert sorted(ids(api(client, "GET", relationship, token))) == sorted(seed.id for seed in seeds[:3])
    assert api(client, "DELETE", relationship, token, body=members(seeds[0].id)).status_code == 204
    assert sorted(ids(api(client, "GET", f"/lists/{list_id}/profiles", token))) == sorted([seeds[1].id, seeds[2].id])


def test_profiles_in_a_list_filter_by_email_and_sort_by_joining(client):
    token = token_for()
    list_id = create_list(client, token)["id"]
    seeds = profiles_of(NORTHWIND)
    for seed in seeds[:3]:
        api(client, "POST", f"/lists/{list_id}/relationships/profiles", token, body=members(seed.id))
    path = f"/lists/{list_id}/profiles"
    assert ids(api(client, "GET", path, token, sort="-joined_group_at")) == [seed.id for seed in reversed(seeds[:3])]
    assert ids(api(client, "GET", path, token, filter=f'equals(email,"{seeds[1].email}")')) == [seeds[1].id]
    sparse = api(client, "GET", path, token, **{"fields[profile]": "email,joined_group_at", "page[size]": 1}).json()
    assert set(sparse["data"][0]["attributes"]) == {"email", "joined_group_at"}
    assert sparse["links"]["next"] is not None
    assert error_of(api(client, "GET", path, token, sort="email"), 400)["source"] == {"parameter": "sort"}


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"data": []}, "/data"),
        ({"data": {"type": "profile", "id": "x"}}, "/data"),
        ({"data": [{"type": "list", "id": "x"}]}, "/data/0"),
        ({"data": [{"type": "profile", "id": "01NOSUCHPROFILE"}]}, "/data/0/id"),
    ],
)
def test_bad_profile_identifiers_are_a_400_and_add_nobody(client, body, pointer):
    token = token_for()
    list_id = create_list(client, token)["id"]
    response = api(client, "POST", f"/lists/{list_id}/relationships/profiles", token, body=body)
    assert error_of(response, 400)["source"] == {"pointer": pointer}
    assert not ListMembership.objects.exists()


def test_a_profile_of_another_account_cannot_join_a_list(client):
    token = token_for()
    token_for(BLUEBELL)
    list_id = create_list(client, token)["id"]
    foreign = profiles_of(BLUEBELL)[0].id
    response = api(client, "POST", f"/lists/{list_id}/relationships/profiles", token, body=members(foreign))
    assert error_of(response, 400)["source"] == {"pointer": "/data/0/id"}
