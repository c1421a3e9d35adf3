"""The generic store: each account's resources of every type without a model of its own, as JSON rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from klaviyo_sandbox import ids
from klaviyo_sandbox.exceptions import APIError, not_found
from klaviyo_sandbox.models import Event, Metric, Profile, ProfileList, Resource

# Types the sandbox keeps in models of their own (the hand-written endpoints' resources).
_OWN_MODELS = {"profile": Profile, "list": ProfileList, "metric": Metric, "event": Event}


_CATALOG_TYPES = frozenset({"catalog-item", "catalog-variant", "catalog-category"})


def klaviyo_id(kind: str, attributes: dict[str, Any], relationships: dict[str, Any]) -> str | None:
    """The id Klaviyo gives a new resource made from its attributes, when it derives one: a catalog
    resource is named after its integration, catalog and external id, a coupon is its external id and a
    coupon code its coupon's id and its code. None: a new random id."""
    external = attributes.get("external_id")
    if kind in _CATALOG_TYPES and isinstance(external, str):
        return f"$custom:::$default:::{external}"
    if kind == "coupon" and isinstance(external, str):
        return external
    coupon = relationships.get("coupon")
    if kind == "coupon-code" and isinstance(coupon, dict) and isinstance(attributes.get("unique_code"), str):
        return f"{coupon.get('id')}-{attributes['unique_code']}"
    return None


def inverse(account_id: str, kind: str, target: tuple[str, str]) -> list[Resource]:
    """The account's resources of ``kind`` with a relationship naming ``target`` (a variant's item, a
    code's coupon), which the target's own related endpoints show too."""
    wanted = {"type": target[0], "id": target[1]}
    found = []
    for row in all_of(account_id, kind):
        for data in row.relationships.values():
            if data == wanted or (isinstance(data, list) and wanted in data):
                found.append(row)
                break
    return found


def find(account_id: str, kind: str, resource_id: str) -> Resource | None:
    return Resource.objects.filter(account_id=account_id, type=kind, resource_id=resource_id).first()


def get(account_id: str, kind: str, resource_id: str) -> Resource:
    """The account's resource. Raises APIError 404 when it has none of that type and id."""
    row = find(account_id, kind, resource_id)
    if row is None:
        model = _OWN_MODELS.get(kind)
        if model is not None and model._default_manager.filter(account_id=account_id, pk=resource_id).exists():
            # A profile, list, metric or event: its relationships of other types live here.
            row, _ = Resource.objects.get_or_create(account_id=account_id, type=kind, resource_id=resource_id)
            return row
        raise not_found(f"A {kind} with id {resource_id} does not exist.")
    return row


def all_of(account_id: str, kind: str) -> list[Resource]:
    return list(Resource.objects.filter(account_id=account_id, type=kind).order_by("created_at", "resource_id"))


def several(account_id: str, identifiers: Iterable[tuple[str, str]]) -> list[Resource]:
    """The resources that exist among ``(type, id)`` pairs, in their order."""
    wanted = list(dict.fromkeys(identifiers))
    rows = {
        (row.type, row.resource_id): row
        for row in Resource.objects.filter(account_id=account_id, resource_id__in=[rid for _, rid in wanted])
    }
    return [rows[key] for key in wanted if key in rows]


def create(
    account_id: str,
    kind: str,
    *,
    attributes: dict[str, Any],
    relationships: dict[str, Any],
    resource_id: str | None = None,
) -> Resource:
    """A new resource (a new id when none is given). Raises APIError 409 when the id is taken."""
    try:
        with transaction.atomic():
            return Resource.objects.create(
                account_id=account_id,
                type=kind,
                resource_id=resource_id or ids.short_id(6 if not kind.endswith("-job") else 20),
                attributes=attributes,
                relationships=relationships,
            )
    except IntegrityError as exc:
        detail = f"A {kind} with id {resource_id} already exists."
        raise APIError(409, "duplicate", "Conflict.", detail, source={"pointer": "/data/id"}) from exc


def update(row: Resource, *, attributes: dict[str, Any], relationships: dict[str, Any]) -> Resource:
    row.attributes = {**row.attributes, **attributes}
    row.relationships = {**row.relationships, **relationships}
    row.updated_at = timezone.now()
    row.save(update_fields=["attributes", "relationships", "updated_at"])
    return row


def delete(row: Resource) -> None:
    row.delete()
