"""Use cases: list connections, connect, call Klaviyo as a customer, refresh, disconnect.

Views, admin and management commands call these functions and nothing below them.
No database transaction is ever held open across a call to Klaviyo.

Single-flight refresh (design note)
-----------------------------------
When several workers (threads or processes, on SQLite or PostgreSQL) find one
customer's access token expiring, exactly one of them refreshes:

1. Each reads the row, including its ``version`` (bumped on every token write).
2. Each tries to claim a *lease* with one conditional UPDATE:
   ``... SET lease_owner=me, lease_until=now+L WHERE version=v AND lease is free``.
   The database serialises the UPDATEs, so exactly one succeeds (rowcount 1).
3. The winner calls Klaviyo with no transaction open, stores the new tokens
   (``version`` + 1) and releases the lease in the same UPDATE.
4. The others poll the row until ``version`` moves on, then use the new token. If the
   winner dies, its lease lapses after L seconds and another worker claims it. If its
   refresh fails (Klaviyo down), it leaves a "failed" marker in the lease for
   KLAVIYO_REFRESH_FAILURE_COOLDOWN seconds: the waiting callers, and new ones meanwhile,
   fail fast together instead of each retrying the refresh in turn.

Why a lease and not ``SELECT ... FOR UPDATE`` around the HTTP call: a row lock would
hold a transaction (and a pooled connection) open for the whole call to Klaviyo, up to
the HTTP timeout times the retries; SQLite has no row locks at all, and a lock held by
a crashed worker stalls everyone until the connection dies. The lease costs two short
UPDATEs per refresh and degrades to "one extra refresh after L seconds" at worst.

If Klaviyo answers ``invalid_grant`` but the stored refresh token changed meanwhile
(a reconnect, or a refresh whose lease had lapsed), the refresh is retried once with
the new token before the connection is declared broken.
"""

from __future__ import annotations

import enum
import logging
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError
from django.db import connection as db_connection
from django.db import connections as db_connections
from django.utils import timezone

from oauth_integration import crypto, pkce
from oauth_integration.conf import conf
from oauth_integration.exceptions import (
    AuthorizationStateError,
    EncryptionKeyError,
    InvalidGrant,
    KlaviyoAPIError,
    KlaviyoError,
    KlaviyoThrottled,
    KlaviyoUnauthorized,
    KlaviyoUnavailable,
    ReauthorizationRequired,
    RefreshInProgress,
    TokenDecryptionError,
    TokenNotFound,
)
from oauth_integration.klaviyo import KlaviyoClient
from oauth_integration.models import ConnectionEvent, ConnectionStatus, FailureReason
from oauth_integration.storage import (
    Connection,
    ConnectionSummary,
    DjangoPkceStorage,
    DjangoSecretStorage,
    DjangoTokenStorage,
    PkceStorage,
    SealedRow,
    TokenStorage,
)
from oauth_integration.validators import validate_customer_identifier

logger = logging.getLogger(__name__)

# Module-level collaborators: they read no settings when constructed.
token_storage: TokenStorage = DjangoTokenStorage()
pkce_storage: PkceStorage = DjangoPkceStorage()
klaviyo = KlaviyoClient()

# Klaviyo refresh tokens die after 90 days without use (Klaviyo's own examples).
REFRESH_TOKEN_IDLE_LIFETIME = timedelta(days=90)
Event = ConnectionEvent.Kind


# --- listing -----------------------------------------------------------------------------


def list_connections(*, limit: int = 500) -> list[ConnectionSummary]:
    """The most recently connected customers first (at most ``limit``), without their tokens."""
    return token_storage.list_recent(limit=limit)


# --- connecting --------------------------------------------------------------------------


