"""What a failure means for a connection: one reason per exception, recorded in one place.

Both the call path and the refresh path record failures through ``record_failure``, so
an exception type is classified once (``FAILURE_REASONS``) and every recorded failure
also lands in the connection's history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from oauth_integration.exceptions import (
    EncryptionKeyError,
    InvalidGrant,
    KlaviyoAPIError,
    KlaviyoForbidden,
    KlaviyoThrottled,
    KlaviyoUnavailable,
    TokenDecryptionError,
)
from oauth_integration.models import ConnectionEvent, FailureReason, OAuthToken, failure_values

logger = logging.getLogger(__name__)

# The most specific class listed for an exception wins (looked up along its MRO).
FAILURE_REASONS: dict[type[Exception], FailureReason] = {
    InvalidGrant: FailureReason.REVOKED,
    KlaviyoThrottled: FailureReason.THROTTLED,
    KlaviyoForbidden: FailureReason.MISSING_SCOPE,
    KlaviyoAPIError: FailureReason.KLAVIYO_ERROR,
    KlaviyoUnavailable: FailureReason.KLAVIYO_UNAVAILABLE,
    TokenDecryptionError: FailureReason.UNDECRYPTABLE,
    EncryptionKeyError: FailureReason.UNDECRYPTABLE,
}


# Answers about the request itself (bad input, unknown id, duplicate, conflict): the
# caller's to handle, not a sign that the connection is unwell.
REQUEST_ERRORS = frozenset({400, 404, 405, 409, 410, 422})


def is_connection_failure(exc: Exception) -> bool:
    """True unless ``exc`` is Klaviyo's answer about the request itself (``REQUEST_ERRORS``)."""
    return not (type(exc) is KlaviyoAPIError and exc.status in REQUEST_ERRORS)


def failure_reason(exc: Exception) -> FailureReason:
    """The connection-level meaning of ``exc``."""
    for cls in type(exc).__mro__:
        if cls in FAILURE_REASONS:
            return FAILURE_REASONS[cls]
    return FailureReason.KLAVIYO_ERROR


def record_failure(
    customer_identifier: str,
    *,
    reason: FailureReason,
    event: str,
    detail: str,
    broken: bool = False,
    write: Callable[..., None] | None = None,
) -> None:
    """Note the failure on the connection and in its history (and log it).

    ``write`` stores the failure's columns instead of a plain UPDATE of the row (the refresh
    path releases its lease in the same statement)."""
    values = failure_values(reason=reason, detail=detail, broken=broken)
    if write is None:
        OAuthToken.objects.of(customer_identifier).update(**values)
    else:
        write(**values)
    ConnectionEvent.objects.record(customer_identifier, event, f"{reason.label}: {detail}")
    logger.warning(
        "Klaviyo connection of %s%s: %s (%s)",
        customer_identifier,
        " needs reauthorization" if broken else "",
        detail,
        reason.label,
        extra={"customer_identifier": customer_identifier},
    )
