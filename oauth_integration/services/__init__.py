"""Use cases: what views, admin actions and management commands call, and nothing below them.

One module per use case:

* ``connect``: connect a customer (start link, authorization code + PKCE), decline, disconnect, list;
* ``calls``: call Klaviyo as a customer (refresh before expiry, one refresh-and-retry on 401);
* ``refresh``: single-flight refresh (its design note is at the top of that module);
* ``keep_alive``: ``refresh_tokens``' batch refresh of due connections;
* ``key_rotation``: re-encrypt and verify every stored secret;
* ``maintenance``: purge what expired (authorizations, used links, sessions, old history), database health;
* ``failures``: what a failure means for a connection, recorded in one place.

No database transaction is ever held open across a call to Klaviyo.
"""

from oauth_integration.services.calls import (
    AccessToken,
    Page,
    call_klaviyo,
    check_connection,
    fresh_access_token,
    get_profiles,
    get_profiles_json,
    iter_klaviyo,
    iter_pages,
)
from oauth_integration.services.connect import (
    Connected,
    Declined,
    Disconnected,
    begin_authorization,
    complete_authorization,
    decline_authorization,
    disconnect,
    list_connections,
    missing_scopes,
)
from oauth_integration.services.keep_alive import RefreshOutcome, RefreshReport, refresh_due_connections, refresh_if_due
from oauth_integration.services.key_rotation import KeyRotationReport, check_encryption, rotate_encryption_key
from oauth_integration.services.maintenance import (
    PurgeReport,
    database_is_up,
    purge_expired,
    purge_expired_authorizations,
)
from oauth_integration.services.refresh import refresh_connection

__all__ = [
    "AccessToken",
    "Connected",
    "Declined",
    "Disconnected",
    "KeyRotationReport",
    "Page",
    "PurgeReport",
    "RefreshOutcome",
    "RefreshReport",
    "begin_authorization",
    "call_klaviyo",
    "check_connection",
    "check_encryption",
    "complete_authorization",
    "database_is_up",
    "decline_authorization",
    "disconnect",
    "fresh_access_token",
    "get_profiles",
    "get_profiles_json",
    "iter_klaviyo",
    "iter_pages",
    "list_connections",
    "missing_scopes",
    "purge_expired",
    "purge_expired_authorizations",
    "refresh_connection",
    "refresh_due_connections",
    "refresh_if_due",
    "rotate_encryption_key",
]
