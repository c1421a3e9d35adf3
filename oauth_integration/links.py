"""Start links, what the host site hands out to connect a customer, and where the browser returns.

A start link is ``/start/<customer_identifier>?token=...``; the token is signed with
SECRET_KEY and carries a random link id, an expiry (KLAVIYO_START_LINK_MAX_AGE, ten
minutes by default), optionally the user it was made for and optionally a return URL.

* Opening a link (GET) changes nothing: it shows a page naming the customer, whose
  button POSTs (CSRF-protected). That POST uses the link up (its id is recorded) and
  only then sends the browser to Klaviyo. Link scanners that fetch links are harmless.
* A link made for a user (``build_start_link(customer, user=request.user)``) works only
  for that logged-in user.
* Outside sandbox mode ``/start`` accepts only these links; in sandbox mode an unsigned
  ``/start/<customer>`` still goes straight to the (imitation) consent page.

Return URLs are paths on this site, or URLs on a host in KLAVIYO_RETURN_URL_HOSTS (https
while HTTPS is on), checked with Django's ``url_has_allowed_host_and_scheme`` when a
link is made and again when the browser comes back.

This site's address is KLAVIYO_REDIRECT_URL's origin when that is set. When it is empty,
the redirect URL is the absolute URL of ``oauth_integration:authorize`` on the request
that starts an authorization (``callback_url``), and absolute start links need that
request too (``build_start_link(..., request=request)``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from oauth_integration.conf import conf
from oauth_integration.exceptions import InvalidReturnURL, InvalidStartLink, StartLinkUsed
from oauth_integration.models import UsedStartLink
from oauth_integration.validators import validate_customer_identifier

_SALT = "oauth_integration.start-link.v2"
# C0 controls, DEL and C1 controls: never part of a URL a browser should be sent to (and NUL
# cannot even be stored on PostgreSQL).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
RETURN_URL_MAX_LENGTH = 2048
# Query parameters added to the return URL: what happened, and for which customer.
STATUS_PARAMETER, CUSTOMER_PARAMETER = "klaviyo", "klaviyo_customer"


@dataclass(frozen=True, slots=True)
class StartLink:
    """A verified start link. ``link_id`` is empty for an unsigned (sandbox) link."""

    customer_identifier: str
    link_id: str = ""
    expires_at: datetime | None = None
    user_id: str = ""
    return_url: str = ""

    @property
    def key(self) -> str:
        """What pending authorizations are counted by, per link."""
        return self.link_id or f"unsigned:{self.customer_identifier}"

    def check_user(self, user: Any) -> None:
        """Raise InvalidStartLink when the link was made for a user other than ``user``."""
        if self.user_id and not (user.is_authenticated and str(user.pk) == self.user_id):
            raise InvalidStartLink("This link was made for another user. Ask the site that sent you for your own link.")


def build_start_link(
    customer_identifier: str,
    *,
    user: Any = None,
    next: str = "",
    absolute: bool = True,
    request: HttpRequest | None = None,
) -> str:
    """A single-use link that starts connecting ``customer_identifier``, valid KLAVIYO_START_LINK_MAX_AGE s.

    ``user``: only this logged-in user may use it (an anonymous user binds nothing).
    ``next``: where the browser returns afterwards (see ``validate_return_url``).
    Absolute links use the origin of KLAVIYO_REDIRECT_URL, where the callback lands, or,
    when that is empty, the origin of ``request``.
    Raises InvalidCustomerIdentifier or InvalidReturnURL; ImproperlyConfigured for an
    absolute link when neither KLAVIYO_REDIRECT_URL nor ``request`` gives this site's address.
    """
    validate_customer_identifier(customer_identifier)
    payload: dict[str, Any] = {
        "c": customer_identifier,
        "i": secrets.token_urlsafe(12),
        "e": int((timezone.now() + timedelta(seconds=conf.start_link_max_age)).timestamp()),
    }
    if user is not None and user.is_authenticated:
        payload["u"] = str(user.pk)
    if next:
        payload["n"] = validate_return_url(next)
    token = signing.dumps(payload, salt=_SALT, compress=False)
    path = f"{reverse('oauth_integration:start', args=[customer_identifier])}?{urlencode({'token': token})}"
    if not absolute:
        return path
    origin = urlsplit(callback_url(request))
    return f"{origin.scheme}://{origin.netloc}{path}"


def callback_url(request: HttpRequest | None = None) -> str:
    """The redirect URL sent to Klaviyo: KLAVIYO_REDIRECT_URL, else ``oauth_integration:authorize``
    on ``request``'s origin. Raises ImproperlyConfigured when neither is available."""
    if conf.redirect_url:
        return conf.redirect_url
    if request is None:
        raise ImproperlyConfigured(
            "KLAVIYO_REDIRECT_URL is not set, so this site's address is unknown outside a request: set it to "
            f"the https:// URL of {reverse('oauth_integration:authorize')} registered in Klaviyo "
            "(or, in code, pass request= or absolute=False to build_start_link)."
        )
    return request.build_absolute_uri(reverse("oauth_integration:authorize"))


