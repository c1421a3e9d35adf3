"""The generic engine: every operation of Klaviyo's description without a hand-written view.

What an operation does follows from its path template and method:

- ``/api/things``: GET lists the account's things (``filter``, ``sort``, ``page[cursor]``,
  ``fields[...]``, ``include``); POST creates one (201, or 202 for a ``...-jobs`` path).
- ``/api/things/{id}``: GET, PATCH (attributes merge) and DELETE; an unknown id is a 404.
- ``/api/things/{id}/relationships/others``: GET the identifiers, POST adds, PATCH replaces,
  DELETE removes them.
- ``/api/things/{id}/others``: GET the related resources.
- any other path (an action such as ``/api/campaign-clone``): POST keeps what it was sent
  as a resource of the answer's type.

Request bodies and query parameters are checked against the description first (a 400
changes nothing), and every answer is made to validate against the operation's response
schema (``schemas.conform``); ``fields[...]`` then leaves out attributes not asked for, as
Klaviyo does. A job moves from queued to processing to complete over
``KLAVIYO_SANDBOX_JOB_DELAY`` seconds.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from django.utils import timezone

from klaviyo_sandbox import description, jsonapi, query, resources, schemas
from klaviyo_sandbox.api.base import Call, Reply
from klaviyo_sandbox.conf import conf
from klaviyo_sandbox.exceptions import invalid
from klaviyo_sandbox.models import Event, ListMembership, Metric, Profile, ProfileList, Resource
from klaviyo_sandbox.pagination import Page
from klaviyo_sandbox.store import bulk, imports
from klaviyo_sandbox.store import generic as store

_PCHAR = "$:@!*'()+,;=-._~"  # what a path segment may hold unescaped (RFC 3986), as in Klaviyo's catalog ids
# Jobs whose work the sandbox does (at once; the job's status still moves over KLAVIYO_SANDBOX_JOB_DELAY).
_EFFECTS: dict[str, Callable[..., bulk.Outcome | None]] = {
    "bulk_import_profiles": imports.import_profiles,
    "bulk_create_events": imports.create_events,
    "request_profile_deletion": imports.delete_profile_data,
    "create_back_in_stock_subscription": bulk.subscribe_back_in_stock,
    **bulk.EFFECTS,
}
COLLECTION, ITEM, RELATED, RELATIONSHIP, ACTION = "collection", "item", "related", "relationship", "action"


@dataclass(frozen=True, slots=True)
class Shape:
    """What an operation's path template says it works on."""

    kind: str
    item_template: str | None  # the template of the resource in the path (/api/things/{id})
    relation: str | None  # the relationship's name (related and relationship endpoints)


def _operation_of(call: Call) -> description.Operation:
    if call.operation is None:
        raise RuntimeError("The generic engine needs the call's operation (the router passes it).")
    return call.operation


def _is_param(part: str) -> bool:
    return part.startswith("{")


@functools.cache
def shape_of(template: str) -> Shape:
    parts = template.strip("/").split("/")
    if len(parts) >= 5 and parts[-2] == "relationships" and _is_param(parts[-3]):
        return Shape(RELATIONSHIP, "/" + "/".join(parts[:-2]), parts[-1])
    if len(parts) >= 4 and not _is_param(parts[-1]) and _is_param(parts[-2]):
        return Shape(RELATED, "/" + "/".join(parts[:-1]), parts[-1])
    if _is_param(parts[-1]):
        return Shape(ITEM, template, None)
    if not any(_is_param(part) for part in parts):
        collection = any(
            shape_of_item(operation.template) == template for operation in description.operations()
        ) or any(operation.template == template and operation.method == "GET" for operation in description.operations())
        return Shape(COLLECTION if collection else ACTION, None, None)
    return Shape(ACTION, None, None)


def shape_of_item(template: str) -> str | None:
    """``/api/things`` for ``/api/things/{id}``; None for other templates."""
    parts = template.strip("/").split("/")
    return "/" + "/".join(parts[:-1]) if len(parts) >= 3 and _is_param(parts[-1]) else None


