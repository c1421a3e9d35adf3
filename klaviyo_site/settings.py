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
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from klaviyo_sandbox.conf import SETTINGS as SANDBOX_SETTINGS
from klaviyo_site.flags import parse_bool
from oauth_integration.conf import SETTINGS as APP_SETTINGS

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# read_env never overwrites a variable the process already has: the environment wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


# Malformed values fall back to their defaults and are listed here; the system check
# oauth_integration.E010 reports each one by name (never its value, which may be secret).
SETTINGS_ERRORS: list[str] = []
_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false"}


def _env(name: str, cast: str = "str", default: object = None) -> Any:
    """``name`` from the environment, stripped and cast (``str``, ``int``, ``float``, ``bool``
    or ``list``); ``default`` when unset or empty (``PORT=`` in .env means the
    default, not ""). A malformed value gives the default too, and an entry in SETTINGS_ERRORS.
    """
    raw = env.str(name, default="").strip()
    if not raw:
        return default
    try:
        return _CASTS[cast](raw)
    except ValueError:
        SETTINGS_ERRORS.append(f"{name} must be {_KINDS.get(cast, 'valid')}")
        return default


# Values and list items are stripped: "a, b" is two hosts, and a secret pasted with a trailing
# space still matches.
_CASTS = {
    "str": str,
    "int": int,
    "float": float,
    "bool": parse_bool,
    "list": lambda raw: [item.strip() for item in raw.split(",") if item.strip()],
}


# --- Django and server -----------------------------------------------------------------

DEBUG = _env("DEBUG", "bool", default=False)
PORT = _env("PORT", default="8000")
# Outside DEBUG a real SECRET_KEY is required; checks.py reports this placeholder as an error.
INSECURE_DEV_SECRET_KEY = "insecure-development-only-secret-key-do-not-deploy"  # noqa: S105
SECRET_KEY = _env("SECRET_KEY", default=INSECURE_DEV_SECRET_KEY)
ALLOWED_HOSTS = _env("ALLOWED_HOSTS", "list", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = _env("CSRF_TRUSTED_ORIGINS", "list", default=[])

# --- Klaviyo OAuth app, the sandbox and token encryption ----------------------------------
# Every setting the two apps declare (oauth_integration/conf.py, klaviyo_sandbox/conf.py) is
# read from the environment by the type of its default; a name left unset (None) takes the
# app's own default, and the apps' checks report values out of range. Only the defaults that
# depend on this site (its PORT, sandbox mode) are set here.

_KINDS_OF = {**APP_SETTINGS.kinds(), **SANDBOX_SETTINGS.kinds()}


def _declared(name: str, default: object = None) -> Any:
    return _env(name, _KINDS_OF[name], default)


KLAVIYO_CLIENT_ID = _declared("KLAVIYO_CLIENT_ID", default="")
KLAVIYO_CLIENT_SECRET = _declared("KLAVIYO_CLIENT_SECRET", default="")
# Sandbox mode: the built-in imitation of Klaviyo under /sandbox/ stands in for Klaviyo.
# On by default in DEBUG when no credentials are set, or explicitly with KLAVIYO_SANDBOX=true.
# Outside DEBUG, missing credentials are a system-check error rather than a silent sandbox,
# and the sandbox itself is one (klaviyo_sandbox.E002).
KLAVIYO_SANDBOX = _declared("KLAVIYO_SANDBOX", default=DEBUG and not (KLAVIYO_CLIENT_ID and KLAVIYO_CLIENT_SECRET))
if KLAVIYO_SANDBOX:
    KLAVIYO_CLIENT_ID = KLAVIYO_CLIENT_ID or "sandbox-client-id"
    KLAVIYO_CLIENT_SECRET = KLAVIYO_CLIENT_SECRET or "sandbox-client-secret"
# Open access: anyone may view connections and connect customers, so that `make run` needs no
# login. A setting of its own, not part of sandbox mode, and honoured only while DEBUG is on.
KLAVIYO_OPEN_ACCESS = _declared("KLAVIYO_OPEN_ACCESS", default=DEBUG and KLAVIYO_SANDBOX)

# In sandbox mode the example site also asks for the scopes its demo of a write needs
# (/demo/<customer>: klaviyo_site/demo/); elsewhere the app's default, accounts:read profiles:read.
_SANDBOX_SCOPES = "accounts:read profiles:read profiles:write lists:read lists:write"
KLAVIYO_SCOPES = _declared("KLAVIYO_SCOPES", default=_SANDBOX_SCOPES if KLAVIYO_SANDBOX else None)
KLAVIYO_REDIRECT_URL = _declared("KLAVIYO_REDIRECT_URL", default=f"http://localhost:{PORT}/authorize")
KLAVIYO_AUTHORIZE_URL = _declared(
    "KLAVIYO_AUTHORIZE_URL", default=f"http://localhost:{PORT}/sandbox/oauth/authorize" if KLAVIYO_SANDBOX else None
)
KLAVIYO_BASE_URL = _declared(
    "KLAVIYO_BASE_URL", default=f"http://127.0.0.1:{PORT}/sandbox" if KLAVIYO_SANDBOX else None
)
TOKEN_ENCRYPTION_KEY_FALLBACKS = _declared("TOKEN_ENCRYPTION_KEY_FALLBACKS", default=[])
# The rest, from KLAVIYO_REVISION to the sandbox's knobs, TOKEN_ENCRYPTION_KEY and
# METRICS_TOKEN (the bearer token for GET /metrics; empty: /metrics answers 404).
for _name in _KINDS_OF:
    if _name not in globals():
        globals()[_name] = _declared(_name)

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
    "oauth_integration.logs.request_id_middleware",
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
        "DIRS": [BASE_DIR / "klaviyo_site" / "templates"],  # the demo's page and the landing page's link to it
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


DATABASES = {"default": _database(_env("DATABASE_URL", default="sqlite:///db.sqlite3"))}
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
# On PostgreSQL, DATABASE_POOL=N keeps a pool of up to N connections per process (psycopg_pool,
# through Django's "pool" option): a request borrows one for its queries and gives it back,
# without Django's per-request health check (a SELECT 1 before the first query). Otherwise,
# and on every other engine, each thread keeps its own connection across requests: opening one
# costs more than a whole /profiles request's queries (on SQLite: Django's per-connection
# set-up plus the PRAGMAs), and a health check finds one the server has dropped.
_pool_size = _env("DATABASE_POOL", "int", default=0)
if _pool_size < 0:
    SETTINGS_ERRORS.append("DATABASE_POOL must be a number of connections (0: no pool)")
_pooled = _pool_size > 0 and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if _pooled:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": _pool_size, "timeout": 10}
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django returns the connection to the pool after each request
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", not _pooled)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Who is logged in, and with which permissions, comes from the database on every request:
# Django's ModelBackend, with a permission check answered by one query instead of two
# (oauth_integration/auth.py). A deactivation or a permission taken away applies to the next
# request once committed, however it was written.
AUTHENTICATION_BACKENDS = ["oauth_integration.auth.ModelBackend"]

# --- Cache and sessions -----------------------------------------------------------------
# With a cache that every server shares, sessions are read from it instead of the database
# on each request (``cached_db``: written through to the database, and a logout deletes
# both). CACHE_URL names one (redis://host:6379/0). SQLite lives on one machine, so without
# CACHE_URL a file cache beside its database file is shared by every worker there.
# Otherwise the cache is per process, and sessions are read from the database.


_PER_PROCESS = ("django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.dummy.DummyCache")
# Backends that cull at MAX_ENTRIES themselves; the others hand OPTIONS to their client library.
_CULLING = ("LocMemCache", "FileBasedCache", "DatabaseCache")


def _caches(url: str | None) -> tuple[dict[str, object], bool]:
    """The default cache, and whether every server shares it."""
    if url:
        try:
            cache = env.cache_url_config(url)
            if cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
                cache["BACKEND"] = "klaviyo_site.redis_cache.RedisCache"  # one client per pool (its docstring)
            return cache, cache["BACKEND"] not in _PER_PROCESS
        except (ValueError, KeyError, ImproperlyConfigured):
            SETTINGS_ERRORS.append("CACHE_URL is not a valid cache URL (e.g. redis://127.0.0.1:6379/0)")
    database = DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3" and str(database["NAME"]).startswith("/"):
        location = f"{database['NAME']}-cache"
        return {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": location}, True
    return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}, False


_cache, SHARED_CACHE = _caches(_env("CACHE_URL"))
if str(_cache["BACKEND"]).rsplit(".", 1)[-1] in _CULLING:
    _cache.setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 100_000)  # sessions live there too
