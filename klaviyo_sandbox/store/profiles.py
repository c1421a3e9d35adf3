"""Profiles: filtered, sorted pages; one by id; create (409 on a duplicate), update, and upsert (import)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from klaviyo_sandbox import ids
from klaviyo_sandbox.bodies import UNSET, Data, Unset, mapping, text
from klaviyo_sandbox.exceptions import APIError, invalid
from klaviyo_sandbox.filters import DATETIME, STRING, Field
from klaviyo_sandbox.filters import field as filter_field
from klaviyo_sandbox.models import Profile
from klaviyo_sandbox.pagination import Ordering, Page, Selection, paginate
from klaviyo_sandbox.params import Listing
from klaviyo_sandbox.resources import LOCATION_KEYS
from klaviyo_sandbox.store import by_code_point, owned

IDENTIFIERS = ("email", "phone_number", "external_id")
TEXT_ATTRIBUTES = (*IDENTIFIERS, "first_name", "last_name", "organization", "locale", "title", "image")
FILTERS: dict[str, Field] = {
    **{name: filter_field(name, STRING, "equals", "any") for name in ("id", *IDENTIFIERS)},
    "created": filter_field("created", DATETIME, "greater-than", "less-than"),
    "updated": filter_field("updated", DATETIME, "greater-than", "less-than"),
}
ORDERINGS = (
    Ordering("id", "id"),
    Ordering("created", "created", temporal=True),
    Ordering("updated", "updated", temporal=True),
    Ordering("email", "sort_email"),  # profiles without an email first, in both databases
)
LISTING = Listing("profile", FILTERS, ORDERINGS, default_sort="id", page_size=20, max_page_size=100)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+[1-9]\d{6,14}")  # E.164


def of_account(account_id: str) -> QuerySet[Profile]:
    return Profile.objects.filter(account_id=account_id).annotate(
        sort_email=by_code_point(Coalesce("email", Value("")))
    )


def page(account_id: str, selection: Selection) -> Page:
    """The selected page of the account's profiles."""
    return paginate(of_account(account_id), selection)


def get(account_id: str, profile_id: str) -> Profile:
    return owned(Profile, account_id, profile_id)


@dataclass
class Changes:
    """What a request body asks to change on a profile (attributes absent from it are left alone)."""

    values: dict[str, Any] = field(default_factory=dict)
    location: dict[str, Any] | None = None
    properties: dict[str, Any] | Unset | None = UNSET
    append: dict[str, Any] = field(default_factory=dict)
    unappend: dict[str, Any] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)

    def identifiers(self) -> dict[str, str]:
        return {name: self.values[name] for name in IDENTIFIERS if self.values.get(name) is not None}


def changes(data: Data) -> Changes:
    """Read and check a profile's attributes and ``meta.patch_properties``. Raises APIError 400."""
    found = Changes()
    for name in TEXT_ATTRIBUTES:
        value = text(data, name)
        if isinstance(value, Unset):
            continue
        pointer = f"{data.pointer}/attributes/{name}"
        if name == "email" and value is not None and not _EMAIL.fullmatch(value):
            raise invalid("Invalid email address.", pointer=pointer)
        if name == "phone_number" and value is not None and not _PHONE.fullmatch(value):
            raise invalid("Invalid phone number format (Example of a valid format: +12345678901).", pointer=pointer)
        found.values[name] = value
    location = mapping(data, "location")
    if isinstance(location, dict):
        unknown = sorted(set(location) - set(LOCATION_KEYS))
        if unknown:
            raise invalid(
                f"Unknown location field(s): {', '.join(unknown)}.", pointer=f"{data.pointer}/attributes/location"
            )
        found.location = location
    found.properties = mapping(data, "properties")
    _patch_properties(data, found)
    return found


