"""The sandbox's use cases: consent, token grants, revocation and authenticated API reads.

Behaviour follows Klaviyo's as documented and observed: HTTP Basic client auth and
form bodies at /oauth/token and /oauth/revoke, PKCE S256 only, single-use codes, OAuth
JSON errors; Bearer auth, a required ``revision`` header, per-installation fixed-window
rate limits and JSON:API errors on /api/... Secrets are compared and stored only as
SHA-256 digests, and never logged.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import logging
import math
import random
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from klaviyo_sandbox.accounts import SandboxAccount, SandboxProfile, get_account, profiles_of
from klaviyo_sandbox.conf import conf
from klaviyo_sandbox.exceptions import APIError, OAuthError
from klaviyo_sandbox.models import AccessToken, AuthorizationCode, Grant

logger = logging.getLogger(__name__)

# RFC 7636 §4.1: the verifier's alphabet and length (Klaviyo: 'Invalid "code_verifier"').
CODE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# Klaviyo's revision header: YYYY-MM-DD, optionally with a suffix such as ".pre".
REVISION = re.compile(r"\d{4}-\d{2}-\d{2}(\.[a-z]+)?")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
RATE_WINDOW_SECONDS = 60
# Used codes and expired tokens are deleted this long after they stop mattering.
HOUSEKEEPING_DELAY = timedelta(days=1)


def digest(value: str) -> str:
    """SHA-256 hex digest: how codes and tokens are stored and looked up."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(verifier))) without padding."""
    raw = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _new_secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_urlsafe(32)}"


# --- the consent page --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated request to /oauth/authorize."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str
    code_challenge: str


def approve(*, request: AuthorizationRequest, account_id: str) -> str:
    """Issue a single-use code for ``account_id``; return the redirect back to the app.

    Raises ValueError for an unknown account.
    """
    if get_account(account_id) is None:
        raise ValueError("Unknown sandbox account")
    code = _new_secret("sbx_code_")
    now = timezone.now()
    AuthorizationCode.objects.filter(expires_at__lt=now - HOUSEKEEPING_DELAY).delete()
    AuthorizationCode.objects.create(
        code_hash=digest(code),
        client_id=request.client_id,
        redirect_uri=request.redirect_uri,
        scopes=" ".join(request.scopes),
        code_challenge=request.code_challenge,
        account_id=account_id,
        expires_at=now + conf.code_lifetime,
    )
    logger.info("Sandbox account %s granted %s", account_id, " ".join(request.scopes))
    return redirect_with(request.redirect_uri, {"code": code, "state": request.state})


def deny(*, request: AuthorizationRequest) -> str:
    """The redirect back to the app when the user declines (``error=access_denied``)."""
    return redirect_with(request.redirect_uri, {"error": "access_denied", "state": request.state})


def redirect_with(uri: str, params: dict[str, str]) -> str:
    """``uri`` with ``params`` added to its query string (existing parameters kept)."""
    parts = urlsplit(uri)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


# --- /oauth/token and /oauth/revoke ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A successful token response. Secrets never appear in ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    scope: str

    def as_json(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
        }


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

    refresh_token = _new_secret("sbx_rt_")
    grant = Grant.objects.create(
        client_id=client_id,
        account_id=record.account_id,
        scopes=record.scopes,
        refresh_token_hash=digest(refresh_token),
    )
    logger.info("Sandbox issued tokens for account %s", record.account_id)
    return _issue_access_token(grant, refresh_token)


