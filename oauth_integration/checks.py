"""System checks: required settings present and well formed. Messages never echo secret values."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from oauth_integration import crypto
from oauth_integration.conf import NUMBERS, conf, number_problem, setting
from oauth_integration.exceptions import EncryptionKeyError


@register(Tags.security)
def check_encryption_keys(**kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not conf.encryption_key:
        if conf.debug:
            messages.append(
                Warning(
                    "TOKEN_ENCRYPTION_KEY is not set; tokens are encrypted with a key derived from SECRET_KEY.",
                    hint="Generate one with: python -c 'import secrets; print(secrets.token_hex(32))'",
                    id="oauth_integration.W001",
                )
            )
        else:
            messages.append(
                Error(
                    "TOKEN_ENCRYPTION_KEY is required when DEBUG is off.",
                    hint="Generate one with: python -c 'import secrets; print(secrets.token_hex(32))'",
                    id="oauth_integration.E001",
                )
            )
    else:
        try:
            crypto.parse_key(conf.encryption_key)
        except EncryptionKeyError as exc:
            messages.append(Error(str(exc), id="oauth_integration.E002"))
    for position, key in enumerate(conf.encryption_key_fallbacks):
        try:
            crypto.parse_key(key, name=f"TOKEN_ENCRYPTION_KEY_FALLBACKS[{position}]")
        except EncryptionKeyError as exc:
            messages.append(Error(str(exc), id="oauth_integration.E003"))
    return messages


@register()
def check_klaviyo_settings(**kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not conf.client_id or not conf.client_secret:
        messages.append(
            Error(
                "KLAVIYO_CLIENT_ID and KLAVIYO_CLIENT_SECRET must both be set (or KLAVIYO_SANDBOX=true).",
                hint="Copy them from your Klaviyo app's settings page.",
                id="oauth_integration.E004",
            )
        )
    for name in ("KLAVIYO_REDIRECT_URL", "KLAVIYO_AUTHORIZE_URL", "KLAVIYO_BASE_URL"):
        parts = urlsplit(str(setting(name)))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            messages.append(Error(f"{name} must be an absolute http(s) URL.", id="oauth_integration.E005"))
    if not conf.scopes:
        messages.append(Error("KLAVIYO_SCOPES must list at least one scope.", id="oauth_integration.E006"))
    revision = conf.revision
    if len(revision) < 10 or not revision[:4].isdigit() or revision[4] != "-" or revision[7] != "-":
        messages.append(Error("KLAVIYO_REVISION must look like YYYY-MM-DD.", id="oauth_integration.E007"))
    return messages


@register(Tags.security)
def check_secret_key(**kwargs: Any) -> list[CheckMessage]:
    if not conf.debug and conf.secret_key == getattr(settings, "INSECURE_DEV_SECRET_KEY", None):
        return [
            Error(
                "SECRET_KEY is not set; it is required when DEBUG is off.",
                hint="Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'",
                id="oauth_integration.E008",
            )
        ]
    return []


@register()
def check_malformed_settings(**kwargs: Any) -> list[CheckMessage]:
    """Values the settings module could not read, and numbers of the wrong type or range."""
    problems = list(getattr(settings, "SETTINGS_ERRORS", []))
    problems += [p for name in NUMBERS if (p := number_problem(name, setting(name)))]
    return [Error(f"Malformed setting: {problem}.", id="oauth_integration.E010") for problem in problems]
