"""The bench's data: a scratch database, the app's production settings, connections and sessions.

Connections are inserted directly with envelopes from ``crypto.encrypt`` under the field's
own context (what ``save()`` stores), with COPY on PostgreSQL and ``executemany`` on SQLite.
The Node example's customers go into its SQLite file the way its storage.js writes them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.processes import HOST

TOKEN_FIELDS = ("access_token", "refresh_token")
SCOPES = "accounts:read profiles:read"


def customer(number: int) -> str:
    return f"bench-{number:06d}"


def access_token() -> str:
    return "at-" + secrets.token_urlsafe(375)  # as long as Klaviyo's JWTs (about 500 characters)


def refresh_token() -> str:
    return "rt-" + secrets.token_urlsafe(48)


@contextlib.contextmanager
def scratch_database(tmp: Path) -> Iterator[tuple[str, str]]:
    """Yield (DATABASE_URL, description) of an empty database that is removed afterwards."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        yield f"sqlite:///{tmp / 'bench.sqlite3'}", "SQLite (temporary file)"
        return
    import psycopg

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'bench'}_scratch_{os.getpid()}"
    admin = {
        "host": parts.hostname or HOST,
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        "password": parts.password or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}")), f"PostgreSQL (scratch database {name})"
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def app_environment(database_url: str, upstream_port: int, app_port: int) -> dict[str, str]:
    """Production settings, every one set explicitly so a developer's .env cannot leak in."""
    return {
        "DJANGO_SETTINGS_MODULE": "klaviyo_site.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": f"{HOST},localhost",
        "HTTPS": "false",
        "SECURE_SSL_REDIRECT": "false",
        "BEHIND_PROXY": "false",
        "DATABASE_URL": database_url,
        "KLAVIYO_SANDBOX": "false",
        "KLAVIYO_CLIENT_ID": "bench-client-id",
        "KLAVIYO_CLIENT_SECRET": secrets.token_urlsafe(24),
        "KLAVIYO_SCOPES": SCOPES,
        "KLAVIYO_REDIRECT_URL": f"http://{HOST}:{app_port}/authorize",
        "KLAVIYO_AUTHORIZE_URL": f"http://{HOST}:{upstream_port}/oauth/authorize",
        "KLAVIYO_BASE_URL": f"http://{HOST}:{upstream_port}",
        "KLAVIYO_REVISION": "2026-07-15",
        "KLAVIYO_HTTP_TIMEOUT": "10",
        "KLAVIYO_REFRESH_MARGIN_SECONDS": "60",
        "KLAVIYO_MAX_RETRIES": "2",
        "KLAVIYO_RETRY_MAX_WAIT": "10",
        "TOKEN_ENCRYPTION_KEY": secrets.token_hex(32),
        "TOKEN_ENCRYPTION_KEY_FALLBACKS": "",
        "LOG_LEVEL": "INFO",
        "PYTHONWARNINGS": "ignore::UserWarning:whitenoise.base",
    }


def connections(start: int, stop: int, first_due: int) -> float:
    """Insert connections ``start``..``stop - 1`` (those from ``first_due`` on expired); seconds taken."""
    from django.db import connection, transaction
    from django.utils import timezone

    from oauth_integration import crypto
    from oauth_integration.models import ConnectionStatus, OAuthToken

    meta = OAuthToken._meta
    now = timezone.now()
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    defaults = {f.name: f.get_db_prep_save(f.get_default(), connection) for f in fields}
    adapt = connection.ops.adapt_datetimefield_value
    access_field, refresh_field = (meta.get_field(name) for name in TOKEN_FIELDS)
    shared = {
        **defaults,
        "connected_at": adapt(now - timedelta(days=1)),
        "updated_at": adapt(now),
        "status": str(ConnectionStatus.ACTIVE),
        "scopes": SCOPES,
        "version": 1,
    }

    def rows(first: int, last: int) -> Iterator[list[Any]]:
        for number in range(first, last):
            cid = customer(number)
            due = number >= first_due
            expires = now - timedelta(minutes=1) if due else now + timedelta(hours=2, minutes=number % 1440)
            values = {
                **shared,
                "customer_identifier": cid,
                "access_token": crypto.encrypt(access_token(), context=access_field.context(cid)),
                "refresh_token": crypto.encrypt(refresh_token(), context=refresh_field.context(cid)),
                "expires_at": adapt(expires),
                # Refreshed in the past, and called since: connections in use, so the expired
                # ones are due for refresh_tokens (which leaves idle connections alone).
                "last_refreshed_at": adapt(min(expires - timedelta(hours=1), now - timedelta(minutes=number % 60 + 1))),
                "last_called_at": adapt(now - timedelta(seconds=30)),
                "klaviyo_account_id": f"ACC{number:06d}",
                "klaviyo_account_name": f"Store {number}",
            }
            yield [values[f.name] for f in fields]

    columns = [connection.ops.quote_name(f.column) for f in fields]
    started = time.perf_counter()
    table = meta.db_table
    batch = 10_000
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows(start, stop):
                    copy.write_row(row)
        else:
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608
            for first in range(start, stop, batch):
                cursor.executemany(sql, list(rows(first, min(stop, first + batch))))
    with connection.cursor() as cursor:
        # As autovacuum would have by then on PostgreSQL (visibility map for index-only scans).
        cursor.execute(f"VACUUM ANALYZE {table}" if connection.vendor == "postgresql" else f"ANALYZE {table}")
    return time.perf_counter() - started


