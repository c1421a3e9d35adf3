"""Typed, lazy view of the sandbox's settings.

Every property re-reads ``django.conf.settings`` on access (so the pytest-django
``settings`` fixture and ``override_settings`` apply at once). Optional settings fall
back to the defaults below; nothing is read at import time.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

REFRESH_FAILURES = ("503", "invalid_grant")


def _get(name: str, default: object) -> object:
    value = getattr(settings, name, None)
    return default if value is None or value == "" else value


class _SandboxConf:
    @property
    def enabled(self) -> bool:
        """The sandbox's routes exist only while this is true."""
        return bool(getattr(settings, "KLAVIYO_SANDBOX", False))

    # --- the registered app the sandbox recognises (the integration's own settings) ------

    @property
    def client_id(self) -> str:
        return str(getattr(settings, "KLAVIYO_CLIENT_ID", ""))

    @property
    def client_secret(self) -> str:
        return str(getattr(settings, "KLAVIYO_CLIENT_SECRET", ""))

    @property
    def redirect_url(self) -> str:
        """The one redirect URI registered for the app."""
        return str(getattr(settings, "KLAVIYO_REDIRECT_URL", ""))

    @property
    def app_name(self) -> str:
        """The app's name as shown on the consent page."""
        return str(_get("KLAVIYO_SANDBOX_APP_NAME", "Klaviyo Connections (development app)"))

    # --- behaviour ------------------------------------------------------------------------

    @property
    def code_lifetime(self) -> timedelta:
        """How long an authorization code can be exchanged."""
        return timedelta(minutes=5)

    @property
    def access_token_lifetime(self) -> int:
        """Seconds an access token is valid (``expires_in``). Default 3600, like Klaviyo."""
        return max(1, int(_get("KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME", 3600)))

    @property
    def rotate_refresh_tokens(self) -> bool:
        """Issue a new refresh token on every refresh (the old one stops working). Default off:
        Klaviyo was observed to hand back the same refresh token."""
        return bool(_get("KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS", False))

    @property
    def rate_limit(self) -> int:
        """API requests allowed per connection per minute (fixed window); 0 turns limiting off."""
        return max(0, int(_get("KLAVIYO_SANDBOX_RATE_LIMIT", 600)))

    # --- failure injection ----------------------------------------------------------------

    @property
    def api_failure_rate(self) -> float:
        """Fraction (0..1) of authenticated API calls answered with a 503."""
        return min(1.0, max(0.0, float(_get("KLAVIYO_SANDBOX_API_FAILURE_RATE", 0.0))))

    @property
    def fail_refreshes(self) -> int:
        """The first N refresh requests of every connection fail (see ``refresh_failure``)."""
        return max(0, int(_get("KLAVIYO_SANDBOX_FAIL_REFRESHES", 0)))

    @property
    def refresh_failure(self) -> str:
        """How an injected refresh failure looks: "503" (temporary) or "invalid_grant" (connection lost)."""
        value = str(_get("KLAVIYO_SANDBOX_REFRESH_FAILURE", "503"))
        return value if value in REFRESH_FAILURES else "503"


conf = _SandboxConf()
