"""System checks for the sandbox's settings, every one validated here. Messages never echo values."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from klaviyo_sandbox.conf import SETTINGS, conf


@register(Tags.security)
def check_sandbox_outside_debug(**kwargs: Any) -> list[CheckMessage]:
    if conf.enabled and not settings.DEBUG:
        return [
            Error(
                "The Klaviyo sandbox is on while DEBUG is off: its URLs imitate Klaviyo, and the integration "
                "may talk to it instead of Klaviyo. It is for development only.",
                hint="Set KLAVIYO_SANDBOX=false in production (or DEBUG=true on a development machine).",
                id="klaviyo_sandbox.E002",
            )
        ]
    return []


@register()
def check_sandbox_settings(**kwargs: Any) -> list[CheckMessage]:
    """Every KLAVIYO_SANDBOX_* setting of the wrong type or out of range, by name."""
    return [Error(f"Malformed sandbox setting: {found}.", id="klaviyo_sandbox.E001") for found in SETTINGS.problems()]
