"""Who may do what: the app's two permissions, relaxed only by KLAVIYO_OPEN_ACCESS in DEBUG.

* ``oauth_integration.view_oauthtoken`` (Django's "view" permission on connections):
  list connections on the landing page and in the admin, read profiles at /profiles.
* ``oauth_integration.connect_customer``: make start links from the landing page and
  the admin.

Superusers hold every permission. With open access (``KLAVIYO_OPEN_ACCESS``, honoured only
while DEBUG is on: a development convenience) anyone may do both. Neither sandbox mode nor
DEBUG alone relaxes anything.
"""

from __future__ import annotations

from typing import Any

from oauth_integration.conf import conf
from oauth_integration.exceptions import NotAuthenticated, PermissionMissing

VIEW_CONNECTIONS = "oauth_integration.view_oauthtoken"
CONNECT_CUSTOMER = "oauth_integration.connect_customer"

_NAMES = {VIEW_CONNECTIONS: "view Klaviyo connections", CONNECT_CUSTOMER: "connect customers"}


def allowed(user: Any, permission: str) -> bool:
    """True when ``user`` holds ``permission`` (everyone does with open access, in DEBUG only)."""
    return conf.open_access or user.has_perm(permission)


def require(user: Any, *permissions: str) -> None:
    """Raise NotAuthenticated or PermissionMissing unless ``user`` holds one of ``permissions``."""
    if any(allowed(user, permission) for permission in permissions):
        return
    if not user.is_authenticated:
        raise NotAuthenticated("Log in to continue.")
    needed = " or ".join(_NAMES.get(permission, permission) for permission in permissions)
    raise PermissionMissing(f"Your account lacks the permission to {needed}.")
