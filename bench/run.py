"""``make bench``: what the integration costs per call, per refresh and at scale.

Starts the fake upstream (``bench/upstream.py``), a scratch database (a temporary SQLite
file, or a scratch database on the PostgreSQL server that ``DATABASE_URL`` names), seeds
100,000 connections, serves the app with gunicorn under production settings, drives it
with ``bench/loadgen.py`` and prints one table. Everything it starts is stopped and
everything it creates is removed when it ends. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import loadgen

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TOKEN_CONTEXT_FIELDS = ("access_token", "refresh_token")
CHANGELIST_URL = "/admin/oauth_integration/oauthtoken/"
SINGLE_FLIGHT_CALLERS = 20
SINGLE_FLIGHT_REFRESH_DELAY = 0.05  # seconds the fake takes to answer a refresh, to widen the race


# --- output ----------------------------------------------------------------------------


@dataclass
class Table:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    header: tuple[str, ...] = ("#", "measurement", "n", "rate", "p50", "p99", "CPU/op", "notes")

    def add(self, *cells: object) -> None:
        row = tuple("" if c is None else str(c) for c in cells)
        self.rows.append(row + ("",) * (len(self.header) - len(row)))
        print("  " + " | ".join(c for c in row if c), flush=True)

    def render(self) -> str:
        widths = [max(len(r[i]) for r in [self.header, *self.rows]) for i in range(len(self.header))]

        def line(cells: tuple[str, ...]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        rows = sorted(self.rows, key=lambda row: row[0])  # by section, in the order measured
        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([line(self.header), rule] + [line(r) for r in rows])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def per_s(rate: float) -> str:
    return f"{rate:,.0f}/s"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def step(message: str) -> None:
    print(f"-- {message}", flush=True)


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass(frozen=True)
class Upstream:
    port: int
    pid: int


@contextlib.contextmanager
def upstream_server(logs: Path) -> Iterator[Upstream]:
    log = (logs / "upstream.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.upstream", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("listening on "):
            raise RuntimeError(f"the fake upstream did not start: {line!r}; see {logs / 'upstream.log'}")
        yield Upstream(port=int(line.split()[-1]), pid=process.pid)
    finally:
        stop(process)
        log.close()


def upstream_call(port: int, method: str, path: str) -> dict[str, Any]:
    connection = loadgen.Connection(HOST, port)
    data = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Length: 0\r\n\r\n".encode()
    try:
        _, body = connection.request(data)
    finally:
        connection.close()
    return json.loads(body)


@contextlib.contextmanager
def gunicorn(env: dict[str, str], port: int, workers: int, logs: Path) -> Iterator[subprocess.Popen[Any]]:
    log = (logs / "gunicorn.log").open("w")
    process = subprocess.Popen(  # noqa: S603 (our interpreter, fixed arguments)
        [
            sys.executable,
            "-m",
            "gunicorn",
            "klaviyo_site.wsgi:application",
            "--workers",
            str(workers),
            "--bind",
            f"{HOST}:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError, EOFError, ValueError):
                status, _ = request_once(port, "/healthz")
                if status == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {logs / 'gunicorn.log'}")
            time.sleep(0.2)
        yield process
    finally:
        stop(process)
        log.close()


def request_once(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = loadgen.Connection(HOST, port)
    try:
        return connection.request(loadgen.build_request(HOST, port, path, headers))
    finally:
        connection.close()


def worker_pids(master: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                    pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by these processes."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


# --- database ----------------------------------------------------------------------------


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
        "KLAVIYO_SCOPES": "accounts:read profiles:read",
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


def customer(number: int) -> str:
    return f"bench-{number:06d}"


def seed(total: int, due: int) -> float:
    """Insert ``total`` connections (the first ``due`` expired), tokens encrypted per row.

    The envelopes come from ``crypto.encrypt`` with the field's own context, exactly what
    ``save()`` stores; rows go in with COPY (PostgreSQL) or executemany (SQLite).
    """
    from django.db import connection, transaction
    from django.utils import timezone

    from oauth_integration import crypto
    from oauth_integration.models import ConnectionStatus, OAuthToken

    meta = OAuthToken._meta
    now = timezone.now()
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    defaults = {f.name: f.get_db_prep_save(f.get_default(), connection) for f in fields}
    adapt = connection.ops.adapt_datetimefield_value
    access_field, refresh_field = (meta.get_field(name) for name in TOKEN_CONTEXT_FIELDS)
    shared = {
        **defaults,
        "connected_at": adapt(now - timedelta(days=1)),
        "updated_at": adapt(now),
        "status": str(ConnectionStatus.ACTIVE),
        "scopes": "accounts:read profiles:read",
        "version": 1,
    }

    def rows(start: int, stop: int) -> Iterator[list[Any]]:
        for number in range(start, stop):
            cid = customer(number)
            expires = now - timedelta(minutes=1) if number < due else now + timedelta(hours=2, minutes=number % 1440)
            values = {
                **shared,
                "customer_identifier": cid,
                "access_token": crypto.encrypt("at-" + secrets.token_urlsafe(375), context=access_field.context(cid)),
                "refresh_token": crypto.encrypt("rt-" + secrets.token_urlsafe(48), context=refresh_field.context(cid)),
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
                for row in rows(0, total):
                    copy.write_row(row)
        else:
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608
            for start in range(0, total, batch):
                cursor.executemany(sql, list(rows(start, min(total, start + batch))))
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
            access_token="at-" + secrets.token_urlsafe(375),
            refresh_token="rt-" + secrets.token_urlsafe(48),
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


# --- measurements ------------------------------------------------------------------------


def timed_calls(fn: Callable[[int], object], count: int, warmup: int) -> tuple[loadgen.LoadResult, float]:
    """Call ``fn`` ``count`` times in this thread (after a warm-up); latencies and this process's CPU time."""
    for i in range(warmup):
        fn(i)
    latencies = []
    cpu = time.process_time()
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        fn(warmup + i)
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    return loadgen.LoadResult(count, 0, wall, latencies, {}), time.process_time() - cpu


