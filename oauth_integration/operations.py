"""Klaviyo's API operations, from its OpenAPI description: path templates and the scopes each needs.

``data/klaviyo_scopes.json`` lists every operation of Klaviyo's stable API (method and
path template, e.g. ``GET /api/lists/{id}/profiles``) with its ``x-klaviyo-scopes``.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

SCOPES_FILE = Path(__file__).resolve().parent / "data" / "klaviyo_scopes.json"
OTHER = "other"
OAUTH_ENDPOINTS = ("/oauth/token", "/oauth/revoke")


@functools.cache
def _operations() -> list[tuple[str, str, re.Pattern[str], tuple[str, ...]]]:
    """(method, template, path pattern, scopes) of every operation."""
    table = json.loads(SCOPES_FILE.read_text(encoding="utf-8"))["scopes"]
    rows = []
    for operation, scopes in table.items():
        method, template = operation.split(" ", 1)
        parts = re.split(r"(\{[^}]+\})", template)
        pattern = re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts))
        rows.append((method, template, pattern, tuple(scopes)))
    return rows


def _api_path(path: str) -> str:
    """``/api/...`` of a path or URL, whatever comes before it (a sandbox prefix), without a query."""
    bare = urlsplit(path).path
    start = bare.find("/api/")
    return bare[start:].rstrip("/") if start >= 0 else bare.rstrip("/")


@functools.lru_cache(maxsize=1024)
def _template(path: str) -> str | None:
    return next((template for _, template, pattern, _ in _operations() if pattern.fullmatch(path)), None)


def endpoint_of(path: str) -> str:
    """The path with its ids replaced (``/api/profiles/{id}``), or ``other``: a bounded label."""
    bare = _api_path(path)
    if bare.endswith(OAUTH_ENDPOINTS):
        return bare[bare.rindex("/oauth/") :]
    return _template(bare) or OTHER


def required_scopes(method: str, path: str) -> tuple[str, ...]:
    """The scopes Klaviyo requires for ``method`` on ``path`` (empty when the operation is unknown)."""
    bare, method = _api_path(path), method.upper()
    return next((scopes for m, _, pattern, scopes in _operations() if m == method and pattern.fullmatch(bare)), ())
