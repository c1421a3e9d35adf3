"""System checks and the project's own consistency checks."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from oauth_integration import checks
from oauth_integration.conf import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent


def ids(messages):
    return sorted(m.id for m in messages)


def test_good_settings_pass_every_check():
    assert checks.check_encryption_keys() == []
    assert checks.check_klaviyo_settings() == []
    assert checks.check_secret_key() == []


def test_missing_key_is_an_error_outside_debug_and_a_deploy_warning_in_debug(settings):
    settings.TOKEN_ENCRYPTION_KEY = ""
    assert ids(checks.check_encryption_keys()) == ["oauth_integration.E001"]
    assert checks.check_derived_encryption_key() == []
    settings.DEBUG = True
    assert checks.check_encryption_keys() == []
    assert ids(checks.check_derived_encryption_key()) == ["oauth_integration.W001"]


def test_malformed_keys_are_reported_without_their_value(settings):
    settings.TOKEN_ENCRYPTION_KEY = "not-hex-" * 8
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = ["abc"]
    messages = checks.check_encryption_keys()
    assert ids(messages) == ["oauth_integration.E002", "oauth_integration.E003"]
    assert all("not-hex-" not in m.msg and "abc" not in m.msg for m in messages)


def test_missing_credentials_and_bad_urls_are_reported(settings):
    settings.KLAVIYO_CLIENT_SECRET = ""
    settings.KLAVIYO_BASE_URL = "a.klaviyo.com"
    settings.KLAVIYO_REVISION = "latest"
    assert ids(checks.check_klaviyo_settings()) == [
        "oauth_integration.E004",
        "oauth_integration.E005",
        "oauth_integration.E007",
    ]


def test_placeholder_secret_key_is_an_error_outside_debug(settings):
    settings.SECRET_KEY = settings.INSECURE_DEV_SECRET_KEY
    assert ids(checks.check_secret_key()) == ["oauth_integration.E008"]


def _manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "TOKEN_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "klaviyo_site.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KLAVIYO_HTTP_TIMEOUT": "soon"}, "KLAVIYO_HTTP_TIMEOUT must be a number"),
        ({"DATABASE_URL": "nonsense://x"}, "DATABASE_URL is not a valid database URL"),
        ({"DEBUG": "maybe"}, "DEBUG must be true or false"),
        ({"TOKEN_ENCRYPTION_KEY": "1234"}, "TOKEN_ENCRYPTION_KEY must be 64 hexadecimal characters"),
    ],
)
def test_malformed_environment_is_reported_by_checks_not_a_traceback(env, expected):
    result = _manage("check", **{"DEBUG": "true", "SECRET_KEY": "x" * 50, **env})
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_port_comes_from_the_environment_and_sandbox_is_the_default_without_credentials():
    result = _manage(
        "shell",
        "--verbosity",
        "0",
        "-c",
        "from django.conf import settings; print(settings.KLAVIYO_SANDBOX, settings.PORT)",
        PORT="8123",
        DEBUG="true",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "8123"]


@pytest.mark.parametrize("url", ["sqlite:///db.sqlite3", "postgres://user@db.example:5432/app"])
def test_database_connections_are_kept_across_requests_on_every_engine(url):
    result = _manage(
        "shell",
        "--verbosity",
        "0",
        "-c",
        "from django.conf import settings; d = settings.DATABASES['default']; "
        "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'])",
        DATABASE_URL=url,
        DEBUG="true",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["60", "True"]


def test_a_malformed_log_level_is_reported_once():
    result = _manage("check", DEBUG="true", SECRET_KEY="x" * 50, LOG_LEVEL="loud")
    assert result.returncode != 0
    assert result.stderr.count("LOG_LEVEL must be one of") == 1


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("KLAVIYO_HTTP_TIMEOUT", 0, "KLAVIYO_HTTP_TIMEOUT must be a number >= 0.1"),
        ("KLAVIYO_MAX_RETRIES", 1.5, "KLAVIYO_MAX_RETRIES must be an integer >= 0"),
        ("KLAVIYO_START_LINK_MAX_AGE", "soon", "KLAVIYO_START_LINK_MAX_AGE must be an integer >= 1"),
    ],
)
def test_numbers_set_in_python_are_checked_too(settings, name, value, expected):
    setattr(settings, name, value)
    assert [m.msg for m in checks.check_malformed_settings()] == [f"Malformed setting: {expected}."]


def test_unset_names_take_the_app_defaults(settings):
    from oauth_integration.conf import conf

    for name in ("KLAVIYO_HTTP_TIMEOUT", "KLAVIYO_SCOPES", "KLAVIYO_BASE_URL"):
        setattr(settings, name, None)
    assert (conf.http_timeout, conf.scopes, conf.base_url) == (
        10.0,
        "accounts:read profiles:read",
        "https://a.klaviyo.com",
    )
    assert checks.check_malformed_settings() == []


def _settings_of(expression, **env):
    code = f"from django.conf import settings; print(repr(({expression})))"
    result = _manage("shell", "--verbosity", "0", "-c", code, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_values_and_list_items_from_the_environment_are_stripped():
    printed = _settings_of(
        "settings.ALLOWED_HOSTS, settings.KLAVIYO_CLIENT_ID, settings.KLAVIYO_REFRESH_MARGIN_SECONDS",
        DEBUG="true",
        ALLOWED_HOSTS=" localhost, connect.example.com ,",
        KLAVIYO_CLIENT_ID="client-id ",
        KLAVIYO_REFRESH_MARGIN_SECONDS=" 3 ",
    )
    assert printed == "(['localhost', 'connect.example.com'], 'client-id', 3)"


def test_a_number_out_of_range_takes_its_default(settings):
    from oauth_integration.conf import conf

    settings.KLAVIYO_MAX_PENDING_PER_BROWSER = 0
    settings.KLAVIYO_HTTP_TIMEOUT = 0
    assert (conf.max_pending_per_browser, conf.http_timeout) == (
        DEFAULTS["KLAVIYO_MAX_PENDING_PER_BROWSER"],
        DEFAULTS["KLAVIYO_HTTP_TIMEOUT"],
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "(True, None, 'cached_db', ['oauth_integration.auth.ModelBackend'])"),
        ("pymemcache://127.0.0.1:11211", "(True, None, 'cached_db', ['oauth_integration.auth.ModelBackend'])"),
        ("locmemcache://", "(False, 100000, 'db', ['oauth_integration.auth.ModelBackend'])"),
    ],
)
def test_only_a_cache_every_server_shares_serves_sessions_and_users_always_come_from_the_database(url, expected):
    printed = _settings_of(
        "settings.SHARED_CACHE, settings.CACHES['default'].get('OPTIONS', {}).get('MAX_ENTRIES'), "
        "settings.SESSION_ENGINE.rsplit('.', 1)[1], settings.AUTHENTICATION_BACKENDS",
        DEBUG="true",
        DATABASE_URL="postgres://user@db.example:5432/app",
        CACHE_URL=url,
    )
    assert printed == expected


@pytest.mark.parametrize(
    ("url", "pool", "expected"),
    [
        ("postgres://user@db.example:5432/app", "4", "({'min_size': 1, 'max_size': 4, 'timeout': 10}, 0, False)"),
        ("postgres://user@db.example:5432/app", "", "(None, 60, True)"),
        ("sqlite:///db.sqlite3", "4", "(None, 60, True)"),  # a pool is PostgreSQL's: SQLite keeps its own
    ],
)
def test_database_pool_borrows_connections_per_request_on_postgresql_only(url, pool, expected):
    printed = _settings_of(
        "settings.DATABASES['default'].get('OPTIONS', {}).get('pool'), "
        "settings.DATABASES['default']['CONN_MAX_AGE'], settings.DATABASES['default']['CONN_HEALTH_CHECKS']",
        DEBUG="true",
        DATABASE_URL=url,
        DATABASE_POOL=pool,
    )
    assert printed == expected


@pytest.mark.parametrize("pool", ["-1", "four"])
def test_a_malformed_database_pool_is_reported_by_name(pool):
    printed = _settings_of("settings.SETTINGS_ERRORS", DEBUG="true", DATABASE_POOL=pool)
    assert "DATABASE_POOL must be" in printed


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs DATABASE_URL to name PostgreSQL"
)
def test_database_pool_serves_queries_on_a_real_postgresql_server():
    code = (
        "from django.db import connection; "
        "print([connection.cursor().execute('SELECT 1').fetchone()[0] for _ in range(3)], "
        "connection.pool.max_size, connection.pool.get_stats()['pool_size'] >= 1)"
    )
    # The server DATABASE_URL names, through its maintenance database: the named one need not exist
    # (pytest-django makes a test database of its own beside it).
    url = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="/postgres"))
    result = _manage("shell", "--verbosity", "0", "-c", code, DATABASE_URL=url, DATABASE_POOL="3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[1, 1, 1] 3 True"


def test_the_development_key_is_mentioned_by_check_deploy_not_by_every_command():
    development = {"DEBUG": "true", "SECRET_KEY": "x" * 50, "TOKEN_ENCRYPTION_KEY": ""}

    everyday = _manage("check", **development)
    deploy = _manage("check", "--deploy", **development)

    assert everyday.returncode == 0, everyday.stderr
    assert "oauth_integration.W001" not in everyday.stdout + everyday.stderr
    assert "oauth_integration.W001" in deploy.stdout + deploy.stderr


def test_metrics_without_a_multiprocess_directory_is_a_deploy_warning(settings, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings.METRICS_TOKEN = ""
    assert checks.check_metrics_over_processes() == []

    settings.METRICS_TOKEN = "scrape-token"
    messages = checks.check_metrics_over_processes()
    assert ids(messages) == ["oauth_integration.W004"]
    assert "python:oauth_integration.gunicorn" in messages[0].hint
    assert "SILENCED_SYSTEM_CHECKS" in messages[0].hint  # one process needs nothing
    assert "scrape-token" not in messages[0].msg + messages[0].hint

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/run/metrics")
    assert checks.check_metrics_over_processes() == []
