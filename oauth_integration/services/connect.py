"""Connecting and disconnecting a customer: the authorization code flow with PKCE, and revocation."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from oauth_integration import pkce, signals
from oauth_integration.conf import conf
from oauth_integration.exceptions import (
    AuthorizationStateError,
    EncryptionKeyError,
    InvalidStartLink,
    KlaviyoError,
    StartLinkUsed,
    TokenDecryptionError,
)
from oauth_integration.klaviyo import account_id_and_name
from oauth_integration.klaviyo import client as klaviyo
from oauth_integration.links import StartLink, callback_url, return_to
from oauth_integration.models import ConnectionEvent, OAuthToken, PkceCode, UsedStartLink
from oauth_integration.services.refresh import revoke_quietly
from oauth_integration.validators import validate_customer_identifier

logger = logging.getLogger(__name__)
Event = ConnectionEvent.Kind


def list_connections(*, limit: int = 500) -> QuerySet[OAuthToken]:
    """The most recently connected customers first (at most ``limit``), tokens neither loaded nor decrypted."""
    return OAuthToken.objects.order_by("-connected_at", "customer_identifier").defer("access_token", "refresh_token")[
        :limit
    ]


def missing_scopes(*, customer_identifier: str) -> list[str]:
    """The scopes in KLAVIYO_SCOPES that this customer has not granted (every one when not connected).

    A host product shows a "reconnect Klaviyo" prompt (a fresh start link) while this is not empty.
    """
    connection = OAuthToken.objects.of(customer_identifier).active().only("scopes").first()
    granted = connection if connection is not None else OAuthToken(scopes="")
    return granted.missing_scopes(conf.required_scopes)


def begin_authorization(
    *, customer_identifier: str, browser_binding: str, link: StartLink | None = None, redirect_uri: str = ""
) -> str:
    """Start connecting a customer: use the start link up, remember a PKCE verifier under a random state.

    ``browser_binding`` is a secret kept in the browser's session; the callback must
    present the same one. ``link``: the verified start link (None: an unsigned one, as in
    sandbox mode); a signed link is used once only. ``redirect_uri``: where Klaviyo sends
    the browser back (``links.callback_url(request)``; "": KLAVIYO_REDIRECT_URL), kept
    with the pending authorization so that the code exchange sends the same. This browser
    and this link keep a bounded number of pending authorizations: the oldest beyond the
    caps are dropped. Returns Klaviyo's authorize URL to redirect the browser to.
    Raises StartLinkUsed; ImproperlyConfigured when there is no redirect URL at all.
    """
    validate_customer_identifier(customer_identifier)
    redirect_uri = redirect_uri or callback_url()
    link = link or StartLink(customer_identifier)
    if link.customer_identifier != customer_identifier:
        raise InvalidStartLink("This link was issued for a different customer.")
    verifier = pkce.new_code_verifier()
    state = pkce.new_state()
    with transaction.atomic():
        if link.link_id and not UsedStartLink.objects.use(link.link_id, expires_at=link.expires_at or timezone.now()):
            raise StartLinkUsed("This link was already used. Ask the site that sent you for a new one.")
        PkceCode.objects.make_room(
            browser_binding_hash=pkce.digest(browser_binding),
            link_key=link.key,
            per_browser=conf.max_pending_per_browser,
            per_link=conf.max_pending_per_link,
        )
        PkceCode.objects.store(
            state,
            customer_identifier=customer_identifier,
            code_verifier=verifier,
            browser_binding=browser_binding,
            expires_at=timezone.now() + conf.pkce_lifetime,
            link_key=link.key,
            return_url=link.return_url,
            redirect_uri=redirect_uri,
        )
    return klaviyo.authorize_url(state=state, code_challenge=pkce.code_challenge(verifier), redirect_uri=redirect_uri)


@dataclass(frozen=True)
class Connected:
    customer_identifier: str
    klaviyo_account_id: str
    klaviyo_account_name: str
    reconnected: bool
    return_url: str = ""  # where to send the browser, with the outcome added ("": show our own page)


def complete_authorization(*, state: str, code: str, browser_binding: str | None) -> Connected:
    """Finish connecting: consume the state (once), exchange the code, store the tokens.

    A reconnect that replaces a refresh token revokes the previous one at Klaviyo (best
    effort; the outcome is recorded in the history). Raises AuthorizationStateError
    (unknown, expired, replayed or foreign state: nothing stored), InvalidGrant (code
    rejected) or KlaviyoError (nothing stored).
    """
    pending = _take_pending(state, browser_binding)
    customer = pending.customer_identifier
    grant = klaviyo.exchange_code(
        code=code, code_verifier=str(pending.code_verifier), redirect_uri=pending.redirect_uri or callback_url()
    )
    account_id, account_name = _fetch_account(grant.access_token)
    previous = OAuthToken.objects.store_grant(customer, grant, account_id=account_id, account_name=account_name)

    account = f"Klaviyo account {account_name or '?'} ({account_id or 'unknown id'})"
    if previous is None:
        ConnectionEvent.objects.record(customer, Event.CONNECTED, account)
    else:
        ConnectionEvent.objects.record(customer, Event.RECONNECTED, f"{account}; was {previous.status}")
        if previous.klaviyo_account_id and account_id and previous.klaviyo_account_id != account_id:
            ConnectionEvent.objects.record(
                customer, Event.ACCOUNT_CHANGED, f"from {previous.klaviyo_account_id} to {account_id}"
            )
        _revoke_replaced(previous, grant.refresh_token)
    logger.info("Customer %s connected %s", customer, account, extra={"customer_identifier": customer})
    signals.send_after_commit(
        signals.connected,
        customer_identifier=customer,
        klaviyo_account_id=account_id,
        klaviyo_account_name=account_name,
        scopes=grant.scopes,
        reconnected=previous is not None,
    )
    return_url = return_to(pending.return_url, status="connected", customer_identifier=customer)
    return Connected(customer, account_id, account_name, reconnected=previous is not None, return_url=return_url)


@dataclass(frozen=True)
class Declined:
    customer_identifier: str  # "" when the state named no pending authorization of this browser
    return_url: str  # where to send the browser, with the outcome added ("": show our own page)


def decline_authorization(*, state: str, error: str, error_description: str, browser_binding: str | None) -> Declined:
    """Klaviyo sent the browser back with an OAuth ``error`` instead of a code.

    The pending authorization of this browser with this state (if any) is ended, and its
    return URL given back. ``error_description`` is only logged (it is whatever text the
    link carried). Stores nothing.
    """
    try:
        pending: PkceCode | None = _take_pending(state, browser_binding) if state else None
    except AuthorizationStateError:
        pending = None
    customer = pending.customer_identifier if pending is not None else ""
    logger.info(
        "Klaviyo answered %s to the authorization of %s: %r", error, customer or "an unknown state", error_description
    )
    if pending is None:
        return Declined("", "")
    status = "declined" if error == "access_denied" else "failed"
    return Declined(customer, return_to(pending.return_url, status=status, customer_identifier=customer))


def _take_pending(state: str, browser_binding: str | None) -> PkceCode:
    """The pending authorization for ``state``, begun in this browser, removed so it is used once.

    Raises AuthorizationStateError (unknown, expired, replayed or from another browser). It is
    removed in every case: a state presented by another browser may carry a code meant for
    that browser, which the browser that started it must never be able to redeem.
    """
    pending = PkceCode.objects.take(state)
    if pending.is_expired():
        raise AuthorizationStateError("This authorization link expired; start again.")
    if browser_binding is None or not secrets.compare_digest(
        pending.browser_binding_hash, pkce.digest(browser_binding)
    ):
        raise AuthorizationStateError(
            "This authorization was started in a different browser session, so it was cancelled. "
            "Start again in this browser, and do not share this page's address with anyone."
        )
    return pending


def _revoke_replaced(previous: OAuthToken, new_refresh_token: str | None) -> None:
    """Revoke the refresh token a reconnect replaced, so that no old grant stays live."""
    old, failure = _readable_refresh_token(previous)
    if failure:
        ConnectionEvent.objects.record(
            previous.customer_identifier, Event.REVOKE_FAILED, f"previous refresh token not revoked: {failure}"
        )
    elif old and old != new_refresh_token:
        revoke_quietly(previous.customer_identifier, old, what="previous refresh token")


def _readable_refresh_token(connection: OAuthToken) -> tuple[str, str]:
    """(the stored refresh token or "", why it could not be read or "")."""
    try:
        return str(connection.refresh_token or ""), ""
    except (TokenDecryptionError, EncryptionKeyError) as exc:
        return "", f"the stored token cannot be decrypted ({type(exc).__name__})"


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
    connection = OAuthToken.objects.retrieve(customer_identifier)
    refresh_token, failure = _readable_refresh_token(connection)
    if refresh_token:
        try:
            klaviyo.revoke(refresh_token=refresh_token)
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
    OAuthToken.objects.forget_tokens(customer_identifier)
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