def load_row(
    table: Table, number: str, label: str, result: loadgen.LoadResult, cpu: float | None, notes: str = ""
) -> None:
    bad = {s: n for s, n in result.statuses.items() if s != 200}
    if result.errors or bad:
        notes = f"{notes}; errors {result.errors}, non-200 {bad}".lstrip("; ")
    table.add(
        number,
        label,
        f"{result.requests:,}",
        per_s(result.rate),
        ms(result.percentile(0.5)),
        ms(result.percentile(0.99)),
        ms(cpu / result.requests) if cpu is not None else "",
        notes,
    )


def measured_load(pids: list[int], *args: Any, **kwargs: Any) -> tuple[loadgen.LoadResult, float]:
    """loadgen.run, plus the CPU time the server processes ``pids`` spent meanwhile (warm-up excluded)."""
    before: list[float] = []
    result = loadgen.run(*args, on_start=lambda: before.append(cpu_seconds(pids)), **kwargs)
    return result, cpu_seconds(pids) - before[0]


def versus(app: loadgen.LoadResult, upstream: loadgen.LoadResult) -> str:
    return (
        f"{upstream.rate / app.rate:.1f}x fewer req/s, p50 {app.percentile(0.5) / upstream.percentile(0.5):.1f}x "
        f"(+{(app.percentile(0.5) - upstream.percentile(0.5)) * 1000:.2f} ms) vs upstream"
    )


def concurrent(count: int, fn: Callable[[], object]) -> tuple[list[str], float]:
    """Run ``fn`` in ``count`` threads released together; return outcomes and wall time."""
    from django.db import connection

    barrier = threading.Barrier(count + 1)
    outcomes: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            barrier.wait()
            result = fn()
            outcome = "ok" if result in (None, 200) or isinstance(result, dict) else str(result)
        except Exception as exc:  # noqa: BLE001 (reported in the table)
            outcome = type(exc).__name__
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes, time.perf_counter() - started


def expire(customer_identifier: str) -> None:
    from django.utils import timezone

    from oauth_integration.models import OAuthToken

    OAuthToken.objects.filter(customer_identifier=customer_identifier).update(
        expires_at=timezone.now() - timedelta(seconds=5)
    )


def single_flight_notes(outcomes: list[str], stats: dict[str, Any], wall: float) -> tuple[str, str]:
    ok = sum(1 for o in outcomes if o == "ok")
    refreshes = stats["refresh_requests"]
    verdict = "OK" if refreshes == 1 and ok == len(outcomes) else "FAIL"
    return f"{refreshes} refresh", f"{verdict}: {ok}/{len(outcomes)} calls succeeded in {ms(wall)}"


def per_op(fn: Callable[[], object], count: int) -> float:
    """CPU seconds per call of ``fn`` (CPU, not wall time: steady on a busy machine)."""
    started = time.process_time()
    for _ in range(count):
        fn()
    return (time.process_time() - started) / count


# --- the run ---------------------------------------------------------------------------


def machine() -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kib / 1024 / 1024:.1f} GiB"
    return [
        f"machine: {os.cpu_count()} cores ({cpu}), RAM {ram}; load average at start {os.getloadavg()[0]:.2f}",
        f"Python {platform.python_version()}, {platform.platform()}",
    ]


