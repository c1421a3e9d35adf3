"""Profiles: the fixed accounts' data, filters, sorting, sparse fieldsets, pages, reads and writes."""

import base64
import re
from urllib.parse import urlencode

import pytest

from klaviyo_sandbox.accounts import ACCOUNTS, profiles_of
from klaviyo_sandbox.models import Profile, SeededAccount
from klaviyo_sandbox.store.seeding import ensure_seeded
from tests.concurrency_worker import run_threads
from tests.sandbox.support import (
    BLUEBELL,
    JUNIPER,
    NORTHWIND,
    PROFILES,
    added_profiles,
    api,
    api_get,
    connect,
    error_of,
    ids,
    token_for,
)

pytestmark = pytest.mark.django_db

# --- /api/profiles -----------------------------------------------------------------------------


def test_profiles_look_like_klaviyos(client):
    tokens = connect(client)
    response = api_get(client, PROFILES, tokens["access_token"])
    body = response.json()
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.api+json"
    assert len(body["data"]) == 20
    profile = body["data"][0]
    assert profile["type"] == "profile"
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", profile["id"])
    assert set(profile["attributes"]) == {
        "email",
        "phone_number",
        "external_id",
        "first_name",
        "last_name",
        "organization",
        "locale",
        "title",
        "image",
        "created",
        "updated",
        "last_event_date",
        "location",
        "properties",
    }
    assert profile["attributes"]["email"].endswith("@northwind-outfitters.example")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", profile["attributes"]["created"])
    assert {"city", "country", "region", "zip", "timezone"} <= set(profile["attributes"]["location"])
    assert set(profile["relationships"]) == {"lists", "segments", "push-tokens", "conversations"}
    assert profile["links"]["self"] == f"http://testserver{PROFILES}/{profile['id']}/"
    assert body["links"]["self"] == f"http://testserver{PROFILES}"
    assert body["links"]["prev"] is None
    assert body["links"]["next"].startswith(f"http://testserver{PROFILES}?")


def test_pagination_walks_every_profile_once_and_back(client):
    tokens = connect(client)
    expected = [profile.id for profile in profiles_of(NORTHWIND)]
    seen, pages, url = [], [], f"{PROFILES}?{urlencode({'page[size]': 25})}"
    while url:
        body = api_get(client, url, tokens["access_token"]).json()
        pages.append(body)
        seen += [profile["id"] for profile in body["data"]]
        url = body["links"]["next"]
    assert seen == expected
    assert len(expected) == 57
    assert [len(page["data"]) for page in pages] == [25, 25, 7]
    assert pages[-1]["links"]["next"] is None
    assert "page%5Bsize%5D=25" in pages[1]["links"]["next"]
    back = api_get(client, pages[2]["links"]["prev"], tokens["access_token"]).json()
    assert back["data"] == pages[1]["data"]
    first = api_get(client, back["links"]["prev"], tokens["access_token"]).json()
    assert first["data"] == pages[0]["data"]
    assert first["links"]["prev"] is None


def test_profiles_accept_the_trailing_slash(client):
    tokens = connect(client)
    assert api_get(client, PROFILES + "/", tokens["access_token"]).status_code == 200


@pytest.mark.parametrize(("size", "count"), [("1", 1), ("100", 57), ("20", 20)])
def test_page_size_between_1_and_100_is_honoured(client, size, count):
    tokens = connect(client)
    assert len(api_get(client, PROFILES, tokens["access_token"], **{"page[size]": size}).json()["data"]) == count


@pytest.mark.parametrize("size", ["0", "101", "-1", "ten", "2.5", "²", "\N{ARABIC-INDIC DIGIT FIVE}", "9" * 5000])
def test_page_size_out_of_range_is_a_400(client, size):
    tokens = connect(client)
    response = api_get(client, PROFILES, tokens["access_token"], **{"page[size]": size})
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["code"] == "invalid"
    assert error["source"] == {"parameter": "page[size]"}
    assert "RateLimit-Limit" in response


@pytest.mark.parametrize("cursor", ["%%%", "bm9wZQ", base64.urlsafe_b64encode(b"sideways::id::X").decode()])
def test_an_invalid_cursor_is_a_400(client, cursor):
    tokens = connect(client)
    response = api_get(client, PROFILES, tokens["access_token"], **{"page[cursor]": cursor})
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": "page[cursor]"}