def begin_authorization(*, customer_identifier: str, browser_binding: str) -> str:
    """Start connecting a customer: remember a PKCE verifier under a random state.

    ``browser_binding`` is a secret kept in the browser's session; the callback must
    present the same one. Returns Klaviyo's authorize URL to redirect the browser to.
    """
    validate_customer_identifier(customer_identifier)
    verifier = pkce.new_code_verifier()
    state = pkce.new_state()
    pkce_storage.save(
        state,
        customer_identifier=customer_identifier,
        code_verifier=verifier,
        browser_binding=browser_binding,
        expires_at=timezone.now() + conf.pkce_lifetime,
    )
    return klaviyo.authorize_url(state=state, code_challenge=pkce.code_challenge(verifier))


@dataclass(frozen=True)
class Connected:
    customer_identifier: str
    klaviyo_account_id: str
    klaviyo_account_name: str
    reconnected: bool


def complete_authorization(*, state: str, code: str, browser_binding: str | None) -> Connected:
    """Finish connecting: consume the state (once), exchange the code, store the tokens.

    Raises AuthorizationStateError (unknown, expired, replayed or foreign state: nothing
    stored), InvalidGrant (code rejected) or KlaviyoError (nothing stored).
    """
    pending = pkce_storage.retrieve(state)
    if pending.expires_at <= timezone.now():
        pkce_storage.remove(state)
        raise AuthorizationStateError("This authorization link expired; start again.")
    if browser_binding is None or not secrets.compare_digest(
        pending.browser_binding_hash, pkce.digest(browser_binding)
    ):
        raise AuthorizationStateError("This authorization was started in a different browser session.")
    if not pkce_storage.remove(state):
        raise AuthorizationStateError("This authorization link is unknown or was already used.")

    customer = pending.customer_identifier
    grant = klaviyo.exchange_code(code=code, code_verifier=pending.code_verifier)
    account_id, account_name = _fetch_account(grant.access_token)
    previous = token_storage.save(customer, grant, account_id=account_id, account_name=account_name)

    account = f"Klaviyo account {account_name or '?'} ({account_id or 'unknown id'})"
    if previous is None:
        token_storage.record_event(customer, Event.CONNECTED, account)
    else:
        token_storage.record_event(customer, Event.RECONNECTED, f"{account}; was {previous.status}")
        if previous.klaviyo_account_id and account_id and previous.klaviyo_account_id != account_id:
            token_storage.record_event(
                customer, Event.ACCOUNT_CHANGED, f"from {previous.klaviyo_account_id} to {account_id}"
            )
    logger.info("Customer %s connected %s", customer, account)
    return Connected(customer, account_id, account_name, reconnected=previous is not None)


def _fetch_account(access_token: str) -> tuple[str, str]:
    """Best effort: the connected account's id and name (needs ``accounts:read``)."""
    try:
        body = klaviyo.get("/api/accounts", access_token=access_token)
    except KlaviyoError as exc:
        logger.warning("Could not read the Klaviyo account after connecting: %s", exc)
        return "", ""
    return _account_id_and_name(body)


def _account_id_and_name(body: dict[str, Any]) -> tuple[str, str]:
    data = body.get("data")
    first = data[0] if isinstance(data, list) and data else data
    if not isinstance(first, dict):
        return "", ""
    attributes = first.get("attributes") if isinstance(first.get("attributes"), dict) else {}
    contact = attributes.get("contact_information") if isinstance(attributes.get("contact_information"), dict) else {}
    name = contact.get("organization_name") or attributes.get("name") or ""
    return str(first.get("id") or "")[:64], str(name)[:255]


# --- calling Klaviyo as a customer --------------------------------------------------------


def get_profiles(
    *, customer_identifier: str, page_size: int | None = None, cursor: str | None = None
) -> dict[str, Any]:
    """One page of the customer's Klaviyo profiles, as Klaviyo's JSON:API body."""
    params: dict[str, str] = {}
    if page_size is not None:
        params["page[size]"] = str(page_size)
    if cursor:
        params["page[cursor]"] = cursor
    return call_klaviyo(customer_identifier=customer_identifier, path="/api/profiles", params=params)


