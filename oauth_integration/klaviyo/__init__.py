"""The only package that talks HTTP: Klaviyo's OAuth endpoints and API.

``client`` (``KlaviyoClient``) is what the services call; ``transport`` holds ``send``, the
one way every request goes out (it checks the path), the pooled sessions and the retry
policy; ``answers`` turns Klaviyo's answers into values and exceptions. Nothing else in the
project imports ``requests``.
"""

from oauth_integration.klaviyo.answers import account_id_and_name, page_cursor
from oauth_integration.klaviyo.client import JSON_API, KlaviyoClient, TokenGrant, client
from oauth_integration.klaviyo.transport import (
    BearerAuth,
    KlaviyoAdapter,
    KlaviyoRetry,
    KlaviyoSession,
    build_retry,
    check_path,
    close_sessions,
    oauth_session,
    send,
    shared_session,
)

__all__ = [
    "JSON_API",
    "BearerAuth",
    "KlaviyoAdapter",
    "KlaviyoClient",
    "KlaviyoRetry",
    "KlaviyoSession",
    "TokenGrant",
    "account_id_and_name",
    "build_retry",
    "check_path",
    "client",
    "close_sessions",
    "oauth_session",
    "page_cursor",
    "send",
    "shared_session",
]
