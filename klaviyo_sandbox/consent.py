"""The consent page's use cases: a single-use code for the chosen account, or a refusal."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.utils import timezone

from klaviyo_sandbox.accounts import get_account
from klaviyo_sandbox.conf import conf
from klaviyo_sandbox.crypto import digest, new_secret
from klaviyo_sandbox.models import AuthorizationCode

logger = logging.getLogger(__name__)

# Used codes are deleted this long after they stop mattering.
HOUSEKEEPING_DELAY = timedelta(days=1)


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
    code = new_secret("sbx_code_")
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