@dataclass
class Bench:
    args: argparse.Namespace
    table: Table
    header: list[str]
    env: dict[str, str]
    upstream: Upstream
    app_port: int
    logs: Path
    concurrency: int
    customers: list[str] = field(default_factory=list)
    session_cookie: str = ""


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the Klaviyo integration (see bench/README.md).")
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per load scenario")
    parser.add_argument("--connections", type=int, default=100_000, help="connections seeded in the database")
    parser.add_argument("--due", type=int, default=10_000, help="of which due for refresh_tokens")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1), help="gunicorn workers")
    parser.add_argument("--concurrency", type=int, default=0, help="client connections (default: = workers)")
    args = parser.parse_args()
    begun = time.perf_counter()
    logs = ROOT / "bench" / "results"
    logs.mkdir(parents=True, exist_ok=True)
    bench: Bench | None = None
    with (
        tempfile.TemporaryDirectory(prefix="klaviyo-bench-") as tmp,
        upstream_server(logs) as upstream,
        scratch_database(Path(tmp)) as (database_url, db_label),
    ):
        app_port = free_port()
        os.environ.update(app_environment(database_url, upstream.port, app_port))
        env = dict(os.environ)  # gunicorn and manage.py inherit the environment, as they would when deployed
        bench = Bench(args, Table(), machine(), env, upstream, app_port, logs, args.concurrency or args.workers)
        run(bench, db_label)

    elapsed = time.perf_counter() - begun
    lines = [
        *bench.header,
        "",
        bench.table.render(),
        "",
        f"make bench finished in {elapsed:.0f} s ({time.strftime('%Y-%m-%d %H:%M %Z')}); "
        f"load average at the end {os.getloadavg()[0]:.2f}",
    ]
    print("\n" + "\n".join(lines))
    (logs / "latest.md").write_text("\n".join(lines) + "\n")


def run(bench: Bench, db_label: str) -> None:
    import django

    django.setup()
    import logging

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    logging.getLogger("oauth_integration").setLevel(logging.WARNING)  # keep this console quiet
    step(f"migrating {db_label}")
    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT sqlite_version()" if connection.vendor == "sqlite" else "SHOW server_version")
        db_version = cursor.fetchone()[0]
    args = bench.args
    bench.header += [
        f"database: {db_label}, version {db_version}",
        f"gunicorn {args.workers} sync workers; load: closed loop, {bench.concurrency} client connections, "
        f"{args.requests:,} measured requests per scenario after warm-up",
        "CPU/op: CPU time of the measured server processes (gunicorn workers, the fake, or this process) per "
        "operation; steadier than wall time when the machine is shared",
    ]

    step(f"seeding {args.connections:,} connections")
    seconds = seed(args.connections, args.due)
    bench.table.add(
        "3",
        f"seed {args.connections:,} connections (encrypt 2 tokens per row, bulk insert)",
        f"{args.connections:,}",
        per_s(args.connections / seconds),
        "",
        "",
        "",
        f"{seconds:.1f} s; {'COPY' if connection.vendor == 'postgresql' else 'executemany'}",
    )
    rate = bulk_create_rate(5000)
    bench.table.add(
        "3",
        "  for comparison: ORM bulk_create, batches of 1,000",
        "5,000",
        per_s(rate),
        "",
        "",
        "",
        f"≈ {args.connections / rate:.0f} s for {args.connections:,}",
    )

    user_model = get_user_model()
    staff = user_model.objects.create_user("bench-staff", password=None, is_staff=True)
    user_model.objects.create_superuser("bench-admin", "", None)
    browser = Client(HTTP_HOST=HOST)
    browser.force_login(staff)
    bench.session_cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    bench.customers = [customer(n) for n in range(args.due, min(args.connections, args.due + 1000))]

    per_call(bench)
    admin_changelist(bench)
    refresh_command(bench)
    refresh_in_process(bench)
    encryption(bench)