def test_each_account_has_its_own_profiles(client):
    first = connect(client, account=NORTHWIND)
    second = connect(client, account=JUNIPER)
    everything = {"page[size]": 100}
    ids_first = {p["id"] for p in api_get(client, PROFILES, first["access_token"], **everything).json()["data"]}
    body = api_get(client, PROFILES, second["access_token"], **everything).json()
    ids_second = {p["id"] for p in body["data"]}
    assert len(ids_second) == 24
    assert ids_first.isdisjoint(ids_second)
    assert all(p["attributes"]["email"].endswith("@juniper-home.example") for p in body["data"])


def test_profiles_are_the_same_on_every_call(client):
    tokens = connect(client)
    assert (
        api_get(client, PROFILES, tokens["access_token"]).json()["data"]
        == (api_get(client, PROFILES, tokens["access_token"]).json()["data"])
    )


def expected_attributes(seed):
    """A fixed profile's attributes exactly as the sandbox served them before profiles were stored."""
    moment = {"created": seed.created, "updated": seed.updated, "last_event_date": seed.last_event_date}
    return {
        "email": seed.email,
        "phone_number": seed.phone_number,
        "external_id": seed.external_id,
        "first_name": seed.first_name,
        "last_name": seed.last_name,
        "organization": seed.organization,
        "locale": seed.locale,
        "title": seed.title,
        "image": None,
        **{name: value.isoformat(timespec="seconds") if value else None for name, value in moment.items()},
        "location": seed.location,
        "properties": seed.properties,
    }


@pytest.mark.parametrize("account", [account.id for account in ACCOUNTS])
def test_each_fixed_account_starts_with_exactly_its_generated_profiles(client, account):
    token = token_for(account)
    served = api(client, "GET", "/profiles", token, **{"page[size]": 100}).json()["data"]
    seeds = profiles_of(account)
    assert [profile["id"] for profile in served] == [seed.id for seed in seeds]
    for profile, seed in zip(served, seeds, strict=True):
        assert profile["attributes"] == expected_attributes(seed)


def test_seeding_is_idempotent(client):
    ensure_seeded(NORTHWIND)
    ensure_seeded(NORTHWIND)
    api(client, "GET", "/profiles", token_for())
    assert Profile.objects.filter(account_id=NORTHWIND).count() == len(profiles_of(NORTHWIND))
    assert SeededAccount.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_use_seeds_an_account_once():
    assert run_threads(8, lambda: ensure_seeded(JUNIPER)) == ["ok"] * 8
    assert Profile.objects.filter(account_id=JUNIPER).count() == len(profiles_of(JUNIPER))


# --- filter ------------------------------------------------------------------------------------------


def seed_of(account=NORTHWIND, *, having):
    return next(seed for seed in profiles_of(account) if getattr(seed, having))


@pytest.mark.parametrize("quote", ['"', "'"])
def test_filter_equals_on_email_finds_one_profile(client, quote):
    seed = profiles_of(NORTHWIND)[7]
    response = api(client, "GET", "/profiles", token_for(), filter=f"equals(email,{quote}{seed.email}{quote})")
    assert ids(response) == [seed.id]


def test_a_filter_matching_nobody_returns_no_profiles(client):
    response = api(client, "GET", "/profiles", token_for(), filter='equals(email,"nobody@example.com")')
    assert response.status_code == 200
    assert response.json()["data"] == []
    assert response.json()["links"]["next"] is None


@pytest.mark.parametrize("name", ["phone_number", "external_id", "id"])
def test_filter_equals_and_any_on_each_identifier(client, name):
    first, second = [seed for seed in profiles_of(NORTHWIND) if getattr(seed, name)][:2]
    token = token_for()
    assert ids(api(client, "GET", "/profiles", token, filter=f'equals({name},"{getattr(first, name)}")')) == [first.id]
    both = f'any({name},["{getattr(second, name)}","{getattr(first, name)}","missing"])'
    assert ids(api(client, "GET", "/profiles", token, filter=both)) == [first.id, second.id]


