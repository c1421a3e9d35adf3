"""The sandbox's state: OAuth codes, grants and tokens, each account's data, rate windows and counts.

Everything lives in the database (not process memory) so that several server processes
and threads see the same codes, tokens, profiles, lists, events and rate-limit windows.
Codes and tokens are stored only as SHA-256 hex digests.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

# --- OAuth -----------------------------------------------------------------------------------


class AuthorizationCode(models.Model):
    """An authorization code issued on the consent page; exchanged at most once."""

    code_hash = models.CharField(max_length=64, unique=True)
    client_id = models.CharField(max_length=255)
    redirect_uri = models.TextField()
    scopes = models.TextField()
    code_challenge = models.CharField(max_length=43)
    account_id = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "sandbox authorization code"

    def __str__(self) -> str:
        return f"Sandbox authorization code for account {self.account_id}"


class Grant(models.Model):
    """One app installation in one sandbox account: a refresh token and its access tokens."""

    client_id = models.CharField(max_length=255)
    account_id = models.CharField(max_length=16, db_index=True)
    scopes = models.TextField()
    refresh_token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    # Refresh-token requests and authenticated API requests served for this grant.
    refresh_requests = models.PositiveIntegerField(default=0)
    api_requests = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "sandbox grant"

    def __str__(self) -> str:
        return f"Sandbox grant for account {self.account_id}"


class AccessToken(models.Model):
    """A bearer token for the sandbox API, valid until ``expires_at`` unless its grant is revoked."""

    grant = models.ForeignKey(Grant, on_delete=models.CASCADE, related_name="access_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "sandbox access token"

    def __str__(self) -> str:
        return f"Sandbox access token of grant {self.grant_id}"


# --- Bookkeeping -------------------------------------------------------------------------------


class Tally(models.Model):
    """A count of requests that belong to no grant (an unknown refresh or access token, an unknown path)."""

    name = models.CharField(max_length=32, primary_key=True)
    count = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "sandbox tally"
        verbose_name_plural = "sandbox tallies"

    def __str__(self) -> str:
        return f"Sandbox tally {self.name}"


class RateWindow(models.Model):
    """The fixed burst (1 s), steady (1 min) and daily windows of one app, account and endpoint."""

    client_id = models.CharField(max_length=255)
    account_id = models.CharField(max_length=16)
    operation = models.CharField(max_length=64)
    burst_window = models.BigIntegerField(default=0)
    burst_count = models.PositiveIntegerField(default=0)
    steady_window = models.BigIntegerField(default=0)
    steady_count = models.PositiveIntegerField(default=0)
    daily_window = models.BigIntegerField(default=0)
    daily_count = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "sandbox rate window"
        constraints = [
            models.UniqueConstraint(fields=["client_id", "account_id", "operation"], name="sandbox_rate_window_key")
        ]

    def __str__(self) -> str:
        return f"Sandbox rate window {self.operation} of account {self.account_id}"


class SeededAccount(models.Model):
    """Marks an account whose fixed profiles were written to the database (once, on first use)."""

    account_id = models.CharField(max_length=16, primary_key=True)
    seeded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "sandbox seeded account"

    def __str__(self) -> str:
        return f"Sandbox account {self.account_id}"


# --- Each account's data ------------------------------------------------------------------------


def _unique_when_set(field: str) -> models.UniqueConstraint:
    return models.UniqueConstraint(
        fields=["account_id", field], condition=Q(**{f"{field}__isnull": False}), name=f"sandbox_profile_{field}"
    )


class Consent(models.TextChoices):
    NEVER_SUBSCRIBED = "NEVER_SUBSCRIBED"
    SUBSCRIBED = "SUBSCRIBED"
    UNSUBSCRIBED = "UNSUBSCRIBED"


class Profile(models.Model):
    """A profile of one account. Its id is a ULID; email, phone number and external id are unique per account."""

    id = models.CharField(max_length=26, primary_key=True)
    account_id = models.CharField(max_length=16)
    # Text attributes are null when unset, as in Klaviyo's answers ("" is not the same).
    email = models.CharField(max_length=254, null=True, blank=True)  # noqa: DJ001
    phone_number = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    external_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    first_name = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    last_name = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    organization = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    locale = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    title = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    image = models.TextField(null=True, blank=True)  # noqa: DJ001
    created = models.DateTimeField()
    updated = models.DateTimeField()
    last_event_date = models.DateTimeField(null=True, blank=True)
    location = models.JSONField(default=dict)
    properties = models.JSONField(default=dict)
    email_consent = models.CharField(max_length=16, choices=Consent.choices, default=Consent.NEVER_SUBSCRIBED)
    email_consent_at = models.DateTimeField(null=True, blank=True)
    sms_consent = models.CharField(max_length=16, choices=Consent.choices, default=Consent.NEVER_SUBSCRIBED)
    sms_consent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "sandbox profile"
        constraints = [_unique_when_set("email"), _unique_when_set("phone_number"), _unique_when_set("external_id")]
        indexes = [
            models.Index(fields=["account_id", "created"], name="sandbox_profile_created"),
            models.Index(fields=["account_id", "updated"], name="sandbox_profile_updated"),
        ]

    def __str__(self) -> str:
        return f"Sandbox profile {self.id}"


class ProfileList(models.Model):
    """A list of one account (JSON:API type ``list``)."""

    class OptIn(models.TextChoices):
        SINGLE = "single_opt_in"
        DOUBLE = "double_opt_in"

    id = models.CharField(max_length=6, primary_key=True)
    account_id = models.CharField(max_length=16, db_index=True)
    name = models.CharField(max_length=255)
    opt_in_process = models.CharField(max_length=16, choices=OptIn.choices, default=OptIn.SINGLE)
    created = models.DateTimeField()
    updated = models.DateTimeField()
    profiles = models.ManyToManyField(Profile, through="ListMembership", related_name="lists")

    class Meta:
        verbose_name = "sandbox list"

    def __str__(self) -> str:
        return f"Sandbox list {self.id}"


class ListMembership(models.Model):
    """A profile in a list since ``joined_at`` (``joined_group_at`` in Klaviyo's answers)."""

    profile_list = models.ForeignKey(ProfileList, on_delete=models.CASCADE, related_name="memberships")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="memberships")
    joined_at = models.DateTimeField()

    class Meta:
        verbose_name = "sandbox list membership"
        constraints = [models.UniqueConstraint(fields=["profile_list", "profile"], name="sandbox_membership_once")]

    def __str__(self) -> str:
        return f"Sandbox profile {self.profile_id} in list {self.profile_list_id}"


