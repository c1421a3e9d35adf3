"""Keep-alive (``manage.py refresh_tokens``): refresh due connections in a bounded thread pool."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.db import connections as db_connections
from django.utils import timezone

from oauth_integration import crypto
from oauth_integration.exceptions import KlaviyoError, ReauthorizationRequired, TokenDecryptionError
from oauth_integration.models import OAuthToken
from oauth_integration.services.refresh import claim_lease, refresh_under_lease

logger = logging.getLogger(__name__)

# Work goes to the threads in small batches: each batch ends by closing its thread's
# database connections, so big runs reconnect once per batch instead of once per row.
BATCH_SIZE = 25


class RefreshOutcome(enum.StrEnum):
    """What keep-alive did with one connection."""

    REFRESHED = "refreshed"
    # No longer due (refreshed meanwhile by another worker or machine), being refreshed by
    # another worker right now, disconnected, or already marked as needing reauthorization.
    SKIPPED = "skipped"
    NEEDS_REAUTHORIZATION = "needs_reauthorization"
    FAILED = "failed"


def refresh_if_due(
    *, customer_identifier: str, expiring_before: datetime | None, unused_since: datetime
) -> RefreshOutcome:
    """Refresh one connection if it is still due: expiring before ``expiring_before`` or unused since ``unused_since``.

    Re-reads the row through the same query that listed it, so a connection refreshed by
    another process or machine since is skipped. Takes the single-flight lease without
    waiting for it: a connection whose lease is held is being refreshed elsewhere, and is
    skipped too. Returns REFRESHED or SKIPPED. Raises ReauthorizationRequired (Klaviyo
    refused the refresh token), KlaviyoError (the refresh failed; the connection stays
    active) or TokenDecryptionError.
    """
    due = OAuthToken.objects.due_for_refresh(expiring_before=expiring_before, unused_since=unused_since)
    connection = due.of(customer_identifier).first()
    if connection is None:
        return RefreshOutcome.SKIPPED
    owner = claim_lease(connection)
    if owner is None:
        return RefreshOutcome.SKIPPED
    refresh_under_lease(connection, owner=owner, for_call=False)
    return RefreshOutcome.REFRESHED


@dataclass
class RefreshReport:
    """Counts of a keep-alive run, one per RefreshOutcome. ``due``: connections due when the run started."""

    due: int
    refreshed: int = 0
    skipped: int = 0
    needs_reauthorization: int = 0
    failed: int = 0
    failed_customers: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return sum(getattr(self, outcome.value) for outcome in RefreshOutcome)

    def add(self, customer_identifier: str, outcome: RefreshOutcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)
        if outcome == RefreshOutcome.FAILED:
            self.failed_customers.append(customer_identifier)


def refresh_due_connections(
    *,
    expiring_within: timedelta | None,
    unused_for: timedelta,
    concurrency: int = 4,
    progress: Callable[[RefreshReport], None] | None = None,
    page_size: int = 500,
) -> RefreshReport:
    """Keep-alive: refresh every active connection whose refresh token has not been used for
    ``unused_for`` and, unless ``expiring_within`` is None, every connection in use whose
    access token expires within it.

    Safe to run on several machines at once: each connection goes through refresh_if_due
    (re-read, then the single-flight lease), so one refreshed elsewhere meanwhile is
    skipped. At most ``concurrency`` refreshes run at a time. Customer identifiers are
    read a page at a time; secrets are only read one row at a time. ``progress`` is
    called in the calling thread for each connection done, with the report so far.
    One connection's failure never stops the run; it is counted and named in the report.
    Raises EncryptionKeyError, before doing anything, when no usable key is configured.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    crypto.keyring()
    now = timezone.now()
    expiring_before = now + expiring_within if expiring_within is not None else None
    unused_since = now - unused_for
    due = OAuthToken.objects.due_for_refresh(expiring_before=expiring_before, unused_since=unused_since)
    report = RefreshReport(due=due.count())
    batch_size = max(1, min(BATCH_SIZE, report.due // (4 * concurrency)))
    in_flight: dict[Future[list[RefreshOutcome]], list[str]] = {}

    def collect_one_or_more() -> None:
        done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        for future in done:
            for customer_identifier, outcome in zip(in_flight.pop(future), future.result(), strict=True):
                report.add(customer_identifier, outcome)
                if progress is not None:
                    progress(report)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refresh_tokens") as pool:

        def submit(batch: list[str]) -> None:
            if len(in_flight) >= 2 * concurrency:  # bounded: never queue the whole table
                collect_one_or_more()
            in_flight[pool.submit(_refresh_batch, batch, expiring_before, unused_since)] = batch

        # Keyset paging on the unique customer identifier: each page is one short query
        # that reads no secrets, however many connections there are.
        ordered = due.order_by("customer_identifier").values_list("customer_identifier", flat=True)
        after, batch = "", []
        while page := list(ordered.filter(customer_identifier__gt=after)[:page_size]):
            for customer_identifier in page:
                batch.append(customer_identifier)
                if len(batch) == batch_size:
                    submit(batch)
                    batch = []
            after = page[-1]
        if batch:
            submit(batch)
        while in_flight:
            collect_one_or_more()
    return report


def _refresh_batch(
    customer_identifiers: list[str], expiring_before: datetime | None, unused_since: datetime
) -> list[RefreshOutcome]:
    """refresh_if_due for each, in a worker thread; closes the thread's database connections after."""
    try:
        return [_refresh_one(customer, expiring_before, unused_since) for customer in customer_identifiers]
    finally:
        db_connections.close_all()


def _refresh_one(customer_identifier: str, expiring_before: datetime | None, unused_since: datetime) -> RefreshOutcome:
    """refresh_if_due, its failures turned into outcomes (already recorded and logged)."""
    try:
        return refresh_if_due(
            customer_identifier=customer_identifier, expiring_before=expiring_before, unused_since=unused_since
        )
    except ReauthorizationRequired:
        return RefreshOutcome.NEEDS_REAUTHORIZATION
    except (KlaviyoError, TokenDecryptionError):
        return RefreshOutcome.FAILED
    except DatabaseError as exc:
        logger.error(
            "Keep-alive of %s failed on the database: %s",
            customer_identifier,
            exc,
            extra={"customer_identifier": customer_identifier},
        )
        return RefreshOutcome.FAILED