def data_type(schema: Mapping[str, Any] | None) -> str | None:
    """The resource type a document schema's ``data`` holds (its ``type`` enum)."""
    data = description.resolve(description.resolve(schema).get("properties", {}).get("data"))
    for word in ("oneOf", "anyOf"):
        if word in data:
            data = description.resolve(data[word][0])
    if data.get("type") == "array":
        data = description.resolve(data.get("items"))
        for word in ("oneOf", "anyOf"):
            if word in data:
                data = description.resolve(data[word][0])
    kind = description.resolve(data.get("properties", {}).get("type"))
    enum = kind.get("enum")
    return str(enum[0]) if enum else None


def _operation_type(operation: description.Operation) -> str | None:
    for status in sorted(operation.responses):
        if status.startswith("2") and (found := data_type(operation.responses[status])):
            return found
    return data_type(operation.request_schema)


@functools.cache
def type_of_template(template: str) -> str:
    """The resource type an item template (``/api/things/{id}``) or collection template names."""
    candidates = [operation for operation in description.operations() if operation.template == template]
    collection = shape_of_item(template)
    if collection is not None:
        candidates += [operation for operation in description.operations() if operation.template == collection]
    for operation in candidates:
        if found := _operation_type(operation):
            return found
    last = [part for part in template.strip("/").split("/") if not _is_param(part)][-1]
    return last.removesuffix("s")


@functools.cache
def _segments() -> dict[str, str]:
    """Resource type -> the path segment of its collection (``catalog-item`` -> ``catalog-items``)."""
    found: dict[str, str] = {}
    for operation in description.operations():
        parts = operation.template.strip("/").split("/")
        if len(parts) == 3 and _is_param(parts[2]) and operation.method == "GET":
            found.setdefault(type_of_template(operation.template), parts[1])
    return found


# --- resources as documents -------------------------------------------------------------------------


def _job_attributes(row: Resource) -> dict[str, Any]:
    delay = conf.job_delay
    elapsed = (timezone.now() - row.created_at).total_seconds()
    attributes = dict(row.attributes)
    done = elapsed >= delay
    attributes["status"] = "complete" if done else ("processing" if elapsed >= delay / 2 else "queued")
    attributes.setdefault("created_at", jsonapi.timestamp(row.created_at))
    total = attributes.get("total_count", 0)
    failed = attributes.get("failed_count", 0)  # the members it left out (a profile import's errors)
    attributes["failed_count"] = failed if done else 0
    attributes["completed_count"] = total - failed if done else 0
    if done:
        attributes.setdefault("completed_at", jsonapi.timestamp(row.created_at + timedelta(seconds=delay)))
    return attributes


def render(row: Resource, api_root: str) -> dict[str, Any]:
    segment = _segments().get(row.type, f"{row.type}s")
    own = f"{api_root}/{segment}/{quote(row.resource_id, safe=_PCHAR)}/"
    attributes = _job_attributes(row) if row.type.endswith("-job") else dict(row.attributes)
    attributes.setdefault("created", jsonapi.timestamp(row.created_at))
    attributes.setdefault("updated", jsonapi.timestamp(row.updated_at))
    relationships = {
        name: {"data": data, "links": {"self": f"{own}relationships/{name}/", "related": f"{own}{name}/"}}
        for name, data in row.relationships.items()
    }
    return {
        "type": row.type,
        "id": row.resource_id,
        "attributes": attributes,
        "relationships": relationships,
        "links": {"self": own},
    }


def _identifiers(data: Any) -> list[tuple[str, str]]:
    items = data if isinstance(data, list) else [data]
    return [(item["type"], item["id"]) for item in items if isinstance(item, dict) and "type" in item and "id" in item]


def _included(call: Call, rows: list[Resource], names: tuple[str, ...]) -> list[dict[str, Any]]:
    wanted = [key for row in rows for name in names for key in _identifiers(row.relationships.get(name))]
    return [render(row, call.api_root) for row in _rows(call.account_id, wanted)]


