"""What happened to each connection: its history, kept after the tokens are removed."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from oauth_integration.models.connections import OAuthToken


class ConnectionEventQuerySet(models.QuerySet):
    def record(self, customer_identifier: str, kind: str, detail: str = "") -> None:
        """Append to the history of the customer's connection (which must exist)."""
        connection_id = OAuthToken.objects.of(customer_identifier).values_list("pk", flat=True)[:1]
        self.create(connection_id=models.Subquery(connection_id), kind=kind, detail=detail[:255])


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

    connection = models.ForeignKey(OAuthToken, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    detail = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = ConnectionEventQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["connection", "-created_at"], name="event_connection_recent")]

    def __str__(self) -> str:
        return f"{self.connection.customer_identifier}: {self.get_kind_display()}"
