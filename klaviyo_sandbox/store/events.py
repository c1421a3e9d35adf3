"""Events and metrics: an event names its metric (created by name) and its profile (created when new)."""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from klaviyo_sandbox import ids
from klaviyo_sandbox.bodies import Data, Unset, resource, text
from klaviyo_sandbox.exceptions import invalid
from klaviyo_sandbox.filters import DATETIME, STRING, TIMESTAMP, Field, field, moment_of
from klaviyo_sandbox.models import Event, Metric
from klaviyo_sandbox.pagination import Ordering, Page, Selection, paginate
from klaviyo_sandbox.params import Listing
from klaviyo_sandbox.store import by_code_point, owned, page_of, profiles

_COMPARISONS = ("greater-or-equal", "greater-than", "less-or-equal", "less-than")
EVENT_FILTERS: dict[str, Field] = {
    "metric_id": field("metric_id", STRING, "equals"),
    "profile_id": field("profile_id", STRING, "equals"),
    "datetime": field("datetime", DATETIME, *_COMPARISONS),
    "timestamp": field("datetime", TIMESTAMP, *_COMPARISONS),
}
EVENT_ORDERINGS = (
    Ordering("datetime", "datetime", temporal=True),
    Ordering("timestamp", "datetime", temporal=True),
)
METRIC_FILTERS: dict[str, Field] = {
    "integration.name": field("integration_name", STRING, "equals"),
    "integration.category": field("integration_category", STRING, "equals"),
}
LISTING = Listing("event", EVENT_FILTERS, EVENT_ORDERINGS, default_sort="datetime", page_size=200, max_page_size=1000)
# Metrics come 200 a page, by id; Klaviyo refuses page[size] there.
METRICS = Listing("metric", METRIC_FILTERS, (Ordering("id", "sort_id"),), default_sort="id", page_size=200)
_RANDOM = random.SystemRandom()


def page(account_id: str, selection: Selection) -> Page:
    return page_of(Event, account_id, selection)


def metrics(account_id: str, selection: Selection) -> Page:
    rows = Metric.objects.filter(account_id=account_id).annotate(sort_id=by_code_point(F("id")))
    return paginate(rows, selection)


def event(account_id: str, event_id: str) -> Event:
    """The account's event. Raises APIError 404 when it has none with this id."""
    return owned(Event, account_id, event_id)


def metric(account_id: str, metric_id: str) -> Metric:
    return owned(Metric, account_id, metric_id)


def create(account_id: str, body: dict[str, Any]) -> None:
    """Record an event; its metric is created by name and its profile created or updated.

    Nothing is written when any part of the body is invalid. An event whose ``unique_id``
    was already recorded for the same metric and profile is not recorded again.
    """
    data = resource(body, "event")
    attributes = data.attributes
    if not isinstance(attributes.get("properties"), dict):
        raise invalid("properties is required and must be an object.", pointer="/data/attributes/properties")
    moment = _time(data)
    properties = dict(attributes["properties"])
    for name, key, kinds in (("value", "$value", (int, float)), ("value_currency", "$value_currency", (str,))):
        if attributes.get(name) is not None:
            if isinstance(attributes[name], bool) or not isinstance(attributes[name], kinds):
                raise invalid(f"{name} has the wrong type.", pointer=f"/data/attributes/{name}")
            properties[key] = attributes[name]
    unique_id = text(data, "unique_id")
    unique_id = None if isinstance(unique_id, Unset) else unique_id
    if unique_id is not None:
        properties["$event_id"] = unique_id
    metric_data = resource(attributes.get("metric"), "metric", pointer="/data/attributes/metric/data")
    name = str(text(metric_data, "name", required=True))
    profile_data = resource(attributes.get("profile"), "profile", pointer="/data/attributes/profile/data")
    with transaction.atomic():
        profile, _ = profiles.upsert(account_id, profile_data)
        row, _ = Metric.objects.get_or_create(
            account_id=account_id, name=name, defaults={"id": ids.short_id(), "created": moment, "updated": moment}
        )
        if unique_id is not None and Event.objects.filter(metric=row, profile=profile, unique_id=unique_id).exists():
            return
        try:
            with transaction.atomic():
                Event.objects.create(
                    id=ids.short_id(11),
                    account_id=account_id,
                    metric=row,
                    profile=profile,
                    datetime=moment,
                    properties=properties,
                    uuid=str(uuid.uuid1(node=_RANDOM.getrandbits(48))),
                    unique_id=unique_id,
                )
        except IntegrityError:  # the same unique_id, recorded meanwhile
            return
        if profile.last_event_date is None or profile.last_event_date < moment:
            profile.last_event_date = moment
            profile.save(update_fields=["last_event_date"])


def _time(data: Data) -> datetime:
    raw = data.attributes.get("time")
    if raw is None:
        return timezone.now()
    moment = moment_of(raw) if isinstance(raw, str) else None
    if moment is None:
        raise invalid("time must be a date and time, e.g. 2024-01-31T12:00:00Z.", pointer="/data/attributes/time")
    return moment
