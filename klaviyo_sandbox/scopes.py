"""Klaviyo's OAuth scopes (OpenAPI revision 2026-07-15) and how the consent page words them."""

from __future__ import annotations

_RESOURCES_READ_WRITE = (
    "campaigns", "catalogs", "conversations", "coupon-codes", "coupons", "custom-objects", "events", "flows",
    "forms", "images", "lists", "metrics", "profiles", "push-tokens", "reviews", "segments", "subscriptions",
    "tags", "templates", "tracking-settings", "web-feeds", "webhooks",
)  # fmt: skip

KNOWN_SCOPES: frozenset[str] = frozenset(
    {"accounts:read", "data-privacy:write"}
    | {f"{resource}:{access}" for resource in _RESOURCES_READ_WRITE for access in ("read", "write")}
)


def describe(scope: str) -> str:
    """A human wording of a scope, e.g. ``profiles:read`` -> "View profiles"."""
    resource, _, access = scope.partition(":")
    verb = "View" if access == "read" else "Create, update and delete"
    return f"{verb} {resource.replace('-', ' ')}"