def _refresh(*, client_id: str, refresh_token: str) -> IssuedTokens:
    if not refresh_token:
        raise OAuthError("invalid_request", "Missing parameter: refresh_token.")
    token_hash = digest(refresh_token)
    grant = Grant.objects.filter(refresh_token_hash=token_hash, revoked_at__isnull=True, client_id=client_id).first()
    if grant is None:
        raise OAuthError("invalid_grant", "The refresh token is invalid, revoked or was replaced.")

    Grant.objects.filter(pk=grant.pk).update(refresh_requests=F("refresh_requests") + 1)
    grant.refresh_from_db(fields=["refresh_requests"])
    if grant.refresh_requests <= conf.fail_refreshes:
        logger.info("Sandbox fails refresh %s of account %s on purpose", grant.refresh_requests, grant.account_id)
        if conf.refresh_failure == "invalid_grant":
            _revoke_grant(grant)  # as if the customer uninstalled the app: the connection is gone
            raise OAuthError("invalid_grant", "The refresh token was revoked (injected failure).")
        raise OAuthError("temporarily_unavailable", "Service unavailable (injected failure).", status=503)

    now = timezone.now()
    if conf.rotate_refresh_tokens:
        new_refresh_token = _new_secret("sbx_rt_")
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


def _issue_access_token(grant: Grant, refresh_token: str) -> IssuedTokens:
    access_token = _new_secret("sbx_at_")
    now = timezone.now()
    lifetime = conf.access_token_lifetime
    AccessToken.objects.filter(expires_at__lt=now - HOUSEKEEPING_DELAY).delete()
    AccessToken.objects.create(
        grant=grant, token_hash=digest(access_token), expires_at=now + timedelta(seconds=lifetime)
    )
    return IssuedTokens(access_token=access_token, refresh_token=refresh_token, expires_in=lifetime, scope=grant.scopes)


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


