"""Writes each fixed account's deterministic profiles to the database, once, on its first use."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from klaviyo_sandbox.accounts import SandboxProfile, profiles_of
from klaviyo_sandbox.models import Consent, Profile, SeededAccount


def ensure_seeded(account_id: str) -> None:
    """Give the account its profiles from ``profiles_of`` unless it already has them.

    Idempotent and safe when several processes use a fresh account at once: the first
    to insert the account's ``SeededAccount`` row writes the profiles in the same
    transaction; the others wait for it (a unique key, or SQLite's write lock) and find
    the row.
    """
    if SeededAccount.objects.filter(pk=account_id).exists():
        return
    with transaction.atomic():
        try:
            with transaction.atomic():
                SeededAccount.objects.create(account_id=account_id)
        except IntegrityError:
            return
        Profile.objects.bulk_create(_row(account_id, profile) for profile in profiles_of(account_id))


def _row(account_id: str, seed: SandboxProfile) -> Profile:
    # Profiles that accept marketing are subscribed to email, and to SMS when they have a phone.
    email = Consent.SUBSCRIBED if seed.properties.get("accepts_marketing") else Consent.NEVER_SUBSCRIBED
    sms = email if seed.phone_number else Consent.NEVER_SUBSCRIBED
    return Profile(
        id=seed.id,
        account_id=account_id,
        email=seed.email,
        phone_number=seed.phone_number,
        external_id=seed.external_id,
        first_name=seed.first_name,
        last_name=seed.last_name,
        organization=seed.organization,
        locale=seed.locale,
        title=seed.title,
        image=None,
        created=seed.created,
        updated=seed.updated,
        last_event_date=seed.last_event_date,
        location=dict(seed.location),
        properties=dict(seed.properties),
        email_consent=email,
        email_consent_at=seed.created if email == Consent.SUBSCRIBED else None,
        sms_consent=sms,
        sms_consent_at=seed.created if sms == Consent.SUBSCRIBED else None,
    )
