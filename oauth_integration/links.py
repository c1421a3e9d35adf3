"""Signed, expiring /start links: what the host site hands to a customer.

Outside DEBUG and sandbox mode, ``/start/<customer_identifier>`` only accepts a link made
by ``build_start_link`` (or ``manage.py start_link``), so nobody can start connecting a
Klaviyo account to somebody else's customer identifier.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from django.core import signing
from django.urls import reverse

from oauth_integration.conf import conf
from oauth_integration.exceptions import InvalidStartLink
from oauth_integration.validators import validate_customer_identifier

_SALT = "oauth_integration.start-link"


def build_start_link(customer_identifier: str, *, absolute: bool = True) -> str:
    """The URL that starts connecting ``customer_identifier`` (valid KLAVIYO_START_LINK_MAX_AGE s).

    Absolute links use the origin of KLAVIYO_REDIRECT_URL, where the callback lands.
    """
    validate_customer_identifier(customer_identifier)
    token = signing.dumps(customer_identifier, salt=_SALT, compress=False)
    path = f"{reverse('oauth_integration:start', args=[customer_identifier])}?{urlencode({'token': token})}"
    if not absolute:
        return path
    origin = urlsplit(conf.redirect_url)
    return f"{origin.scheme}://{origin.netloc}{path}"


def verify_start_link(customer_identifier: str, token: str | None) -> None:
    """Raise InvalidStartLink unless ``token`` was signed for this customer and has not expired."""
    if not token:
        raise InvalidStartLink("This link is not signed. Ask the site that sent you for a new one.")
    try:
        signed_for = signing.loads(token, salt=_SALT, max_age=conf.start_link_max_age)
    except signing.SignatureExpired as exc:
        raise InvalidStartLink("This link has expired. Ask the site that sent you for a new one.") from exc
    except signing.BadSignature as exc:
        raise InvalidStartLink("This link is not valid (it was changed or truncated).") from exc
    if signed_for != customer_identifier:
        raise InvalidStartLink("This link was issued for a different customer.")
