"""Django settings for the Klaviyo OAuth integration.

The only module that reads the process environment. Every value comes from the
environment or an optional ``.env`` file beside ``manage.py`` (the environment
wins). Nothing here raises: missing or malformed values are reported by the
system checks in ``oauth_integration.checks``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# read_env never overwrites a variable the process already has: the environment wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _env_str(name: str, default: str = "") -> str:
    # Set-but-empty counts as unset, so `PORT=` in .env means the default, not "".
    return env.str(name, default="").strip() or default


# Malformed values fall back to their defaults and are listed here; the system check
# oauth_integration.E010 reports each one by name (never its value, which may be secret).
SETTINGS_ERRORS: list[str] = []


def _env_bool(name: str, default: bool) -> bool:
    raw = _env_str(name).lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    SETTINGS_ERRORS.append(f"{name} must be true or false")
    return default


def _env_number(name: str, default: float, *, minimum: float, integer: bool = False) -> float:
    raw = _env_str(name)
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        kind = "an integer" if integer else "a number"
        SETTINGS_ERRORS.append(f"{name} must be {kind} >= {minimum:g}")
        return default
    return value


# --- Django and server -----------------------------------------------------------------

DEBUG = _env_bool("DEBUG", default=False)
PORT = _env_str("PORT", "8000")
# Outside DEBUG a real SECRET_KEY is required; checks.py reports this placeholder as an error.
INSECURE_DEV_SECRET_KEY = "insecure-development-only-secret-key-do-not-deploy"  # noqa: S105
SECRET_KEY = _env_str("SECRET_KEY") or INSECURE_DEV_SECRET_KEY
ALLOWED_HOSTS = [h.strip() for h in _env_str("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in _env_str("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

# --- Klaviyo OAuth app ------------------------------------------------------------------

KLAVIYO_CLIENT_ID = _env_str("KLAVIYO_CLIENT_ID")
KLAVIYO_CLIENT_SECRET = _env_str("KLAVIYO_CLIENT_SECRET")
# Sandbox mode: the built-in imitation of Klaviyo under /sandbox/ stands in for Klaviyo.
# On by default in DEBUG when no credentials are set, or explicitly with KLAVIYO_SANDBOX=true.
# Outside DEBUG, missing credentials are a system-check error rather than a silent sandbox.
KLAVIYO_SANDBOX = _env_bool("KLAVIYO_SANDBOX", default=DEBUG and not (KLAVIYO_CLIENT_ID and KLAVIYO_CLIENT_SECRET))
if KLAVIYO_SANDBOX:
    KLAVIYO_CLIENT_ID = KLAVIYO_CLIENT_ID or "sandbox-client-id"
    KLAVIYO_CLIENT_SECRET = KLAVIYO_CLIENT_SECRET or "sandbox-client-secret"

KLAVIYO_SCOPES = _env_str("KLAVIYO_SCOPES", "accounts:read profiles:read")
KLAVIYO_REDIRECT_URL = _env_str("KLAVIYO_REDIRECT_URL", f"http://localhost:{PORT}/authorize")
KLAVIYO_AUTHORIZE_URL = _env_str(
    "KLAVIYO_AUTHORIZE_URL",
    f"http://localhost:{PORT}/sandbox/oauth/authorize"
    if KLAVIYO_SANDBOX
    else "https://www.klaviyo.com/oauth/authorize",
)
KLAVIYO_BASE_URL = _env_str(
    "KLAVIYO_BASE_URL",
    f"http://127.0.0.1:{PORT}/sandbox" if KLAVIYO_SANDBOX else "https://a.klaviyo.com",
).rstrip("/")
KLAVIYO_REVISION = _env_str("KLAVIYO_REVISION", "2026-07-15")

# Tunables with sensible defaults (documented in .env-sample).
KLAVIYO_HTTP_TIMEOUT = _env_number("KLAVIYO_HTTP_TIMEOUT", 10.0, minimum=0.1)
KLAVIYO_REFRESH_MARGIN_SECONDS = int(_env_number("KLAVIYO_REFRESH_MARGIN_SECONDS", 60, minimum=0, integer=True))
KLAVIYO_MAX_RETRIES = int(_env_number("KLAVIYO_MAX_RETRIES", 2, minimum=0, integer=True))
KLAVIYO_RETRY_MAX_WAIT = _env_number("KLAVIYO_RETRY_MAX_WAIT", 10.0, minimum=0)
KLAVIYO_REFRESH_FAILURE_COOLDOWN = _env_number("KLAVIYO_REFRESH_FAILURE_COOLDOWN", 5.0, minimum=0)
KLAVIYO_START_LINK_MAX_AGE = int(_env_number("KLAVIYO_START_LINK_MAX_AGE", 3600, minimum=1, integer=True))

# --- Klaviyo sandbox (only used while KLAVIYO_SANDBOX is on) ------------------------------

# Seconds an access token issued by the sandbox stays valid.
KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME = int(
    _env_number("KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME", 3600, minimum=1, integer=True)
)
# Issue a new refresh token on every refresh (the old one stops working).
KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS = _env_bool("KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS", default=False)
# API requests per connection per minute; 0 turns rate limiting off.
KLAVIYO_SANDBOX_RATE_LIMIT = int(_env_number("KLAVIYO_SANDBOX_RATE_LIMIT", 600, minimum=0, integer=True))
# Failure injection: share (0..1) of API calls answered 503, and the first N refreshes
# of every connection fail with KLAVIYO_SANDBOX_REFRESH_FAILURE (503 or invalid_grant).
KLAVIYO_SANDBOX_API_FAILURE_RATE = _env_number("KLAVIYO_SANDBOX_API_FAILURE_RATE", 0.0, minimum=0)
KLAVIYO_SANDBOX_FAIL_REFRESHES = int(_env_number("KLAVIYO_SANDBOX_FAIL_REFRESHES", 0, minimum=0, integer=True))
KLAVIYO_SANDBOX_REFRESH_FAILURE = _env_str("KLAVIYO_SANDBOX_REFRESH_FAILURE", "503")

# --- Token encryption --------------------------------------------------------------------

TOKEN_ENCRYPTION_KEY = _env_str("TOKEN_ENCRYPTION_KEY")
TOKEN_ENCRYPTION_KEY_FALLBACKS = [k.strip() for k in _env_str("TOKEN_ENCRYPTION_KEY_FALLBACKS").split(",") if k.strip()]

# --- Application definition --------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "oauth_integration",
    "klaviyo_sandbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "klaviyo_site.middleware.reject_malformed_requests",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "klaviyo_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "klaviyo_site.wsgi.application"

# --- Database ----------------------------------------------------------------------------


def _database(url: str) -> dict[str, object]:
    if url.split(":", 1)[0] not in environ.Env.DB_SCHEMES:
        SETTINGS_ERRORS.append("DATABASE_URL is not a valid database URL (e.g. postgres://user@host:5432/name)")
        return {"ENGINE": "django.db.backends.dummy"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # django-environ warns (echoing the URL) on unknown schemes
            config = env.db_url_config(url)
    except (ValueError, KeyError, ImproperlyConfigured):
        config = {}
    if not config.get("ENGINE"):
        SETTINGS_ERRORS.append("DATABASE_URL is not a valid database URL (e.g. postgres://user@host:5432/name)")
        return {"ENGINE": "django.db.backends.dummy"}
    return config


DATABASES = {"default": _database(_env_str("DATABASE_URL", "sqlite:///db.sqlite3"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _sqlite_name = str(DATABASES["default"]["NAME"])
    if _sqlite_name and not _sqlite_name.startswith((":memory:", "/")):
        DATABASES["default"]["NAME"] = str(BASE_DIR / _sqlite_name)
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets readers proceed while one writer commits; IMMEDIATE makes a
            # write transaction take the write lock up front instead of failing on upgrade.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # Tests use a file so several threads can share one database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test_db.sqlite3")}
# Keep connections across requests on every engine: opening one costs more than a whole
# /profiles request's queries (on SQLite: Django's per-connection set-up plus the PRAGMAs).
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, static ------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic puts the files WhiteNoise serves (make serve runs it).
STATIC_ROOT = Path(_env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Security (production values whenever DEBUG is off) ----------------------------------

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # the OAuth callback is a top-level GET from Klaviyo: Lax cookies arrive
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
_https = _env_bool("HTTPS", default=not DEBUG and not KLAVIYO_SANDBOX)
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", default=_https)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = int(_env_number("SECURE_HSTS_SECONDS", 31536000 if _https else 0, minimum=0, integer=True))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _https
SECURE_HSTS_PRELOAD = _https
if _env_bool("BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Logging: secrets never reach these lines (see oauth_integration.services) -----------


def _log_level(name: str, default: str) -> str:
    # An empty or unknown level would make logging.config raise during django.setup().
    raw = _env_str(name).upper()
    if not raw:
        return default
    if raw not in logging.getLevelNamesMapping():
        SETTINGS_ERRORS.append(f"{name} must be one of DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return default
    return raw


LOG_LEVEL = _log_level("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "oauth_integration": {"level": LOG_LEVEL, "propagate": True},
        "klaviyo_sandbox": {"level": LOG_LEVEL, "propagate": True},
    },
}
TEST_RUNNER = "klaviyo_site.test_runner.PytestTestRunner"
