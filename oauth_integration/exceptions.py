"""Every error this app raises on purpose.

Messages carry customer identifiers, HTTP statuses and OAuth/JSON:API error codes,
never tokens, verifiers, secrets, keys or response bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class OAuthIntegrationError(Exception):
    """Base for every error this app raises deliberately."""


# --- configuration and storage -----------------------------------------------------------


class EncryptionKeyError(OAuthIntegrationError):
    """TOKEN_ENCRYPTION_KEY is missing or malformed."""


class TokenDecryptionError(OAuthIntegrationError):
    """Stored ciphertext could not be decrypted: unknown key, wrong key, tampered or moved."""


class InvalidCustomerIdentifier(OAuthIntegrationError):
    """A customer identifier is empty, too long or contains forbidden characters."""


class TokenNotFound(OAuthIntegrationError):
    """No Klaviyo connection is stored for this customer."""

    def __init__(self, customer_identifier: str) -> None:
        super().__init__(f"No Klaviyo connection for customer {customer_identifier!r}")
        self.customer_identifier = customer_identifier


class ReauthorizationRequired(OAuthIntegrationError):
    """The customer's connection is broken or revoked: they must go through /start again."""

    def __init__(self, customer_identifier: str, reason: str) -> None:
        super().__init__(f"Customer {customer_identifier!r} must reconnect Klaviyo ({reason})")
        self.customer_identifier = customer_identifier
        self.reason = reason


class RefreshInProgress(OAuthIntegrationError):
    """Another worker holds the refresh lease and did not finish in time."""

    retry_after = 5  # seconds a caller should wait before trying again

    def __init__(self, customer_identifier: str) -> None:
        super().__init__(f"A token refresh for customer {customer_identifier!r} is still in progress")
        self.customer_identifier = customer_identifier


class InvalidInput(OAuthIntegrationError):
    """A request parameter is malformed (the message names it)."""


class NotAuthenticated(OAuthIntegrationError):
    """The request needs a logged-in user."""


class PermissionMissing(OAuthIntegrationError):
    """The logged-in user lacks the permission the request needs."""


# --- the authorization flow --------------------------------------------------------------


class AuthorizationStateError(OAuthIntegrationError):
    """The callback's ``state`` is missing, unknown, expired, replayed or from another browser."""


class InvalidStartLink(OAuthIntegrationError):
    """A /start link is unsigned, tampered with or expired."""


# --- talking to Klaviyo ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KlaviyoErrorDetail:
    """One entry of a Klaviyo JSON:API ``errors[]`` array."""

    id: str = ""
    code: str = ""
    title: str = ""
    detail: str = ""
    source_pointer: str = ""  # e.g. "/data/attributes/email": the offending field of the body
    source_parameter: str = ""  # e.g. "filter": the offending query parameter
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> KlaviyoErrorDetail:
        source = entry.get("source") if isinstance(entry.get("source"), dict) else {}
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        return cls(
            id=str(entry.get("id") or ""),
            code=str(entry.get("code") or ""),
            title=str(entry.get("title") or ""),
            detail=str(entry.get("detail") or ""),
            source_pointer=str(source.get("pointer") or ""),
            source_parameter=str(source.get("parameter") or ""),
            meta=meta,
        )


class KlaviyoError(OAuthIntegrationError):
    """Base for failures of a call to Klaviyo."""


class KlaviyoUnavailable(KlaviyoError):
    """Klaviyo could not be reached or answered unusably (timeout, reset, 5xx, malformed body)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KlaviyoWriteUncertain(KlaviyoUnavailable):
    """A POST or PATCH got no usable answer (5xx, timeout, reset after sending): Klaviyo may or may
    not have applied it, so it was not retried. Check before sending it again."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{message}; the write may or may not have been applied", status=status)


class KlaviyoAPIError(KlaviyoError):
    """Klaviyo answered with an error status. ``errors`` holds every entry of its ``errors[]``
    (with the offending field in ``source_pointer`` / ``source_parameter``)."""

    def __init__(
        self,
        *,
        status: int,
        code: str | None,
        retry_after: int | None = None,
        errors: tuple[KlaviyoErrorDetail, ...] = (),
    ) -> None:
        super().__init__(f"Klaviyo returned HTTP {status} ({code or 'no error code'})")
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.errors = errors

    @property
    def duplicate_profile_id(self) -> str | None:
        """For a 409 ``duplicate_profile``: the id of the profile that already exists."""
        for error in self.errors:
            found = error.meta.get("duplicate_profile_id")
            if found:
                return str(found)
        return None


