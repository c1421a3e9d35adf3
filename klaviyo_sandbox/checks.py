"""System checks for the sandbox's settings. Messages never echo secret values."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from klaviyo_sandbox.conf import REFRESH_FAILURES, conf


@register(Tags.security)
def check_sandbox_outside_debug(**kwargs: Any) -> list[CheckMessage]:
    if conf.enabled and not settings.DEBUG:
        return [
            Warning(
                "The Klaviyo sandbox is on while DEBUG is off: /sandbox/ imitates Klaviyo and the "
                "integration accepts unsigned /start links and serves /profiles without a login.",
                hint="Set KLAVIYO_CLIENT_ID and KLAVIYO_CLIENT_SECRET (or KLAVIYO_SANDBOX=false) in production.",
                id="klaviyo_sandbox.W001",
            )
        ]
    return []


@register()
def check_sandbox_settings(**kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    rate = getattr(settings, "KLAVIYO_SANDBOX_API_FAILURE_RATE", None) or 0.0
    if not isinstance(rate, int | float) or not 0 <= rate <= 1:
        messages.append(Error("KLAVIYO_SANDBOX_API_FAILURE_RATE must be between 0 and 1.", id="klaviyo_sandbox.E001"))
    failure = getattr(settings, "KLAVIYO_SANDBOX_REFRESH_FAILURE", None) or "503"
    if failure not in REFRESH_FAILURES:
        messages.append(
            Error(
                f"KLAVIYO_SANDBOX_REFRESH_FAILURE must be one of: {', '.join(REFRESH_FAILURES)}.",
                id="klaviyo_sandbox.E002",
            )
        )
    return messages
