"""Jobs on the generic store's resources: catalog item, variant and category bulk create, update and delete
jobs, coupon code bulk create jobs, and back-in-stock subscriptions. All or nothing: a 400 pointing at the bad
member changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from klaviyo_sandbox.bodies import Data
from klaviyo_sandbox.exceptions import APIError, invalid
from klaviyo_sandbox.models import Profile
from klaviyo_sandbox.store import generic, profiles

# A related resource a created one must point at: its type, and the relationship that names it.
_PARENTS = {"catalog-variant": ("item", "catalog-item"), "coupon-code": ("coupon", "coupon")}


@dataclass
class Outcome:
    """What a job did: relationships of the job (``items`` -> the resources it made), import errors."""

    relationships: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)


def _parent_exists(account_id: str, kind: str, relationships: dict[str, Any], pointer: str) -> None:
    if kind not in _PARENTS:
        return
    name, parent_type = _PARENTS[kind]
    data = relationships.get(name)
    parent_id = data.get("id") if isinstance(data, dict) else None
    if parent_id is None or generic.find(account_id, parent_type, parent_id) is None:
        detail = f"A {parent_type} with id {parent_id} does not exist."
        raise invalid(detail, pointer=f"{pointer}/relationships/{name}/data/id")


def _relationships(member: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value.get("data")
        for name, value in (member.get("relationships") or {}).items()
        if isinstance(value, dict) and "data" in value
    }


def create_one(account_id: str, kind: str, member: dict[str, Any], pointer: str = "/data") -> generic.Resource:
    """One resource as ``POST /<collection>`` makes it (Klaviyo's ids for catalog resources and coupons)."""
    attributes = dict(member.get("attributes") or {})
    relationships = _relationships(member)
    _parent_exists(account_id, kind, relationships, pointer)
    identifier = member.get("id") if isinstance(member.get("id"), str) else None
    identifier = identifier or generic.klaviyo_id(kind, attributes, relationships)
    try:
        return generic.create(
            account_id, kind, attributes=attributes, relationships=relationships, resource_id=identifier
        )
    except APIError as exc:
        exc.source["pointer"] = f"{pointer}/id" if member.get("id") else f"{pointer}/attributes"
        raise


def _bulk(action: str, kind: str, key: str) -> Callable[..., Outcome]:
    def effect(*, account_id: str, body: dict[str, Any]) -> Outcome:
        members = body["data"]["attributes"][key]["data"]
        done: list[dict[str, str]] = []
        with transaction.atomic():
            for index, member in enumerate(members):
                pointer = f"/data/attributes/{key}/data/{index}"
                if action == "create":
                    row = create_one(account_id, kind, member, pointer)
                else:
                    row = generic.find(account_id, kind, member.get("id", ""))
                    if row is None:
                        raise invalid(f"A {kind} with id {member.get('id')} does not exist.", pointer=f"{pointer}/id")
                    if action == "delete":
                        generic.delete(row)
                    else:
                        generic.update(
                            row, attributes=dict(member.get("attributes") or {}), relationships=_relationships(member)
                        )
                done.append({"type": kind, "id": row.resource_id})
        return Outcome(relationships={key: done})

    effect.__name__ = f"bulk_{action}_{key}"
    return effect


EFFECTS: dict[str, Callable[..., Outcome]] = {
    f"bulk_{action}_catalog_{plural}": _bulk(action, f"catalog-{singular}", plural)
    for action in ("create", "update", "delete")
    for singular, plural in (("item", "items"), ("variant", "variants"), ("category", "categories"))
}
EFFECTS["bulk_create_coupon_codes"] = _bulk("create", "coupon-code", "coupon-codes")


def subscribe_back_in_stock(*, account_id: str, body: dict[str, Any]) -> Outcome:
    """A back-in-stock subscription: the variant must exist (a 400 pointing at it otherwise); the profile
    with the email or phone number given is found or created, as Klaviyo does."""
    data = body["data"]
    variant = ((data.get("relationships") or {}).get("variant") or {}).get("data") or {}
    if generic.find(account_id, "catalog-variant", variant.get("id", "")) is None:
        detail = f"A catalog-variant with id {variant.get('id')} does not exist."
        raise invalid(detail, pointer="/data/relationships/variant/data/id")
    profile = (data["attributes"].get("profile") or {}).get("data") or {}
    attributes = {
        name: value
        for name, value in (profile.get("attributes") or {}).items()
        if name in ("email", "phone_number", "external_id")
    }
    row: Profile | None = None
    if profile.get("id"):
        row = Profile.objects.filter(account_id=account_id, pk=profile["id"]).first()
    if row is None:
        entry = Data(id=None, attributes=attributes, meta={}, pointer="/data/attributes/profile/data")
        row, _ = profiles.upsert(account_id, entry)
    return Outcome(relationships={"profile": {"type": "profile", "id": row.pk}})
