"""Typed, lazy view of the sandbox's settings, with every default defined here once.

Each ``KLAVIYO_SANDBOX_*`` name is read from ``django.conf.settings`` on access (so
pytest-django's ``settings`` fixture and ``override_settings`` apply at once, also to a
live server's threads); a name that is missing, ``None`` or empty takes its default below.
``checks.py`` reports every value of the wrong type or out of range; the properties fall
back to the default for a wrong type and clamp a number into its range.

Settings (all optional):

- ``KLAVIYO_SANDBOX_APP_NAME``: the app's name on the consent page.
- ``KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME``: seconds an access token is valid (``expires_in``).
- ``KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS``: a new refresh token on every refresh, the old one dead.
- ``KLAVIYO_SANDBOX_RATE_LIMIT_SCALE``: multiplies every rate limit (Klaviyo's tiers); 0 turns limiting off.
- ``KLAVIYO_SANDBOX_API_FAILURE_RATE``: share (0 to 1) of API calls answered with a 503.
- ``KLAVIYO_SANDBOX_FAIL_REFRESHES``: the first N refreshes of every grant fail (a huge N: all of them).
- ``KLAVIYO_SANDBOX_REFRESH_FAILURE``: how they fail: ``503`` or ``invalid_grant`` (grant revoked).
- ``KLAVIYO_SANDBOX_REFRESH_DELAY``: seconds the token endpoint waits before answering a refresh.
- ``KLAVIYO_SANDBOX_API_DELAY``: seconds every admitted API call waits before it is answered.
- ``KLAVIYO_SANDBOX_JOB_DELAY``: seconds a job (``POST /api/...-jobs``) takes to complete.

What the sandbox served is counted in the database: see ``klaviyo_sandbox.counters``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.urls import NoReverseMatch, reverse

from oauth_integration.declared import DeclaredSettings

REFRESH_FAILURES = ("503", "invalid_grant")

DEFAULTS: dict[str, Any] = {
    "KLAVIYO_SANDBOX_APP_NAME": "Klaviyo Connections (development app)",
    "KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME": 3600,
    "KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS": False,
    # Ten times Klaviyo's own limits: several customers of one sandbox account can connect
    # (each reads /api/accounts, 1/s at Klaviyo) without being throttled. 1 = Klaviyo's limits.
    "KLAVIYO_SANDBOX_RATE_LIMIT_SCALE": 10.0,
    "KLAVIYO_SANDBOX_API_FAILURE_RATE": 0.0,
    "KLAVIYO_SANDBOX_FAIL_REFRESHES": 0,
    "KLAVIYO_SANDBOX_REFRESH_FAILURE": "503",
    "KLAVIYO_SANDBOX_REFRESH_DELAY": 0.0,
    "KLAVIYO_SANDBOX_API_DELAY": 0.0,
    "KLAVIYO_SANDBOX_JOB_DELAY": 1.0,
}

# Numeric settings: (type, smallest, largest allowed value; None is unbounded).
NUMBERS: dict[str, tuple[type[int] | type[float], float, float | None]] = {
    "KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME": (int, 1, None),
    "KLAVIYO_SANDBOX_RATE_LIMIT_SCALE": (float, 0, None),
    "KLAVIYO_SANDBOX_API_FAILURE_RATE": (float, 0, 1),
    "KLAVIYO_SANDBOX_FAIL_REFRESHES": (int, 0, None),
    "KLAVIYO_SANDBOX_REFRESH_DELAY": (float, 0, 60),
    "KLAVIYO_SANDBOX_API_DELAY": (float, 0, 60),
    "KLAVIYO_SANDBOX_JOB_DELAY": (float, 0, 3600),
}
CHOICES: dict[str, tuple[str, ...]] = {"KLAVIYO_SANDBOX_REFRESH_FAILURE": REFRESH_FAILURES}


# A number of the wrong type takes its default; one out of range, the nearest bound.
SETTINGS = DeclaredSettings(DEFAULTS, NUMBERS, CHOICES, clamp=True)
setting = SETTINGS.value
problem = SETTINGS.problem
_number = SETTINGS.number
_choice = SETTINGS.choice
_flag = SETTINGS.flag


class _SandboxConf:
    @property
    def enabled(self) -> bool:
        """The sandbox's routes exist only while this is true (the project's ``KLAVIYO_SANDBOX``)."""
        return bool(getattr(settings, "KLAVIYO_SANDBOX", False))

    # --- the registered app the sandbox recognises (the integration's own settings) ------

    @property
    def client_id(self) -> str:
        return str(getattr(settings, "KLAVIYO_CLIENT_ID", "") or "")

    @property
    def client_secret(self) -> str:
        return str(getattr(settings, "KLAVIYO_CLIENT_SECRET", "") or "")

    @property
    def redirect_url(self) -> str:
        """The one redirect URI registered for the app ("": see ``redirect_uri_registered``)."""
        return str(getattr(settings, "KLAVIYO_REDIRECT_URL", "") or "")

    def redirect_uri_registered(self, uri: str) -> bool:
        """``uri`` is the app's registered redirect URI: KLAVIYO_REDIRECT_URL exactly, or, when that
        is empty (the integration then derives it from each request), the integration's
        ``oauth_integration:authorize`` URL on any host this site serves (ALLOWED_HOSTS), at any port."""
        if self.redirect_url:
            return uri == self.redirect_url
        try:
            callback = reverse("oauth_integration:authorize")
        except NoReverseMatch:
            return False
        parts = urlsplit(uri)
        host, _port = split_domain_port(parts.netloc)  # as Django checks a request's Host header
        allowed_hosts = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
        return (
            parts.scheme in ("http", "https")
            and bool(host)
            and validate_host(host, allowed_hosts)
            and (parts.path, parts.query, parts.fragment) == (callback, "", "")
        )

    @property
    def app_name(self) -> str:
        """The app's name as shown on the consent page."""
        value = setting("KLAVIYO_SANDBOX_APP_NAME")
        return value if isinstance(value, str) else DEFAULTS["KLAVIYO_SANDBOX_APP_NAME"]

    # --- behaviour ------------------------------------------------------------------------

    @property
    def code_lifetime(self) -> timedelta:
        """How long an authorization code can be exchanged."""
        return timedelta(minutes=5)

    @property
    def access_token_lifetime(self) -> int:
        """Seconds an access token is valid (``expires_in``). Default 3600, like Klaviyo."""
        return int(_number("KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME"))

    @property
    def rotate_refresh_tokens(self) -> bool:
        """Issue a new refresh token on every refresh (the old one stops working). Default off:
        Klaviyo was observed to hand back the same refresh token."""
        return _flag("KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS")

    @property
    def rate_limit_scale(self) -> float:
        """Multiplier of every endpoint's burst and steady limits; 0 turns rate limiting off."""
        return float(_number("KLAVIYO_SANDBOX_RATE_LIMIT_SCALE"))

    # --- failure injection and delays -----------------------------------------------------

    @property
    def api_failure_rate(self) -> float:
        """Fraction (0..1) of admitted API calls answered with a 503."""
        return float(_number("KLAVIYO_SANDBOX_API_FAILURE_RATE"))

    @property
    def fail_refreshes(self) -> int:
        """The first N refresh requests of every grant fail (see ``refresh_failure``)."""
        return int(_number("KLAVIYO_SANDBOX_FAIL_REFRESHES"))

    @property
    def refresh_failure(self) -> str:
        """How an injected refresh failure looks: "503" (temporary) or "invalid_grant" (connection lost)."""
        return _choice("KLAVIYO_SANDBOX_REFRESH_FAILURE")

    @property
    def refresh_delay(self) -> float:
        """Seconds the token endpoint waits before answering a refresh (widens refresh races)."""
        return float(_number("KLAVIYO_SANDBOX_REFRESH_DELAY"))

    @property
    def api_delay(self) -> float:
        """Seconds every admitted API call waits before it is answered."""
        return float(_number("KLAVIYO_SANDBOX_API_DELAY"))

    @property
    def job_delay(self) -> float:
        """Seconds a job takes from queued to complete (processing after half of them). Default 1."""
        return float(_number("KLAVIYO_SANDBOX_JOB_DELAY"))


conf = _SandboxConf()
