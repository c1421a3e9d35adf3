"""Housekeeping for cron and probes: expired pending authorizations, database health."""

from __future__ import annotations

from datetime import datetime

from django.db import DatabaseError
from django.db import connection as db_connection
from django.utils import timezone

from oauth_integration.models import PkceCode


def purge_expired_authorizations(*, now: datetime | None = None) -> int:
    """Delete pending authorizations (state + PKCE verifier) that can no longer be completed.

    Returns how many were deleted. Safe to run on several machines at once.
    """
    deleted, _ = PkceCode.objects.expired(now=now or timezone.now()).delete()
    return deleted


def database_is_up() -> bool:
    """True when the default database answers a trivial query."""
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return False
    return True
