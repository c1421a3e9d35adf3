"""Sections 3 and 4: 100,000 connections (seeding, admin, refresh_tokens, one refresh) and encryption."""

from __future__ import annotations

import resource
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar

from bench import seed
from bench.context import Bench
from bench.processes import HOST, ROOT, upstream_call
from bench.report import ms, per_s, step, us
from bench.scenarios import timed_calls

T = TypeVar("T")
CHANGELIST_URL = "/admin/oauth_integration/oauthtoken/"


def seeding(bench: Bench, start: int) -> None:
    """Seed connections ``start``..``--connections`` (the last ``--due`` expired), then time bulk_create."""
    from django.db import connection

    args = bench.args
    count = args.connections - start
    step(f"seeding {count:,} connections")
    seconds = seed.connections(start, args.connections, args.connections - args.due)
    bench.table.add(
        section="3",
        measurement=f"seed {count:,} connections (encrypt 2 tokens per row, bulk insert)",
        n=f"{count:,}",
        rate=per_s(count / seconds),
        notes=f"{seconds:.1f} s; {'COPY' if connection.vendor == 'postgresql' else 'executemany'}",
    )
    rate = seed.bulk_create_rate(5000)
    bench.table.add(
        section="3",
        measurement="  for comparison: ORM bulk_create, batches of 1,000",
        n="5,000",
        rate=per_s(rate),
        notes=f"≈ {args.connections / rate:.0f} s for {args.connections:,}",
    )


def admin_changelist(bench: Bench) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    step("admin changelist")
    client = Client(HTTP_HOST=HOST)
    client.force_login(get_user_model().objects.get(username="bench-admin"))
    measurement = f"admin changelist {CHANGELIST_URL} over {bench.args.connections:,} connections (in-process)"
    first = client.get(CHANGELIST_URL)
    if first.status_code != 200:
        bench.table.add(section="3", measurement=measurement, notes=f"n/a (HTTP {first.status_code})")
        return
    timings, counts = [], []
    cpu = time.process_time()
    for _ in range(5):
        with CaptureQueriesContext(connection) as queries:
            t0 = time.perf_counter()
            client.get(CHANGELIST_URL)
            timings.append(time.perf_counter() - t0)
        counts.append(len(queries))
    cpu = (time.process_time() - cpu) / len(timings)
    sql = sum(float(q["time"]) for q in queries.captured_queries)
    bench.table.add(
        section="3",
        measurement=measurement,
        n=len(timings),
        p50=ms(statistics.median(timings)),
        p99=ms(max(timings)),
        cpu=ms(cpu),
        notes=f"{counts[-1]} queries per page view, {ms(sql)} in SQL",
    )


def refresh_command(bench: Bench) -> None:
    from django.utils import timezone

    from oauth_integration.models import OAuthToken

    step("refresh_tokens")
    due = OAuthToken.objects.filter(expires_at__lt=timezone.now()).count()
    upstream_call(bench.upstream.port, "POST", "/_reset")
    with (bench.logs / "refresh_tokens.log").open("w") as log:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        completed = subprocess.run(
            # The seeded due connections are in use and expiring: pre-refreshing them is opt-in.
            [sys.executable, "manage.py", "refresh_tokens", "--expiring-within", "600"],
            cwd=ROOT,
            env=bench.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    refreshed = upstream_call(bench.upstream.port, "GET", "/_stats")["refresh_requests"]
    left = OAuthToken.objects.filter(expires_at__lt=timezone.now()).count()
    bench.table.add(
        section="3",
        measurement=f"manage.py refresh_tokens --expiring-within 600 over {due:,} due connections, default concurrency",
        n=f"{refreshed:,}",
        rate=per_s(refreshed / wall),
        cpu=ms(cpu / refreshed) if refreshed else None,
        notes=f"{wall:.1f} s incl. start-up; exit {completed.returncode}; {left:,} left expired; "
        "output in bench/results/refresh_tokens.log",
    )


def refresh_in_process(bench: Bench) -> None:
    """What one refresh costs us: services.refresh_connection, one after another, in this process."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from oauth_integration import services

    step("queries of a refreshing call")
    from oauth_integration.models import OAuthToken

    refreshing = bench.customers[-1]
    OAuthToken.objects.filter(customer_identifier=refreshing).update(expires_at=timezone.now() - timedelta(seconds=5))
    with CaptureQueriesContext(connection) as queries:
        services.get_profiles(customer_identifier=refreshing)
    bench.table.add(
        section="3",
        measurement="SQL queries of a call that refreshes first (services.get_profiles on an expired token)",
        n=len(queries),
        notes="read, claim the lease, store the tokens (releasing the lease), record the event",
    )
    step("services.refresh_connection in-process")
    count = min(500, len(bench.customers))
    customers = bench.customers[-count:]
    upstream_call(bench.upstream.port, "POST", "/_reset")
    with CaptureQueriesContext(connection) as queries:
        services.refresh_connection(customer_identifier=customers[0])
    result, cpu = timed_calls(lambda i: services.refresh_connection(customer_identifier=customers[i]), count - 1, 0)
    refreshed = upstream_call(bench.upstream.port, "GET", "/_stats")["refresh_requests"]
    bench.table.add_load(
        section="3",
        measurement="services.refresh_connection in-process (one refresh, single-flight), 1 thread",
        result=result,
        cpu=cpu,
        notes=f"{len(queries)} queries per refresh; {refreshed:,} refreshes seen upstream",
    )


def cpu_per(items: Sequence[T], fn: Callable[[T], object]) -> float:
    """CPU seconds per call of ``fn`` over ``items`` (CPU, not wall time: steady on a busy machine)."""
    started = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - started) / len(items)


def encryption(bench: Bench) -> None:
    """Section 4: µs of CPU per encrypt, decrypt, field read and write, and a whole save()."""
    from django.db import connection

    from oauth_integration import crypto
    from oauth_integration.models import OAuthToken

    step("encryption")
    sample = "at-" + secrets.token_urlsafe(375)
    access_field = OAuthToken._meta.get_field("access_token")
    context = access_field.context(bench.customers[0])
    envelopes = [crypto.encrypt(sample, context=context) for _ in range(20_000)]
    rows = list(OAuthToken.objects.filter(customer_identifier__in=bench.customers))

    def write(row: OAuthToken) -> None:
        row.access_token = sample
        access_field.get_db_prep_save(row.access_token, connection)  # what save() does with it

    def save(row: OAuthToken) -> None:
        row.save(update_fields=["access_token", "refresh_token", "updated_at"])

    n = range(20_000)
    for measurement, items, fn, unit in (
        ("crypto.encrypt, 500-character access token", n, lambda _: crypto.encrypt(sample, context=context), us),
        # Every envelope a new one: decrypt remembers what it opened (the next read of a token is free).
        (
            "crypto.decrypt, each envelope new",
            envelopes,
            lambda envelope: crypto.decrypt(envelope, context=context),
            us,
        ),
        (
            "crypto.decrypt, the same envelope again",
            envelopes[:1] * 20_000,
            lambda e: crypto.decrypt(e, context=context),
            us,
        ),
        ("token read through the model field (first access decrypts)", rows, lambda row: row.access_token, us),
        ("token write through the model field (bind, encrypt)", rows, write, us),
        ("save() of a row with both tokens, incl. the UPDATE", rows[:200], save, ms),
    ):
        cpu = cpu_per(items, fn)
        bench.table.add(section="4", measurement=measurement, n=f"{len(items):,}", cpu=unit(cpu))
