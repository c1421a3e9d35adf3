"""Pending authorizations (state and PKCE verifier) and the start links already used.

The Node example's PKCE storage (``save`` / ``retrieve`` / ``remove``) is
``PkceCode.objects.store`` and ``PkceCode.objects.take`` here: retrieving and removing
are one step, so that a state is handed to one caller only.
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from oauth_integration.exceptions import AuthorizationStateError
from oauth_integration.fields import EncryptedQuerySet, EncryptedTextField
from oauth_integration.pkce import digest


class PkceCodeQuerySet(EncryptedQuerySet):
    def store(
        self,
        state: str,
        *,
        customer_identifier: str,
        code_verifier: str,
        browser_binding: str,
        expires_at: datetime,
        link_key: str = "",
        return_url: str = "",
        redirect_uri: str = "",
    ) -> PkceCode:
        """Remember a pending authorization under a hash of its state (only hashes are stored)."""
        return self.create(
            state_hash=digest(state),
            customer_identifier=customer_identifier,
            code_verifier=code_verifier,
            browser_binding_hash=digest(browser_binding),
            expires_at=expires_at,
            link_key=link_key,
            return_url=return_url,
            redirect_uri=redirect_uri,
        )

    def take(self, state: str) -> PkceCode:
        """Remove the pending authorization for ``state`` and return it, to the one caller whose
        DELETE removed it: of two callbacks racing with one state, the other gets
        AuthorizationStateError, as does an unknown or used state."""
        pending = self.filter(state_hash=digest(state)).first()
        if pending is None or self.filter(pk=pending.pk).delete()[0] != 1:
            raise AuthorizationStateError("This authorization link is unknown or was already used.")
        return pending

    def expired(self, *, now: datetime | None = None) -> PkceCodeQuerySet:
        return self.filter(expires_at__lte=now or timezone.now())

    def make_room(self, *, browser_binding_hash: str, link_key: str, per_browser: int, per_link: int) -> int:
        """Before one more is added: drop the oldest pending authorizations of this browser
        and of this link beyond their caps. Returns how many were dropped."""
        dropped = 0
        for rows, cap in (
            (self.filter(browser_binding_hash=browser_binding_hash), per_browser),
            (self.filter(link_key=link_key), per_link),
        ):
            stale = list(rows.order_by("-created_at", "-id").values_list("pk", flat=True)[cap - 1 :])
            if stale:
                dropped += self.filter(pk__in=stale).delete()[0]
        return dropped


class PkceCode(models.Model):
    """A pending authorization: consumed exactly once, within ten minutes."""

    state_hash = models.CharField(max_length=64, unique=True)
    customer_identifier = models.CharField(max_length=255, db_index=True)
    code_verifier = EncryptedTextField(bind_to="state_hash")
    browser_binding_hash = models.CharField(max_length=64, db_index=True)
    # The start link it came from (its id; "unsigned:<customer>" for an unsigned sandbox link).
    link_key = models.CharField(max_length=300, blank=True, default="", db_index=True)
    # Where the browser returns afterwards ("": KLAVIYO_RETURN_URL, or this site's own page).
    return_url = models.CharField(max_length=2048, blank=True, default="")
    # The redirect_uri sent to Klaviyo's authorize URL: the code exchange must send the same
    # ("" for rows made before it was stored: KLAVIYO_REDIRECT_URL).
    redirect_uri = models.CharField(max_length=2048, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    objects = PkceCodeQuerySet.as_manager()

    class Meta:
        verbose_name = "pending authorization"
        base_manager_name = "objects"

    def __str__(self) -> str:
        return f"Pending authorization for {self.customer_identifier}"

    def is_expired(self, *, now: datetime | None = None) -> bool:
        """True once this authorization can no longer be completed."""
        return self.expires_at <= (now or timezone.now())


class UsedStartLinkQuerySet(models.QuerySet):
    def use(self, link_id: str, *, expires_at: datetime) -> bool:
        """Record that the link was used; True for exactly one of concurrent callers."""
        try:
            with transaction.atomic():
                self.create(link_id=link_id, expires_at=expires_at)
        except IntegrityError:
            return False
        return True

    def expired(self, *, now: datetime | None = None) -> UsedStartLinkQuerySet:
        """Links past their expiry: they are refused as expired anyway, so the record can go."""
        return self.filter(expires_at__lte=now or timezone.now())


class UsedStartLink(models.Model):
    """A /start link that was used (single use). Kept until the link expires."""

    link_id = models.CharField(max_length=32, unique=True)
    used_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    objects = UsedStartLinkQuerySet.as_manager()

    class Meta:
        verbose_name = "used start link"

    def __str__(self) -> str:
        return f"Start link used at {self.used_at:%Y-%m-%d %H:%M:%S}"
