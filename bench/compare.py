"""The Node example side by side: the same fake upstream, load, machine and customers, back to back.

Installs ``bench/node-example`` into a temporary folder (``npm ci``; node_modules cached
under bench/results/ by lockfile, Node version and platform), serves our app with gunicorn
and then the Node example, loads ``/profiles/<customer>`` on each with the same generator
(wrk when on PATH, else bench/loadgen.py), and prints req/s, p50, p99, peak RSS and CPU per
request with the ratio ours/Node. Then both face 20 concurrent calls on an expired token,
without and with refresh-token rotation upstream. Without node or npm, it says why and stops.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import http1, loadgen, processes, seed, wrk
from bench.context import SINGLE_FLIGHT_CALLERS, Bench
from bench.processes import HOST, ROOT, Server, upstream_call
from bench.report import mib, ms, per_s, shares, step
from bench.scenarios import single_flight

EXAMPLE = ROOT / "bench" / "node-example"
NPM_TIMEOUT = 600
# The fake answers refreshes this late in the correctness runs, so that the 20 calls overlap even on a
# busy machine: what is counted is then the design (lock or none), not the machine's timing.
REFRESH_DELAY = 0.5


@dataclass(frozen=True)
class Side:
    """One side's figures in one round: the load, the CPU its processes spent, peak RSS, the checks."""

    load: loadgen.LoadResult
    cpu: list[float]  # CPU seconds of each serving process in the measured phase (gunicorn: master first)
    peak_kib: int
    body_bytes: int
    refreshes: int | None  # refresh grants the upstream saw for 20 concurrent calls on an expired token
    rotated_failures: int | None  # of 20 such calls, those that failed while the upstream rotates refresh tokens

    @property
    def cpu_per_request(self) -> float:
        return sum(self.cpu) / max(1, self.load.requests)


def install(bench: Bench) -> tuple[Path | None, str]:
    """The Node example in a temporary folder with its packages, or None and why not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, f"{'node' if node is None else 'npm'} is not on PATH"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()  # noqa: S603
    folder = bench.tmp / "node-example"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("node_modules", "*.db"))
    lock = (EXAMPLE / "package-lock.json").read_bytes()
    key = hashlib.sha256(lock + f"{version} {platform.machine()}".encode()).hexdigest()[:16]
    # Node resolves a package's own dependencies from its real path: keep the folder named node_modules.
    cache = bench.logs / f"node-example-{key}" / "node_modules"
    if not cache.is_dir():
        step(f"npm ci for the Node example (node {version}; cached afterwards in {cache.relative_to(ROOT)})")
        try:
            completed = subprocess.run(  # noqa: S603 (npm from PATH, fixed arguments)
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, f"npm ci did not finish in {NPM_TIMEOUT} s"
        (bench.logs / "npm-ci.log").write_text(completed.stdout + completed.stderr)
        if completed.returncode != 0:
            last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            return None, f"npm ci failed (exit {completed.returncode}: {last}; see bench/results/npm-ci.log)"
        staging = cache.parent.with_name(f"{cache.parent.name}.{os.getpid()}")
        staging.mkdir()
        shutil.move(folder / "node_modules", staging / "node_modules")
        staging.rename(cache.parent)
    (folder / "node_modules").symlink_to(cache, target_is_directory=True)
    return folder, f"node {version}"


def drive(
    bench: Bench, port: int, paths: list[str], headers: dict[str, str], pids: list[int]
) -> tuple[loadgen.LoadResult, list[float]]:
    """The comparison's load on one server; (LoadResult, CPU seconds of each of ``pids`` in the measured phase)."""
    args = bench.args
    meter = processes.CpuMeter(pids)

    if bench.args.use_wrk:
        result = wrk.run(
            HOST,
            port,
            paths,
            headers,
            folder=bench.tmp,
            threads=2,
            connections=args.compare_connections,
            warmup=args.compare_warmup,
            seconds=args.compare_seconds,
            on_start=meter.begin,
        )
    else:
        requests = [http1.request("GET", HOST, port, path, headers) for path in paths]
        budget = loadgen.Budget(args.compare_warmup, args.compare_seconds, timed=True)
        result = loadgen.run(
            HOST, port, requests, budget=budget, concurrency=args.compare_connections, on_start=meter.begin
        )
    return result, meter.spent()


def measure(
    bench: Bench,
    server: Server,
    headers: dict[str, str],
    customers: list[str],
    target: str,
    expire: Callable[[str], None] | None,
) -> Side:
    """Load ``/profiles`` for ``customers`` and read peak RSS; then, given ``expire``, the checks on ``target``."""
    paths = [f"/profiles/{cid}" for cid in customers]
    answer = processes.get(server.port, paths[0], headers)
    if answer.status != 200:
        raise RuntimeError(f"/profiles answered {answer.status}: {answer.body[:200]!r}")
    pids = server.pids()
    load, cpu = drive(bench, server.port, paths, headers, pids)
    peak = sum(processes.memory_kib(pid) for pid in pids)
    if expire is None:
        return Side(load, cpu, peak, len(answer.body), None, None)
    up = bench.upstream.port
    time.sleep(1)  # requests still in flight when the load stopped finish first

    def call() -> int:
        return processes.get(server.port, f"/profiles/{target}", headers).status

    plain = single_flight(up, lambda: expire(target), call, REFRESH_DELAY)
    upstream_call(up, "POST", "/_config?rotate=1")
    try:
        rotated = single_flight(up, lambda: expire(target), call, REFRESH_DELAY)
    finally:
        upstream_call(up, "POST", "/_config?rotate=0")
    return Side(load, cpu, peak, len(answer.body), plain["refreshes"], rotated["failed"])