def _sparse(document: dict[str, Any], fields: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    if not fields:
        return document
    data = document.get("data")
    for item in [*(data if isinstance(data, list) else [data]), *document.get("included", [])]:
        if isinstance(item, dict) and item.get("type") in fields and isinstance(item.get("attributes"), dict):
            item["attributes"] = jsonapi.sparse(item["attributes"], fields[item["type"]])
    return document


def _reply(call: Call, document: dict[str, Any] | None, checked: query.Checked | None = None) -> Reply:
    operation = _operation_of(call)
    status = operation.success_status
    schema = operation.responses.get(str(status))
    if schema is None or document is None:
        return Reply(None, status=status)
    shaped = _conformed(document, schema)
    return Reply(_sparse(shaped, checked.fields) if checked is not None else shaped, status=status)


def _conformed(document: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` shaped to ``schema``; an attribute the shaping could not fix (one kept in a shape the
    answer's schema does not take) is answered as made up from the schema instead."""
    shaped = schemas.conform(document, schema)
    for _ in range(3):
        errors = list(schemas.validator(schema).iter_errors(shaped))
        if not errors:
            break
        for error in errors:
            path = list(error.absolute_path)
            if "attributes" in path[:3] and len(path) > path.index("attributes") + 1:
                at = path.index("attributes")
                holder: Any = document
                for part in path[:at]:
                    holder = holder[part]
                holder.get("attributes", {}).pop(path[at + 1], None)
        shaped = schemas.conform(document, schema)
    return shaped


# --- request bodies -----------------------------------------------------------------------------------


def _body(call: Call) -> dict[str, Any]:
    operation = _operation_of(call)
    if operation.request_schema is None:
        return {}
    body = call.body()
    schemas.check_body(operation.request_schema, body)
    return body


def _parts(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str | None, str | None]:
    data = body.get("data")
    if not isinstance(data, dict):
        return {}, {}, None, None
    attributes = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
    relationships = {
        name: value.get("data")
        for name, value in (data.get("relationships") or {}).items()
        if isinstance(value, dict) and "data" in value
    }
    identifier = data.get("id") if isinstance(data.get("id"), str) else None
    kind = data.get("type") if isinstance(data.get("type"), str) else None
    return dict(attributes), relationships, identifier, kind


# --- listing --------------------------------------------------------------------------------------------


def _values(row: Resource) -> query.Values:
    def value(name: str) -> Any:
        if name in ("id", "ids"):
            return row.resource_id
        node: Any = row.attributes
        for part in name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
        if name in ("created", "created_at", "datetime"):
            return row.created_at
        if name in ("updated", "updated_at"):
            return row.updated_at
        for relation in (name, name.removesuffix("_id"), name.removesuffix("_id") + "s", name.removesuffix(".id")):
            if relation in row.relationships:
                found = [rid for _, rid in _identifiers(row.relationships[relation])]
                return found[0] if len(found) == 1 else (found or None)
        return None

    return value


def _sort_key(value: Any) -> tuple[bool, str]:
    if isinstance(value, datetime):
        return False, value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return False, f"{value:030.6f}"
    return value is None, "" if value is None else str(value)


def cursor_value(raw: str) -> str:
    """``page[cursor]``: a cursor, or a whole ``links.next`` URL (its cursor is taken out of it)."""
    if raw.startswith(("http://", "https://")):
        return parse_qs(urlsplit(raw).query).get("page[cursor]", [""])[0]
    return raw.lstrip("=")


def _offset(raw: str | None) -> int:
    if not raw:
        return 0
    cursor = cursor_value(raw)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise invalid("page[cursor] is not a valid cursor for this request.", parameter="page[cursor]") from exc
    if not isinstance(decoded, dict) or not isinstance(decoded.get("offset"), int) or decoded["offset"] < 0:
        raise invalid("page[cursor] is not a valid cursor for this request.", parameter="page[cursor]")
    return decoded["offset"]


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).rstrip(b"=").decode("ascii")


def _listing(call: Call, rows: list[Resource], checked: query.Checked) -> Reply:
    rows = [row for row in rows if checked.condition(_values(row))]
    if checked.sort:
        name = checked.sort.removeprefix("-")
        rows.sort(key=lambda row: _sort_key(_values(row)(name)), reverse=checked.sort.startswith("-"))
    start, size = _offset(checked.cursor), checked.page_size
    shown = rows[start : start + size]
    page = Page(
        rows=shown,
        next_cursor=_cursor(start + size) if start + size < len(rows) else None,
        prev_cursor=_cursor(max(0, start - size)) if start > 0 else None,
    )
    query_now = dict(call.query.items())
    document = jsonapi.collection_document(
        [render(row, call.api_root) for row in shown],
        page,
        collection_url=call.collection_url,
        self_url=call.self_url,
        query=query_now,
    )
    document["links"] = {key: value for key, value in document["links"].items() if value is not None}
    if checked.include:
        document["included"] = _included(call, shown, checked.include)
    return _reply(call, document, checked)


# --- the handlers --------------------------------------------------------------------------------------


def handle(call: Call) -> Reply:
    """Answer ``call.operation`` from the generic store."""
    operation = _operation_of(call)
    checked = query.check(operation, call.query)
    shape = shape_of(operation.template)
    method = operation.method
    if shape.kind == COLLECTION and method == "GET":
        return _listing(call, store.all_of(call.account_id, type_of_template(operation.template)), checked)
    if shape.kind in (COLLECTION, ACTION):
        return _create(call, operation, checked)
    parent_type = type_of_template(shape.item_template or operation.template)
    parent_id = next(iter(call.args.values()), "")
    if shape.kind == ITEM:
        return _item(call, method, parent_type, parent_id, checked)
    row = store.get(call.account_id, parent_type, parent_id)
    relation = shape.relation or ""
    if shape.kind == RELATED:
        return _related(call, row, relation, checked)
    return _relationship(call, method, row, relation)


def _create(call: Call, operation: description.Operation, checked: query.Checked) -> Reply:
    body = _body(call)
    effect = _EFFECTS.get(operation.id)
    outcome = effect(account_id=call.account_id, body=body) if effect is not None else None
    attributes, relationships, identifier, sent_type = _parts(body)
    kind = _operation_type(operation) or sent_type or type_of_template(operation.template)
    if kind.endswith("-job"):
        # A job's size: the resources its attributes carry (profiles.data, items.data, ...).
        attributes["total_count"] = sum(len(value["data"]) for value in _nested_lists(attributes))
    if outcome is not None:
        relationships.update(outcome.relationships)
        if outcome.errors:
            errors = [
                store.create(call.account_id, "import-error", attributes=error, relationships={})
                for error in outcome.errors
            ]
            relationships["import-errors"] = [{"type": row.type, "id": row.resource_id} for row in errors]
            attributes["failed_count"] = len(errors)
    identifier = identifier or store.klaviyo_id(kind, attributes, relationships)
    row = store.create(
        call.account_id, kind, attributes=attributes, relationships=relationships, resource_id=identifier
    )
    document = {"data": render(row, call.api_root), "links": {"self": call.collection_url}}
    return _reply(call, document, checked)


def _nested_lists(attributes: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [value for value in attributes.values() if isinstance(value, dict) and isinstance(value.get("data"), list)]


def _item(call: Call, method: str, kind: str, resource_id: str, checked: query.Checked) -> Reply:
    row = store.get(call.account_id, kind, resource_id)
    if method == "DELETE":
        store.delete(row)
        return _reply(call, None)
    if method in ("PATCH", "POST", "PUT"):
        body = _body(call)
        attributes, relationships, identifier, _ = _parts(body)
        if identifier is not None and identifier != resource_id:
            raise invalid("/data/id must be the id in the path.", pointer="/data/id")
        row = store.update(row, attributes=attributes, relationships=relationships)
    document: dict[str, Any] = {"data": render(row, call.api_root), "links": {"self": call.self_url}}
    if checked.include:
        document["included"] = _included(call, [row], checked.include)
    return _reply(call, document, checked)


def _plural(call: Call) -> bool:
    """Whether the operation answers a list of resources (a to-many relationship)."""
    operation = _operation_of(call)
    schema = description.resolve(operation.responses.get(str(operation.success_status)))
    return description.resolve(schema.get("properties", {}).get("data")).get("type") == "array"


def _related(call: Call, row: Resource, relation: str, checked: query.Checked) -> Reply:
    related = _rows(call.account_id, _linked(call, row, relation))
    if _plural(call):
        return _listing(call, related, checked)
    document = {"data": render(related[0], call.api_root) if related else None, "links": {"self": call.self_url}}
    return _reply(call, document, checked)


def _relationship(call: Call, method: str, row: Resource, relation: str) -> Reply:
    current = _identifiers(row.relationships.get(relation))
    if method == "GET":
        linked = [{"type": kind, "id": rid} for kind, rid in _linked(call, row, relation)]
        data: Any = linked if _plural(call) else (linked[0] if linked else None)
        return _reply(call, {"data": data, "links": {"self": call.self_url}})
    body = _body(call)
    sent = _identifiers(body.get("data"))
    if method == "POST":
        value: Any = [*current, *(key for key in sent if key not in current)]
    elif method == "DELETE":
        value = [key for key in current if key not in sent]
    else:
        value = sent if isinstance(body.get("data"), list) else (sent[0] if sent else None)
    if isinstance(value, list):
        value = [{"type": kind, "id": rid} for kind, rid in value]
    elif value is not None:
        value = {"type": value[0], "id": value[1]}
    store.update(row, attributes={}, relationships={relation: value})
    return _reply(call, None)


# --- links between resources ------------------------------------------------------------------------------

# The types the hand-written endpoints keep in models of their own, and their attributes as those endpoints
# answer them (links aside).
_OWN: dict[str, tuple[type, Callable[[Any], dict[str, Any]]]] = {
    "profile": (Profile, lambda row: resources.profile(row, api_root="")["attributes"]),
    "list": (ProfileList, lambda row: resources.profile_list(row, api_root="")["attributes"]),
    "metric": (Metric, lambda row: resources.metric(row, api_root="")["attributes"]),
    "event": (Event, lambda row: resources.event(row, api_root="")["attributes"]),
}


def _rows(account_id: str, identifiers: list[tuple[str, str]]) -> list[Resource]:
    """The resources that exist among ``(type, id)`` pairs, in their order; a profile, list, metric or event
    as its hand-written endpoint shows it (an unsaved row)."""
    wanted = list(dict.fromkeys(identifiers))
    stored = {(row.type, row.resource_id): row for row in store.several(account_id, wanted)}
    for kind, (model, attributes_of) in _OWN.items():
        ids = [rid for wanted_kind, rid in wanted if wanted_kind == kind]
        for found in model._default_manager.filter(account_id=account_id, pk__in=ids) if ids else ():
            created = getattr(found, "created", None) or getattr(found, "datetime", None) or timezone.now()
            stored[(kind, found.pk)] = Resource(
                account_id=account_id,
                type=kind,
                resource_id=found.pk,
                attributes=attributes_of(found),
                relationships={},
                created_at=created,
                updated_at=getattr(found, "updated", None) or created,
            )
    return [stored[key] for key in wanted if key in stored]


def _linked(call: Call, row: Resource, relation: str) -> list[tuple[str, str]]:
    """What ``row``'s relationship ``relation`` names: what was stored with it, a profile's lists (its list
    memberships), an event's metric and profile, and the resources of the related type whose own
    relationship names ``row`` (a catalog item's variants, a coupon's codes, a profile's segments)."""
    found = _identifiers(row.relationships.get(relation))
    if row.type == "profile" and relation == "lists":
        memberships = ListMembership.objects.filter(profile_id=row.resource_id, profile__account_id=call.account_id)
        found += [("list", list_id) for list_id in memberships.values_list("profile_list_id", flat=True)]
    if row.type == "event" and relation in ("metric", "profile"):
        event = Event.objects.filter(account_id=call.account_id, pk=row.resource_id).first()
        if event is not None:
            found.append((relation, event.metric_id if relation == "metric" else event.profile_id))
    operation = _operation_of(call)
    related_type = data_type(operation.responses.get(str(operation.success_status)))
    if related_type is not None and related_type not in _OWN:
        found += [
            (other.type, other.resource_id)
            for other in store.inverse(call.account_id, related_type, (row.type, row.resource_id))
        ]
    return list(dict.fromkeys(found))