def verify_start_link(customer_identifier: str, token: str | None) -> StartLink:
    """The link, if ``token`` was signed for this customer, has not expired and was not used.

    Raises InvalidStartLink (StartLinkUsed for a used one). Changes nothing.
    """
    if not token:
        raise InvalidStartLink("This link is not signed. Ask the site that sent you for a new one.")
    try:
        payload = signing.loads(token, salt=_SALT)
        link = StartLink(
            customer_identifier=str(payload["c"]),
            link_id=str(payload["i"]),
            expires_at=datetime.fromtimestamp(int(payload["e"]), tz=UTC),
            user_id=str(payload.get("u", "")),
            return_url=str(payload.get("n", "")),
        )
    except signing.BadSignature as exc:
        raise InvalidStartLink("This link is not valid (it was changed or truncated).") from exc
    except (AttributeError, TypeError, KeyError, ValueError, OverflowError, OSError) as exc:
        raise InvalidStartLink("This link is not valid.") from exc
    if link.expires_at is not None and link.expires_at <= timezone.now():
        raise InvalidStartLink("This link has expired. Ask the site that sent you for a new one.")
    if link.customer_identifier != customer_identifier:
        raise InvalidStartLink("This link was issued for a different customer.")
    if UsedStartLink.objects.filter(link_id=link.link_id).exists():
        raise StartLinkUsed("This link was already used. Ask the site that sent you for a new one.")
    return link


def return_url_allowed(url: str) -> bool:
    """A path on this site, or a URL on this site's host or a host in KLAVIYO_RETURN_URL_HOSTS.

    False for anything with control characters or that Python's URL parser refuses.
    """
    if not url or len(url) > RETURN_URL_MAX_LENGTH or _CONTROL_CHARACTERS.search(url):
        return False
    hosts = {host for host in (urlsplit(conf.redirect_url).netloc, *conf.return_url_hosts) if host}
    try:
        parts = urlsplit(url)
        if not parts.netloc and not parts.path.startswith("/"):
            return False  # "settings" or "javascript:..." : not a path on this site
        return url_has_allowed_host_and_scheme(url, allowed_hosts=hosts, require_https=conf.https)
    except ValueError:  # e.g. a netloc that changes under NFKC ("evil.com\uff03@app.example.com")
        return False


def validate_return_url(url: str) -> str:
    """Return ``url`` if the browser may be sent there; raise InvalidReturnURL."""
    if not return_url_allowed(url):
        raise InvalidReturnURL(
            "The return URL must be a path on this site (like /settings/klaviyo) or a URL on a host "
            "listed in KLAVIYO_RETURN_URL_HOSTS" + (", over https." if conf.https else ".")
        )
    return url


def return_to(url: str, *, status: str, customer_identifier: str) -> str:
    """``url`` (or KLAVIYO_RETURN_URL) with the outcome added, or "" when there is nowhere allowed to return to."""
    url = url or conf.return_url
    if not return_url_allowed(url):
        return ""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _STATUS_PARAMETERS]
    query += [(STATUS_PARAMETER, status), (CUSTOMER_PARAMETER, customer_identifier)]
    return urlunsplit(parts._replace(query=urlencode(query)))


_STATUS_PARAMETERS = frozenset({STATUS_PARAMETER, CUSTOMER_PARAMETER})