# --- /api/... ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Where a connection stands in its current one-minute window."""

    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": f"{self.limit}, {self.limit};w={RATE_WINDOW_SECONDS}",
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated side of an API call."""

    account: SandboxAccount
    scopes: frozenset[str]
    rate: RateLimit | None


@dataclass(frozen=True, slots=True)
class ProfilePage:
    profiles: tuple[SandboxProfile, ...]
    next_cursor: str | None
    prev_cursor: str | None


@dataclass(frozen=True, slots=True)
class ProfilesResult:
    caller: Caller
    page: ProfilePage


def get_account_of_caller(*, authorization: str | None, revision: str | None) -> Caller:
    """Authorize a GET /api/accounts call (needs ``accounts:read``). Raises APIError."""
    return authorize_api_call(authorization=authorization, revision=revision, scope="accounts:read")


def get_profiles(
    *, authorization: str | None, revision: str | None, page_size: str | None, cursor: str | None
) -> ProfilesResult:
    """Authorize a GET /api/profiles call and select its page. Raises APIError."""
    caller = authorize_api_call(authorization=authorization, revision=revision, scope="profiles:read")
    try:
        page = profile_page(caller.account.id, page_size=page_size, cursor=cursor)
    except APIError as exc:
        if caller.rate is not None:
            exc.headers.update(caller.rate.headers())
        raise
    return ProfilesResult(caller=caller, page=page)


def authorize_api_call(*, authorization: str | None, revision: str | None, scope: str) -> Caller:
    """Authenticate the bearer token, check the revision header, the rate limit and the scope.

    Also injects the configured share of 503s. Raises APIError.
    """
    grant = _authenticate(authorization)
    account = get_account(grant.account_id)
    if account is None:
        raise _unauthenticated()
    if not revision:
        raise APIError(
            status=400,
            code="invalid",
            title="Invalid input.",
            detail="The revision header is required (e.g. revision: 2026-07-15).",
            source={"parameter": "revision"},
        )
    if not REVISION.fullmatch(revision):
        raise APIError(
            status=400,
            code="invalid",
            title="Invalid input.",
            detail="The revision header must look like YYYY-MM-DD.",
            source={"parameter": "revision"},
        )
    rate = _consume_rate_limit(grant.pk)
    headers = rate.headers() if rate is not None else {}
    scopes = frozenset(grant.scopes.split())
    if scope not in scopes:
        raise APIError(
            status=403,
            code="permission_denied",
            title="You do not have permission to perform this action.",
            detail=f"This request needs the {scope} scope, which the access token was not granted.",
            headers=headers,
        )
    # Fault injection for developers, not cryptography.
    if random.random() < conf.api_failure_rate:  # noqa: S311
        raise APIError(
            status=503,
            code="service_unavailable",
            title="Service unavailable.",
            detail="The sandbox failed this call on purpose (KLAVIYO_SANDBOX_API_FAILURE_RATE).",
            headers=headers,
        )
    return Caller(account=account, scopes=scopes, rate=rate)


def _unauthenticated() -> APIError:
    return APIError(
        status=401,
        code="authentication_failed",
        title="Incorrect authentication credentials.",
        detail="Incorrect authentication credentials.",
        source={"pointer": "/data/"},
    )


def _authenticate(authorization: str | None) -> Grant:
    scheme, _, value = (authorization or "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise _unauthenticated()
    row = (
        AccessToken.objects.select_related("grant")
        .filter(token_hash=digest(value), expires_at__gt=timezone.now(), grant__revoked_at__isnull=True)
        .first()
    )
    if row is None:
        raise _unauthenticated()
    return row.grant


def _consume_rate_limit(grant_id: int) -> RateLimit | None:
    """Count this call in the installation's fixed one-minute window; raise APIError 429 past the limit."""
    limit = conf.rate_limit
    if not limit:
        return None
    now = timezone.now().timestamp()
    window = int(now // RATE_WINDOW_SECONDS)
    reset = max(1, math.ceil((window + 1) * RATE_WINDOW_SECONDS - now))
    with transaction.atomic():
        grant = Grant.objects.select_for_update().only("rate_window", "rate_count").get(pk=grant_id)
        if grant.rate_window != window:
            grant.rate_window, grant.rate_count = window, 0
        grant.rate_count += 1
        grant.save(update_fields=["rate_window", "rate_count"])
    if grant.rate_count > limit:
        unit = "second" if reset == 1 else "seconds"
        raise APIError(
            status=429,
            code="throttled",
            title="Request was throttled.",
            detail=f"Request was throttled. Expected available in {reset} {unit}.",
            source={"pointer": "/data"},
            headers={"Retry-After": str(reset)},
        )
    return RateLimit(limit=limit, remaining=max(0, limit - grant.rate_count), reset=reset)


def _page_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise APIError(
            status=400,
            code="invalid",
            title="Invalid input.",
            detail=f"page[size] must be an integer between 1 and {MAX_PAGE_SIZE}.",
            source={"parameter": "page[size]"},
        )
    return size


def encode_cursor(direction: str, profile_id: str) -> str:
    """An opaque cursor, in the style of Klaviyo's (base64 of ``next::id::<id>``)."""
    return base64.urlsafe_b64encode(f"{direction}::id::{profile_id}".encode()).rstrip(b"=").decode("ascii")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    invalid = APIError(
        status=400,
        code="invalid",
        title="Invalid input.",
        detail="page[cursor] is not a valid cursor.",
        source={"parameter": "page[cursor]"},
    )
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise invalid from exc
    direction, _, pivot = decoded.partition("::id::")
    if direction not in ("next", "prev") or not pivot:
        raise invalid
    return direction, pivot


def profile_page(account_id: str, *, page_size: str | None, cursor: str | None) -> ProfilePage:
    """One page of the account's profiles, in id order, with keyset cursors. Raises APIError (400)."""
    size = _page_size(page_size)
    profiles = profiles_of(account_id)
    ids = [profile.id for profile in profiles]
    if cursor:
        direction, pivot = _decode_cursor(cursor)
        if direction == "next":
            start = bisect.bisect_right(ids, pivot)
            end = start + size
        else:
            end = bisect.bisect_left(ids, pivot)
            start = max(0, end - size)
    else:
        start, end = 0, size
    page = profiles[start:end]
    has_next = bool(page) and start + len(page) < len(profiles)
    has_prev = bool(page) and start > 0
    return ProfilePage(
        profiles=page,
        next_cursor=encode_cursor("next", page[-1].id) if has_next else None,
        prev_cursor=encode_cursor("prev", page[0].id) if has_prev else None,
    )
