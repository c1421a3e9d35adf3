"""The sandbox's OAuth use cases: token grants, revocation, and tokens issued without a browser.

Behaviour follows Klaviyo's as documented and observed: HTTP Basic client auth and form
bodies at /oauth/token and /oauth/revoke, PKCE S256 only, single-use codes, OAuth JSON
errors. Secrets are compared and stored only as SHA-256 digests, and never logged.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from klaviyo_sandbox import counters
from klaviyo_sandbox.accounts import get_account
from klaviyo_sandbox.conf import conf
from klaviyo_sandbox.consent import HOUSEKEEPING_DELAY
from klaviyo_sandbox.crypto import digest, new_secret, s256
from klaviyo_sandbox.exceptions import OAuthError
from klaviyo_sandbox.models import AccessToken, AuthorizationCode, Grant
from klaviyo_sandbox.scopes import KNOWN_SCOPES

logger = logging.getLogger(__name__)

# RFC 7636 §4.1: the verifier's alphabet and length (Klaviyo: 'Invalid "code_verifier"').
CODE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A successful token response, and the grant it belongs to. Secrets never appear in ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    scope: str
    grant_id: int

    def as_json(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
        }


def issue_tokens(
    *,
    account_id: str,
    scopes: str | Iterable[str],
    access_token: str | None = None,
    refresh_token: str | None = None,
    expires_in: int | None = None,
) -> IssuedTokens:
    """Connect the app (``KLAVIYO_CLIENT_ID``) to a sandbox account without a browser.

    As if the account's owner had allowed ``scopes`` on the consent page and the app had
    exchanged the code: a new grant whose tokens are the ones given (random ones when
    None), the access token valid for ``expires_in`` seconds (default
    ``KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME``). Raises ValueError for an unknown account,
    an unknown scope, a token already in use or a lifetime below one second.
    """
    if get_account(account_id) is None:
        raise ValueError(f"Unknown sandbox account {account_id!r}")
    wanted = tuple(dict.fromkeys(scopes.split() if isinstance(scopes, str) else scopes))
    unknown = sorted(set(wanted) - KNOWN_SCOPES)
    if not wanted or unknown:
        raise ValueError(f"Scopes must be known Klaviyo scopes; unknown: {', '.join(unknown) or '(none given)'}")
    if expires_in is not None and expires_in < 1:
        raise ValueError("expires_in must be at least one second")
    refresh_token = refresh_token or new_secret("sbx_rt_")
    try:
        with transaction.atomic():
            grant = Grant.objects.create(
                client_id=conf.client_id,
                account_id=account_id,
                scopes=" ".join(wanted),
                refresh_token_hash=digest(refresh_token),
            )
            issued = _issue_access_token(grant, refresh_token, access_token=access_token, lifetime=expires_in)
    except IntegrityError as exc:
        raise ValueError("That access or refresh token is already in use") from exc
    logger.info("Sandbox issued tokens for account %s without consent page", account_id)
    return issued


def authenticate_client(authorization: str | None) -> str:
    """The client id from an HTTP Basic ``Authorization`` header. Raises OAuthError (401 invalid_client)."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "Client authentication with HTTP Basic is required.", status=401)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_client", "Malformed HTTP Basic credentials.", status=401) from exc
    client_id, separator, client_secret = decoded.partition(":")
    id_matches = secrets.compare_digest(client_id.encode(), conf.client_id.encode())
    secret_matches = secrets.compare_digest(client_secret.encode(), conf.client_secret.encode())
    if not (separator and conf.client_id and id_matches and secret_matches):
        raise OAuthError("invalid_client", "Unknown client or wrong client secret.", status=401)
    return client_id


def token(*, authorization: str | None, form: Mapping[str, str]) -> IssuedTokens:
    """Answer a token request (authorization_code or refresh_token grant). Raises OAuthError."""
    client_id = authenticate_client(authorization)
    grant_type = form.get("grant_type", "")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required.")
    if grant_type == "authorization_code":
        return _exchange_code(
            client_id=client_id,
            code=form.get("code", ""),
            code_verifier=form.get("code_verifier", ""),
            redirect_uri=form.get("redirect_uri", ""),
        )
    if grant_type == "refresh_token":
        return _refresh(client_id=client_id, refresh_token=form.get("refresh_token", ""))
    raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code or refresh_token.")


def _exchange_code(*, client_id: str, code: str, code_verifier: str, redirect_uri: str) -> IssuedTokens:
    missing = [name for name, value in (("code", code), ("code_verifier", code_verifier)) if not value]
    if not redirect_uri:
        missing.append("redirect_uri")
    if missing:
        raise OAuthError("invalid_request", f"Missing parameter: {', '.join(missing)}.")
    now = timezone.now()
    code_hash = digest(code)
    # Consume first, in one conditional UPDATE: of concurrent exchanges exactly one wins,
    # and a failed attempt (wrong verifier, say) burns the code too.
    consumed = AuthorizationCode.objects.filter(code_hash=code_hash, used_at__isnull=True, expires_at__gt=now).update(
        used_at=now
    )
    if consumed != 1:
        raise OAuthError("invalid_grant", "The authorization code is invalid, expired or already used.")
    record = AuthorizationCode.objects.get(code_hash=code_hash)
    if record.client_id != client_id:
        raise OAuthError("invalid_grant", "The authorization code was issued to another client.")
    if record.redirect_uri != redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request.")
    if not CODE_VERIFIER.fullmatch(code_verifier):
        raise OAuthError("invalid_grant", 'Invalid "code_verifier".')
    if not secrets.compare_digest(s256(code_verifier), record.code_challenge):
        raise OAuthError("invalid_grant", "Code challenge failed.")

    refresh_token = new_secret("sbx_rt_")
    grant = Grant.objects.create(
        client_id=client_id,
        account_id=record.account_id,
        scopes=record.scopes,
        refresh_token_hash=digest(refresh_token),
    )
    logger.info("Sandbox issued tokens for account %s", record.account_id)
    return _issue_access_token(grant, refresh_token)


