"""``python -m bench``: orchestrates a run and prints its tables (see bench/README.md).

Starts the fake upstream and a scratch database (a temporary SQLite file, or a scratch
database on the PostgreSQL server that ``DATABASE_URL`` names), seeds what the chosen parts
need, runs them, and prints one table per kind (the bench's own measurements; the Node
example side by side). Everything it starts is stopped and everything it creates is
removed when it ends, also on failure or Ctrl-C; the tables and server logs stay in
bench/results/.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
import warnings
from pathlib import Path

from bench import compare, longrun, processes, sandbox, scale, scenarios, seed, wrk
from bench.context import Bench
from bench.report import machine, step

PARTS = {
    "calls": "sections 1 and 2: /profiles per call against the upstream, single-flight refresh",
    "scale": "section 3: 100,000 connections, admin changelist, refresh_tokens, one refresh",
    "crypto": "section 4: encryption",
    "compare": "the Node example side by side (needs node and npm)",
    "walk": "section 5: services.iter_klaviyo over 10,000 and 100,000 profiles (time, flat memory)",
    "keepalive": "section 5: refresh_tokens' requests to Klaviyo per hour at 100,000 connections, before/after",
    "metrics": "section 5: /profiles throughput with metrics off and on",
    "sandbox": "once: could the project's own sandbox replace the fast fake upstream? (not in the default run)",
}
DEFAULT_PARTS = ("calls", "scale", "crypto", "compare", "walk", "keepalive", "metrics")
WORKING_SET = 1000  # connected customers the per-call load cycles through


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the Klaviyo integration (see bench/README.md). Parts: "
        + "; ".join(f"{name}: {what}" for name, what in PARTS.items()),
    )
    parser.add_argument(
        "--only", default=",".join(DEFAULT_PARTS), help="comma-separated parts to run (default: %(default)s)"
    )
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per section 1 scenario")
    parser.add_argument("--concurrency", type=int, default=4, help="client connections of section 1's second runs")
    parser.add_argument("--connections", type=int, default=100_000, help="connections seeded for section 3")
    parser.add_argument("--due", type=int, default=10_000, help="of which due for refresh_tokens")
    serving = parser.add_argument_group("serving (defaults: as make serve)")
    serving.add_argument(
        "--server", choices=("granian", "gunicorn"), default="granian", help="the HTTP server (default: %(default)s)"
    )
    serving.add_argument("--workers", type=int, help="worker processes (WEB_CONCURRENCY)")
    serving.add_argument("--threads", type=int, help="threads per worker (SERVER_THREADS; gunicorn: GUNICORN_THREADS)")
    serving.add_argument("--worker-class", help="gunicorn's worker class (GUNICORN_WORKER_CLASS)")
    node = parser.add_argument_group("the Node comparison")
    node.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto", help="auto: wrk when on PATH")
    node.add_argument("--compare-seconds", type=float, default=10.0, help="measured seconds per side")
    node.add_argument("--compare-warmup", type=float, default=3.0, help="warm-up seconds per side")
    node.add_argument("--compare-connections", type=int, default=16, help="client connections")
    node.add_argument("--compare-customers", type=int, default=50, help="connected customers on each side")
    node.add_argument(
        "--compare-rounds", type=int, default=1, help="alternate the two sides this many times; medians are reported"
    )
    args = parser.parse_args()
    args.parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown or not args.parts:
        parser.error(f"--only takes parts among {', '.join(PARTS)}; not {', '.join(sorted(unknown)) or 'nothing'}")
    if args.loadgen == "wrk" and not wrk.available():
        parser.error("--loadgen wrk: wrk is not on PATH")
    args.use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and wrk.available())
    if args.connections < WORKING_SET + 1 + args.due:
        parser.error(f"--connections must be at least {WORKING_SET + 1} + --due")
    return args


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    args = parse_args()
    # Ctrl-C and SIGTERM unwind through the context managers, which stop and remove what was started
    # (also when this process was started with SIGINT ignored, as in the background of a script).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    begun = time.perf_counter()
    logs = processes.ROOT / "bench" / "results"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        bench = start(args, logs)
    except KeyboardInterrupt:
        print("\nInterrupted: everything the bench started is stopped and its temporary files removed.", flush=True)
        raise SystemExit(130) from None

    lines = [*bench.header]
    for table in (bench.table, bench.compare):
        if table.rows:
            lines += ["", table.render()]
    lines += [
        "",
        f"python -m bench --only {','.join(args.parts)} finished in {time.perf_counter() - begun:.0f} s "
        f"({time.strftime('%Y-%m-%d %H:%M %Z')}); load average at the end {os.getloadavg()[0]:.2f}",
    ]
    print("\n" + "\n".join(lines))
    (logs / "latest.md").write_text("\n".join(lines) + "\n")


def start(args: argparse.Namespace, logs: Path) -> Bench:
    """Start the fake upstream and a scratch database, run the chosen parts, stop and remove it all."""
    with (
        tempfile.TemporaryDirectory(prefix="klaviyo-bench-") as tmp,
        processes.upstream_server(logs) as upstream,
        seed.scratch_database(Path(tmp)) as (database_url, db_label),
    ):
        app_port = processes.free_port()
        os.environ.update(seed.app_environment(database_url, upstream.port, app_port))
        env = dict(os.environ)  # gunicorn and manage.py inherit the environment, as they would when deployed
        threads = "SERVER_THREADS" if args.server == "granian" else "GUNICORN_THREADS"
        overrides = {"WEB_CONCURRENCY": args.workers, threads: args.threads, "GUNICORN_WORKER_CLASS": args.worker_class}
        given = {name: str(value) for name, value in overrides.items() if value is not None}
        serving = processes.serving_defaults({**env, **given}, args.server)
        bench = Bench(args, env, upstream, serving, logs, Path(tmp), header=machine())
        run(bench, db_label)
    return bench


def run(bench: Bench, db_label: str) -> None:
    import logging

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    logging.getLogger("oauth_integration").setLevel(logging.WARNING)  # keep this console quiet
    # The in-process Django client builds WhiteNoise, which notes that collectstatic has not run.
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
    parts, args = bench.args.parts, bench.args
    step(f"migrating {db_label}")
    call_command("migrate", verbosity=0, interactive=False)
    if os.environ.get("CACHE_URL"):
        from django.core.cache import cache

        step("emptying the cache CACHE_URL names (sessions and users of the scratch database go there)")
        cache.clear()
    with connection.cursor() as cursor:
        cursor.execute("SELECT sqlite_version()" if connection.vendor == "sqlite" else "SHOW server_version")
        db_version = cursor.fetchone()[0]
    bench.header += [
        f"database: {db_label}, version {db_version}",
        f"serving: {bench.serving.describe()}, as make serve; DEBUG off",
    ]
    main_parts = {"calls", "scale", "crypto", "walk", "keepalive", "metrics"} & set(parts)
    # The per-call load's customers and one more for single-flight; the comparison's, and one more for its checks.
    working = max(WORKING_SET + 1 if main_parts else 0, args.compare_customers + 1 if "compare" in parts else 0)
    step(f"seeding {working:,} connected customers")
    seed.connections(0, working, first_due=working)
    bench.customers = [seed.customer(n) for n in range(min(working, WORKING_SET))]
    bench.session_cookie = seed.users()
    if main_parts:
        bench.header += [
            f"sections 1-2 load: closed loop, 1 then {args.concurrency} client connections, {args.requests:,} measured "
            "requests per scenario after warm-up (bench/loadgen.py)",
            "CPU/op: CPU time of the measured server processes (gunicorn workers, the fake, or this process) per "
            "operation; steadier than wall time when the machine is shared",
        ]
    if "compare" in parts:
        customers = [seed.customer(n) for n in range(args.compare_customers)]
        compare.run(bench, customers, seed.customer(args.compare_customers))
    if "sandbox" in parts:
        sandbox.run(bench)
    if "calls" in parts:
        scenarios.per_call(bench)
    if "scale" in parts:
        scale.seeding(bench, working)
        scale.admin_changelist(bench)
        scale.refresh_command(bench)
        scale.refresh_in_process(bench)
    if "crypto" in parts:
        scale.encryption(bench)
    if "walk" in parts:
        longrun.walk(bench)
    if "keepalive" in parts:
        if "scale" not in parts:
            scale.seeding(bench, working)
        longrun.keep_alive_load(bench)
    if "metrics" in parts:
        longrun.metrics_overhead(bench)
