"""Connections: one per customer, their tokens (encrypted by their fields), and the queries over them.

The Node example's token storage (``save`` / ``retrieve`` / ``remove``) is
``OAuthToken.objects.store_grant`` / ``retrieve`` / ``forget_tokens`` here. The
single-flight refresh lease (claim, store, release) is a set of conditional UPDATEs
on ``OAuthTokenQuerySet``; the algorithm that uses them is described at the top of
``services/refresh.py``. Nothing here talks HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from oauth_integration.exceptions import TokenNotFound
from oauth_integration.fields import EncryptedQuerySet, EncryptedTextField
from oauth_integration.models.rows import one_row

if TYPE_CHECKING:
    from oauth_integration.klaviyo import TokenGrant

# Klaviyo refresh tokens die after 90 days without use (Klaviyo's own examples).
REFRESH_TOKEN_IDLE_LIFETIME = timedelta(days=90)


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    NEEDS_REAUTHORIZATION = "needs_reauthorization", "Needs reauthorization"
    REVOKED = "revoked", "Revoked"


class FailureReason(models.TextChoices):
    """Why the last call or refresh for a connection failed."""

    REVOKED = "revoked", "Revoked or uninstalled in Klaviyo"
    EXPIRED_INACTIVE = "expired_inactive", "Refresh token expired from inactivity"
    MISSING_SCOPE = "missing_scope", "Missing scope (403)"
    KLAVIYO_UNAVAILABLE = "klaviyo_unavailable", "Klaviyo temporarily unavailable"
    THROTTLED = "throttled", "Rate limited by Klaviyo"
    KLAVIYO_ERROR = "klaviyo_error", "Klaviyo rejected the request"
    UNDECRYPTABLE = "undecryptable", "Stored tokens cannot be decrypted"


class OAuthTokenQuerySet(EncryptedQuerySet):
    def update(self, **kwargs: Any) -> int:
        """Every UPDATE stamps ``updated_at``, as ``save()`` does through ``auto_now``."""
        kwargs.setdefault("updated_at", timezone.now())
        return super().update(**kwargs)

    def active(self) -> OAuthTokenQuerySet:
        return self.filter(status=ConnectionStatus.ACTIVE)

    def of(self, customer_identifier: str) -> OAuthTokenQuerySet:
        return self.filter(customer_identifier=customer_identifier)

    def lookup(self, customer_identifier: str) -> OAuthToken | None:
        """The customer's connection, or None: the query every call to Klaviyo starts with.

        A statement written once per database (``models.rows.one_row``): building the query
        through the ORM on every call cost more CPU than the rest of the lookup. Secrets stay
        encrypted until read, as with any query.
        """
        return one_row(OAuthToken, "customer_identifier", customer_identifier, self.db)

    def retrieve(self, customer_identifier: str) -> OAuthToken:
        """The customer's connection (secrets decrypt when read). Raises TokenNotFound."""
        connection = self.lookup(customer_identifier)
        if connection is None:
            raise TokenNotFound(customer_identifier)
        return connection

    def store_grant(
        self, customer_identifier: str, grant: TokenGrant, *, account_id: str, account_name: str
    ) -> OAuthToken | None:
        """Store a fresh authorization (insert or replace); return the row as it was before, if any.

        Replacing bumps the version and clears the lease: a refresh in flight then finds the
        row moved on and discards its tokens.
        """
        now = timezone.now()
        values = {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_at": grant.expires_at,
            "scopes": grant.scopes,
            "klaviyo_account_id": account_id,
            "klaviyo_account_name": account_name,
            "status": ConnectionStatus.ACTIVE,
            "failure_reason": "",
            "failure_detail": "",
            "failed_at": None,
            "connected_at": now,
            "last_refreshed_at": None,
            "refresh_lease_owner": "",
            "refresh_lease_until": None,
            "refresh_failed_until": None,
        }
        with transaction.atomic(using=self.db):
            previous = self.select_for_update().of(customer_identifier).first()
            if previous is None:
                self.create(customer_identifier=customer_identifier, version=1, **values)
            else:
                self.update(bound_to={"customer_identifier": customer_identifier}, version=F("version") + 1, **values)
        return previous

    def due_for_refresh(self, *, expiring_before: datetime | None, unused_since: datetime) -> OAuthTokenQuerySet:
        """Active connections whose refresh token sat unused too long, or (when ``expiring_before``
        is given) that are in use and whose access token is about to expire.

        "In use": called since its last refresh. Idle connections are not refreshed every
        hour just because their access token expires; a call refreshes them when needed.
        """
        in_use = Q(last_refreshed_at__isnull=False, last_called_at__gte=F("last_refreshed_at")) | Q(
            last_refreshed_at__isnull=True, last_called_at__gte=F("connected_at")
        )
        idle = Q(last_refreshed_at__lt=unused_since) | Q(last_refreshed_at__isnull=True, connected_at__lt=unused_since)
        if expiring_before is None:
            return self.active().filter(idle)
        return self.active().filter((Q(expires_at__lt=expiring_before) & in_use) | idle)

    def missing_any_scope(self, required: Iterable[str]) -> OAuthTokenQuerySet:
        """Connections that were not granted every scope in ``required`` (they must reconnect to get them)."""
        padded = Concat(Value(" "), "scopes", Value(" "), output_field=models.TextField())
        lacks = Q()
        for scope in required:
            lacks |= ~Q(padded_scopes__contains=f" {scope} ")
        return self.alias(padded_scopes=padded).filter(lacks) if lacks else self.none()

    # --- the single-flight refresh lease ---------------------------------------------------

    def claim_refresh_lease(
        self, customer_identifier: str, *, version: int, owner: str, until: datetime, now: datetime | None = None
    ) -> bool:
        """Take the lease of an active connection still at ``version`` that nobody holds and
        whose last refresh did not just fail. True for exactly one of concurrent claimers."""
        now = now or timezone.now()
        claimed = (
            self.active()
            .of(customer_identifier)
            .filter(version=version)
            .filter(Q(refresh_lease_until__isnull=True) | Q(refresh_lease_until__lt=now))
            .filter(Q(refresh_failed_until__isnull=True) | Q(refresh_failed_until__lte=now))
            .update(refresh_lease_owner=owner, refresh_lease_until=until)
        )
        return claimed == 1

    def store_refreshed(self, customer_identifier: str, *, version: int, owner: str, **values: Any) -> bool:
        """Write refreshed tokens and release the lease, only if the row is still active, still at
        ``version`` and still leased by ``owner`` (a reconnect or a disconnect meanwhile wins)."""
        updated = (
            self.active()
            .filter(version=version, refresh_lease_owner=owner)
            .update(
                **values,
                bound_to={"customer_identifier": customer_identifier},  # this row only; secrets bound to it
                version=F("version") + 1,
                refresh_lease_owner="",
                refresh_lease_until=None,
                refresh_failed_until=None,
                failure_reason="",
                failure_detail="",
                failed_at=None,
            )
        )
        return updated == 1

    def release_failed_lease(
        self, customer_identifier: str, *, owner: str, cooldown: timedelta, **failure: Any
    ) -> None:
        """Give the lease back after a failed refresh: callers fail fast until the cooldown ends."""
        now = timezone.now()
        self.of(customer_identifier).filter(refresh_lease_owner=owner).update(
            **failure, refresh_lease_owner="", refresh_lease_until=None, refresh_failed_until=now + cooldown
        )

    # --- failures, use, removal ----------------------------------------------------------------

    def clear_failure(self, customer_identifier: str) -> None:
        self.of(customer_identifier).exclude(failure_reason="").update(
            failure_reason="", failure_detail="", failed_at=None
        )

    def mark_called(self, customer_identifier: str) -> None:
        """The current access token was used for a successful call (the connection is in use)."""
        self.of(customer_identifier).update(last_called_at=timezone.now())

    def forget_tokens(self, customer_identifier: str) -> None:
        """Null both tokens; the connection stays listed as revoked, with its history."""
        self.of(customer_identifier).update(
            access_token=None,
            refresh_token=None,
            expires_at=None,
            status=ConnectionStatus.REVOKED,
            version=F("version") + 1,
            refresh_lease_owner="",
            refresh_lease_until=None,
            refresh_failed_until=None,
        )