def test_filters_on_dates_combine_with_and(client):
    seeds = profiles_of(NORTHWIND)
    low, high = seeds[10].created, seeds[20].created
    expected = [seed.id for seed in seeds if low < seed.created < high and seed.updated > low]
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    expression = (
        f"and(greater-than(created,{low.strftime(stamp)}),less-than(created,{high.strftime(stamp)}),"
        f"greater-than(updated,{low.strftime(stamp)}))"
    )
    token = token_for()
    assert ids(api(client, "GET", "/profiles", token, filter=expression)) == expected
    commas = f"greater-than(created,{low.strftime(stamp)}),less-than(created,{high.strftime(stamp)})"
    between = [seed.id for seed in seeds if low < seed.created < high]
    assert ids(api(client, "GET", "/profiles", token, filter=commas)) == between
    assert len(between) == 9


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ('equals(favorite_color,"blue")', "'favorite_color' is not a valid field for the resource 'profile'."),
        ("greater-than(email,2024-01-01T00:00:00Z)", "'greater-than' is not a valid operator for 'email'"),
        ('equals(created,"2024-01-01")', "'equals' is not a valid operator for 'created'"),
        ("equals(email,a@b.co)", "must be a string in quotes"),
        ('less-than(created,"soon")', "must be a date and time"),
        ('any(email,"a@b.co")', "needs a non-empty list"),
        ("any(email,[])", "needs a non-empty list"),
        ('or(equals(email,"a@b.co"),equals(email,"c@d.co"))', "'or' is not a supported filter operator."),
        ('equals(email,"a@b.co"', "Expected ')'"),
        ('equals(email,"a@b.co"))', "Unexpected ')'"),
        ('equals(email,"unterminated)', "cannot read it"),
        ("", "The filter is empty."),
    ],
)
def test_a_bad_filter_is_a_400_pointing_at_the_filter_parameter(client, expression, detail):
    error = error_of(api(client, "GET", "/profiles", token_for(), filter=expression), 400)
    assert error["code"] == "invalid"
    assert error["source"] == {"parameter": "filter"}
    assert detail in error["detail"]


# --- sort --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sort", ["created", "-created", "updated", "-updated", "email", "-email", "id", "-id"])
def test_sort_orders_every_page_and_pages_walk_the_whole_order(client, sort):
    name = sort.removeprefix("-")
    seeds = sorted(profiles_of(BLUEBELL), key=lambda seed: (getattr(seed, name), seed.id), reverse=sort[0] == "-")
    token, seen, url = token_for(BLUEBELL), [], f"/profiles?{urlencode({'sort': sort, 'page[size]': 10})}"
    while url:
        body = api(client, "GET", url, token).json()
        seen += [profile["id"] for profile in body["data"]]
        url = body["links"]["next"]
    assert seen == [seed.id for seed in seeds]


def test_an_unknown_sort_field_is_a_400(client):
    error = error_of(api(client, "GET", "/profiles", token_for(), sort="first_name"), 400)
    assert error["source"] == {"parameter": "sort"}


def test_a_cursor_made_for_another_sort_is_a_400(client):
    token = token_for()
    next_url = api(client, "GET", "/profiles", token, sort="created").json()["links"]["next"]
    cursor = next_url.split("page%5Bcursor%5D=")[1]
    error = error_of(api(client, "GET", "/profiles", token, sort="email", **{"page[cursor]": cursor}), 400)
    assert error["source"] == {"parameter": "page[cursor]"}


# --- sparse fieldsets and additional fields ----------------------------------------------------------


def test_sparse_fieldsets_keep_only_the_named_attributes(client):
    body = api(
        client, "GET", "/profiles", token_for(), **{"fields[profile]": "email,location.city", "page[size]": 2}
    ).json()
    seed = profiles_of(NORTHWIND)[0]
    assert body["data"][0]["attributes"] == {"email": seed.email, "location": {"city": seed.location["city"]}}


def test_an_unknown_field_in_a_sparse_fieldset_is_a_400(client):
    error = error_of(api(client, "GET", "/profiles", token_for(), **{"fields[profile]": "email,shoe_size"}), 400)
    assert error["source"] == {"parameter": "fields[profile]"}
    assert "'shoe_size'" in error["detail"]


