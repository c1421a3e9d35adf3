"""Housekeeping for cron and probes: everything that expires, old history, database health.

``purge_expired`` keeps storage bounded: pending authorizations that can no longer be
completed, records of used start links past their expiry, expired browser sessions,
and connection events older than KLAVIYO_EVENT_RETENTION_DAYS. Rows are deleted in
short batches (one short transaction each), so it is safe while serving and on several
machines at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import import_module

from django.conf import settings
from django.db import DatabaseError
from django.db import connection as db_connection
from django.db.models import QuerySet
from django.utils import timezone

from oauth_integration.conf import conf
from oauth_integration.models import ConnectionEvent, PkceCode, UsedStartLink


@dataclass
class PurgeReport:
    """Rows to delete when each kind's turn came (``totals``) and rows deleted so far, per kind."""

    kind: str = ""  # the kind being purged
    totals: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)


def purge_expired(
    *, now: datetime | None = None, batch_size: int = 1000, progress: Callable[[PurgeReport], None] | None = None
) -> PurgeReport:
    """Delete what expired (see the module note), ``batch_size`` rows at a time.

    ``progress`` is called after each batch. Returns what was deleted, per kind.
    """
    now = now or timezone.now()
    report = PurgeReport()
    for kind, rows in _expired(now).items():
        report.kind = kind
        report.totals[kind] = rows.count()
        report.deleted[kind] = 0
        for deleted in _delete_in_batches(rows, batch_size=batch_size):
            report.deleted[kind] += deleted
            if progress is not None:
                progress(report)
    return report


def purge_expired_authorizations(*, now: datetime | None = None) -> int:
    """Delete pending authorizations (state + PKCE verifier) that can no longer be completed.

    Returns how many were deleted. Safe to run on several machines at once.
    """
    return sum(_delete_in_batches(PkceCode.objects.expired(now=now or timezone.now()), batch_size=1000))


def _expired(now: datetime) -> dict[str, QuerySet]:
    kinds: dict[str, QuerySet] = {
        "pending authorizations": PkceCode.objects.expired(now=now),
        "used start links": UsedStartLink.objects.expired(now=now),
        "connection events": ConnectionEvent.objects.filter(created_at__lt=now - conf.event_retention),
    }
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if hasattr(store, "get_model_class"):  # database-backed sessions: batched like the rest
        kinds["sessions"] = store.get_model_class().objects.filter(expire_date__lt=now)
    else:
        store.clear_expired()  # cache or cookie sessions expire on their own, or in one call
    return kinds


def _delete_in_batches(rows: QuerySet, *, batch_size: int) -> Iterator[int]:
    """Delete ``rows`` a batch at a time (primary keys first, then one DELETE); yield each batch's count."""
    model = rows.model
    while keys := list(rows.order_by("pk").values_list("pk", flat=True)[:batch_size]):
        deleted, _ = model._base_manager.filter(pk__in=keys).delete()
        yield deleted


def database_is_up() -> bool:
    """True when the default database answers a trivial query."""
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return False
    return True