def per_call(bench: Bench) -> None:
    """Sections 1 and 2: /profiles through gunicorn against the same call straight to the upstream."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from oauth_integration import services

    args, table, up, port = bench.args, bench.table, bench.upstream, bench.app_port
    tokens = {cid: services.token_storage.retrieve(cid).access_token for cid in bench.customers}
    upstream_requests = [
        loadgen.build_request(
            HOST,
            up.port,
            "/api/profiles",
            {"Authorization": f"Bearer {tokens[cid]}", "revision": "2026-07-15", "Accept": "application/vnd.api+json"},
        )
        for cid in bench.customers
    ]
    cookie = {"Cookie": bench.session_cookie}
    app_requests = [loadgen.build_request(HOST, port, f"/profiles/{cid}", cookie) for cid in bench.customers]

    step("the fake upstream, hit directly")
    upstream_1, cpu = measured_load([up.pid], HOST, up.port, upstream_requests, total=args.requests, concurrency=1)
    load_row(
        table, "1", "GET /api/profiles straight to the fake (token in hand), 1 conn", upstream_1, cpu, "keep-alive"
    )
    upstream_n, cpu = measured_load(
        [up.pid], HOST, up.port, upstream_requests, total=2 * args.requests, concurrency=bench.concurrency
    )
    load_row(table, "1", f"  same, {bench.concurrency} conns: the fake's own throughput", upstream_n, cpu)

    gunicorn_memory = ""
    with gunicorn(bench.env, port, args.workers, bench.logs) as server:
        status, body = request_once(port, f"/profiles/{bench.customers[0]}", cookie)
        if status != 200:
            raise RuntimeError(f"/profiles answered {status}: {body[:300]!r}")
        workers = worker_pids(server.pid)
        step("/profiles through gunicorn")
        upstream_call(up.port, "POST", "/_reset")
        app_1, app_cpu = measured_load(workers, HOST, port, app_requests, total=args.requests, concurrency=1)
        load_row(
            table,
            "1",
            "GET /profiles/<id> via gunicorn, staff session, 1 conn",
            app_1,
            app_cpu,
            versus(app_1, upstream_1),
        )
        app_n, cpu = measured_load(
            workers, HOST, port, app_requests, total=args.requests, concurrency=bench.concurrency
        )
        load_row(table, "1", f"  same, {bench.concurrency} conns", app_n, cpu, versus(app_n, upstream_n))
        stats = upstream_call(up.port, "GET", "/_stats")
        table.add(
            "1",
            "  connections opened to the upstream by the app in the two runs above",
            f"{stats['connections'] - 1:,}",
            "",
            "",
            "",
            "",
            f"for {stats['api_requests']:,} API calls: pooled keep-alive, one pool per worker",
        )

        step("single-flight refresh")
        single = customer(args.connections - 1)
        upstream_call(up.port, "POST", f"/_config?refresh_delay={SINGLE_FLIGHT_REFRESH_DELAY}")
        for label, call in (
            (
                f"{SINGLE_FLIGHT_CALLERS} concurrent GET /profiles, expired token ({args.workers} gunicorn workers)",
                lambda: request_once(port, f"/profiles/{single}", cookie)[0],
            ),
            (
                f"{SINGLE_FLIGHT_CALLERS} threads calling services.get_profiles on an expired token",
                lambda: services.get_profiles(customer_identifier=single),
            ),
        ):
            expire(single)
            upstream_call(up.port, "POST", "/_reset")
            outcomes, wall = concurrent(SINGLE_FLIGHT_CALLERS, call)
            refreshes, notes = single_flight_notes(outcomes, upstream_call(up.port, "GET", "/_stats"), wall)
            table.add("2", label, SINGLE_FLIGHT_CALLERS, refreshes, "", "", "", notes)
        upstream_call(up.port, "POST", "/_config?refresh_delay=0")

        peaks = [memory_kib(pid, "VmHWM") for pid in worker_pids(server.pid)]
        if peaks:
            gunicorn_memory = (
                f"max {max(peaks) / 1024:.1f} MiB over {len(peaks)} workers "
                f"(master {memory_kib(server.pid, 'VmHWM') / 1024:.1f} MiB)"
            )
    table.add("3", "gunicorn worker peak RSS (VmHWM) after the load", "", "", "", "", "", gunicorn_memory or "n/a")

    step("services.get_profiles in-process")
    customers = bench.customers
    service, service_cpu = timed_calls(
        lambda i: services.get_profiles(customer_identifier=customers[i % len(customers)]), args.requests, 100
    )
    django_share = app_cpu / app_1.requests - service_cpu / service.requests
    load_row(
        table,
        "1",
        "services.get_profiles in-process (no HTTP server in front), 1 thread",
        service,
        service_cpu,
        f"+{(service.percentile(0.5) - upstream_1.percentile(0.5)) * 1000:.2f} ms p50 over upstream; "
        f"Django's share of the request CPU ≈ {django_share * 1000:.2f} ms",
    )
    with CaptureQueriesContext(connection) as queries:
        services.get_profiles(customer_identifier=customers[0])
    service_queries = len(queries)
    client = Client(HTTP_HOST=HOST)
    client.cookies.load(bench.session_cookie)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/profiles/{customers[0]}")
    table.add(
        "1",
        "SQL queries per call",
        "",
        "",
        "",
        "",
        "",
        f"GET /profiles: {len(queries)} (HTTP {response.status_code}: session, user, connection); "
        f"services.get_profiles: {service_queries}",
    )


def admin_changelist(bench: Bench) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    step("admin changelist")
    client = Client(HTTP_HOST=HOST)
    client.force_login(get_user_model().objects.get(username="bench-admin"))
    label = f"admin changelist {CHANGELIST_URL} over {bench.args.connections:,} connections (in-process)"
    first = client.get(CHANGELIST_URL)
    if first.status_code != 200:
        bench.table.add("3", label, "", "", "", "", "", f"n/a (changelist answered HTTP {first.status_code})")
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
        "3",
        label,
        len(timings),
        "",
        ms(statistics.median(timings)),
        ms(max(timings)),
        ms(cpu),
        f"{counts[-1]} queries per page view, {ms(sql)} in SQL",
    )


def refresh_command(bench: Bench) -> None:
    from django.utils import timezone

    from oauth_integration.models import OAuthToken

    step("refresh_tokens")
    due = OAuthToken.objects.filter(expires_at__lt=timezone.now()).count()
    label = f"manage.py refresh_tokens over {due:,} due connections, default concurrency"
    upstream_call(bench.upstream.port, "POST", "/_reset")
    with (bench.logs / "refresh_tokens.log").open("w") as log:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "manage.py", "refresh_tokens"],
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
        "3",
        label,
        f"{refreshed:,}",
        per_s(refreshed / wall),
        "",
        "",
        ms(cpu / refreshed) if refreshed else "",
        f"{wall:.1f} s incl. start-up; exit {completed.returncode}; {left:,} left expired; "
        f"output in bench/results/refresh_tokens.log",
    )


def refresh_in_process(bench: Bench) -> None:
    """What one refresh costs us: services.refresh_connection, one after another, in this process."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from oauth_integration import services

    step("services.refresh_connection in-process")
    count = min(500, len(bench.customers))
    customers = bench.customers[-count:]
    upstream_call(bench.upstream.port, "POST", "/_reset")
    with CaptureQueriesContext(connection) as queries:
        services.refresh_connection(customer_identifier=customers[0])
    result, cpu = timed_calls(lambda i: services.refresh_connection(customer_identifier=customers[i]), count - 1, 0)
    refreshed = upstream_call(bench.upstream.port, "GET", "/_stats")["refresh_requests"]
    load_row(
        bench.table,
        "3",
        "services.refresh_connection in-process (one refresh, single-flight), 1 thread",
        result,
        cpu,
        f"{len(queries)} queries per refresh; {refreshed:,} refreshes seen upstream",
    )


