"""Token and PKCE storage: the seed's ``save`` / ``retrieve`` / ``remove`` interfaces.

Services depend on the ``TokenStorage`` and ``PkceStorage`` protocols; the Django ORM
implementations below are the ones wired in. Values cross this boundary as frozen
dataclasses whose secrets are hidden from ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from oauth_integration.exceptions import AuthorizationStateError, TokenNotFound
from oauth_integration.klaviyo import TokenGrant
from oauth_integration.models import ConnectionEvent, ConnectionStatus, OAuthToken, PkceCode
from oauth_integration.pkce import digest


@dataclass(frozen=True, slots=True)
class Connection:
    """A customer's stored connection, tokens decrypted."""

    customer_identifier: str
    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None
    scopes: str
    status: str
    failure_reason: str
    version: int
    klaviyo_account_id: str
    connected_at: datetime
    last_refreshed_at: datetime | None

    def expires_within(self, margin: timedelta, *, now: datetime | None = None) -> bool:
        """True when the access token is missing or expires within ``margin``."""
        if self.expires_at is None or not self.access_token:
            return True
        return self.expires_at - margin <= (now or timezone.now())

    @property
    def last_used_at(self) -> datetime:
        """When the refresh token was last exchanged (or first granted)."""
        return self.last_refreshed_at or self.connected_at


@dataclass(frozen=True, slots=True)
class PendingAuthorization:
    customer_identifier: str
    code_verifier: str = field(repr=False)
    browser_binding_hash: str = field(repr=False)
    expires_at: datetime


class TokenStorage(Protocol):
    def save(
        self, customer_identifier: str, grant: TokenGrant, *, account_id: str, account_name: str
    ) -> Connection | None:
        """Store a fresh authorization (insert or replace); return the previous connection, if any."""

    def retrieve(self, customer_identifier: str) -> Connection:
        """Raise TokenNotFound when the customer has no stored connection."""

    def remove(self, customer_identifier: str) -> None:
        """Forget the customer's tokens; the connection stays listed as revoked, with its history."""

    def claim_refresh(self, customer_identifier: str, *, version: int, owner: str, until: datetime) -> bool:
        """Take the refresh lease if nobody holds a live one and ``version`` is still current."""

    def save_refreshed(self, customer_identifier: str, grant: TokenGrant) -> None:
        """Store refreshed tokens (keeping the old refresh token if none came back); release the lease."""

    def release_refresh(self, customer_identifier: str, *, owner: str) -> None:
        """Give the lease back if ``owner`` still holds it."""

    def record_failure(self, customer_identifier: str, *, reason: str, detail: str, broken: bool) -> None:
        """Note the last failure; ``broken`` marks the connection as needing reauthorization."""

    def clear_failure(self, customer_identifier: str) -> None:
        """Forget the last failure after a successful call."""

    def record_event(self, customer_identifier: str, kind: str, detail: str = "") -> None:
        """Append to the customer's connection history."""


class PkceStorage(Protocol):
    def save(
        self, state: str, *, customer_identifier: str, code_verifier: str, browser_binding: str, expires_at: datetime
    ) -> None:
        """Remember a pending authorization under (a hash of) its state."""

    def retrieve(self, state: str) -> PendingAuthorization:
        """Raise AuthorizationStateError when no pending authorization has this state."""

    def remove(self, state: str) -> bool:
        """Delete it; True only for the one caller that actually removed it (consume once)."""


def _connection(row: OAuthToken, *, with_secrets: bool = True) -> Connection:
    return Connection(
        customer_identifier=row.customer_identifier,
        access_token=row.access_token if with_secrets else None,
        refresh_token=row.refresh_token if with_secrets else None,
        expires_at=row.expires_at,
        scopes=row.scopes,
        status=row.status,
        failure_reason=row.failure_reason,
        version=row.version,
        klaviyo_account_id=row.klaviyo_account_id,
        connected_at=row.connected_at,
        last_refreshed_at=row.last_refreshed_at,
    )


