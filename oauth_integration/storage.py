"""Token and PKCE storage: the seed's ``save`` / ``retrieve`` / ``remove`` adapter interfaces.

Services depend on the two small protocols; the Django ORM implementations below are
the ones wired in (``token_storage``, ``pkce_storage``). Everything else about stored
connections (the refresh lease, failures, listing) is on the model's QuerySet, where
Django developers look for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from oauth_integration.exceptions import AuthorizationStateError, TokenNotFound
from oauth_integration.klaviyo import TokenGrant
from oauth_integration.models import ConnectionStatus, OAuthToken, PkceCode
from oauth_integration.pkce import digest


class TokenStorage(Protocol):
    def save(
        self, customer_identifier: str, grant: TokenGrant, *, account_id: str, account_name: str
    ) -> OAuthToken | None:
        """Store a fresh authorization (insert or replace); return the row as it was before, if any."""

    def retrieve(self, customer_identifier: str) -> OAuthToken:
        """The customer's connection (secrets decrypt when read). Raises TokenNotFound."""

    def remove(self, customer_identifier: str) -> None:
        """Forget the customer's tokens; the connection stays listed as revoked, with its history."""


class PkceStorage(Protocol):
    def save(
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
    ) -> None:
        """Remember a pending authorization under (a hash of) its state."""

    def retrieve(self, state: str) -> PkceCode:
        """Raises AuthorizationStateError when no pending authorization has this state."""

    def remove(self, state: str) -> bool:
        """Delete it; True only for the one caller that actually removed it (consume once)."""


class DjangoTokenStorage:
    """TokenStorage on the ``OAuthToken`` model."""

    def save(
        self, customer_identifier: str, grant: TokenGrant, *, account_id: str, account_name: str
    ) -> OAuthToken | None:
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
        with transaction.atomic():
            previous = OAuthToken.objects.select_for_update().of(customer_identifier).first()
            if previous is None:
                OAuthToken.objects.create(customer_identifier=customer_identifier, version=1, **values)
            else:
                # A refresh in flight finds the version moved on and discards its tokens.
                OAuthToken.objects.of(customer_identifier).update(
                    customer_identifier=customer_identifier, version=F("version") + 1, **values
                )
        return previous

    def retrieve(self, customer_identifier: str) -> OAuthToken:
        connection = OAuthToken.objects.lookup(customer_identifier)
        if connection is None:
            raise TokenNotFound(customer_identifier)
        return connection

    def remove(self, customer_identifier: str) -> None:
        OAuthToken.objects.forget_tokens(customer_identifier)


class DjangoPkceStorage:
    """PkceStorage on the ``PkceCode`` model; only a SHA-256 of the state is stored."""

    def save(
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
    ) -> None:
        PkceCode.objects.create(
            state_hash=digest(state),
            customer_identifier=customer_identifier,
            code_verifier=code_verifier,
            browser_binding_hash=digest(browser_binding),
            expires_at=expires_at,
            link_key=link_key,
            return_url=return_url,
            redirect_uri=redirect_uri,
        )

    def retrieve(self, state: str) -> PkceCode:
        row = PkceCode.objects.filter(state_hash=digest(state)).first()
        if row is None:
            raise AuthorizationStateError("This authorization link is unknown or was already used.")
        return row

    def remove(self, state: str) -> bool:
        deleted, _ = PkceCode.objects.filter(state_hash=digest(state)).delete()
        return deleted == 1


token_storage: TokenStorage = DjangoTokenStorage()
pkce_storage: PkceStorage = DjangoPkceStorage()
