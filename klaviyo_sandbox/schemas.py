"""The description's schemas as JSON Schema: request bodies checked with ``jsonschema``, answers made to conform.

OpenAPI 3.0 schemas are JSON Schema draft 4 with a few words of their own; the
description's components are converted once per process (``nullable: true`` becomes a
``null`` alternative, examples dropped, type names JSON Schema does not know read as any
type) and registered with ``referencing``, so ``$ref`` resolves inside them.

``conform`` turns what the sandbox knows of a resource into an answer that validates
against an operation's response schema: members the schema does not declare are left
out, members it requires and the sandbox lacks get a value of the right type (the first
``enum`` value, the current time for a ``date-time``, ...).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from klaviyo_sandbox import description

if TYPE_CHECKING:  # jsonschema and referencing are imported on first use: start-up stays fast
    import jsonschema
    from referencing import Registry
from klaviyo_sandbox.exceptions import invalid

_URI = "urn:klaviyo-openapi"
_TYPES = frozenset({"string", "object", "array", "integer", "boolean", "number", "null"})
_SKIPPED = frozenset({"example", "examples", "discriminator", "xml", "externalDocs"})
MISSING: Any = object()


def _converted(node: Any) -> Any:
    if isinstance(node, list):
        return [_converted(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {
        key: value if key in ("enum", "default") else _converted(value)
        for key, value in node.items()
        if key not in _SKIPPED and key != "nullable" and not key.startswith("x-")
    }
    if isinstance(schema.get("type"), str) and schema["type"] not in _TYPES:
        del schema["type"]
    if "$ref" in schema:
        schema = {"$ref": schema["$ref"]}  # siblings of $ref are ignored in draft 4
    if node.get("nullable") is True:
        if "$ref" in schema or "oneOf" in schema or "allOf" in schema or "anyOf" in schema:
            return {"anyOf": [schema, {"type": "null"}]}
        if isinstance(schema.get("type"), str):
            schema["type"] = [schema["type"], "null"]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
    return schema


@functools.cache
def _registry() -> Registry:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    converted = {"components": _converted(description.document().get("components", {}))}
    return Registry().with_resource(_URI, Resource.from_contents(converted, default_specification=DRAFT4))


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _is_date_time(value: object) -> bool:
    """RFC 3339 (``format: date-time``), as validators of OpenAPI descriptions read it."""
    if not isinstance(value, str) or not _DATE_TIME.fullmatch(value):
        return not isinstance(value, str)
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return value[17:19] == "60"  # a leap second
    return True


def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _is_time(value: object) -> bool:
    """RFC 3339 full-time: with a UTC offset."""
    return not isinstance(value, str) or bool(_TIME.fullmatch(value))


_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)")


def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(_URI_FORM.fullmatch(value))


_URI_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f\\\"<>^`{|}]*")


_FORMAT_CHECKS = {"date-time": _is_date_time, "date": _is_date, "time": _is_time, "uri": _is_uri}


@functools.cache
def _formats() -> jsonschema.FormatChecker:
    """The formats checked in bodies and kept in answers (RFC 3339 dates and times, URIs)."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    for name, check in _FORMAT_CHECKS.items():
        checker.checks(name)(check)
    return checker


