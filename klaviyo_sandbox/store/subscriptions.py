"""Bulk subscribe and unsubscribe jobs: consent on the profile, and membership of the job's list.

The body was checked against the description's schema already. Everything the body
names is checked before anything changes (a 400 pointing at the member changes nothing);
then the whole job is applied in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from klaviyo_sandbox import ids
from klaviyo_sandbox.exceptions import invalid
from klaviyo_sandbox.filters import moment_of
from klaviyo_sandbox.models import Consent, ListMembership, Profile, ProfileList
from klaviyo_sandbox.resources import LOCATION_KEYS

_PROFILES = "/data/attributes/profiles/data"


@dataclass(frozen=True, slots=True)
class _Entry:
    """One profile of a job: who, and the channels it names (email and SMS marketing)."""

    pointer: str
    profile_id: str | None
    email: str | None
    phone_number: str | None
    email_channel: bool
    sms_channel: bool
    consented_at: datetime | None


def _channels(attributes: dict[str, Any]) -> tuple[bool, bool]:
    """Whether the entry names email and SMS marketing (with no ``subscriptions``: whichever identifier it has)."""
    subscriptions = attributes.get("subscriptions")
    if not isinstance(subscriptions, dict):
        return attributes.get("email") is not None, attributes.get("phone_number") is not None
    email = subscriptions.get("email") or {}
    sms = subscriptions.get("sms") or {}
    return bool(isinstance(email, dict) and email.get("marketing")), bool(
        isinstance(sms, dict) and sms.get("marketing")
    )


def _consented_at(attributes: dict[str, Any], pointer: str) -> datetime | None:
    for channel in ("email", "sms"):
        marketing = ((attributes.get("subscriptions") or {}).get(channel) or {}).get("marketing") or {}
        raw = marketing.get("consented_at") if isinstance(marketing, dict) else None
        if raw is not None:
            moment = moment_of(str(raw))
            if moment is None:
                where = f"{pointer}/attributes/subscriptions/{channel}/marketing/consented_at"
                raise invalid("consented_at must be a date and time.", pointer=where)
            return moment
    return None


def _entries(body: dict[str, Any]) -> list[_Entry]:
    found = []
    for index, item in enumerate(body["data"]["attributes"]["profiles"]["data"]):
        pointer = f"{_PROFILES}/{index}"
        attributes = item.get("attributes") or {}
        email_channel, sms_channel = _channels(attributes)
        entry = _Entry(
            pointer=pointer,
            profile_id=item.get("id"),
            email=attributes.get("email"),
            phone_number=attributes.get("phone_number"),
            email_channel=email_channel,
            sms_channel=sms_channel,
            consented_at=_consented_at(attributes, pointer),
        )
        if entry.profile_id is None and entry.email is None and entry.phone_number is None:
            raise invalid("Each profile needs an id, an email or a phone_number.", pointer=f"{pointer}/attributes")
        if entry.email_channel and entry.email is None and entry.profile_id is None:
            raise invalid("The email channel needs an email.", pointer=f"{pointer}/attributes/email")
        if entry.sms_channel and entry.phone_number is None and entry.profile_id is None:
            raise invalid("The SMS channel needs a phone_number.", pointer=f"{pointer}/attributes/phone_number")
        found.append(entry)
    return found


def _list_of(account_id: str, body: dict[str, Any]) -> ProfileList | None:
    related = ((body["data"].get("relationships") or {}).get("list") or {}).get("data")
    if not isinstance(related, dict) or related.get("id") is None:
        return None
    row = ProfileList.objects.filter(account_id=account_id, pk=related["id"]).first()
    if row is None:
        detail = f"A list with id {related['id']} does not exist."
        raise invalid(detail, pointer="/data/relationships/list/data/id")
    return row


def _find(account_id: str, entry: _Entry) -> Profile | None:
    if entry.profile_id is not None:
        row = Profile.objects.filter(account_id=account_id, pk=entry.profile_id).first()
        if row is None:
            raise invalid(f"A profile with id {entry.profile_id} does not exist.", pointer=f"{entry.pointer}/id")
        return row
    for name in ("email", "phone_number"):
        value = getattr(entry, name)
        if value is not None and (row := Profile.objects.filter(account_id=account_id, **{name: value}).first()):
            return row
    return None


def subscribe(*, account_id: str, body: dict[str, Any]) -> None:
    """Subscribe each profile (created when none has its id, email or phone number) to the channels it
    names, and add it to the job's list. Raises APIError 400 before any change."""
    entries = _entries(body)
    profile_list = _list_of(account_id, body)
    found = [_find(account_id, entry) for entry in entries]
    now = timezone.now()
    with transaction.atomic():
        for entry, row in zip(entries, found, strict=True):
            if row is None:
                row = Profile(
                    id=ids.profile_id(),
                    account_id=account_id,
                    created=now,
                    location=dict.fromkeys(LOCATION_KEYS),
                )
            row.email = entry.email if entry.email is not None else row.email
            row.phone_number = entry.phone_number if entry.phone_number is not None else row.phone_number
            at = entry.consented_at or now
            if entry.email_channel:
                row.email_consent, row.email_consent_at = Consent.SUBSCRIBED, at
            if entry.sms_channel:
                row.sms_consent, row.sms_consent_at = Consent.SUBSCRIBED, at
            row.updated = now
            try:
                with transaction.atomic():
                    row.save()
            except IntegrityError as exc:  # the email or phone number belongs to another profile
                detail = "Another profile has this email or phone number."
                raise invalid(detail, pointer=f"{entry.pointer}/attributes") from exc
            if profile_list is not None:
                ListMembership.objects.get_or_create(
                    profile_list=profile_list, profile=row, defaults={"joined_at": now}
                )


def unsubscribe(*, account_id: str, body: dict[str, Any]) -> None:
    """Unsubscribe each profile found from the channels it names, and take it out of the job's list.
    Profiles that do not exist are left alone. Raises APIError 400 before any change."""
    entries = _entries(body)
    profile_list = _list_of(account_id, body)
    found = [_find(account_id, entry) for entry in entries]
    now = timezone.now()
    with transaction.atomic():
        for entry, row in zip(entries, found, strict=True):
            if row is None:
                continue
            if entry.email_channel:
                row.email_consent, row.email_consent_at = Consent.UNSUBSCRIBED, now
            if entry.sms_channel:
                row.sms_consent, row.sms_consent_at = Consent.UNSUBSCRIBED, now
            row.updated = now
            row.save()
            if profile_list is not None:
                ListMembership.objects.filter(profile_list=profile_list, profile=row).delete()
