"""Production configuration: ``check --deploy``, in subprocesses.

Security settings are computed when settings.py is imported, from the environment, so
these tests start fresh processes with a production-like environment instead of using
the ``settings`` fixture. Only loopback is used.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

BASE_DIR = Path(django_settings.BASE_DIR)


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Every variable settings.py reads, set explicitly so that no local .env fills a gap."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="klaviyo_site.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="connect.example.com,127.0.0.1",
        CSRF_TRUSTED_ORIGINS="",
        PORT="8000",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        KLAVIYO_CLIENT_ID="production-client-id",
        KLAVIYO_CLIENT_SECRET=secrets.token_urlsafe(32),
        KLAVIYO_SANDBOX="false",
        KLAVIYO_SCOPES="accounts:read profiles:read",
        KLAVIYO_REDIRECT_URL="https://connect.example.com/authorize",
        KLAVIYO_AUTHORIZE_URL="https://www.klaviyo.com/oauth/authorize",
        KLAVIYO_BASE_URL="https://a.klaviyo.com",
        KLAVIYO_REVISION="2026-07-15",
        TOKEN_ENCRYPTION_KEY=secrets.token_hex(32),
        TOKEN_ENCRYPTION_KEY_FALLBACKS="",
        HTTPS="",  # empty: the production default (on when DEBUG is off)
        SECURE_SSL_REDIRECT="",
        SECURE_HSTS_SECONDS="",
        BEHIND_PROXY="true",
        LOG_LEVEL="INFO",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 (our own interpreter and manage.py)
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_reports_nothing_with_production_settings(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_without_a_real_secret_key(tmp_path):
    result = manage(production_env(tmp_path, SECRET_KEY=""), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "oauth_integration.E008" in result.stderr


@pytest.mark.parametrize(("level", "error"), [("", False), ("debug", False), ("verbose", True)])
def test_log_level_never_stops_django_from_starting(tmp_path, level, error):
    result = manage(production_env(tmp_path, LOG_LEVEL=level), "check", "--deploy")
    assert "Traceback" not in result.stderr
    assert ("LOG_LEVEL must be one of" in result.stderr) is error
    assert result.returncode == (1 if error else 0)
