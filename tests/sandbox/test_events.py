"""Events and metrics: recording an event creates its metric and its profile; reading them back."""

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from klaviyo_sandbox.accounts import profiles_of
from klaviyo_sandbox.models import Event, Metric, Profile
from tests.sandbox.support import (
    BLUEBELL,
    MIXED_CASE_IDS,
    NORTHWIND,
    added_profiles,
    api,
    error_of,
    ids,
    in_a_language_collation,
    token_for,
)

pytestmark = pytest.mark.django_db


def event(metric="Placed Order", profile=None, **attributes):
    profile = profile or {"email": "shopper@example.com"}
    profile_data = {"type": "profile", "attributes": profile}
    if "id" in profile:
        profile_data = {"type": "profile", "id": profile["id"], "attributes": {}}
    return {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {"sku": "A1"},
                "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
                "profile": {"data": profile_data},
                **attributes,
            },
        }
    }


def test_an_event_creates_its_metric_and_its_new_profile_and_answers_202_without_a_body(client):
    token = token_for()
    response = api(client, "POST", "/events", token, body=event(value=12.5, unique_id="order-1"))
    assert response.status_code == 202
    assert response.content == b""
    assert "RateLimit-Limit" in response
    recorded = Event.objects.get()
    assert recorded.metric.name == "Placed Order"
    assert recorded.profile.email == "shopper@example.com"
    assert recorded.properties == {"sku": "A1", "$value": 12.5, "$event_id": "order-1"}
    assert Profile.objects.get(email="shopper@example.com").last_event_date == recorded.datetime


def test_events_of_a_known_profile_and_metric_reuse_them(client):
    token = token_for()
    seed = profiles_of(NORTHWIND)[0]
    api(client, "POST", "/events", token, body=event(profile={"email": seed.email}))
    api(client, "POST", "/events", token, body=event(profile={"id": seed.id}))
    assert Metric.objects.count() == 1
    assert set(Event.objects.values_list("profile_id", flat=True)) == {seed.id}
    assert not added_profiles().exists()


def test_an_event_with_a_unique_id_is_recorded_once(client):
    token = token_for()
    for _ in range(2):
        assert api(client, "POST", "/events", token, body=event(unique_id="same")).status_code == 202
    assert Event.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"properties": None}, "/data/attributes/properties"),
        ({"time": "yesterday"}, "/data/attributes/time"),
        ({"value": "ten"}, "/data/attributes/value"),
        ({"metric": {"data": {"type": "metric", "attributes": {}}}}, "/data/attributes/metric/data/attributes/name"),
        ({"metric": None}, "/data/attributes/metric/data"),
        ({"profile": {"data": {"type": "profile", "attributes": {"email": "bad"}}}}, None),
    ],
)
def test_an_invalid_event_is_a_400_and_records_nothing(client, change, pointer):
    body = event()
    body["data"]["attributes"].update(change)
    error = error_of(api(client, "POST", "/events", token_for(), body=body), 400)
    assert error["source"] == {"pointer": pointer or "/data/attributes/profile/data/attributes/email"}
    assert not Event.objects.exists()
    assert not Metric.objects.exists()
    assert not added_profiles().exists()


def record(client, token, when, metric="Viewed Product", email="viewer@example.com"):
    body = event(metric=metric, profile={"email": email}, time=when.isoformat())
    assert api(client, "POST", "/events", token, body=body).status_code == 202


