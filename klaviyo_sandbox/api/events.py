"""Events and metrics endpoints: parse the query and body, call the events service, shape Klaviyo's answer."""

from __future__ import annotations

from klaviyo_sandbox import params, resources
from klaviyo_sandbox.api.base import Call, Reply, listed, single
from klaviyo_sandbox.store import events


def create_event(call: Call) -> Reply:
    events.create(call.account_id, call.body())
    return Reply(None, status=202)


def get_events(call: Call) -> Reply:
    return listed(call, events.LISTING, events.page, resources.event, resources.EVENT_FIELDS)


def get_event(call: Call) -> Reply:
    """One event; ``include=metric,profile`` adds its metric and its profile (``attributions`` is refused)."""
    include = params.include(call.query, frozenset({"metric", "profile"}))
    fields = params.sparse_fields(call.query, "event", resources.EVENT_FIELDS)
    row = events.event(call.account_id, call.args["id"])
    reply = single(call, resources.event(row, api_root=call.api_root, fields=fields))
    included = []
    if "metric" in include:
        included.append(resources.metric(row.metric, api_root=call.api_root))
    if "profile" in include:
        included.append(resources.profile(row.profile, api_root=call.api_root))
    if include and reply.document is not None:
        reply.document["included"] = included
    return reply


def get_metrics(call: Call) -> Reply:
    return listed(call, events.METRICS, events.metrics, resources.metric, resources.METRIC_FIELDS)


def get_metric(call: Call) -> Reply:
    params.no_include(call.query)
    fields = params.sparse_fields(call.query, "metric", resources.METRIC_FIELDS)
    row = events.metric(call.account_id, call.args["id"])
    return single(call, resources.metric(row, api_root=call.api_root, fields=fields))