def _patch_properties(data: Data, found: Changes) -> None:
    meta = data.meta
    pointer = f"{data.pointer}/meta"
    if "patch_identifiers" in meta:
        raise invalid("The sandbox does not support meta.patch_identifiers.", pointer=f"{pointer}/patch_identifiers")
    patch = meta.get("patch_properties") or {}
    if not isinstance(patch, dict) or set(patch) - {"append", "unappend", "unset"}:
        raise invalid("patch_properties takes append, unappend and unset.", pointer=f"{pointer}/patch_properties")
    for operation in ("append", "unappend"):
        value = patch.get(operation) or {}
        if not isinstance(value, dict):
            raise invalid(f"{operation} must be an object.", pointer=f"{pointer}/patch_properties/{operation}")
        setattr(found, operation, value)
    unset = patch.get("unset") or []
    unset = [unset] if isinstance(unset, str) else unset
    if not isinstance(unset, list) or not all(isinstance(key, str) for key in unset):
        raise invalid("unset must be a property name or a list of them.", pointer=f"{pointer}/patch_properties/unset")
    found.unset = unset


def _apply(row: Profile, change: Changes) -> None:
    for name, value in change.values.items():
        setattr(row, name, value)
    if change.location is not None:
        row.location = {**dict.fromkeys(LOCATION_KEYS), **row.location, **change.location}
    properties = dict(row.properties)
    if change.properties is None:
        properties = {}
    elif isinstance(change.properties, dict):
        properties.update(change.properties)
    for key, value in change.append.items():
        current = properties.get(key)
        listed = current if isinstance(current, list) else ([] if current is None else [current])
        properties[key] = listed + (value if isinstance(value, list) else [value])
    for key, value in change.unappend.items():
        if isinstance(properties.get(key), list):
            properties[key] = [
                item for item in properties[key] if item not in (value if isinstance(value, list) else [value])
            ]
    for key in change.unset:
        properties.pop(key, None)
    row.properties = properties
    row.updated = timezone.now()


def _duplicate_of(account_id: str, identifiers: dict[str, str], *, besides: str | None = None) -> str | None:
    condition = Q()
    for name, value in identifiers.items():
        condition |= Q(**{name: value})
    if not condition:
        return None
    return (
        Profile.objects.filter(condition, account_id=account_id)
        .exclude(pk=besides)
        .values_list("pk", flat=True)
        .first()
    )


def _conflict(profile_id: str) -> APIError:
    detail = "A profile already exists with one of these identifiers."
    meta = {"duplicate_profile_id": profile_id}
    return APIError(409, "duplicate_profile", "Conflict.", detail, source={"pointer": "/data/attributes"}, meta=meta)


def _save(row: Profile, identifiers: dict[str, str], *, create: bool) -> Profile:
    """Insert or update ``row``; a 409 when another profile of the account has one of its identifiers."""
    duplicate = _duplicate_of(row.account_id, identifiers, besides=None if create else row.pk)
    if duplicate is None:
        try:
            with transaction.atomic():
                row.save(force_insert=create)
            return row
        except IntegrityError:  # another request took the identifier meanwhile
            duplicate = _duplicate_of(row.account_id, identifiers, besides=None if create else row.pk)
    raise _conflict(duplicate or "")


def create(account_id: str, data: Data) -> Profile:
    """A new profile (201), or a 409 ``duplicate_profile`` naming the existing one."""
    change = changes(data)
    if not change.identifiers():
        raise invalid(
            "A profile needs an email, a phone_number or an external_id.", pointer=f"{data.pointer}/attributes"
        )
    now = timezone.now()
    row = Profile(id=ids.profile_id(), account_id=account_id, created=now, location=dict.fromkeys(LOCATION_KEYS))
    _apply(row, change)
    return _save(row, change.identifiers(), create=True)


def update(account_id: str, profile_id: str, data: Data) -> Profile:
    """Change the attributes the body names; null clears one. 409 when an identifier is taken."""
    if data.id != profile_id:
        raise invalid("/data/id must be the id in the URL.", pointer=f"{data.pointer}/id")
    change = changes(data)
    row = get(account_id, profile_id)
    _apply(row, change)
    return _save(row, change.identifiers(), create=False)


def upsert(account_id: str, data: Data) -> tuple[Profile, bool]:
    """Update the profile with ``data.id``, or else the one with the body's email, phone number or
    external id (in that order); create one when none matches. Returns (profile, created)."""
    change = changes(data)
    if data.id is not None:
        return update(account_id, data.id, data), False
    identifiers = change.identifiers()
    for name, value in identifiers.items():
        existing = Profile.objects.filter(account_id=account_id, **{name: value}).first()
        if existing is not None:
            _apply(existing, change)
            return _save(existing, identifiers, create=False), False
    return create(account_id, data), True
