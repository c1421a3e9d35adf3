"""Section 5: what a big integration does over time: walking 100,000 profiles, the keep-alive's load on
Klaviyo's token endpoint at 100,000 connections, and what metrics cost per request."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
import tracemalloc
from datetime import timedelta

from bench import compare, processes
from bench.context import Bench
from bench.processes import ROOT, upstream_call
from bench.report import ms, per_s, step

WALK_PAGE_SIZE = 100
# Cron runs refresh_tokens every 10 minutes; a run's requests times 6 is the hourly load.
RUNS_PER_HOUR = 6
CRON_INTERVAL = 3600 // RUNS_PER_HOUR  # seconds
IN_USE_SHARE = 0.8  # of the connections: called since their last refresh; the others sit idle
POLICIES = (
    # (label, refresh_tokens flags, days over which idle refresh tokens were last used)
    (
        "before: pre-refresh connections in use (600 s ahead), refresh tokens idle 30 days",
        ["--expiring-within", "600", "--unused-days", "30"],
        30,
    ),
    ("after (the default): refresh tokens unused for 75 days only", [], 75),
)


def walk(bench: Bench) -> None:
    """services.iter_klaviyo over 10,000 then 100,000 profiles: time, and peak memory stays flat."""
    from oauth_integration import services

    customer = bench.customers[0]
    for total in (10_000, 100_000):
        step(f"iter_klaviyo over {total:,} profiles")
        upstream_call(bench.upstream.port, "POST", f"/_config?profiles_total={total}")

        def run_walk() -> int:
            params = {"page[size]": str(WALK_PAGE_SIZE)}
            return sum(
                1 for _ in services.iter_klaviyo(customer_identifier=customer, path="/api/profiles", params=params)
            )

        started, cpu = time.perf_counter(), time.process_time()
        count = run_walk()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        gc.collect()
        tracemalloc.start()
        run_walk()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        bench.table.add(
            section="5",
            measurement=f"services.iter_klaviyo over {total:,} profiles, pages of {WALK_PAGE_SIZE}",
            n=f"{count:,}",
            rate=per_s(count / wall),
            cpu=ms(cpu / (count / WALK_PAGE_SIZE)),
            notes=f"{wall:.1f} s; peak Python memory {peak / 2**20:.1f} MiB (tracemalloc); CPU per page",
        )
    upstream_call(bench.upstream.port, "POST", "/_config?profiles_total=20")


def keep_alive_load(bench: Bench) -> None:
    """Token-endpoint requests per hour that refresh_tokens makes at 100,000 connections, per policy.

    The connections are set to the steady state of each policy: those in use expire evenly
    over the next hour (Klaviyo's tokens live an hour); the idle ones were last refreshed
    evenly over the policy's idle window plus one cron interval, so that the share which fell
    due since the previous run is there to be refreshed. One run of the real command against
    the fake upstream is counted; a 10-minute cron makes six runs an hour.
    """
    from oauth_integration.models import OAuthToken

    total = OAuthToken.objects.count()
    for label, flags, idle_days in POLICIES:
        step(f"keep-alive load: {label}")
        _steady_state(idle_days)
        upstream_call(bench.upstream.port, "POST", "/_reset")
        completed = subprocess.run(  # noqa: S603 (our interpreter, fixed arguments)
            [sys.executable, "manage.py", "refresh_tokens", "-v0", *flags],
            cwd=ROOT,
            env=bench.env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        requests = upstream_call(bench.upstream.port, "GET", "/_stats")["refresh_requests"]
        per_hour = requests * RUNS_PER_HOUR
        bench.table.add(
            section="5",
            measurement=f"refresh_tokens load on Klaviyo at {total:,} connections ({IN_USE_SHARE:.0%} in use), {label}",
            n=f"{requests:,}",
            rate=f"{per_hour:,}/h",
            notes=f"{per_hour / 3600:.2f} token requests/s; a run every 10 min; exit {completed.returncode}",
        )


def _steady_state(idle_days: int) -> None:
    """Rewrite every connection's times (not its tokens) to the steady state described above."""
    from django.utils import timezone

    from oauth_integration.models import OAuthToken

    now = timezone.now()
    idle_window = idle_days * 86_400 + CRON_INTERVAL
    rows = list(OAuthToken.objects.only("id").order_by("id"))
    in_use_every = round(1 / (1 - IN_USE_SHARE))  # every 5th connection sits idle
    for number, row in enumerate(rows):
        if number % in_use_every:
            row.expires_at = now + timedelta(seconds=number % 3600)
            row.last_refreshed_at = row.expires_at - timedelta(hours=1)
            row.last_called_at = now
        else:
            row.last_refreshed_at = now - timedelta(seconds=(number * 7919) % idle_window)
            row.expires_at = row.last_refreshed_at + timedelta(hours=1)
            row.last_called_at = row.last_refreshed_at - timedelta(minutes=1)
        row.connected_at = row.last_refreshed_at - timedelta(days=1)
    fields = ["expires_at", "last_refreshed_at", "last_called_at", "connected_at"]
    OAuthToken.objects.bulk_update(rows, fields, batch_size=2000)


def metrics_overhead(bench: Bench) -> None:
    """/profiles req/s under the comparison's load with metrics off (no METRICS_TOKEN) and on."""
    customers = bench.customers[: bench.args.compare_customers]
    paths = [f"/profiles/{cid}" for cid in customers]
    cookie = {"Cookie": bench.session_cookie}
    results = {}
    for label, token in (("off", ""), ("on", "bench-metrics-token")):
        step(f"/profiles with metrics {label}")
        env = {**bench.env, "METRICS_TOKEN": token}
        port = processes.free_port()
        with processes.app_server(
            env, port, bench.serving, bench.logs / f"metrics-{label}-{bench.serving.server}.log"
        ) as server:
            processes.get(port, paths[0], cookie)
            load, cpu = compare.drive(bench, port, paths, cookie, server.pids())
        results[label] = load
        bench.table.add_load(
            section="5",
            measurement=f"GET /profiles/<id> via the server, metrics {label}, {bench.args.compare_connections} conns",
            result=load,
            cpu=sum(cpu),
        )
    change = results["on"].rate / results["off"].rate - 1
    bench.table.add(section="5", measurement="  throughput with metrics on against off", notes=f"{change:+.1%}")