def test_get_events_filters_by_metric_and_datetime_and_sorts(client):
    token = token_for()
    moments = [datetime(2026, 3, day, 12, 0, tzinfo=UTC) for day in (1, 2, 3, 4)]
    for moment in moments:
        record(client, token, moment)
    record(client, token, moments[0], metric="Started Checkout")
    viewed = Metric.objects.get(name="Viewed Product").id
    by_metric = api(client, "GET", "/events", token, filter=f'equals(metric_id,"{viewed}")', sort="-datetime")
    data = by_metric.json()["data"]
    assert [item["attributes"]["datetime"] for item in data] == [m.isoformat() for m in reversed(moments)]
    assert data[0]["attributes"]["timestamp"] == int(moments[-1].timestamp())
    assert data[0]["relationships"]["metric"]["data"] == {"type": "metric", "id": viewed}
    window = "greater-than(datetime,2026-03-01T12:00:00Z),less-or-equal(datetime,2026-03-03T12:00:00Z)"
    between = f'and(equals(metric_id,"{viewed}"),{window})'
    assert len(ids(api(client, "GET", "/events", token, filter=between))) == 2
    paged = api(client, "GET", "/events", token, **{"page[size]": 3})
    assert len(ids(paged)) == 3
    assert len(ids(api(client, "GET", paged.json()["links"]["next"], token))) == 2
    error = error_of(api(client, "GET", "/events", token, filter='equals(name,"x")'), 400)
    assert error["source"] == {"parameter": "filter"}


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("999999999999", "The value for 'timestamp' is not a timestamp in range, e.g. 1706659200."),
        ("9" * 30, "The value for 'timestamp' is not a timestamp in range, e.g. 1706659200."),
        ("9" * 5000, "The value for 'timestamp' is not a timestamp in range, e.g. 1706659200."),
        ("²", "The value for 'timestamp' must be a date and time, e.g. 2024-01-31T00:00:00Z."),
    ],
)
def test_a_timestamp_out_of_range_or_not_in_ascii_digits_is_a_400_pointing_at_the_filter(client, value, detail):
    response = api(client, "GET", "/events", token_for(), filter=f"greater-than(timestamp,{value})")
    error = error_of(response, 400)
    assert (error["code"], error["detail"], error["source"]) == ("invalid", detail, {"parameter": "filter"})


def test_metrics_list_and_read_back_by_id(client):
    token = token_for()
    record(client, token, datetime(2026, 3, 1, tzinfo=UTC), metric="Viewed Product")
    record(client, token, datetime(2026, 3, 1, tzinfo=UTC), metric="Placed Order")
    listed = api(client, "GET", "/metrics", token).json()
    assert sorted(item["attributes"]["name"] for item in listed["data"]) == ["Placed Order", "Viewed Product"]
    assert ids_sorted(listed)
    metric = listed["data"][0]
    assert metric["attributes"]["integration"]["name"] == "API"
    one = api(client, "GET", f"/metrics/{metric['id']}", token)
    assert one.json()["data"] == metric
    assert len(ids(api(client, "GET", "/metrics", token, filter='equals(integration.name,"API")'))) == 2
    assert ids(api(client, "GET", "/metrics", token, filter='equals(integration.category,"Shopify")')) == []
    assert error_of(api(client, "GET", "/metrics", token, **{"page[size]": 5}), 400)["source"] == {
        "parameter": "page[size]"
    }
    assert error_of(api(client, "GET", "/metrics/NoSuch", token), 404)["code"] == "not_found"


def test_metrics_come_in_code_point_order_of_their_ids_whatever_the_databases_collation(client):
    in_a_language_collation(Metric)
    now, token = timezone.now(), token_for()
    for metric_id in MIXED_CASE_IDS:
        Metric.objects.create(id=metric_id, account_id=NORTHWIND, name=metric_id, created=now, updated=now)
    assert ids(api(client, "GET", "/metrics", token)) == sorted(MIXED_CASE_IDS)
    assert ids(api(client, "GET", "/metrics", token, sort="-id")) == sorted(MIXED_CASE_IDS, reverse=True)


def ids_sorted(document):
    listed = [item["id"] for item in document["data"]]
    return listed == sorted(listed)


def test_events_and_metrics_belong_to_their_account(client):
    record(client, token_for(NORTHWIND), datetime(2026, 3, 1, tzinfo=UTC))
    other = token_for(BLUEBELL)
    assert ids(api(client, "GET", "/events", other)) == []
    assert ids(api(client, "GET", "/metrics", other)) == []


def test_get_event_reads_one_event_of_the_account_and_404s_otherwise(client):
    token = token_for()
    assert api(client, "POST", "/events", token, body=event(value=12.5)).status_code == 202
    row = Event.objects.get()
    one = api(client, "GET", f"/events/{row.id}", token, **{"fields[event]": "event_properties"})
    assert one.status_code == 200
    data = one.json()["data"]
    assert (data["type"], data["id"]) == ("event", row.id)
    assert data["attributes"] == {"event_properties": {"sku": "A1", "$value": 12.5}}
    assert error_of(api(client, "GET", f"/events/{row.id}", token_for(account=BLUEBELL)), 404)["code"] == "not_found"
    assert error_of(api(client, "GET", "/events/nope", token), 404)["code"] == "not_found"