class KlaviyoUnauthorized(KlaviyoAPIError):
    """401: the access token was rejected."""


class KlaviyoForbidden(KlaviyoAPIError):
    """403 from the API: the connection lacks a scope the call needs."""


class MissingScope(KlaviyoForbidden):
    """403 for a call whose scope the customer never granted: add it to KLAVIYO_SCOPES and
    have the customer reconnect through /start."""

    def __init__(self, forbidden: KlaviyoForbidden, *, scopes: list[str], method: str, path: str) -> None:
        super().__init__(status=forbidden.status, code=forbidden.code, errors=forbidden.errors)
        self.scopes = tuple(scopes)
        named = " and ".join(scopes)
        self.args = (
            f"Klaviyo refused {method} {path}: the connection was not granted {named}; "
            "add it to KLAVIYO_SCOPES and have the customer reconnect",
        )


class KlaviyoThrottled(KlaviyoAPIError):
    """429 that outlasted the retry budget."""


class InvalidGrant(KlaviyoAPIError):
    """The token endpoint rejected the code or refresh token (``invalid_grant``)."""


class KlaviyoPagingError(KlaviyoUnavailable):
    """A walk over a collection's pages was stopped: ``links.next`` led back to a page already
    read (the pages would never end), or there were more than the walk's ``max_pages``."""


class KlaviyoPathRefused(ValueError):
    """A path that is not one of Klaviyo's was given for a request to Klaviyo: an API path must
    start with ``/api/`` and stay there (no ``//``, backslash, ``.``/``..`` segment, fragment or
    control character); the token and revoke endpoints are exact paths.

    Raised before a token is read or credentials are attached, and nothing is sent. It is a
    programming error in the calling code, not a condition of Klaviyo or of a customer, so it
    is deliberately not an ``OAuthIntegrationError``: a view lets it through as a server error.
    """

    def __init__(self, path: object, reason: str) -> None:
        shown = repr(path)
        super().__init__(f"Refused the Klaviyo path {shown[:120]}{'...' if len(shown) > 120 else ''}: {reason}")
        self.reason = reason


# --- connect links, return URLs and Klaviyo's answer on the consent page -----------------


class StartLinkUsed(InvalidStartLink):
    """A single-use /start link was already used."""


class InvalidReturnURL(InvalidInput):
    """A return URL is neither a path on this site nor a URL on an allowed host."""


class AuthorizationRefused(OAuthIntegrationError):
    """Klaviyo sent the browser back with an OAuth error code instead of an authorization code.

    The message is fixed per error code: Klaviyo's ``error_description`` (or whatever text
    a crafted link puts there) is logged, never shown.
    """

    MESSAGES = {
        "access_denied": "The Klaviyo account was not connected: access was denied.",
        "invalid_scope": "Klaviyo refused the requested permissions (scopes). Contact the site that sent you.",
        "invalid_request": "Klaviyo could not process the connection request. Start again from the site that sent you.",
        "unauthorized_client": "This app is not allowed to connect Klaviyo accounts. Contact the site that sent you.",
        "unsupported_response_type": "Klaviyo could not process the connection request. Contact the sender.",
        "server_error": "Klaviyo had a problem and did not connect the account. Try again later.",
        "temporarily_unavailable": "Klaviyo is temporarily unavailable. Try again in a few minutes.",
    }
    FALLBACK = "Klaviyo did not connect the account. Start again from the site that sent you."

    def __init__(self, error: str) -> None:
        super().__init__(self.MESSAGES.get(error, self.FALLBACK))
        self.error = error

    @classmethod
    def for_code(cls, error: str) -> AuthorizationRefused:
        """The exception for ``error``: a declined consent is its own kind."""
        return ConnectionDeclined(error) if error == "access_denied" else cls(error)


class ConnectionDeclined(AuthorizationRefused):
    """The customer declined on Klaviyo's consent page (``access_denied``)."""
