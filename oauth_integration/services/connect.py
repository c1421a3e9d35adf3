"""Connecting and disconnecting a customer: the authorization code flow with PKCE, and revocation."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from oauth_integration import pkce, signals
from oauth_integration.conf import conf
from oauth_integration.exceptions import AuthorizationStateError, EncryptionKeyError, KlaviyoError, TokenDecryptionError
from oauth_integration.klaviyo import account_id_and_name
from oauth_integration.klaviyo import client as klaviyo
from oauth_integration.models import ConnectionEvent, OAuthToken
from oauth_integration.storage import pkce_storage, token_storage
from oauth_integration.validators import validate_customer_identifier

logger = logging.getLogger(__name__)
Event = ConnectionEvent.Kind


def list_connections(*, limit: int = 500) -> QuerySet[OAuthToken]:
    """The most recently connected customers first (at most ``limit``), tokens neither loaded nor decrypted."""
    return OAuthToken.objects.order_by("-connected_at", "customer_identifier").defer("access_token", "refresh_token")[
        :limit
    ]


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
    if pending.is_expired():
        pkce_storage.remove(state)
        raise AuthorizationStateError("This authorization link expired; start again.")
    if browser_binding is None or not secrets.compare_digest(
        pending.browser_binding_hash, pkce.digest(browser_binding)
    ):
        raise AuthorizationStateError("This authorization was started in a different browser session.")
    if not pkce_storage.remove(state):
        raise AuthorizationStateError("This authorization link is unknown or was already used.")

    customer = pending.customer_identifier
    grant = klaviyo.exchange_code(code=code, code_verifier=str(pending.code_verifier))
    account_id, account_name = _fetch_account(grant.access_token)
    previous = token_storage.save(customer, grant, account_id=account_id, account_name=account_name)

    account = f"Klaviyo account {account_name or '?'} ({account_id or 'unknown id'})"
    if previous is None:
        ConnectionEvent.objects.record(customer, Event.CONNECTED, account)
    else:
        ConnectionEvent.objects.record(customer, Event.RECONNECTED, f"{account}; was {previous.status}")
        if previous.klaviyo_account_id and account_id and previous.klaviyo_account_id != account_id:
            ConnectionEvent.objects.record(
                customer, Event.ACCOUNT_CHANGED, f"from {previous.klaviyo_account_id} to {account_id}"
            )
    logger.info("Customer %s connected %s", customer, account, extra={"customer_identifier": customer})
    signals.send_after_commit(
        signals.connected, customer_identifier=customer, klaviyo_account_id=account_id, reconnected=previous is not None
    )
    return Connected(customer, account_id, account_name, reconnected=previous is not None)


def _fetch_account(access_token: str) -> tuple[str, str]:
    """Best effort: the connected account's id and name (needs ``accounts:read``)."""
    try:
        body = klaviyo.get("/api/accounts", access_token=access_token)
    except KlaviyoError as exc:
        logger.warning("Could not read the Klaviyo account after connecting: %s", str(exc))
        return "", ""
    return account_id_and_name(body)


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
    connection = token_storage.retrieve(customer_identifier)
    try:
        refresh_token, failure = connection.refresh_token, ""
    except (TokenDecryptionError, EncryptionKeyError) as exc:
        refresh_token, failure = None, f"the stored token cannot be decrypted ({type(exc).__name__})"
    if refresh_token:
        try:
            klaviyo.revoke(refresh_token=str(refresh_token))
        except KlaviyoError as exc:
            failure = str(exc)
            logger.warning(
                "Revoking the token of %s at Klaviyo failed: %s",
                customer_identifier,
                str(exc),
                extra={"customer_identifier": customer_identifier},
            )
    if failure:
        ConnectionEvent.objects.record(customer_identifier, Event.REVOKE_FAILED, f"not revoked at Klaviyo: {failure}")
    token_storage.remove(customer_identifier)
    if refresh_token and not failure:
        detail = "revoked at Klaviyo"
    else:
        detail = "removed locally only" if failure else "no token to revoke at Klaviyo; removed locally"
    ConnectionEvent.objects.record(customer_identifier, Event.REVOKED, detail)
    signals.send_after_commit(
        signals.disconnected,
        customer_identifier=customer_identifier,
        klaviyo_account_id=connection.klaviyo_account_id,
    )
    return Disconnected(customer_identifier, revoked_at_klaviyo=bool(refresh_token) and not failure, failure=failure)
