"""Typed, lazy view of this app's settings.

Every property re-reads ``django.conf.settings`` on access, so ``override_settings``
and pytest-django's ``settings`` fixture just work. Nothing here reads at import time.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings


class _Conf:
    @property
    def client_id(self) -> str:
        return str(settings.KLAVIYO_CLIENT_ID)

    @property
    def client_secret(self) -> str:
        return str(settings.KLAVIYO_CLIENT_SECRET)

    @property
    def sandbox(self) -> bool:
        """True when the built-in Klaviyo imitation stands in for Klaviyo."""
        return bool(getattr(settings, "KLAVIYO_SANDBOX", False))

    @property
    def relaxed(self) -> bool:
        """Development conveniences (unsigned /start links, open /profiles) are allowed."""
        return bool(settings.DEBUG) or self.sandbox

    @property
    def scopes(self) -> str:
        return " ".join(str(settings.KLAVIYO_SCOPES).split())

    @property
    def redirect_url(self) -> str:
        return str(settings.KLAVIYO_REDIRECT_URL)

    @property
    def authorize_url(self) -> str:
        return str(settings.KLAVIYO_AUTHORIZE_URL)

    @property
    def base_url(self) -> str:
        """Host for /oauth/token, /oauth/revoke and /api/..., without a trailing slash."""
        return str(settings.KLAVIYO_BASE_URL).rstrip("/")

    @property
    def revision(self) -> str:
        return str(settings.KLAVIYO_REVISION)

    @property
    def http_timeout(self) -> float:
        """Seconds allowed for connecting and for each read, on every Klaviyo call."""
        return float(settings.KLAVIYO_HTTP_TIMEOUT)

    @property
    def refresh_margin(self) -> timedelta:
        """Refresh before an API call when the access token expires within this window."""
        return timedelta(seconds=int(settings.KLAVIYO_REFRESH_MARGIN_SECONDS))

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt for 429/503/504/524 and connection failures."""
        return int(settings.KLAVIYO_MAX_RETRIES)

    @property
    def retry_max_wait(self) -> float:
        """Upper bound, in seconds, on the total time spent sleeping between retries."""
        return float(settings.KLAVIYO_RETRY_MAX_WAIT)

    @property
    def refresh_failure_cooldown(self) -> timedelta:
        """After a failed refresh, callers fail fast for this long instead of hammering Klaviyo."""
        return timedelta(seconds=float(settings.KLAVIYO_REFRESH_FAILURE_COOLDOWN))

    @property
    def start_link_max_age(self) -> int:
        """Seconds a signed /start link stays valid."""
        return int(settings.KLAVIYO_START_LINK_MAX_AGE)

    @property
    def pkce_lifetime(self) -> timedelta:
        """How long a pending authorization (state + verifier) can be completed."""
        return timedelta(minutes=10)

    @property
    def encryption_key(self) -> str:
        return str(settings.TOKEN_ENCRYPTION_KEY)

    @property
    def encryption_key_fallbacks(self) -> tuple[str, ...]:
        return tuple(settings.TOKEN_ENCRYPTION_KEY_FALLBACKS)

    @property
    def debug(self) -> bool:
        return bool(settings.DEBUG)

    @property
    def secret_key(self) -> str:
        return str(settings.SECRET_KEY)


conf = _Conf()