@contextlib.contextmanager
def node_server(bench: Bench, folder: Path, customers: list[str]) -> Iterator[tuple[Server, Callable[[str], None]]]:
    """The Node example against the fake, its SQLite file seeded with ``customers``."""
    key = secrets.token_hex(32)
    database = bench.tmp / "node.db"
    database.unlink(missing_ok=True)  # a fresh file each round
    port = processes.free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(bench.tmp)),
        "NODE_ENV": "production",
        "PORT": str(port),
        "HOST": HOST,
        "CLIENT_ID": bench.env["KLAVIYO_CLIENT_ID"],
        "CLIENT_SECRET": bench.env["KLAVIYO_CLIENT_SECRET"],
        "KEY": key,
        "DATABASE_URL": f"file:{database}",
        "KLAVIYO_BASE_URL": bench.env["KLAVIYO_BASE_URL"],
        "KLAVIYO_AUTHORIZE_URL": bench.env["KLAVIYO_AUTHORIZE_URL"],
    }
    with processes.node(folder, env, port, bench.logs / "node.log") as server:
        seed.node_customers(database, key, customers)
        yield server, lambda cid: seed.node_expire(database, cid)


def run(bench: Bench, customers: list[str], target: str) -> None:
    """The comparison: load over ``customers``, checks on ``target``; all connected in our database already."""
    args = bench.args
    step("the Node example side by side")
    folder, about = install(bench)
    if folder is None:
        line = f"Node comparison skipped: {about}."
        print(line, flush=True)
        bench.header.append(line)
        return
    generator = (
        f"wrk, 2 threads, {args.compare_connections} connections"
        if args.use_wrk
        else f"bench/loadgen.py, {args.compare_connections} connections (one process each)"
    )
    bench.header.append(
        f"Node comparison: {about}; load {generator}, {args.compare_seconds:g} s after a {args.compare_warmup:g} s "
        f"warm-up, {len(customers)} connected customers; ours {bench.serving.describe()}, staff session cookie"
    )
    rounds = args.compare_rounds
    ours: list[Side] = []
    node: list[Side] = []
    for number in range(rounds):
        of = f" (round {number + 1} of {rounds})" if rounds > 1 else ""
        step(f"ours: /profiles through {bench.serving.describe()}{of}")
        port = processes.free_port()
        with processes.app_server(
            bench.env, port, bench.serving, bench.logs / f"compare-{bench.serving.server}.log"
        ) as server:
            cookie = {"Cookie": bench.session_cookie}
            ours.append(measure(bench, server, cookie, customers, target, seed.expire if not number else None))
        step(f"the Node example: /profiles{of}")
        with node_server(bench, folder, [*customers, target]) as (server, expire):
            node.append(measure(bench, server, {}, customers, target, expire if not number else None))
    report(bench, ours, node)


def spread(values: list[float], unit: Callable[[float], str]) -> str:
    """The median, and the range when there are several values."""
    middle = unit(statistics.median(values))
    return middle if len(values) == 1 else f"{middle} ({unit(min(values))} to {unit(max(values))})"


def report(bench: Bench, ours: list[Side], node: list[Side]) -> None:
    """The side-by-side rows: medians over the rounds (with their range), checks from the first round."""
    table = bench.compare
    for measurement, figure, unit in (
        ("GET /profiles/<customer> req/s", lambda side: side.load.rate, per_s),
        ("  p50", lambda side: side.load.p50, ms),
        ("  p99", lambda side: side.load.p99, ms),
        ("  CPU per request, all serving processes", lambda side: side.cpu_per_request, ms),
        (
            f"peak RSS, sum of VmHWM (ours: master + {bench.serving.workers} workers; Node: one process)",
            lambda side: side.peak_kib,
            mib,
        ),
    ):
        mine, theirs = [figure(side) for side in ours], [figure(side) for side in node]
        ratios = [a / b for a, b in zip(mine, theirs, strict=True) if b]
        table.add(
            measurement=measurement,
            ours=spread(mine, unit),
            node=spread(theirs, unit),
            ratio=spread(ratios, lambda value: f"{value:.2f}x") if ratios else "n/a",
        )
    failed = [(side.load.failures, other.load.failures) for side, other in zip(ours, node, strict=True)]
    if any(a or b for a, b in failed):
        table.add(
            measurement="  failed requests under load", ours=sum(a for a, _ in failed), node=sum(b for _, b in failed)
        )
    table.add(
        measurement="  share of our CPU per worker",
        ours="; ".join(shares(side.cpu[1:]) for side in ours),
        node="one process",
    )
    table.add(
        measurement="response body of one page",
        ours=f"{ours[0].body_bytes:,} bytes",
        node=f"{node[0].body_bytes:,} bytes",
    )
    table.add(
        measurement=f"refresh grants for {SINGLE_FLIGHT_CALLERS} concurrent calls on an expired token",
        ours=ours[0].refreshes,
        node=node[0].refreshes,
    )
    table.add(
        measurement=f"  failed calls of those {SINGLE_FLIGHT_CALLERS} when the upstream rotates refresh tokens",
        ours=ours[0].rotated_failures,
        node=node[0].rotated_failures,
    )