def _draft4(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    import jsonschema

    return jsonschema.Draft4Validator(schema, registry=_registry(), format_checker=_formats())


@functools.cache
def _validator(ref: str) -> jsonschema.protocols.Validator:
    return _draft4({"$ref": f"{_URI}{ref}"})


def validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A draft 4 validator of ``schema`` (a ``$ref`` into the description, or an inline schema)."""
    if set(schema) == {"$ref"}:
        return _validator(schema["$ref"])
    inline = _converted(dict(schema))
    return _draft4(_rebased(inline))


def _rebased(node: Any) -> Any:
    if isinstance(node, list):
        return [_rebased(item) for item in node]
    if isinstance(node, dict):
        return {
            key: (f"{_URI}{value}" if key == "$ref" and value.startswith("#") else _rebased(value))
            for key, value in node.items()
        }
    return node


def check_body(schema: Mapping[str, Any], body: Any) -> None:
    """Raise a 400 ``invalid`` pointing at the first member of ``body`` that ``schema`` refuses."""
    from jsonschema.exceptions import best_match

    error = best_match(validator(schema).iter_errors(body))
    if error is None:
        return
    pointer = "/" + "/".join(str(part) for part in error.absolute_path)
    message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
    raise invalid(f"Invalid value at {pointer}: {message}", pointer=pointer)


def is_valid(schema: Mapping[str, Any], value: Any) -> bool:
    return validator(schema).is_valid(value)


# --- answers that conform -----------------------------------------------------------------------


def now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def conform(value: Any, schema: Mapping[str, Any] | None, *, depth: int = 0) -> Any:
    """``value`` shaped to validate against ``schema`` (MISSING: a value made up from the schema alone)."""
    if schema is None:
        return None if value is MISSING else value
    if schema.get("nullable") and isinstance(value, dict | list) and not is_valid(schema, value):
        # What the sandbox holds does not fit (e.g. a definition sent in another shape): shape it, or answer null.
        shaped = conform(value, description.resolve(schema), depth=depth)
        return shaped if is_valid(schema, shaped) else None
    schema = description.resolve(schema)
    nullable = bool(schema.get("nullable"))
    if value is None and nullable:
        return None
    if depth > 24:
        return None
    if "allOf" in schema:
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in schema["allOf"]:
            part = description.resolve(part)
            merged["properties"].update(part.get("properties", {}))
            merged["required"] += part.get("required", [])
        return conform(value, merged, depth=depth + 1)
    for word in ("oneOf", "anyOf"):
        if word in schema:
            return _alternative(value, schema, schema[word], depth)
    if "enum" in schema:
        return value if value in schema["enum"] else schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or (kind is None and "properties" in schema):
        return _object(value, schema, depth)
    if kind == "array":
        items = schema.get("items", {})
        found = value if isinstance(value, list) else []
        shaped = [conform(item, items, depth=depth + 1) for item in found]
        while len(shaped) < schema.get("minItems", 0):
            shaped.append(conform(MISSING, items, depth=depth + 1))
        return shaped
    if kind == "string":
        return value if isinstance(value, str) and _string_ok(value, schema) else _string(schema)
    if kind == "integer":
        number = value if isinstance(value, int) and not isinstance(value, bool) else schema.get("minimum", 0)
        return _bounded(int(number), schema)
    if kind in ("number", "numeric"):
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else schema.get("minimum", 0)
        return _bounded(number, schema)
    if kind == "boolean":
        return value if isinstance(value, bool) else False
    return None if value is MISSING else value


def _alternative(value: Any, schema: Mapping[str, Any], branches: list[Any], depth: int) -> Any:
    """A value for a ``oneOf``/``anyOf``: ``value`` when it fits, else the first made-up one that does (for a
    ``oneOf``, one that fits exactly one branch; a branch's optional members are filled in to tell them apart)."""
    if value is not MISSING:
        # Shaped by the branch it fits: members the branch does not answer (write-only ones) go.
        for branch in branches:
            if is_valid(branch, value) and is_valid(schema, shaped := conform(value, branch, depth=depth + 1)):
                return shaped
    typed = [
        branch
        for branch in branches
        if value is MISSING or (kind := description.resolve(branch).get("type")) is None or _is_type(value, kind)
    ]
    candidates = [conform(value, branch, depth=depth + 1) for branch in typed or branches]
    candidates += [_filled(branch, depth) for branch in branches]
    candidates += [conform(MISSING, branch, depth=depth + 1) for branch in branches]
    fitting = (candidate for candidate in candidates if is_valid(schema, candidate))
    # A oneOf of open objects fits no object exactly once: then one that fits some branch.
    loosely = (candidate for candidate in candidates if any(is_valid(branch, candidate) for branch in branches))
    return next(fitting, next(loosely, candidates[0]))


def _filled(schema: Mapping[str, Any], depth: int) -> Any:
    """A made-up value of ``schema`` with every member it declares (not only the required ones)."""
    resolved = description.resolve(schema)
    if resolved.get("type") == "object" and resolved.get("properties"):
        return {name: conform(MISSING, sub, depth=depth + 1) for name, sub in resolved["properties"].items()}
    return conform(MISSING, schema, depth=depth + 1)


def _is_type(value: Any, kind: str) -> bool:
    checks = {"object": dict, "array": list, "string": str, "boolean": bool}
    if kind in ("integer", "number"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, checks.get(kind, object))


def _object(value: Any, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
    found = value if isinstance(value, dict) else {}
    properties = schema.get("properties")
    required = schema.get("required", [])
    if not properties:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return {key: conform(item, extra, depth=depth + 1) for key, item in found.items()}
        return dict(found)
    shaped = {}
    for name, sub in properties.items():
        if description.resolve(sub).get("writeOnly") or sub.get("writeOnly"):
            continue  # sent in requests, never answered
        if name in found:
            item = found[name]
            resolved = description.resolve(sub)
            if item is None and not resolved.get("nullable") and name not in required:
                continue
            shaped[name] = conform(item, sub, depth=depth + 1)
        elif name in required:
            shaped[name] = conform(MISSING, sub, depth=depth + 1)
    return shaped


def _string_ok(value: str, schema: Mapping[str, Any]) -> bool:
    check = _FORMAT_CHECKS.get(schema.get("format", ""))
    return len(value) >= schema.get("minLength", 0) and (check is None or check(value))


def _string(schema: Mapping[str, Any]) -> str:
    kind = schema.get("format")
    made = {
        "date-time": now(),
        "date": now()[:10],
        "time": "00:00:00Z",
        "uri": "https://example.com/",
        "email": "sandbox@example.com",
        "uuid": str(uuid.uuid4()),
    }.get(kind, "")
    return made or "x" * schema.get("minLength", 0)


def _bounded(number: float, schema: Mapping[str, Any]) -> Any:
    if "minimum" in schema:
        number = max(number, schema["minimum"])
    if "maximum" in schema:
        number = min(number, schema["maximum"])
    return number