def _refresh(*, client_id: str, refresh_token: str) -> IssuedTokens:
    token_hash = digest(refresh_token)
    grant = None
    if refresh_token:
        grant = Grant.objects.filter(
            refresh_token_hash=token_hash, revoked_at__isnull=True, client_id=client_id
        ).first()
    counters.count(counters.REFRESHES, grant_id=grant.pk if grant is not None else None)
    if conf.refresh_delay:
        time.sleep(conf.refresh_delay)  # widens the window in which racing callers would refresh too
    if not refresh_token:
        raise OAuthError("invalid_request", "Missing parameter: refresh_token.")
    if grant is None:
        raise OAuthError("invalid_grant", "The refresh token is invalid, revoked or was replaced.")

    grant.refresh_from_db(fields=["refresh_requests"])
    if grant.refresh_requests <= conf.fail_refreshes:
        logger.info("Sandbox fails refresh %s of account %s on purpose", grant.refresh_requests, grant.account_id)
        if conf.refresh_failure == "invalid_grant":
            _revoke_grant(grant)  # as if the customer uninstalled the app: the connection is gone
            raise OAuthError("invalid_grant", "The refresh token was revoked (injected failure).")
        raise OAuthError("temporarily_unavailable", "Service unavailable (injected failure).", status=503)

    now = timezone.now()
    if conf.rotate_refresh_tokens:
        new_refresh_token = new_secret("sbx_rt_")
        # Conditional on the old hash: of two concurrent refreshes with one token, one wins.
        rotated = Grant.objects.filter(pk=grant.pk, refresh_token_hash=token_hash, revoked_at__isnull=True).update(
            refresh_token_hash=digest(new_refresh_token), last_refreshed_at=now
        )
        if rotated != 1:
            raise OAuthError("invalid_grant", "The refresh token is invalid, revoked or was replaced.")
        refresh_token = new_refresh_token
    else:
        Grant.objects.filter(pk=grant.pk).update(last_refreshed_at=now)
    logger.info("Sandbox refreshed tokens for account %s", grant.account_id)
    return _issue_access_token(grant, refresh_token)


def _issue_access_token(
    grant: Grant, refresh_token: str, *, access_token: str | None = None, lifetime: int | None = None
) -> IssuedTokens:
    access_token = access_token or new_secret("sbx_at_")
    now = timezone.now()
    lifetime = lifetime or conf.access_token_lifetime
    AccessToken.objects.filter(expires_at__lt=now - HOUSEKEEPING_DELAY).delete()
    AccessToken.objects.create(
        grant=grant, token_hash=digest(access_token), expires_at=now + timedelta(seconds=lifetime)
    )
    return IssuedTokens(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=lifetime,
        scope=grant.scopes,
        grant_id=grant.pk,
    )


def revoke(*, authorization: str | None, form: Mapping[str, str]) -> None:
    """Revoke a refresh token with every access token of its grant (or a single access token).

    Unknown tokens are not an error (RFC 7009 §2.2). Raises OAuthError.
    """
    client_id = authenticate_client(authorization)
    value = form.get("token", "")
    if not value:
        raise OAuthError("invalid_request", "Missing parameter: token.")
    token_hash = digest(value)
    with transaction.atomic():
        grant = Grant.objects.filter(refresh_token_hash=token_hash, client_id=client_id).first()
        if grant is not None:
            _revoke_grant(grant)
            return
        AccessToken.objects.filter(token_hash=token_hash, grant__client_id=client_id).delete()


def _revoke_grant(grant: Grant) -> None:
    with transaction.atomic():
        Grant.objects.filter(pk=grant.pk).update(revoked_at=timezone.now())
        AccessToken.objects.filter(grant=grant).delete()
    logger.info("Sandbox revoked the grant of account %s", grant.account_id)


def add_profiles_to_segment(*, account_id: str, segment_id: str, profile_ids: Iterable[str]) -> None:
    """Make profiles members of a segment. Klaviyo computes a segment's members from its definition; the
    sandbox does not, so its members are the profiles added here (``GET /segments/{id}/profiles``, and the
    segment in ``GET /profiles/{id}/segments``). Raises APIError 404 for an unknown segment."""
    from klaviyo_sandbox.store import generic

    row = generic.get(account_id, "segment", segment_id)
    current = row.relationships.get("profiles") or []
    added = [{"type": "profile", "id": profile_id} for profile_id in profile_ids]
    generic.update(row, attributes={}, relationships={"profiles": [*current, *(a for a in added if a not in current)]})