def bulk_create_rate(count: int) -> float:
    """Rows per second through the ORM's bulk_create (encrypting per row), for comparison."""
    from django.utils import timezone

    from oauth_integration.models import OAuthToken

    now = timezone.now()
    objects = [
        OAuthToken(
            customer_identifier=f"bulk-{n:06d}",
            access_token=access_token(),
            refresh_token=refresh_token(),
            expires_at=now + timedelta(hours=3),
            last_refreshed_at=now,
            version=1,
        )
        for n in range(count)
    ]
    started = time.perf_counter()
    OAuthToken.objects.bulk_create(objects, batch_size=1000)
    elapsed = time.perf_counter() - started
    OAuthToken.objects.filter(customer_identifier__startswith="bulk-").delete()
    return count / elapsed


def expire(customer_identifier: str) -> None:
    """Make the app's stored access token of this customer expired."""
    from django.utils import timezone

    from oauth_integration.models import OAuthToken

    OAuthToken.objects.filter(customer_identifier=customer_identifier).update(
        expires_at=timezone.now() - timedelta(seconds=5)
    )


def users() -> str:
    """Create the bench's staff user (logged in, allowed to read connections, as /profiles requires)
    and superuser; return the staff session cookie."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.test import Client

    user_model = get_user_model()
    staff = user_model.objects.create_user("bench-staff", password=None, is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="view_oauthtoken", content_type__app_label="oauth_integration")
    )
    user_model.objects.create_superuser("bench-admin", "", None)
    browser = Client(HTTP_HOST=HOST)
    browser.force_login(staff)
    return f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"


# --- the Node example's storage (storage.js) ------------------------------------------------


def node_encrypt(plain: str, key_hex: str) -> str:
    """storage.js's ``encrypt``: AES-256-CBC, PKCS#7 padding, fresh IV, ``<cipher hex>:<iv hex>``."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(bytes.fromhex(key_hex)), modes.CBC(iv)).encryptor()
    return f"{(encryptor.update(padded) + encryptor.finalize()).hex()}:{iv.hex()}"


def node_customers(database: Path, key_hex: str, customers: list[str]) -> None:
    """Insert connected customers into the Node example's ``CustomerTokens`` (created by its start-up)."""
    expires_ms = int((time.time() + 3 * 3600) * 1000)  # DateTime as epoch milliseconds, as Prisma stores it
    rows = [(cid, access_token(), node_encrypt(refresh_token(), key_hex), expires_ms) for cid in customers]
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.executemany(
            'INSERT INTO "CustomerTokens" ("customerIdentifier", "accessToken", "refreshToken", "expiresAt") '
            "VALUES (?, ?, ?, ?)",
            rows,
        )


def node_expire(database: Path, customer_identifier: str) -> None:
    """Make the Node example's stored access token of this customer expired."""
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute(
            'UPDATE "CustomerTokens" SET "expiresAt" = ? WHERE "customerIdentifier" = ?',
            (int((time.time() - 5) * 1000), customer_identifier),
        )