CACHES = {"default": _cache}
if SHARED_CACHE:
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

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
STATIC_ROOT = Path(_env("STATIC_ROOT", default=BASE_DIR / "staticfiles"))
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
_https = _env("HTTPS", "bool", default=not DEBUG and not KLAVIYO_SANDBOX)
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_SSL_REDIRECT = _env("SECURE_SSL_REDIRECT", "bool", default=_https)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]  # probes and scrapers on the internal network
SECURE_HSTS_SECONDS = _env("SECURE_HSTS_SECONDS", "int", default=31536000 if _https else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _https
SECURE_HSTS_PRELOAD = _https
if _env("BEHIND_PROXY", "bool", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Logging: secrets never reach these lines (see oauth_integration.services) -----------


def _log_level(name: str, default: str) -> str:
    # An empty or unknown level would make logging.config raise during django.setup().
    raw = str(_env(name, default="")).upper()
    if not raw:
        return default
    if raw not in logging.getLevelNamesMapping():
        SETTINGS_ERRORS.append(f"{name} must be one of DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return default
    return raw


LOG_LEVEL = _log_level("LOG_LEVEL", "INFO")
# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, request id, customer).
LOG_FORMAT = _env("LOG_FORMAT", default="plain").lower()
if LOG_FORMAT not in ("plain", "json"):
    SETTINGS_ERRORS.append("LOG_FORMAT must be plain or json")
    LOG_FORMAT = "plain"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "oauth_integration.logs.ContextFilter"}},
    "formatters": {
        "plain": {
            "()": "oauth_integration.logs.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        "json": {"()": "oauth_integration.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "oauth_integration": {"level": LOG_LEVEL, "propagate": True},
        "klaviyo_sandbox": {"level": LOG_LEVEL, "propagate": True},
    },
}
TEST_RUNNER = "klaviyo_site.test_runner.PytestTestRunner"