def failure_values(*, reason: str, detail: str, broken: bool) -> dict[str, Any]:
    """The column values that record a failure (and, if ``broken``, the need to reconnect)."""
    values: dict[str, Any] = {"failure_reason": reason, "failure_detail": detail[:255], "failed_at": timezone.now()}
    if broken:
        values["status"] = ConnectionStatus.NEEDS_REAUTHORIZATION
    return values


class OAuthToken(models.Model):
    """One Klaviyo connection per customer identifier. Secrets are encrypted by their field."""

    customer_identifier = models.CharField(max_length=255, unique=True)
    access_token = EncryptedTextField(bind_to="customer_identifier", null=True, blank=True)
    refresh_token = EncryptedTextField(bind_to="customer_identifier", null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    scopes = models.TextField(blank=True, default="")
    klaviyo_account_id = models.CharField(max_length=64, blank=True, default="")
    klaviyo_account_name = models.CharField(max_length=255, blank=True, default="")

    status = models.CharField(
        max_length=32, choices=ConnectionStatus.choices, default=ConnectionStatus.ACTIVE, db_index=True
    )
    failure_reason = models.CharField(max_length=32, choices=FailureReason.choices, blank=True, default="")
    failure_detail = models.CharField(max_length=255, blank=True, default="")
    failed_at = models.DateTimeField(null=True, blank=True)

    connected_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # First successful call with each new access token (not every call: no write on the hot path).
    last_called_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Single-flight refresh (see services/refresh.py): ``version`` is bumped on every token
    # write; the lease is claimed with a conditional UPDATE and lapses on its own if its
    # holder dies; after a failed refresh, callers fail fast until ``refresh_failed_until``.
    version = models.PositiveBigIntegerField(default=0)
    refresh_lease_owner = models.CharField(max_length=32, blank=True, default="")
    refresh_lease_until = models.DateTimeField(null=True, blank=True)
    refresh_failed_until = models.DateTimeField(null=True, blank=True)

    objects = OAuthTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "Klaviyo connection"
        base_manager_name = "objects"
        permissions = [("connect_customer", "Can make links that connect a customer's Klaviyo account")]
        constraints = [
            models.CheckConstraint(condition=~models.Q(customer_identifier=""), name="oauth_token_customer_not_blank"),
        ]

    def __str__(self) -> str:
        return f"Klaviyo connection for {self.customer_identifier}"

    @property
    def is_active(self) -> bool:
        return self.status == ConnectionStatus.ACTIVE

    def expires_within(self, margin: timedelta, *, now: datetime | None = None) -> bool:
        """True when there is no access token (no expiry) or it expires within ``margin``."""
        if self.expires_at is None:
            return True
        return self.expires_at - margin <= (now or timezone.now())

    def refresh_failed_recently(self, *, now: datetime | None = None) -> bool:
        """The last refresh failed and its cooldown has not ended."""
        return self.refresh_failed_until is not None and self.refresh_failed_until > (now or timezone.now())

    @property
    def last_used_at(self) -> datetime:
        """When the refresh token was last exchanged (or first granted)."""
        return self.last_refreshed_at or self.connected_at

    @property
    def refresh_token_idle_expired(self) -> bool:
        """Unused for longer than Klaviyo keeps refresh tokens."""
        return timezone.now() - self.last_used_at >= REFRESH_TOKEN_IDLE_LIFETIME

    def missing_scopes(self, required: Iterable[str]) -> list[str]:
        """The scopes in ``required`` that Klaviyo did not grant this connection."""
        granted = set(self.scopes.split())
        return [scope for scope in required if scope not in granted]

    @property
    def called_since_refresh(self) -> bool:
        """The current access token has been used for a call: the connection is in use."""
        return self.last_called_at is not None and self.last_called_at >= self.last_used_at
