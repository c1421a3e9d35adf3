"""System checks: required settings present and well formed. Messages never echo secret values."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string

from oauth_integration import crypto, links
from oauth_integration.conf import NUMBERS, SETTINGS, conf, setting
from oauth_integration.exceptions import EncryptionKeyError


@register(Tags.security)
def check_encryption_keys(**kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    hint = f"Generate one with: {crypto.GENERATE_KEY}"
    if not conf.encryption_key:
        if not conf.debug:
            messages.append(
                Error("TOKEN_ENCRYPTION_KEY is required when DEBUG is off.", hint=hint, id="oauth_integration.E001")
            )
        elif conf.secret_key_is_placeholder:
            messages.append(
                Error(
                    "TOKEN_ENCRYPTION_KEY is not set and SECRET_KEY is the public placeholder: "
                    "no token key can be derived from it.",
                    hint=hint,
                    id="oauth_integration.E011",
                )
            )
        # Otherwise (DEBUG, a real SECRET_KEY) the development key derived from SECRET_KEY is
        # fine and every manage.py command stays quiet: check --deploy says so (below).
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


@register(Tags.security, deploy=True)
def check_derived_encryption_key(**kwargs: Any) -> list[CheckMessage]:
    """A development key derived from SECRET_KEY: said by ``check --deploy`` only, not by every command.

    Without DEBUG the key is required (E001), and no key comes from the placeholder (E011).
    """
    if conf.encryption_key or not conf.debug or conf.secret_key_is_placeholder:
        return []
    return [
        Warning(
            "TOKEN_ENCRYPTION_KEY is not set; tokens are encrypted with a key derived from SECRET_KEY, "
            "which is only for development: changing SECRET_KEY makes them unreadable.",
            hint=f"Generate one with: {crypto.GENERATE_KEY}",
            id="oauth_integration.W001",
        )
    ]


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
        value = str(setting(name))
        parts = urlsplit(value)
        if name == "KLAVIYO_REDIRECT_URL" and not value:
            continue  # derived from each request (check_redirect_url_registered tells production why not to)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            messages.append(Error(f"{name} must be an absolute http(s) URL.", id="oauth_integration.E005"))
    if conf.https and urlsplit(conf.redirect_url).scheme == "http":
        messages.append(
            Error(
                "KLAVIYO_REDIRECT_URL must be an https:// URL while HTTPS is on: "
                "authorization codes would travel unencrypted.",
                hint="Register the https:// address of /authorize in Klaviyo and set it here.",
                id="oauth_integration.E012",
            )
        )
    if conf.return_url and not links.return_url_allowed(conf.return_url):
        messages.append(
            Error(
                "KLAVIYO_RETURN_URL must be a path on this site or a URL on a host in KLAVIYO_RETURN_URL_HOSTS"
                + (" (https while HTTPS is on)." if conf.https else "."),
                id="oauth_integration.E013",
            )
        )
    if conf.install_customers and not _importable(conf.install_customers):
        messages.append(
            Error(
                "KLAVIYO_INSTALL_CUSTOMERS must be the dotted path of a function (user) -> customer identifiers.",
                hint="For example shop.klaviyo.customers_of; leave it empty to turn /install off.",
                id="oauth_integration.E020",
            )
        )
    if not conf.scopes:
        messages.append(Error("KLAVIYO_SCOPES must list at least one scope.", id="oauth_integration.E006"))
    revision = conf.revision
    if len(revision) < 10 or not revision[:4].isdigit() or revision[4] != "-" or revision[7] != "-":
        messages.append(Error("KLAVIYO_REVISION must look like YYYY-MM-DD.", id="oauth_integration.E007"))
    return messages


@register(Tags.security, deploy=True)
def check_redirect_url_registered(**kwargs: Any) -> list[CheckMessage]:
    """In production the redirect URL is one exact https:// URL, registered in Klaviyo, not the request's host."""
    if conf.redirect_url or conf.sandbox:
        return []
    try:
        callback = reverse("oauth_integration:authorize")
    except NoReverseMatch:
        callback = "the authorize URL of oauth_integration.urls"
    return [
        Warning(
            "KLAVIYO_REDIRECT_URL is not set: each authorization sends a redirect URL made from the host and "
            "scheme of the request that starts it, and Klaviyo refuses any URL that was not registered exactly.",
            hint=f"Register the https:// address of {callback} in your Klaviyo app and set KLAVIYO_REDIRECT_URL to it.",
            id="oauth_integration.W002",
        )
    ]


@register(Tags.security)
def check_open_access(**kwargs: Any) -> list[CheckMessage]:
    if setting("KLAVIYO_OPEN_ACCESS") and not conf.debug:
        return [
            Warning(
                "KLAVIYO_OPEN_ACCESS is ignored while DEBUG is off: every page needs its permission.",
                hint="Remove KLAVIYO_OPEN_ACCESS from the production settings.",
                id="oauth_integration.W003",
            )
        ]
    return []


@register(Tags.security)
def check_secret_key(**kwargs: Any) -> list[CheckMessage]:
    # It signs /start links and sessions: the public placeholder only passes in sandbox mode.
    if conf.secret_key_is_placeholder and not (conf.debug and conf.sandbox):
        return [
            Error(
                "SECRET_KEY is not set; it is required outside sandbox mode (it signs connect links).",
                hint="Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'",
                id="oauth_integration.E008",
            )
        ]
    return []


@register(deploy=True)
def check_metrics_over_processes(**kwargs: Any) -> list[CheckMessage]:
    """/metrics of a server with several worker processes adds them up only through PROMETHEUS_MULTIPROC_DIR."""
    if not conf.metrics_token or os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip():
        return []
    return [
        Warning(
            "METRICS_TOKEN is set but PROMETHEUS_MULTIPROC_DIR is not: with several worker processes "
            "(gunicorn --workers 2 or more) each scrape of /metrics shows the counters of the one worker "
            "that answers it.",
            hint="Serve with the hooks of oauth_integration.gunicorn (gunicorn --config "
            "python:oauth_integration.gunicorn, or `from oauth_integration.gunicorn import *` in your "
            "gunicorn.conf.py): they set PROMETHEUS_MULTIPROC_DIR when gunicorn starts, so name the directory "
            "in the environment for this check to see it too. A server of one process (runserver, one "
            "gunicorn worker) needs neither: add oauth_integration.W004 to SILENCED_SYSTEM_CHECKS.",
            id="oauth_integration.W004",
        )
    ]


@register()
def check_malformed_settings(**kwargs: Any) -> list[CheckMessage]:
    """Values the settings module could not read, and numbers of the wrong type or range."""
    problems = list(getattr(settings, "SETTINGS_ERRORS", []))
    problems += SETTINGS.problems(NUMBERS)
    return [Error(f"Malformed setting: {problem}.", id="oauth_integration.E010") for problem in problems]


def _importable(dotted_path: str) -> bool:
    try:
        return callable(import_string(dotted_path))
    except ImportError:
        return False