def call_klaviyo(*, customer_identifier: str, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    """GET a Klaviyo API path as the customer.

    Refreshes first when the access token expires within the margin; on a 401 refreshes
    once and retries once. Raises TokenNotFound, ReauthorizationRequired, KlaviyoError.
    """
    connection = _fresh_connection(customer_identifier)
    try:
        return _get(connection, path, params)
    except KlaviyoUnauthorized:
        logger.info("Klaviyo rejected the access token of %s; refreshing once", customer_identifier)
        connection = _fresh_connection(customer_identifier, rejected_version=connection.version)
        try:
            return _get(connection, path, params)
        except KlaviyoUnauthorized as exc:
            detail = f"GET {path}: a freshly refreshed access token was rejected ({exc.code})"
            token_storage.record_failure(
                customer_identifier, reason=FailureReason.KLAVIYO_ERROR, detail=detail, broken=False
            )
            token_storage.record_event(customer_identifier, Event.CALL_FAILED, detail)
            raise


def _get(connection: Connection, path: str, params: dict[str, str] | None) -> dict[str, Any]:
    customer = connection.customer_identifier
    try:
        body = klaviyo.get(path, access_token=connection.access_token or "", params=params)
    except KlaviyoUnauthorized:
        raise
    except KlaviyoThrottled as exc:
        token_storage.record_failure(customer, reason=FailureReason.THROTTLED, detail=str(exc), broken=False)
        raise
    except KlaviyoAPIError as exc:
        reason = FailureReason.MISSING_SCOPE if exc.status == 403 else FailureReason.KLAVIYO_ERROR
        token_storage.record_failure(customer, reason=reason, detail=f"GET {path}: {exc}", broken=False)
        if exc.status == 403:
            token_storage.record_event(customer, Event.CALL_FAILED, f"GET {path}: missing scope ({exc.code})")
        raise
    except KlaviyoUnavailable as exc:
        token_storage.record_failure(
            customer, reason=FailureReason.KLAVIYO_UNAVAILABLE, detail=f"GET {path}: {exc}", broken=False
        )
        raise
    if connection.failure_reason:
        token_storage.clear_failure(customer)
    if not connection.called_since_refresh:
        token_storage.mark_called(customer)  # once per access token, for the keep-alive
    return body


# --- refreshing --------------------------------------------------------------------------


def refresh_connection(*, customer_identifier: str) -> Connection:
    """Refresh now, whatever the expiry (admin action, keep-alive). Single-flight."""
    current = token_storage.retrieve(customer_identifier)
    return _fresh_connection(customer_identifier, rejected_version=current.version)


def _lease_duration() -> timedelta:
    # Long enough for the refresh call and its connection retries, short enough to recover.
    return timedelta(seconds=2 * conf.http_timeout * (conf.max_retries + 1) + 5)


def _fresh_connection(customer_identifier: str, *, rejected_version: int | None = None) -> Connection:
    """A connection whose access token is usable, refreshing it (single-flight) if needed.

    ``rejected_version``: the token of that version was rejected (or must be replaced);
    a newer version stored by another worker is good enough.
    """
    deadline: float | None = None  # set once we wait for another worker's refresh
    pause = 0.02
    while True:
        connection = token_storage.retrieve(customer_identifier)
        _ensure_usable(connection)
        if rejected_version is None:
            if not connection.expires_within(conf.refresh_margin):
                return connection
        elif connection.version != rejected_version:
            return connection
        if connection.last_refresh_failed and (
            deadline is not None or (connection.refresh_lease_until and connection.refresh_lease_until > timezone.now())
        ):
            # The refresh we waited for, or one moments ago, failed: don't all retry it in turn.
            raise KlaviyoUnavailable(
                f"Refreshing the token of {customer_identifier} failed in another worker ({connection.failure_reason})"
            )
        owner = _claim_refresh_lease(connection)
        if owner is not None:
            return _refresh_and_release(connection, owner=owner)
        if deadline is None:
            deadline = time.monotonic() + _lease_duration().total_seconds() + conf.http_timeout
        if rejected_version is None:
            rejected_version = connection.version  # wait for whoever holds the lease to move it on
        if time.monotonic() >= deadline:
            raise RefreshInProgress(customer_identifier)
        time.sleep(pause * random.uniform(0.5, 1.5))  # noqa: S311 (jitter)
        pause = min(pause * 1.5, 0.5)


def _claim_refresh_lease(connection: Connection) -> str | None:
    """Claim the refresh lease if nobody holds it and the row is still at this version; the owner id."""
    owner = uuid.uuid4().hex
    until = timezone.now() + _lease_duration()
    claimed = token_storage.claim_refresh(
        connection.customer_identifier, version=connection.version, owner=owner, until=until
    )
    return owner if claimed else None


def _refresh_and_release(connection: Connection, *, owner: str) -> Connection:
    """Refresh under the lease ``owner`` claimed, then release it (marked failed on failure)."""
    succeeded = False
    try:
        fresh = _refresh_holding_lease(connection)
        succeeded = True
        return fresh
    finally:
        failed_until = None if succeeded else timezone.now() + conf.refresh_failure_cooldown
        token_storage.release_refresh(connection.customer_identifier, owner=owner, failed_until=failed_until)


def _ensure_usable(connection: Connection) -> None:
    if connection.status != ConnectionStatus.ACTIVE or not connection.refresh_token:
        raise ReauthorizationRequired(connection.customer_identifier, connection.failure_reason or connection.status)


def _refresh_holding_lease(connection: Connection) -> Connection:
    customer = connection.customer_identifier
    refresh_token = connection.refresh_token or ""
    for attempt in (1, 2):
        try:
            grant = klaviyo.refresh(refresh_token=refresh_token)
        except InvalidGrant as exc:
            latest = token_storage.retrieve(customer)
            if (
                attempt == 1
                and latest.status == ConnectionStatus.ACTIVE
                and latest.refresh_token
                not in (
                    None,
                    refresh_token,
                )
            ):
                logger.info("Refresh token of %s changed during a refresh; retrying with the new one", customer)
                refresh_token = latest.refresh_token or ""
                continue
            idle = timezone.now() - connection.last_used_at >= REFRESH_TOKEN_IDLE_LIFETIME
            reason = FailureReason.EXPIRED_INACTIVE if idle else FailureReason.REVOKED
            token_storage.record_failure(customer, reason=reason, detail=str(exc), broken=True)
            token_storage.record_event(customer, Event.NEEDS_REAUTHORIZATION, f"{reason.label}: {exc.code}")
            logger.warning("Connection of %s needs reauthorization (%s)", customer, reason)
            raise ReauthorizationRequired(customer, reason) from exc
        except KlaviyoError as exc:
            reason = FailureReason.THROTTLED if isinstance(exc, KlaviyoThrottled) else FailureReason.KLAVIYO_UNAVAILABLE
            if isinstance(exc, KlaviyoAPIError) and not isinstance(exc, KlaviyoThrottled):
                reason = FailureReason.KLAVIYO_ERROR
            token_storage.record_failure(customer, reason=reason, detail=f"refresh: {exc}", broken=False)
            token_storage.record_event(customer, Event.REFRESH_FAILED, str(exc))
            logger.warning("Refreshing the token of %s failed: %s", customer, exc)
            raise
        if not token_storage.save_refreshed(customer, grant):
            _revoke_orphan(customer, grant.refresh_token)
            raise ReauthorizationRequired(customer, ConnectionStatus.REVOKED)
        token_storage.record_event(
            customer, Event.REFRESHED, f"access token valid until {grant.expires_at:%Y-%m-%d %H:%M:%S %Z}"
        )
        logger.info("Refreshed the Klaviyo token of %s", customer)
        return token_storage.retrieve(customer)
    raise AssertionError("unreachable")  # pragma: no cover


def _revoke_orphan(customer_identifier: str, refresh_token: str | None) -> None:
    """The connection was disconnected while a refresh was in flight: a refresh token Klaviyo
    just issued must not stay valid with nobody holding it."""
    logger.info("Connection of %s was disconnected during a refresh; revoking the new token", customer_identifier)
    if not refresh_token:
        return
    try:
        klaviyo.revoke(refresh_token=refresh_token)
    except KlaviyoError as exc:
        token_storage.record_event(
            customer_identifier, Event.REVOKE_FAILED, f"token issued during the disconnect not revoked: {exc}"
        )


# --- disconnecting -----------------------------------------------------------------------


@dataclass(frozen=True)
class Disconnected:
    customer_identifier: str
    revoked_at_klaviyo: bool
    failure: str


def disconnect(*, customer_identifier: str) -> Disconnected:
    """Revoke the refresh token at Klaviyo, then forget the tokens locally (always).

    If Klaviyo's revoke fails, or the stored token cannot be decrypted, the local
    disconnect still happens and the failure is recorded in the history.
    Raises TokenNotFound.
    """
    try:
        refresh_token, failure = token_storage.retrieve(customer_identifier).refresh_token, ""
    except (TokenDecryptionError, EncryptionKeyError) as exc:
        refresh_token, failure = None, f"the stored token cannot be decrypted ({type(exc).__name__})"
    if refresh_token:
        try:
            klaviyo.revoke(refresh_token=refresh_token)
        except KlaviyoError as exc:
            failure = str(exc)
            logger.warning("Revoking the token of %s at Klaviyo failed: %s", customer_identifier, exc)
    if failure:
        token_storage.record_event(customer_identifier, Event.REVOKE_FAILED, f"not revoked at Klaviyo: {failure}")
    token_storage.remove(customer_identifier)
    if refresh_token and not failure:
        detail = "revoked at Klaviyo"
    else:
        detail = "removed locally only" if failure else "no token to revoke at Klaviyo; removed locally"
    token_storage.record_event(customer_identifier, Event.REVOKED, detail)
    return Disconnected(customer_identifier, revoked_at_klaviyo=bool(refresh_token) and not failure, failure=failure)


def check_connection(*, customer_identifier: str) -> str:
    """A cheap authenticated call (accounts); returns a one-line description of the account.

    The outcome, success or failure, is written to the connection's history.
    """
    try:
        body = call_klaviyo(customer_identifier=customer_identifier, path="/api/accounts")
    except (KlaviyoError, ReauthorizationRequired, RefreshInProgress) as exc:
        token_storage.record_event(customer_identifier, Event.TESTED, f"failed: {exc}")
        raise
    account_id, name = _account_id_and_name(body)
    result = f"OK: Klaviyo account {name or '?'} ({account_id or 'unknown id'})"
    token_storage.record_event(customer_identifier, Event.TESTED, result)
    return result


def database_is_up() -> bool:
    """True when the default database answers a trivial query."""
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return False
    return True


# --- keep-alive and maintenance (management commands) ------------------------------------


class RefreshOutcome(enum.StrEnum):
    """What keep-alive did with one connection."""

    REFRESHED = "refreshed"
    # No longer due (refreshed meanwhile by another worker or machine), being refreshed by
    # another worker right now, disconnected, or already marked as needing reauthorization.
    SKIPPED = "skipped"
    NEEDS_REAUTHORIZATION = "needs_reauthorization"
    FAILED = "failed"


def refresh_if_due(*, customer_identifier: str, expiring_before: datetime, unused_since: datetime) -> RefreshOutcome:
    """Refresh one connection if it is still due: expiring before ``expiring_before`` or unused since ``unused_since``.

    Re-reads the row first, so a connection refreshed by another process or machine
    since it was listed is skipped. Takes the single-flight lease without waiting for
    it: a connection whose lease is held is being refreshed elsewhere, and is skipped too.
    Returns REFRESHED or SKIPPED. Raises ReauthorizationRequired (Klaviyo refused the
    refresh token), KlaviyoError (the refresh failed; the connection stays active) or
    TokenDecryptionError.
    """
    try:
        connection = token_storage.retrieve(customer_identifier)
    except TokenNotFound:
        return RefreshOutcome.SKIPPED
    if not _is_due(connection, expiring_before=expiring_before, unused_since=unused_since):
        return RefreshOutcome.SKIPPED
    _ensure_usable(connection)
    owner = _claim_refresh_lease(connection)
    if owner is None:
        return RefreshOutcome.SKIPPED
    _refresh_and_release(connection, owner=owner)
    return RefreshOutcome.REFRESHED


def _is_due(connection: Connection, *, expiring_before: datetime, unused_since: datetime) -> bool:
    # The test of OAuthTokenQuerySet.due_for_refresh, applied to a freshly read row.
    expiring = (
        connection.expires_at is not None
        and connection.expires_at < expiring_before
        and connection.called_since_refresh
    )
    return connection.status == ConnectionStatus.ACTIVE and (expiring or connection.last_used_at < unused_since)


@dataclass
class RefreshReport:
    """Counts of a keep-alive run. ``due``: connections due when the run started."""

    due: int
    refreshed: int = 0
    skipped: int = 0
    needs_reauthorization: int = 0
    failed: int = 0
    failed_customers: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.refreshed + self.skipped + self.needs_reauthorization + self.failed

    def add(self, customer_identifier: str, outcome: RefreshOutcome) -> None:
        if outcome == RefreshOutcome.REFRESHED:
            self.refreshed += 1
        elif outcome == RefreshOutcome.SKIPPED:
            self.skipped += 1
        elif outcome == RefreshOutcome.NEEDS_REAUTHORIZATION:
            self.needs_reauthorization += 1
        else:
            self.failed += 1
            self.failed_customers.append(customer_identifier)


def refresh_due_connections(
    *,
    expiring_within: timedelta,
    unused_for: timedelta,
    concurrency: int = 4,
    progress: Callable[[RefreshReport], None] | None = None,
    page_size: int = 500,
) -> RefreshReport:
    """Keep-alive: refresh every active connection whose access token expires within
    ``expiring_within`` or whose refresh token has not been used for ``unused_for``.

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
    expiring_before, unused_since = now + expiring_within, now - unused_for
    report = RefreshReport(
        due=token_storage.count_due_for_refresh(expiring_before=expiring_before, unused_since=unused_since)
    )
    # Work goes to the threads in small batches: each batch ends by closing its thread's
    # database connections, so big runs reconnect once per batch instead of once per row.
    batch_size = max(1, min(KEEP_ALIVE_BATCH, report.due // (4 * concurrency)))
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
            in_flight[pool.submit(_keep_alive_batch, batch, expiring_before, unused_since)] = batch

        after, batch = "", []
        while page := token_storage.due_for_refresh(
            expiring_before=expiring_before, unused_since=unused_since, after=after, limit=page_size
        ):
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


KEEP_ALIVE_BATCH = 25


def _keep_alive_batch(
    customer_identifiers: list[str], expiring_before: datetime, unused_since: datetime
) -> list[RefreshOutcome]:
    """refresh_if_due for each, in a worker thread; closes the thread's database connections after."""
    try:
        return [_keep_alive_one(customer, expiring_before, unused_since) for customer in customer_identifiers]
    finally:
        db_connections.close_all()


def _keep_alive_one(customer_identifier: str, expiring_before: datetime, unused_since: datetime) -> RefreshOutcome:
    """refresh_if_due, its failures turned into outcomes (already logged)."""
    try:
        return refresh_if_due(
            customer_identifier=customer_identifier, expiring_before=expiring_before, unused_since=unused_since
        )
    except ReauthorizationRequired:
        return RefreshOutcome.NEEDS_REAUTHORIZATION
    except KlaviyoError:
        return RefreshOutcome.FAILED  # recorded on the connection and logged by the refresh
    except TokenDecryptionError as exc:
        logger.error("Cannot decrypt the tokens of %s: %s", customer_identifier, exc)
        token_storage.record_failure(
            customer_identifier, reason=FailureReason.UNDECRYPTABLE, detail=str(exc), broken=False
        )
        return RefreshOutcome.FAILED
    except DatabaseError as exc:
        logger.error("Keep-alive of %s failed on the database: %s", customer_identifier, exc)
        return RefreshOutcome.FAILED


def purge_expired_authorizations(*, now: datetime | None = None) -> int:
    """Delete pending authorizations (state + PKCE verifier) that can no longer be completed.

    Returns how many were deleted. Safe to run on several machines at once.
    """
    return pkce_storage.purge_expired(now=now or timezone.now())


secret_storage = DjangoSecretStorage()


@dataclass
class KeyRotationReport:
    """What a rotation or check found, per table. Names customers, never secrets."""

    current_key_id: str
    table: str = ""  # the table being scanned
    totals: dict[str, int] = field(default_factory=dict)  # rows per table when its scan started
    scanned: dict[str, int] = field(default_factory=dict)
    resealed: int = 0  # rows re-encrypted under the current key
    old_key: int = 0  # rows with a secret still under a fallback key (check only)
    undecryptable: list[tuple[str, str]] = field(default_factory=list)  # (table, customer identifier)


def rotate_encryption_key(
    *, batch_size: int = 500, progress: Callable[[KeyRotationReport], None] | None = None
) -> KeyRotationReport:
    """Re-encrypt every secret that is not yet under TOKEN_ENCRYPTION_KEY.

    Envelopes are read without decrypting them; only rows sealed (even partly) under
    another key are rewritten, a batch at a time, each batch in its own short transaction.
    An interrupted run therefore loses nothing and a rerun continues where it stopped;
    several runs at once are harmless. Rows that no configured key decrypts are left
    untouched and listed in the report. ``progress`` is called after each batch.
    Raises EncryptionKeyError when the keys are not configured.
    """
    report = KeyRotationReport(current_key_id=crypto.keyring().current_id)
    for table, rows in _scan_secrets(report, batch_size=batch_size, verify=False):
        stale = [row.pk for row in rows if row.key_ids - {report.current_key_id}]
        if stale:
            resealed, failed = secret_storage.reseal(table, stale)
            report.resealed += resealed
            report.undecryptable.extend((table, customer) for customer in failed)
        if progress is not None:
            progress(report)
    return report


def check_encryption(
    *, batch_size: int = 500, progress: Callable[[KeyRotationReport], None] | None = None
) -> KeyRotationReport:
    """Prove that every stored secret decrypts (bound to its row) with the configured keys.

    Reports the rows that do not, and how many rows are still under a fallback key.
    Changes nothing. Raises EncryptionKeyError when the keys are not configured.
    """
    report = KeyRotationReport(current_key_id=crypto.keyring().current_id)
    for table, rows in _scan_secrets(report, batch_size=batch_size, verify=True):
        for row in rows:
            if row.undecryptable:
                report.undecryptable.append((table, row.customer_identifier))
            elif row.key_ids - {report.current_key_id}:
                report.old_key += 1
        if progress is not None:
            progress(report)
    return report


def _scan_secrets(report: KeyRotationReport, *, batch_size: int, verify: bool) -> Iterator[tuple[str, list[SealedRow]]]:
    """Every table's rows, a batch at a time in primary key order, counted in ``report``."""
    for table in secret_storage.tables:
        report.table = table
        report.totals[table] = secret_storage.count(table)
        report.scanned[table] = 0
        after = 0
        while rows := secret_storage.page(table, after_pk=after, limit=batch_size, verify=verify):
            report.scanned[table] += len(rows)
            after = rows[-1].pk
            yield table, rows
