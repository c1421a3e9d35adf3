"""The sandbox's OAuth state. Codes and tokens are stored only as SHA-256 hex digests.

State lives in the database (not process memory) so that several server processes
and threads see the same codes, grants, tokens and rate-limit windows.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


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
    refresh_requests = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Fixed one-minute rate-limit window of the installation (Klaviyo limits per app per account).
    rate_window = models.BigIntegerField(default=0)
    rate_count = models.PositiveIntegerField(default=0)

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
