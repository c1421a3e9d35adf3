"""Typed, lazy view of this app's settings, with every default defined here once.

The app reads each ``KLAVIYO_*`` and ``TOKEN_ENCRYPTION_KEY*`` name from
``django.conf.settings``; a name that is missing, ``None`` or empty takes its default
below (``SETTINGS``: ``oauth_integration.declared`` reads and checks them, and the example
site reads the environment by the same declaration). Every property re-reads on access, so
``override_settings`` and pytest-django's ``settings`` fixture just work, and nothing is
read at import time. Malformed values are reported by the system checks (``checks.py``);
the properties fall back to the default.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from oauth_integration.declared import DeclaredSettings

DEFAULTS: dict[str, Any] = {
    "KLAVIYO_CLIENT_ID": "",
    "KLAVIYO_CLIENT_SECRET": "",
    "KLAVIYO_SANDBOX": False,
    "KLAVIYO_OPEN_ACCESS": False,
    "KLAVIYO_SCOPES": "accounts:read profiles:read",
    "KLAVIYO_REDIRECT_URL": "",
    "KLAVIYO_AUTHORIZE_URL": "https://www.klaviyo.com/oauth/authorize",
    "KLAVIYO_BASE_URL": "https://a.klaviyo.com",
    "KLAVIYO_REVISION": "2026-07-15",
    "KLAVIYO_HTTP_TIMEOUT": 10.0,
    "KLAVIYO_REFRESH_MARGIN_SECONDS": 60,
    "KLAVIYO_MAX_RETRIES": 2,
    "KLAVIYO_RETRY_MAX_WAIT": 10.0,
    "KLAVIYO_REFRESH_FAILURE_COOLDOWN": 5.0,
    "KLAVIYO_REFRESH_WAIT_SECONDS": 15.0,
    "KLAVIYO_KEEP_ALIVE_UNUSED_DAYS": 75,
    "KLAVIYO_KEEP_ALIVE_EXPIRING_WITHIN": 0,
    "METRICS_TOKEN": "",
    "KLAVIYO_START_LINK_MAX_AGE": 600,
    "KLAVIYO_RETURN_URL": "",
    "KLAVIYO_RETURN_URL_HOSTS": (),
    "KLAVIYO_INSTALL_CUSTOMERS": "",
    "KLAVIYO_MAX_PENDING_PER_BROWSER": 5,
    "KLAVIYO_MAX_PENDING_PER_LINK": 3,
    "KLAVIYO_EVENT_RETENTION_DAYS": 365,
    "TOKEN_ENCRYPTION_KEY": "",
    "TOKEN_ENCRYPTION_KEY_FALLBACKS": (),
    "REQUEST_ID_FROM_PROXY": False,
}

# Numeric settings: (type, smallest, largest allowed value or None). The checks report anything else.
NUMBERS: dict[str, tuple[type[int] | type[float], float, float | None]] = {
    "KLAVIYO_HTTP_TIMEOUT": (float, 0.1, None),
    "KLAVIYO_REFRESH_MARGIN_SECONDS": (int, 0, None),
    "KLAVIYO_MAX_RETRIES": (int, 0, None),
    "KLAVIYO_RETRY_MAX_WAIT": (float, 0, None),
    "KLAVIYO_REFRESH_FAILURE_COOLDOWN": (float, 0, None),
    "KLAVIYO_REFRESH_WAIT_SECONDS": (float, 0, None),
    "KLAVIYO_START_LINK_MAX_AGE": (int, 1, None),
    "KLAVIYO_KEEP_ALIVE_UNUSED_DAYS": (int, 1, None),
    "KLAVIYO_KEEP_ALIVE_EXPIRING_WITHIN": (int, 0, None),
    "KLAVIYO_MAX_PENDING_PER_BROWSER": (int, 1, None),
    "KLAVIYO_MAX_PENDING_PER_LINK": (int, 1, None),
    "KLAVIYO_EVENT_RETENTION_DAYS": (int, 1, None),
}

# A number of the wrong type or out of range takes its default (the checks report it).
SETTINGS = DeclaredSettings(DEFAULTS, NUMBERS)
setting = SETTINGS.value
_number = SETTINGS.number


def _names(value: object) -> tuple[str, ...]:
    """A comma-separated string or a sequence, as a tuple of non-empty, stripped names."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(item).strip() for item in items if str(item).strip())  # type: ignore[union-attr]


