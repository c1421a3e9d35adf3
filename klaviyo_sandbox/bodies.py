"""Request bodies: JSON:API documents, read and checked member by member, errors pointing at the member."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from klaviyo_sandbox.exceptions import APIError, invalid

MEDIA_TYPES = ("application/vnd.api+json", "application/json")


class Unset:
    """The member was not in the body (as opposed to ``null``)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


def document(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object. Raises APIError 415 (not JSON) or 400 (malformed)."""
    if request.content_type not in MEDIA_TYPES:
        detail = f"Send the body as {MEDIA_TYPES[0]} (or {MEDIA_TYPES[1]})."
        raise APIError(415, "unsupported_media_type", "Unsupported media type.", detail, source={"pointer": "/data"})
    try:
        body = json.loads(request.body)
    except (UnicodeDecodeError, ValueError) as exc:
        detail = "JSON parse error: the body is not valid JSON."
        raise APIError(400, "parse_error", "Malformed request.", detail, source={"pointer": "/data"}) from exc
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object with a data member.", pointer="/data")
    return body


@dataclass(frozen=True, slots=True)
class Data:
    """The ``data`` member of a document: one resource object."""

    id: str | None
    attributes: dict[str, Any]
    meta: dict[str, Any]
    pointer: str = "/data"


def resource(container: object, kind: str, *, pointer: str = "/data", with_id: bool = False) -> Data:
    """``container["data"]`` (at ``pointer``) as a resource object of type ``kind``, with a string
    ``id`` when ``with_id``."""
    data = container.get("data") if isinstance(container, dict) else None
    if not isinstance(data, dict):
        raise invalid(f"{pointer} must be a resource object.", pointer=pointer)
    if data.get("type") != kind:
        raise invalid(f"{pointer}/type must be {kind!r}.", pointer=f"{pointer}/type")
    identifier = data.get("id")
    if (with_id and not isinstance(identifier, str)) or (identifier is not None and not isinstance(identifier, str)):
        raise invalid(f"{pointer}/id must be the {kind}'s id.", pointer=f"{pointer}/id")
    attributes = data.get("attributes", {})
    if not isinstance(attributes, dict):
        raise invalid(f"{pointer}/attributes must be an object.", pointer=f"{pointer}/attributes")
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise invalid(f"{pointer}/meta must be an object.", pointer=f"{pointer}/meta")
    return Data(id=identifier, attributes=attributes, meta=meta, pointer=pointer)


def identifiers(body: dict[str, Any], kind: str, *, most: int) -> list[str]:
    """``data`` as a list of resource identifiers ``{"type": kind, "id": ...}`` (1 to ``most``)."""
    data = body.get("data")
    if not isinstance(data, list) or not 1 <= len(data) <= most:
        raise invalid(f"/data must be a list of 1 to {most} {kind} identifiers.", pointer="/data")
    ids = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or item.get("type") != kind or not isinstance(item.get("id"), str):
            raise invalid(f'Each identifier must be {{"type": "{kind}", "id": "..."}}.', pointer=f"/data/{index}")
        ids.append(item["id"])
    return list(dict.fromkeys(ids))


def text(data: Data, name: str, *, required: bool = False, nullable: bool = True) -> str | Unset | None:
    """An attribute that holds a string: UNSET when absent, None for null (when allowed)."""
    pointer = f"{data.pointer}/attributes/{name}"
    if name not in data.attributes:
        if required:
            raise invalid(f"{name} is required.", pointer=pointer)
        return UNSET
    value = data.attributes[name]
    if value is None and nullable and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise invalid(f"{name} must be {'a non-empty ' if required else 'a '}string.", pointer=pointer)
    return value


def mapping(data: Data, name: str) -> dict[str, Any] | Unset | None:
    """An attribute that holds an object: UNSET when absent, None for null."""
    if name not in data.attributes:
        return UNSET
    value = data.attributes[name]
    if value is not None and not isinstance(value, dict):
        raise invalid(f"{name} must be an object.", pointer=f"{data.pointer}/attributes/{name}")
    return value
