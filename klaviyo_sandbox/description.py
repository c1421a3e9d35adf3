"""Klaviyo's OpenAPI description (``data/openapi/stable.json``, MIT): read once per process, on first use.

Nothing reads the 3 MB file at import or start-up: ``document()`` parses it the first time
an API call needs it, and ``operations()`` compiles its 345 operations once. Each
``Operation`` carries what the sandbox takes from the description: the route (a regex per
path template), ``x-klaviyo-scopes``, the rate tier from ``x-klaviyo-ratelimit`` (daily
limits too) and the lower tiers the operation's text gives for some parameter values, the
query parameters, ``x-klaviyo-filters`` and the request and response schemas.
``manage.py sandbox_openapi --from PATH`` replaces the file with a newer description.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from klaviyo_sandbox.ratelimit import Tier

DESCRIPTION_PATH = Path(__file__).resolve().parent / "data" / "openapi" / "stable.json"
METHODS = ("get", "post", "patch", "put", "delete")
_LIMIT = re.compile(r"(\d+)/([smd])")
# "Rate limits when using the `additional-fields[profile]=predictive_analytics` parameter in
# your API request:<br>Burst: `10/s`<br>Steady: `150/m`"
_CONDITIONAL = re.compile(
    r"Rate limits when using the `(?P<name>[^`=]+)=(?P<value>[^`]+)` parameter in your API request:"
    r"<br>Burst: `(?P<burst>\d+)/s`<br>Steady: `(?P<steady>\d+)/m`"
)


@dataclass(frozen=True, slots=True)
class ConditionalTier:
    """A lower tier that applies when query parameter ``name`` holds ``value`` (among comma-separated values)."""

    name: str
    value: str
    tier: Tier


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the description, as the sandbox routes, admits and checks it."""

    id: str
    method: str  # upper case
    template: str  # e.g. /api/profiles/{id}
    pattern: re.Pattern[str]
    scopes: tuple[str, ...]
    tier: Tier
    conditional_tiers: tuple[ConditionalTier, ...]
    parameters: Mapping[str, Mapping[str, Any]]  # query parameters by name
    filters: Mapping[str, Any]  # x-klaviyo-filters
    request_schema: Mapping[str, Any] | None
    request_required: bool
    responses: Mapping[str, Mapping[str, Any] | None] = field(repr=False)  # status -> schema (None: no body)

    @property
    def client(self) -> bool:
        """A client-side endpoint (``/client/...``), authenticated by the ``company_id`` parameter."""
        return self.template.startswith("/client/")

    @property
    def success_status(self) -> int:
        return min(int(status) for status in self.responses if status.isdigit() and status.startswith("2"))

    def tier_for(self, query: Mapping[str, str]) -> tuple[str, Tier]:
        """The rate bucket (its name) and tier for a request with ``query``: a conditional tier when it applies."""
        for conditional in self.conditional_tiers:
            values = [value.strip() for value in query.get(conditional.name, "").split(",")]
            if conditional.value in values:
                return f"{self.id}#{conditional.value}"[:64], conditional.tier
        return self.id, self.tier


@functools.cache
def document() -> dict[str, Any]:
    """The parsed description (once per process)."""
    with DESCRIPTION_PATH.open(encoding="utf-8") as file:
        return json.load(file)


def version() -> str:
    return str(document()["info"]["version"])


def tier_of(limits: Mapping[str, str]) -> Tier:
    """``{"burst": "75/s", "steady": "750/m", "daily": "150/d"}`` as a Tier."""
    numbers = {}
    for window in ("burst", "steady", "daily"):
        match = _LIMIT.fullmatch(str(limits.get(window, "")))
        numbers[window] = int(match.group(1)) if match else None
    return Tier(numbers["burst"] or 1, numbers["steady"] or 1, daily=numbers["daily"])


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{([^}]+)\}", template.strip("/"))
    regex = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{_group(part)}>[^/]+)" for index, part in enumerate(parts)
    )
    return re.compile(regex)


