"""Admission of an API call, as Klaviyo decides it: Bearer token, revision, rate limit, scopes.

Also where the sandbox counts API requests, injects the configured share of 503s and
delays, and gives an account its fixed profiles on first use.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from django.utils import timezone

from klaviyo_sandbox import counters, revisions
from klaviyo_sandbox.accounts import SandboxAccount, get_account
from klaviyo_sandbox.conf import conf
from klaviyo_sandbox.crypto import digest
from klaviyo_sandbox.exceptions import APIError, invalid
from klaviyo_sandbox.models import AccessToken, Grant
from klaviyo_sandbox.ratelimit import RateLimit, Tier, consume
from klaviyo_sandbox.store.seeding import ensure_seeded


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated side of an admitted API call."""

    account: SandboxAccount
    grant_id: int | None  # None: a client-side call (public key, no grant)
    scopes: frozenset[str]
    rate: RateLimit | None

    def rate_headers(self) -> dict[str, str]:
        return self.rate.headers() if self.rate is not None else {}


def admit(
    *, authorization: str | None, revision: str | None, operation: str, scopes: tuple[str, ...], tier: Tier
) -> Caller:
    """Authenticate, check the revision, count against the rate limit, check the scopes. Raises APIError."""
    grant = _grant_of(authorization)
    counters.count(counters.API_REQUESTS, grant_id=grant.pk if grant is not None else None)
    account = get_account(grant.account_id) if grant is not None else None
    if grant is None or account is None:
        unknown = "Incorrect authentication credentials."
        raise APIError(401, "authentication_failed", unknown, unknown, source={"pointer": "/data/"})
    revisions.check(revision)
    rate = consume(client_id=grant.client_id, account_id=account.id, operation=operation, tier=tier)
    caller = Caller(account=account, grant_id=grant.pk, scopes=frozenset(grant.scopes.split()), rate=rate)
    missing = [scope for scope in scopes if scope not in caller.scopes]
    if missing:
        title = "You do not have permission to perform this action."
        detail = f"This request needs the {' and '.join(missing)} scope, which the access token was not granted."
        raise APIError(403, "permission_denied", title, detail, headers=caller.rate_headers())
    # Fault injection for developers, not cryptography.
    if random.random() < conf.api_failure_rate:  # noqa: S311
        detail = "The sandbox failed this call on purpose (KLAVIYO_SANDBOX_API_FAILURE_RATE)."
        raise APIError(503, "service_unavailable", "Service unavailable.", detail, headers=caller.rate_headers())
    ensure_seeded(account.id)
    if conf.api_delay:
        time.sleep(conf.api_delay)
    return caller


def admit_client(*, company_id: str | None, revision: str | None, operation: str, tier: Tier) -> Caller:
    """Admit a call to a client-side endpoint (``/client/...``): the account is named by its public API key
    (``company_id``), which needs no scope. Raises APIError."""
    counters.count(counters.API_REQUESTS, grant_id=None)
    revisions.check(revision)
    account = get_account(company_id or "")
    if account is None:
        detail = "company_id must be the public API key (site ID) of a Klaviyo account."
        raise invalid(detail, parameter="company_id")
    rate = consume(client_id="public", account_id=account.id, operation=operation, tier=tier)
    ensure_seeded(account.id)
    if conf.api_delay:
        time.sleep(conf.api_delay)
    return Caller(account=account, grant_id=None, scopes=frozenset(), rate=rate)


def _grant_of(authorization: str | None) -> Grant | None:
    scheme, _, value = (authorization or "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    row = (
        AccessToken.objects.select_related("grant")
        .filter(token_hash=digest(value), expires_at__gt=timezone.now(), grant__revoked_at__isnull=True)
        .first()
    )
    return row.grant if row is not None else None