def test_subscriptions_are_added_only_when_asked_for(client):
    token = token_for()
    plain = api(client, "GET", "/profiles", token).json()["data"][0]["attributes"]
    assert "subscriptions" not in plain
    asked = api(client, "GET", "/profiles", token, **{"additional-fields[profile]": "subscriptions"}).json()["data"]
    for profile, seed in zip(asked, profiles_of(NORTHWIND), strict=False):
        marketing = profile["attributes"]["subscriptions"]["email"]["marketing"]
        subscribed = seed.properties["accepts_marketing"]
        assert marketing["consent"] == ("SUBSCRIBED" if subscribed else "NEVER_SUBSCRIBED")
        assert marketing["can_receive_email_marketing"] is subscribed


def test_an_unknown_additional_field_is_a_400(client):
    error = error_of(api(client, "GET", "/profiles", token_for(), **{"additional-fields[profile]": "secrets"}), 400)
    assert error["source"] == {"parameter": "additional-fields[profile]"}


def test_include_is_refused_rather_than_ignored(client):
    error = error_of(api(client, "GET", "/profiles", token_for(), include="lists"), 400)
    assert error["source"] == {"parameter": "include"}


# --- one profile -------------------------------------------------------------------------------------


def test_get_profile_by_id(client):
    seed = profiles_of(NORTHWIND)[3]
    response = api(client, "GET", f"/profiles/{seed.id}", token_for())
    body = response.json()
    assert response.status_code == 200
    assert body["data"]["id"] == seed.id
    assert body["data"]["attributes"] == expected_attributes(seed)
    assert body["links"] == {"self": f"http://testserver{PROFILES}/{seed.id}"}


def test_a_profile_of_another_account_is_not_found(client):
    seed = profiles_of(BLUEBELL)[0]
    token_for(BLUEBELL)
    assert error_of(api(client, "GET", f"/profiles/{seed.id}", token_for(NORTHWIND)), 404)["code"] == "not_found"


# --- create, update, import --------------------------------------------------------------------------


def new_profile(**attributes):
    return {"data": {"type": "profile", "attributes": attributes}}


def test_create_profile_answers_201_with_the_new_profile(client):
    token = token_for()
    body = new_profile(email="new@example.com", first_name="Nia", location={"city": "Oslo"}, properties={"vip": True})
    response = api(client, "POST", "/profiles", token, body=body)
    created = response.json()["data"]
    assert response.status_code == 201
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", created["id"])
    assert created["attributes"]["email"] == "new@example.com"
    assert created["attributes"]["location"]["city"] == "Oslo"
    assert created["attributes"]["location"]["zip"] is None
    assert created["attributes"]["properties"] == {"vip": True}
    assert response.json()["links"] == {"self": f"http://testserver{PROFILES}"}
    listed = api(client, "GET", "/profiles", token, filter='equals(email,"new@example.com")')
    assert ids(listed) == [created["id"]]
    assert ids(api(client, "GET", "/profiles", token, sort="-created", **{"page[size]": 1})) == [created["id"]]


@pytest.mark.parametrize("identifier", ["email", "phone_number", "external_id"])
def test_creating_a_duplicate_is_a_409_naming_the_existing_profile(client, identifier):
    seed = seed_of(having=identifier)
    response = api(
        client, "POST", "/profiles", token_for(), body=new_profile(**{identifier: getattr(seed, identifier)})
    )
    error = error_of(response, 409)
    assert error["code"] == "duplicate_profile"
    assert error["title"] == "Conflict."
    assert error["source"] == {"pointer": "/data/attributes"}
    assert error["meta"] == {"duplicate_profile_id": seed.id}
    assert not added_profiles().exists()


@pytest.mark.parametrize(
    ("attributes", "pointer"),
    [
        ({"first_name": "No identifier"}, "/data/attributes"),
        ({"email": "not-an-email"}, "/data/attributes/email"),
        ({"email": 42}, "/data/attributes/email"),
        ({"phone_number": "555-0100"}, "/data/attributes/phone_number"),
        ({"email": "a@b.co", "location": {"planet": "Mars"}}, "/data/attributes/location"),
        ({"email": "a@b.co", "location": "Oslo"}, "/data/attributes/location"),
        ({"email": "a@b.co", "properties": [1]}, "/data/attributes/properties"),
    ],
)
def test_creating_an_invalid_profile_is_a_400_pointing_at_the_attribute(client, attributes, pointer):
    error = error_of(api(client, "POST", "/profiles", token_for(), body=new_profile(**attributes)), 400)
    assert error["source"] == {"pointer": pointer}
    assert not added_profiles().exists()