def _group(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _content_schema(content: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    for media in (content or {}).values():
        if isinstance(media, Mapping) and "schema" in media:
            return media["schema"]
    return None


def resolve(schema: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``schema`` with a top-level ``$ref`` into the description followed."""
    seen = 0
    while schema is not None and "$ref" in schema and seen < 20:
        node: Any = document()
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema, seen = node, seen + 1
    return schema or {}


def _responses(raw: Mapping[str, Any]) -> dict[str, Mapping[str, Any] | None]:
    found: dict[str, Mapping[str, Any] | None] = {}
    for status, response in raw.items():
        response = resolve(response)
        found[status] = _content_schema(response.get("content"))
    return found


def _operation(method: str, template: str, raw: Mapping[str, Any], shared: list[Any]) -> Operation:
    parameters = {}
    for parameter in [*shared, *raw.get("parameters", [])]:
        parameter = resolve(parameter)
        if parameter.get("in") == "query":
            parameters[parameter["name"]] = parameter
    body = resolve(raw.get("requestBody")) if raw.get("requestBody") else {}
    conditional = tuple(
        ConditionalTier(found["name"], found["value"], Tier(int(found["burst"]), int(found["steady"])))
        for found in _CONDITIONAL.finditer(raw.get("description", ""))
    )
    return Operation(
        id=raw["operationId"],
        method=method.upper(),
        template=template,
        pattern=_pattern(template),
        scopes=tuple(raw.get("x-klaviyo-scopes", ())),
        tier=tier_of(raw.get("x-klaviyo-ratelimit") or {}),
        conditional_tiers=conditional,
        parameters=parameters,
        filters=raw.get("x-klaviyo-filters") or {},
        request_schema=_content_schema(body.get("content")),
        request_required=bool(body.get("required")),
        responses=_responses(raw.get("responses", {})),
    )


@functools.cache
def operations() -> tuple[Operation, ...]:
    """Every operation, most literal path first (``/api/x/special`` before ``/api/x/{id}``)."""
    found = []
    for template, item in document()["paths"].items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method in item:
                found.append(_operation(method, template, item[method], shared))
    return tuple(sorted(found, key=lambda operation: (operation.template.count("{"), operation.template)))


@functools.cache
def by_id() -> dict[str, Operation]:
    return {operation.id: operation for operation in operations()}


def route(path: str) -> tuple[list[Operation], dict[str, str]]:
    """The operations of the first path template that ``path`` (e.g. ``api/profiles/abc``) matches, and its
    parameters; ``([], {})`` when none does."""
    path = path.removesuffix("/")
    for operation in operations():
        found = operation.pattern.fullmatch(path)
        if found:
            same = [candidate for candidate in operations() if candidate.template == operation.template]
            return same, found.groupdict()
    return [], {}


def problems(candidate: object) -> list[str]:
    """Why ``candidate`` (a parsed JSON document) cannot serve as the sandbox's description (empty: it can)."""
    if not isinstance(candidate, dict):
        return ["the description must be a JSON object"]
    found = []
    if not str(candidate.get("openapi", "")).startswith("3.0"):
        found.append("openapi must be a 3.0.x version (the sandbox reads OpenAPI 3.0 schemas)")
    if not isinstance(candidate.get("info"), dict) or not candidate["info"].get("version"):
        found.append("info.version (the API revision) is missing")
    paths = candidate.get("paths")
    if not isinstance(paths, dict) or not paths:
        return [*found, "paths is missing or empty"]
    for template, item in paths.items():
        if not template.startswith(("/api/", "/client/")):
            found.append(f"{template}: paths must start with /api/ or /client/")
        for method in METHODS:
            operation = item.get(method) if isinstance(item, dict) else None
            if operation is None:
                continue
            if not operation.get("operationId"):
                found.append(f"{method.upper()} {template}: no operationId")
            if "x-klaviyo-ratelimit" not in operation:
                found.append(f"{method.upper()} {template}: no x-klaviyo-ratelimit")
    if not isinstance(candidate.get("components", {}).get("schemas"), dict):
        found.append("components.schemas is missing")
    return found
