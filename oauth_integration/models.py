"""Connections, pending authorizations and their history. Data and small derived facts only."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from oauth_integration.fields import EncryptedQuerySet, EncryptedTextField


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
    def active(self) -> OAuthTokenQuerySet:
        return self.filter(status=ConnectionStatus.ACTIVE)

    def due_for_refresh(self, *, expiring_before: datetime, unused_since: datetime) -> OAuthTokenQuerySet:
        """Active connections that are in use and whose access token is about to expire, or whose
        refresh token sat unused too long.

        "In use": called since its last refresh. Idle connections are not refreshed every
        hour just because their access token expires; a call refreshes them when needed.
        """
        in_use = models.Q(last_refreshed_at__isnull=False, last_called_at__gt=models.F("last_refreshed_at")) | models.Q(
            last_refreshed_at__isnull=True, last_called_at__gt=models.F("connected_at")
        )
        return self.active().filter(
            (models.Q(expires_at__lt=expiring_before) & in_use)
            | models.Q(last_refreshed_at__lt=unused_since)
            | models.Q(last_refreshed_at__isnull=True, connected_at__lt=unused_since)
        )


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

    # Single-flight refresh (see services.py): bumped on every token write; a refresh
    # lease is claimed with a conditional UPDATE and expires on its own if its holder dies.
    version = models.PositiveBigIntegerField(default=0)
    refresh_lease_owner = models.CharField(max_length=32, blank=True, default="")
    refresh_lease_until = models.DateTimeField(null=True, blank=True)

    objects = OAuthTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "Klaviyo connection"
        base_manager_name = "objects"
        constraints = [
            models.CheckConstraint(condition=~models.Q(customer_identifier=""), name="oauth_token_customer_not_blank"),
        ]

    def __str__(self) -> str:
        return f"Klaviyo connection for {self.customer_identifier}"

    def expires_within(self, margin: timedelta, *, now: datetime | None = None) -> bool:
        """True when the access token is missing or expires within ``margin``."""
        if self.expires_at is None:
            return True
        return self.expires_at - margin <= (now or timezone.now())


class PkceCode(models.Model):
    """A pending authorization: consumed exactly once, within ten minutes."""

    state_hash = models.CharField(max_length=64, unique=True)
    customer_identifier = models.CharField(max_length=255, db_index=True)
    code_verifier = EncryptedTextField(bind_to="state_hash")
    browser_binding_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    objects = EncryptedQuerySet.as_manager()

    class Meta:
        verbose_name = "pending authorization"
        base_manager_name = "objects"

    def __str__(self) -> str:
        return f"Pending authorization for {self.customer_identifier}"

    def is_expired(self, *, now: datetime | None = None) -> bool:
        """True once this authorization can no longer be completed."""
        return self.expires_at <= (now or timezone.now())


class ConnectionEvent(models.Model):
    """What happened to a customer's connection. Kept after the tokens are removed."""

    class Kind(models.TextChoices):
        CONNECTED = "connected", "Connected"
        RECONNECTED = "reconnected", "Reconnected"
        ACCOUNT_CHANGED = "account_changed", "Reconnected to a different Klaviyo account"
        REFRESHED = "refreshed", "Refreshed"
        REFRESH_FAILED = "refresh_failed", "Refresh failed"
        CALL_FAILED = "call_failed", "Call to Klaviyo failed"
        NEEDS_REAUTHORIZATION = "needs_reauthorization", "Needs reauthorization"
        REVOKED = "revoked", "Revoked"
        REVOKE_FAILED = "revoke_failed", "Revoke at Klaviyo failed"
        TESTED = "tested", "Connection tested"

    customer_identifier = models.CharField(max_length=255, db_index=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    detail = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["customer_identifier", "-created_at"], name="event_customer_recent")]

    def __str__(self) -> str:
        return f"{self.customer_identifier}: {self.get_kind_display()}"
