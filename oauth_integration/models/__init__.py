"""Connections, pending authorizations and their history: data, and the queries over it.

``connections`` (``OAuthToken`` and the refresh lease), ``pending`` (``PkceCode``,
``UsedStartLink``) and ``history`` (``ConnectionEvent``). Nothing here talks HTTP.
"""

from oauth_integration.models.connections import (
    REFRESH_TOKEN_IDLE_LIFETIME,
    ConnectionStatus,
    FailureReason,
    OAuthToken,
    OAuthTokenQuerySet,
    failure_values,
)
from oauth_integration.models.history import ConnectionEvent, ConnectionEventQuerySet
from oauth_integration.models.pending import PkceCode, PkceCodeQuerySet, UsedStartLink, UsedStartLinkQuerySet

__all__ = [
    "REFRESH_TOKEN_IDLE_LIFETIME",
    "ConnectionEvent",
    "ConnectionEventQuerySet",
    "ConnectionStatus",
    "FailureReason",
    "OAuthToken",
    "OAuthTokenQuerySet",
    "PkceCode",
    "PkceCodeQuerySet",
    "UsedStartLink",
    "UsedStartLinkQuerySet",
    "failure_values",
]