class Metric(models.Model):
    """A metric of one account, created by name by the first event that names it."""

    id = models.CharField(max_length=6, primary_key=True)
    account_id = models.CharField(max_length=16)
    name = models.CharField(max_length=255)
    integration_name = models.CharField(max_length=64, default="API")
    integration_category = models.CharField(max_length=64, default="API")
    created = models.DateTimeField()
    updated = models.DateTimeField()

    class Meta:
        verbose_name = "sandbox metric"
        constraints = [models.UniqueConstraint(fields=["account_id", "name"], name="sandbox_metric_name")]

    def __str__(self) -> str:
        return f"Sandbox metric {self.id}"


class Event(models.Model):
    """An event: a profile did ``metric`` at ``datetime``. ``unique_id`` deduplicates per metric and profile."""

    id = models.CharField(max_length=11, primary_key=True)
    account_id = models.CharField(max_length=16)
    metric = models.ForeignKey(Metric, on_delete=models.CASCADE, related_name="events")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="events")
    datetime = models.DateTimeField()
    properties = models.JSONField(default=dict)
    uuid = models.CharField(max_length=36)
    unique_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001

    class Meta:
        verbose_name = "sandbox event"
        constraints = [
            models.UniqueConstraint(
                fields=["metric", "profile", "unique_id"],
                condition=Q(unique_id__isnull=False),
                name="sandbox_event_unique_id",
            )
        ]
        indexes = [models.Index(fields=["account_id", "datetime"], name="sandbox_event_datetime")]

    def __str__(self) -> str:
        return f"Sandbox event {self.id}"


class Resource(models.Model):
    """A resource of any other type of Klaviyo's description, kept as JSON (the generic engine's store).

    ``relationships`` maps a relationship's name to its data: a ``{"type", "id"}`` identifier,
    a list of them, or null.
    """

    account_id = models.CharField(max_length=16)
    type = models.CharField(max_length=64)
    resource_id = models.CharField(max_length=255)
    attributes = models.JSONField(default=dict)
    relationships = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "sandbox resource"
        constraints = [
            models.UniqueConstraint(fields=["account_id", "type", "resource_id"], name="sandbox_resource_key")
        ]
        indexes = [models.Index(fields=["account_id", "type", "created_at"], name="sandbox_resource_listing")]

    def __str__(self) -> str:
        return f"Sandbox {self.type} {self.resource_id} of account {self.account_id}"