def patch(profile_id, meta=None, **attributes):
    data = {"type": "profile", "id": profile_id, "attributes": attributes}
    if meta:
        data["meta"] = meta
    return {"data": data}


def test_update_profile_changes_named_attributes_clears_nulls_and_merges_properties(client):
    seed = seed_of(having="phone_number")
    token = token_for()
    body = patch(seed.id, first_name="Renamed", phone_number=None, properties={"tier": "gold"})
    response = api(client, "PATCH", f"/profiles/{seed.id}", token, body=body)
    attributes = response.json()["data"]["attributes"]
    assert response.status_code == 200
    assert attributes["first_name"] == "Renamed"
    assert attributes["phone_number"] is None
    assert attributes["last_name"] == seed.last_name
    assert attributes["properties"] == {**seed.properties, "tier": "gold"}
    assert attributes["updated"] > seed.updated.isoformat()
    again = api(client, "GET", f"/profiles/{seed.id}", token).json()["data"]["attributes"]
    assert again == attributes


def test_update_profile_applies_patch_properties(client):
    seed = profiles_of(NORTHWIND)[0]
    token = token_for()
    meta = {"patch_properties": {"append": {"skus": "A1"}, "unset": "favorite_category"}}
    api(client, "PATCH", f"/profiles/{seed.id}", token, body=patch(seed.id, meta=meta))
    meta = {"patch_properties": {"append": {"skus": ["B2", "C3"]}, "unappend": {"skus": "A1"}}}
    properties = api(client, "PATCH", f"/profiles/{seed.id}", token, body=patch(seed.id, meta=meta)).json()
    properties = properties["data"]["attributes"]["properties"]
    assert properties["skus"] == ["B2", "C3"]
    assert "favorite_category" not in properties


def test_update_profile_to_another_profiles_email_is_a_409_and_changes_nothing(client):
    first, second = profiles_of(NORTHWIND)[:2]
    token = token_for()
    response = api(client, "PATCH", f"/profiles/{first.id}", token, body=patch(first.id, email=second.email))
    assert error_of(response, 409)["meta"] == {"duplicate_profile_id": second.id}
    assert Profile.objects.get(pk=first.id).email == first.email


@pytest.mark.parametrize(("path_id", "body_id", "status"), [("01UNKNOWN", "01UNKNOWN", 404), (None, "01OTHER", 400)])
def test_update_profile_needs_a_known_id_matching_the_url(client, path_id, body_id, status):
    seed = profiles_of(NORTHWIND)[0]
    path_id = path_id or seed.id
    error_of(api(client, "PATCH", f"/profiles/{path_id}", token_for(), body=patch(body_id, first_name="X")), status)
    assert Profile.objects.get(pk=seed.id).first_name == seed.first_name


def test_profile_import_creates_then_updates_by_identifier(client):
    token = token_for()
    first = api(client, "POST", "/profile-import", token, body=new_profile(email="up@example.com", title="A"))
    assert first.status_code == 201
    second = api(client, "POST", "/profile-import", token, body=new_profile(email="up@example.com", title="B"))
    assert second.status_code == 200
    assert second.json()["data"]["id"] == first.json()["data"]["id"]
    assert second.json()["data"]["attributes"]["title"] == "B"
    seed = seed_of(having="external_id")
    by_external = api(
        client, "POST", "/profile-import", token, body=new_profile(external_id=seed.external_id, title="C")
    )
    assert (by_external.status_code, by_external.json()["data"]["id"]) == (200, seed.id)
    body = {"data": {"type": "profile", "id": seed.id, "attributes": {"title": "D"}}}
    by_id = api(client, "POST", "/profile-import", token, body=body)
    assert (by_id.status_code, by_id.json()["data"]["attributes"]["title"]) == (200, "D")
    assert added_profiles().count() == 1


def test_writes_need_the_profiles_write_scope(client):
    token = token_for(scopes="profiles:read")
    seed = profiles_of(NORTHWIND)[0]
    assert api(client, "POST", "/profiles", token, body=new_profile(email="x@example.com")).status_code == 403
    assert api(client, "PATCH", f"/profiles/{seed.id}", token, body=patch(seed.id, title="X")).status_code == 403
    assert api(client, "POST", "/profile-import", token, body=new_profile(email="x@example.com")).status_code == 403