class _Conf:
    @property
    def client_id(self) -> str:
        return str(setting("KLAVIYO_CLIENT_ID"))

    @property
    def client_secret(self) -> str:
        return str(setting("KLAVIYO_CLIENT_SECRET"))

    @property
    def sandbox(self) -> bool:
        """True when the built-in Klaviyo imitation stands in for Klaviyo."""
        return bool(setting("KLAVIYO_SANDBOX"))

    @property
    def open_access(self) -> bool:
        """Anyone, logged in or not, may view connections and connect customers (with unsigned
        /start links): KLAVIYO_OPEN_ACCESS, honoured only while DEBUG is on. Sandbox mode alone
        relaxes nothing."""
        return bool(setting("KLAVIYO_OPEN_ACCESS")) and self.debug

    @property
    def scopes(self) -> str:
        return " ".join(str(setting("KLAVIYO_SCOPES")).split())

    @property
    def required_scopes(self) -> tuple[str, ...]:
        """The scopes every connection should have been granted (KLAVIYO_SCOPES, one by one)."""
        return tuple(self.scopes.split())

    @property
    def redirect_url(self) -> str:
        return str(setting("KLAVIYO_REDIRECT_URL"))

    @property
    def authorize_url(self) -> str:
        """Klaviyo's consent page as configured (see ``authorize_url_for`` for sandbox mode)."""
        return str(setting("KLAVIYO_AUTHORIZE_URL"))

    def authorize_url_for(self, redirect_uri: str) -> str:
        """The consent page for an authorization that comes back to ``redirect_uri``.

        In sandbox mode without KLAVIYO_AUTHORIZE_URL: the sandbox's own page
        (``reverse("klaviyo_sandbox:authorize")``) on the site of ``redirect_uri``, which is
        the request's host and port unless KLAVIYO_REDIRECT_URL says otherwise.
        """
        if not self._sandbox_derives("KLAVIYO_AUTHORIZE_URL"):
            return self.authorize_url
        return _origin(redirect_uri) + reverse("klaviyo_sandbox:authorize")

    @property
    def base_url(self) -> str:
        """Host for /oauth/token, /oauth/revoke and /api/..., without a trailing slash."""
        return self.base_url_for()

    def base_url_for(self, redirect_uri: str = "") -> str:
        """KLAVIYO_BASE_URL, without a trailing slash. In sandbox mode without it: the sandbox's
        root (from ``reverse()``) on the site of ``redirect_uri`` (the code exchange passes the
        authorization's), else of KLAVIYO_REDIRECT_URL, else of the latest redirect URI the
        sandbox issued a code for: the site a browser last connected through."""
        if not self._sandbox_derives("KLAVIYO_BASE_URL"):
            return str(setting("KLAVIYO_BASE_URL")).rstrip("/")
        site = redirect_uri or self.redirect_url or _latest_sandbox_redirect_uri()
        return _origin(site) + reverse("klaviyo_sandbox:token").removesuffix("/oauth/token")

    def _sandbox_derives(self, name: str) -> bool:
        """In sandbox mode an unset KLAVIYO_AUTHORIZE_URL or KLAVIYO_BASE_URL is worked out (no port to copy)."""
        return self.sandbox and getattr(settings, name, None) in (None, "")

    @property
    def revision(self) -> str:
        return str(setting("KLAVIYO_REVISION"))

    @property
    def http_timeout(self) -> float:
        """Seconds allowed for connecting and for each read, on every Klaviyo call."""
        return float(_number("KLAVIYO_HTTP_TIMEOUT"))

    @property
    def refresh_margin(self) -> timedelta:
        """Refresh before an API call when the access token expires within this window."""
        return timedelta(seconds=_number("KLAVIYO_REFRESH_MARGIN_SECONDS"))

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt for 429/503/504/524 and connection failures."""
        return int(_number("KLAVIYO_MAX_RETRIES"))

    @property
    def retry_max_wait(self) -> float:
        """Upper bound, in seconds, on the total time spent sleeping between retries."""
        return float(_number("KLAVIYO_RETRY_MAX_WAIT"))

    @property
    def refresh_failure_cooldown(self) -> timedelta:
        """After a failed refresh, callers fail fast for this long instead of hammering Klaviyo."""
        return timedelta(seconds=_number("KLAVIYO_REFRESH_FAILURE_COOLDOWN"))

    @property
    def refresh_wait(self) -> float:
        """The longest a call waits for another worker's refresh before answering 503."""
        return float(_number("KLAVIYO_REFRESH_WAIT_SECONDS"))

    @property
    def start_link_max_age(self) -> int:
        """Seconds a signed /start link stays valid."""
        return int(_number("KLAVIYO_START_LINK_MAX_AGE"))

    @property
    def keep_alive_unused(self) -> timedelta:
        """refresh_tokens refreshes refresh tokens unused this long (Klaviyo drops them after 90 days)."""
        return timedelta(days=min(89, _number("KLAVIYO_KEEP_ALIVE_UNUSED_DAYS")))

    @property
    def keep_alive_expiring_within(self) -> timedelta:
        """refresh_tokens also pre-refreshes connections in use expiring this soon (0: never, the default)."""
        return timedelta(seconds=_number("KLAVIYO_KEEP_ALIVE_EXPIRING_WITHIN"))

    @property
    def return_url(self) -> str:
        """Where the browser goes after connecting when its link names no return URL ("": our own page)."""
        return str(setting("KLAVIYO_RETURN_URL"))

    @property
    def return_url_hosts(self) -> tuple[str, ...]:
        """Hosts (with a port unless the default) besides this site's own that return URLs may name."""
        return _names(setting("KLAVIYO_RETURN_URL_HOSTS"))

    @property
    def install_customers(self) -> str:
        """Dotted path of the host's function (user) -> customer identifiers that user may connect,
        for installs that start in Klaviyo (/install); "": /install is off."""
        return str(setting("KLAVIYO_INSTALL_CUSTOMERS"))

    @property
    def max_pending_per_browser(self) -> int:
        """Pending authorizations one browser session keeps; starting another drops the oldest."""
        return int(_number("KLAVIYO_MAX_PENDING_PER_BROWSER"))

    @property
    def max_pending_per_link(self) -> int:
        """Pending authorizations one /start link keeps; starting another drops the oldest."""
        return int(_number("KLAVIYO_MAX_PENDING_PER_LINK"))

    @property
    def event_retention(self) -> timedelta:
        """How long connection history is kept (``purge_expired`` deletes older events)."""
        return timedelta(days=_number("KLAVIYO_EVENT_RETENTION_DAYS"))

    @property
    def https(self) -> bool:
        """The site is served over HTTPS (secure cookies or the HTTPS redirect are on)."""
        return bool(
            getattr(settings, "SESSION_COOKIE_SECURE", False) or getattr(settings, "SECURE_SSL_REDIRECT", False)
        )

    @property
    def pkce_lifetime(self) -> timedelta:
        """How long a pending authorization (state + verifier) can be completed."""
        return timedelta(minutes=10)

    @property
    def encryption_key(self) -> str:
        return str(setting("TOKEN_ENCRYPTION_KEY"))

    @property
    def encryption_key_fallbacks(self) -> tuple[str, ...]:
        return _names(setting("TOKEN_ENCRYPTION_KEY_FALLBACKS"))

    @property
    def metrics_token(self) -> str:
        """Bearer token that unlocks GET /metrics; empty: /metrics does not exist (404)."""
        return str(setting("METRICS_TOKEN"))

    @property
    def request_id_from_proxy(self) -> bool:
        """A proxy in front sets ``X-Request-ID`` on every request (replacing the client's):
        only then is the header's id adopted for the log lines."""
        return bool(setting("REQUEST_ID_FROM_PROXY"))

    @property
    def debug(self) -> bool:
        return bool(settings.DEBUG)

    @property
    def secret_key(self) -> str:
        return str(settings.SECRET_KEY)

    @property
    def secret_key_is_placeholder(self) -> bool:
        """SECRET_KEY is the public development placeholder: nothing may be derived from it."""
        return self.secret_key == getattr(settings, "INSECURE_DEV_SECRET_KEY", None)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _latest_sandbox_redirect_uri() -> str:
    """Outside a request, with no KLAVIYO_REDIRECT_URL: where the sandbox last sent a browser back."""
    try:
        codes = apps.get_model("klaviyo_sandbox", "AuthorizationCode")
    except LookupError:
        raise ImproperlyConfigured("KLAVIYO_SANDBOX is on but klaviyo_sandbox is not in INSTALLED_APPS.") from None
    uri = codes.objects.order_by("-created_at", "-pk").values_list("redirect_uri", flat=True).first()
    if not uri:
        raise ImproperlyConfigured(
            "KLAVIYO_BASE_URL is not set and no customer has connected through the sandbox yet, so the "
            "sandbox's address is unknown outside a request: set KLAVIYO_REDIRECT_URL (or KLAVIYO_BASE_URL)."
        )
    return str(uri)


conf = _Conf()
