"""JSON:API documents in the shape of Klaviyo's answers. Pure functions of their inputs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from klaviyo_sandbox.exceptions import APIError
from klaviyo_sandbox.pagination import Page

CONTENT_TYPE = "application/vnd.api+json"


def timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC, with microseconds only when there are some (as Klaviyo writes them)."""
    return moment.isoformat() if moment is not None else None


def error_document(error: APIError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "status": error.status,
        "code": error.code,
        "title": error.title,
        "detail": error.detail,
        "source": dict(error.source),
    }
    if error.meta is not None:
        body["meta"] = dict(error.meta)
    return {"errors": [body]}


def sparse(attributes: dict[str, Any], fields: Iterable[str] | None) -> dict[str, Any]:
    """Only the requested attributes (``fields[type]``); a dotted name selects inside an object."""
    if fields is None:
        return attributes
    chosen: dict[str, Any] = {}
    for name in fields:
        source, target = attributes, chosen
        *parents, last = name.split(".")
        for parent in parents:
            found = source.get(parent)
            source = found if isinstance(found, dict) else {}  # a list or a value holds no named members
            if not isinstance(target.get(parent, {}), dict):
                source = {}  # ...and when the whole member is chosen already, there is nothing to add
                break
            target = target.setdefault(parent, {})
        if last in source:
            target[last] = source[last]
    return chosen


def resource(
    kind: str,
    identifier: str,
    attributes: dict[str, Any],
    fields: Iterable[str] | None = None,
    *,
    api_root: str,
    relationships: Mapping[str, Any] | Iterable[str] = (),
) -> dict[str, Any]:
    """A resource object with the attributes ``fields`` names (all when None), its links under
    ``{api_root}/{kind}s/{id}/``; a relationship named in a mapping also carries its value as ``data``."""
    own = f"{api_root}/{kind}s/{identifier}/"
    linked: dict[str, Any] = {}
    for name in relationships:
        linked[name] = {"links": {"self": f"{own}relationships/{name}/", "related": f"{own}{name}/"}}
        if isinstance(relationships, Mapping):
            linked[name] = {"data": relationships[name], **linked[name]}
    body: dict[str, Any] = {"type": kind, "id": identifier, "attributes": sparse(attributes, fields)}
    if linked:
        body["relationships"] = linked
    body["links"] = {"self": own}
    return body


def collection_document(
    data: list[dict[str, Any]], page: Page | None, *, collection_url: str, self_url: str, query: Mapping[str, str]
) -> dict[str, Any]:
    """``collection_url``: absolute URL of the endpoint without a trailing slash; ``query``: the request's."""

    def link(cursor: str | None) -> str | None:
        if cursor is None:
            return None
        params = {key: value for key, value in query.items() if key != "page[cursor]"}
        params["page[cursor]"] = cursor
        return f"{collection_url}?{urlencode(params)}"

    next_cursor, prev_cursor = (page.next_cursor, page.prev_cursor) if page is not None else (None, None)
    return {"data": data, "links": {"self": self_url, "next": link(next_cursor), "prev": link(prev_cursor)}}


def single_document(data: dict[str, Any], *, self_url: str) -> dict[str, Any]:
    return {"data": data, "links": {"self": self_url}}
