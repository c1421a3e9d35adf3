"""Identifiers in the shapes Klaviyo uses: ULIDs for profiles, short base62 ids for the rest."""

from __future__ import annotations

import random
import secrets
import string

from django.utils import timezone

from klaviyo_sandbox.accounts import ulid

_BASE62 = string.digits + string.ascii_letters
_RANDOM = random.SystemRandom()


def profile_id() -> str:
    """A new profile id: a ULID of the current time, so new profiles sort after older ones."""
    return ulid(timezone.now(), _RANDOM)


def short_id(length: int = 6) -> str:
    """A random base62 id, like Klaviyo's list and metric ids (6 characters) and event ids (11)."""
    return "".join(secrets.choice(_BASE62) for _ in range(length))