class DjangoTokenStorage:
    """TokenStorage on the ``OAuthToken`` model."""

    def save(
        self, customer_identifier: str, grant: TokenGrant, *, account_id: str, account_name: str
    ) -> Connection | None:
        now = timezone.now()
        with transaction.atomic():
            row = OAuthToken.objects.select_for_update().filter(customer_identifier=customer_identifier).first()
            previous = _connection(row, with_secrets=False) if row is not None else None
            if row is None:
                row = OAuthToken(customer_identifier=customer_identifier)
            row.access_token = grant.access_token
            row.refresh_token = grant.refresh_token
            row.expires_at = grant.expires_at
            row.scopes = grant.scopes
            row.klaviyo_account_id = account_id
            row.klaviyo_account_name = account_name
            row.status = ConnectionStatus.ACTIVE
            row.failure_reason = row.failure_detail = ""
            row.failed_at = None
            row.connected_at = now
            row.last_refreshed_at = None
            row.version = (row.version or 0) + 1
            row.refresh_lease_owner = ""
            row.refresh_lease_until = None
            row.save()
        return previous

    def retrieve(self, customer_identifier: str) -> Connection:
        # get(), not filter().first(): the identifier is unique, and first()'s ORDER BY
        # costs about a sixth of this hot query's CPU (it runs on every call to Klaviyo).
        try:
            row = OAuthToken.objects.get(customer_identifier=customer_identifier)
        except OAuthToken.DoesNotExist:
            raise TokenNotFound(customer_identifier) from None
        return _connection(row)

    def remove(self, customer_identifier: str) -> None:
        OAuthToken.objects.filter(customer_identifier=customer_identifier).update(
            access_token=None,
            refresh_token=None,
            expires_at=None,
            status=ConnectionStatus.REVOKED,
            version=F("version") + 1,
            refresh_lease_owner="",
            refresh_lease_until=None,
        )

    def claim_refresh(self, customer_identifier: str, *, version: int, owner: str, until: datetime) -> bool:
        now = timezone.now()
        claimed = (
            OAuthToken.objects.filter(
                customer_identifier=customer_identifier, version=version, status=ConnectionStatus.ACTIVE
            )
            .filter(Q(refresh_lease_until__isnull=True) | Q(refresh_lease_until__lt=now))
            .update(refresh_lease_owner=owner, refresh_lease_until=until)
        )
        return claimed == 1

    def save_refreshed(self, customer_identifier: str, grant: TokenGrant) -> None:
        values: dict[str, object] = {
            "access_token": grant.access_token,
            "expires_at": grant.expires_at,
            "last_refreshed_at": timezone.now(),
            "failure_reason": "",
            "failure_detail": "",
            "failed_at": None,
            "version": F("version") + 1,
            "refresh_lease_owner": "",
            "refresh_lease_until": None,
        }
        if grant.refresh_token:  # always persist the refresh token that comes back
            values["refresh_token"] = grant.refresh_token
        if grant.scopes:
            values["scopes"] = grant.scopes
        OAuthToken.objects.filter(customer_identifier=customer_identifier, status=ConnectionStatus.ACTIVE).update(
            **values
        )

    def release_refresh(self, customer_identifier: str, *, owner: str) -> None:
        OAuthToken.objects.filter(customer_identifier=customer_identifier, refresh_lease_owner=owner).update(
            refresh_lease_owner="", refresh_lease_until=None
        )

    def record_failure(self, customer_identifier: str, *, reason: str, detail: str, broken: bool) -> None:
        values: dict[str, object] = {
            "failure_reason": reason,
            "failure_detail": detail[:255],
            "failed_at": timezone.now(),
        }
        if broken:
            values["status"] = ConnectionStatus.NEEDS_REAUTHORIZATION
        OAuthToken.objects.filter(customer_identifier=customer_identifier).update(**values)

    def clear_failure(self, customer_identifier: str) -> None:
        OAuthToken.objects.filter(customer_identifier=customer_identifier).exclude(failure_reason="").update(
            failure_reason="", failure_detail="", failed_at=None
        )

    def record_event(self, customer_identifier: str, kind: str, detail: str = "") -> None:
        ConnectionEvent.objects.create(customer_identifier=customer_identifier, kind=kind, detail=detail[:255])


class DjangoPkceStorage:
    """PkceStorage on the ``PkceCode`` model; only a SHA-256 of the state is stored."""

    def save(
        self, state: str, *, customer_identifier: str, code_verifier: str, browser_binding: str, expires_at: datetime
    ) -> None:
        PkceCode.objects.create(
            state_hash=digest(state),
            customer_identifier=customer_identifier,
            code_verifier=code_verifier,
            browser_binding_hash=digest(browser_binding),
            expires_at=expires_at,
        )

    def retrieve(self, state: str) -> PendingAuthorization:
        row = PkceCode.objects.filter(state_hash=digest(state)).first()
        if row is None:
            raise AuthorizationStateError("This authorization link is unknown or was already used.")
        return PendingAuthorization(
            customer_identifier=row.customer_identifier,
            code_verifier=row.code_verifier,
            browser_binding_hash=row.browser_binding_hash,
            expires_at=row.expires_at,
        )

    def remove(self, state: str) -> bool:
        deleted, _ = PkceCode.objects.filter(state_hash=digest(state)).delete()
        return deleted == 1

    def purge_expired(self, *, now: datetime) -> int:
        deleted, _ = PkceCode.objects.filter(expires_at__lte=now).delete()
        return deleted
