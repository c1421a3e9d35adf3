"""Single-flight refresh: a usable access token for a customer, refreshing it at most once at a time.

Design note
-----------
When several workers (threads or processes, on SQLite or PostgreSQL) find one
customer's access token expiring, exactly one of them refreshes:

1. Each reads the row, including its ``version`` (bumped on every token write).
2. Each tries to claim a *lease* with one conditional UPDATE:
   ``... SET lease_owner=me, lease_until=now+L WHERE version=v AND the lease is free
   AND no failed refresh is cooling down``. The database serialises the UPDATEs, so
   exactly one succeeds (rowcount 1).
3. The winner calls Klaviyo with no transaction open, then stores the new tokens with
   one more conditional UPDATE, ``WHERE version=v AND lease_owner=me AND active``, which
   also bumps ``version`` and clears the lease. The tokens it hands back to its caller
   are the ones in the grant it holds; nothing is re-read.
4. The others poll the row until ``version`` moves on, then use the new token. If the
   winner dies, its lease lapses after L seconds and another worker claims it. If its
   refresh fails (Klaviyo down), it releases the lease and sets ``refresh_failed_until``
   (KLAVIYO_REFRESH_FAILURE_COOLDOWN seconds ahead): the callers that were waiting, and
   new ones meanwhile, fail fast together instead of each retrying the refresh in turn.
5. If the store in step 3 matches no row, something else won meanwhile: a reconnect
   (new version), a disconnect (no longer active) or, after a lapse, another worker's
   lease. The tokens just received are then not stored; a refresh token Klaviyo newly
   issued is revoked, so that no grant stays live with nobody holding it.

Why a lease and not ``SELECT ... FOR UPDATE`` around the HTTP call: a row lock would
hold a transaction (and a pooled connection) open for the whole call to Klaviyo, up to
the HTTP timeout times the retries; SQLite has no row locks at all, and a lock held by
a crashed worker stalls everyone until the connection dies. The lease costs two short
UPDATEs per refresh and degrades to "one extra refresh after L seconds" at worst.

If Klaviyo answers ``invalid_grant`` and the row has a new version meanwhile (a
reconnect, a disconnect, or a refresh whose lease had lapsed), the connection is not
declared broken, and its new refresh token is not used under the old lease: with
refresh-token rotation that would use up the new grant (and step 5 would then revoke
what it returned). What is stored now is used instead; a reconnect or another worker's
refresh stored a fresh access token.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from datetime import datetime, timedelta

from django.utils import timezone

from oauth_integration import metrics, signals
from oauth_integration.conf import conf
from oauth_integration.exceptions import (
    EncryptionKeyError,
    InvalidGrant,
    KlaviyoError,
    KlaviyoUnavailable,
    ReauthorizationRequired,
    RefreshInProgress,
    TokenDecryptionError,
)
from oauth_integration.klaviyo import TokenGrant
from oauth_integration.klaviyo import client as klaviyo
from oauth_integration.models import ConnectionEvent, FailureReason, OAuthToken
from oauth_integration.services.failures import failure_reason, record_failure

logger = logging.getLogger(__name__)
Event = ConnectionEvent.Kind


def lease_duration() -> timedelta:
    """Long enough for the refresh call and its connection retries, short enough to recover."""
    return timedelta(seconds=2 * conf.http_timeout * (conf.max_retries + 1) + 5)


def ensure_usable(connection: OAuthToken) -> None:
    """Raise ReauthorizationRequired unless the connection is active."""
    if not connection.is_active:
        raise ReauthorizationRequired(connection.customer_identifier, connection.failure_reason or connection.status)


def fresh_connection(
    customer_identifier: str, *, rejected_version: int | None = None, for_call: bool = True
) -> OAuthToken:
    """The customer's connection with a usable access token, refreshing it (single-flight) if needed.

    ``rejected_version``: the token of that version was rejected (or must be replaced);
    a newer version stored by another worker is good enough. ``for_call``: the token is
    about to be used for a call (the connection is in use). Raises TokenNotFound,
    ReauthorizationRequired, RefreshInProgress or KlaviyoError.
    """
    waiting_since: datetime | None = None  # set once we wait for another worker's refresh
    deadline = 0.0
    pause = 0.02
    while True:
        connection = OAuthToken.objects.retrieve(customer_identifier)
        ensure_usable(connection)
        if rejected_version is None:
            if not connection.expires_within(conf.refresh_margin):
                return connection
        elif connection.version != rejected_version:
            if waiting_since is not None:
                metrics.count_refresh("waited")
            return connection
        failed_until = connection.refresh_failed_until
        if connection.refresh_failed_recently() or (
            waiting_since is not None and failed_until is not None and failed_until >= waiting_since
        ):
            # The refresh we waited for, or one moments ago, failed: don't all retry it in turn.
            raise KlaviyoUnavailable(
                f"Refreshing the token of {customer_identifier} failed in another worker ({connection.failure_reason})"
            )
        owner = claim_lease(connection)
        if owner is not None:
            return refresh_under_lease(connection, owner=owner, for_call=for_call)
        if waiting_since is None:
            waiting_since = timezone.now()
            # Past the wait budget the caller gets RefreshInProgress (503); the refresh carries on.
            deadline = time.monotonic() + min(conf.refresh_wait, lease_duration().total_seconds() + conf.http_timeout)
        if rejected_version is None:
            rejected_version = connection.version  # wait for whoever holds the lease to move it on
        if time.monotonic() >= deadline:
            raise RefreshInProgress(customer_identifier)
        time.sleep(pause * random.uniform(0.5, 1.5))  # noqa: S311 (jitter)
        pause = min(pause * 1.5, 0.5)


def claim_lease(connection: OAuthToken) -> str | None:
    """Claim the refresh lease if it is free and the row is still at this version; the owner id."""
    owner = uuid.uuid4().hex
    claimed = OAuthToken.objects.claim_refresh_lease(
        connection.customer_identifier, version=connection.version, owner=owner, until=timezone.now() + lease_duration()
    )
    return owner if claimed else None


def refresh_under_lease(connection: OAuthToken, *, owner: str, for_call: bool) -> OAuthToken:
    """Refresh the connection whose lease ``owner`` holds; store and return it (lease released)."""
    customer = connection.customer_identifier
    try:
        refresh_token = str(connection.refresh_token or "")  # may not decrypt: a failure like the others
        grant = klaviyo.refresh(refresh_token=refresh_token)
    except InvalidGrant as exc:
        latest = OAuthToken.objects.of(customer).first()
        if latest is None or latest.version != connection.version:
            # A reconnect, a disconnect or (after a lapse) another worker's refresh wrote the
            # row meanwhile, and our lease went with it. Its tokens are not ours to refresh:
            # with rotation, refreshing them here would use up the new grant.
            return _moved_on(connection, latest)
        metrics.count_refresh("invalid_grant")
        reason = FailureReason.EXPIRED_INACTIVE if connection.refresh_token_idle_expired else FailureReason.REVOKED
        _release_after_failure(customer, owner, exc, reason=reason, event=Event.NEEDS_REAUTHORIZATION, broken=True)
        signals.send_after_commit(
            signals.needs_reauthorization,
            customer_identifier=customer,
            klaviyo_account_id=connection.klaviyo_account_id,
            reason=str(reason),
        )
        raise ReauthorizationRequired(customer, reason) from exc
    except (KlaviyoError, TokenDecryptionError, EncryptionKeyError) as exc:
        metrics.count_refresh("unavailable")
        _release_after_failure(customer, owner, exc, reason=failure_reason(exc), event=Event.REFRESH_FAILED)
        raise

    now = timezone.now()
    values: dict[str, object] = {
        "access_token": grant.access_token,
        "expires_at": grant.expires_at,
        "last_refreshed_at": now,
    }
    if grant.refresh_token:  # always persist the refresh token that comes back
        values["refresh_token"] = grant.refresh_token
    if grant.scopes:
        values["scopes"] = grant.scopes
    if for_call:
        values["last_called_at"] = now  # the call about to be made counts as use
    if not OAuthToken.objects.store_refreshed(customer, version=connection.version, owner=owner, **values):
        return _discard(connection, grant, sent_refresh_token=refresh_token)
    metrics.count_refresh("success")
    signals.send_after_commit(
        signals.refreshed, customer_identifier=customer, klaviyo_account_id=connection.klaviyo_account_id
    )
    ConnectionEvent.objects.record(
        customer, Event.REFRESHED, f"access token valid until {grant.expires_at:%Y-%m-%d %H:%M:%S %Z}"
    )
    logger.info("Refreshed the Klaviyo token of %s", customer, extra={"customer_identifier": customer})
    for name, value in values.items():
        setattr(connection, name, value)
    connection.version += 1
    return connection


def _moved_on(connection: OAuthToken, latest: OAuthToken | None) -> OAuthToken:
    """Klaviyo refused the refresh token of a version that is no longer stored: use what is."""
    customer = connection.customer_identifier
    logger.info(
        "Connection of %s changed during a refresh; using what is stored now",
        customer,
        extra={"customer_identifier": customer},
    )
    return _usable(customer, latest)


def _usable(customer: str, latest: OAuthToken | None) -> OAuthToken:
    if latest is None:
        raise ReauthorizationRequired(customer, "removed")
    ensure_usable(latest)
    return latest


def _release_after_failure(
    customer: str, owner: str, exc: Exception, *, reason: FailureReason, event: str, broken: bool = False
) -> None:
    def release_lease(**failure: object) -> None:
        cooldown = conf.refresh_failure_cooldown
        OAuthToken.objects.release_failed_lease(customer, owner=owner, cooldown=cooldown, **failure)

    record_failure(customer, reason=reason, event=event, detail=f"refresh: {exc}", broken=broken, write=release_lease)


def _discard(connection: OAuthToken, grant: TokenGrant, *, sent_refresh_token: str) -> OAuthToken:
    """The row moved on during the refresh (reconnected, disconnected, or leased again):
    revoke a refresh token Klaviyo newly issued, then carry on with whatever is stored now."""
    customer = connection.customer_identifier
    latest = OAuthToken.objects.of(customer).first()
    stored = str(latest.refresh_token or "") if latest is not None and latest.is_active else ""
    issued = grant.refresh_token or ""
    logger.info(
        "Connection of %s changed during a refresh; its new tokens are discarded",
        customer,
        extra={"customer_identifier": customer},
    )
    if issued and issued not in (sent_refresh_token, stored):
        revoke_quietly(customer, issued, what="token issued during a reconnect or disconnect")
    return _usable(customer, latest)


def revoke_quietly(customer_identifier: str, refresh_token: str, *, what: str) -> bool:
    """Revoke a refresh token at Klaviyo, best effort; the outcome goes to the history."""
    try:
        klaviyo.revoke(refresh_token=refresh_token)
    except KlaviyoError as exc:
        ConnectionEvent.objects.record(customer_identifier, Event.REVOKE_FAILED, f"{what} not revoked: {exc}")
        return False
    ConnectionEvent.objects.record(customer_identifier, Event.REVOKED, f"{what} revoked at Klaviyo")
    return True


def refresh_connection(*, customer_identifier: str) -> OAuthToken:
    """Refresh now, whatever the expiry (admin action). Single-flight."""
    current = OAuthToken.objects.retrieve(customer_identifier)
    return fresh_connection(customer_identifier, rejected_version=current.version, for_call=False)