def encryption(bench: Bench) -> None:
    from django.db import connection

    from oauth_integration import crypto
    from oauth_integration.models import OAuthToken

    step("encryption")
    table = bench.table
    sample = "at-" + secrets.token_urlsafe(375)
    access_field = OAuthToken._meta.get_field("access_token")
    context = access_field.context(bench.customers[0])
    envelope = crypto.encrypt(sample, context=context)
    n = 20_000
    encrypt = per_op(lambda: crypto.encrypt(sample, context=context), n)
    table.add("4", "crypto.encrypt, 500-character access token", f"{n:,}", "", "", "", us(encrypt))
    decrypt = per_op(lambda: crypto.decrypt(envelope, context=context), n)
    table.add("4", "crypto.decrypt", f"{n:,}", "", "", "", us(decrypt))

    rows = list(OAuthToken.objects.filter(customer_identifier__in=bench.customers))
    started = time.process_time()
    for row in rows:
        row.access_token  # noqa: B018 (the first read decrypts)
    read = (time.process_time() - started) / len(rows)
    table.add("4", "token read through the model field (first access decrypts)", f"{len(rows):,}", "", "", "", us(read))
    started = time.process_time()
    for row in rows:
        row.access_token = sample
        access_field.get_db_prep_save(row.access_token, connection)  # what save() does with it
    write = (time.process_time() - started) / len(rows)
    table.add("4", "token write through the model field (bind, encrypt)", f"{len(rows):,}", "", "", "", us(write))
    saved = rows[:200]
    started = time.process_time()
    for row in saved:
        row.save(update_fields=["access_token", "refresh_token", "updated_at"])
    save = (time.process_time() - started) / len(saved)
    table.add("4", "save() of a row with both tokens, incl. the UPDATE", f"{len(saved):,}", "", "", "", ms(save))
