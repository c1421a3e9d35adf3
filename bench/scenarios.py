"""Sections 1 and 2: what one /profiles call costs, against the upstream alone, and single-flight refresh.

Section 1 loads the fake upstream directly, then ``/profiles`` through gunicorn, then the
service in-process, and counts queries. Section 2 sends 20 concurrent calls on an expired
token, through gunicorn and in-process, and counts the refreshes the upstream saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import http1, loadgen, processes, seed
from bench.context import REVISION, SINGLE_FLIGHT_CALLERS, SINGLE_FLIGHT_REFRESH_DELAY, Bench
from bench.processes import HOST, upstream_call
from bench.report import ms, shares, step


def measured_load(
    pids: list[int], port: int, requests: list[bytes], *, total: int, concurrency: int
) -> tuple[loadgen.LoadResult, list[float]]:
    """A counted closed-loop load, plus the CPU time each of ``pids`` spent in its measured phase."""
    meter = processes.CpuMeter(pids)
    budget = loadgen.Budget(warmup=50, measure=total)
    result = loadgen.run(HOST, port, requests, budget=budget, concurrency=concurrency, on_start=meter.begin)
    return result, meter.spent()


def load_row(
    bench: Bench, pids: list[int], port: int, requests: list[bytes], *, section: str, measurement: str, **load: Any
) -> tuple[loadgen.LoadResult, list[float]]:
    """``measured_load`` (``total``, ``concurrency``; ``notes`` for the row) and its row in the table."""
    notes = load.pop("notes", "")
    result, cpu = measured_load(pids, port, requests, **load)
    bench.table.add_load(section=section, measurement=measurement, result=result, cpu=sum(cpu), notes=notes)
    return result, cpu


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
    return loadgen.LoadResult.of(latencies, wall), time.process_time() - cpu


def concurrent(count: int, fn: Callable[[], object]) -> tuple[list[str], float]:
    """Run ``fn`` in ``count`` threads released together; return outcomes ("ok" or why not) and wall time."""
    from django.db import connection

    barrier = threading.Barrier(count + 1)

    def work() -> str:
        barrier.wait()
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 (reported in the table)
            return type(exc).__name__
        finally:
            connection.close()
        return "ok" if result in (None, 200) or isinstance(result, dict) else str(result)

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(work) for _ in range(count)]
        barrier.wait()
        started = time.perf_counter()
        outcomes = [future.result(timeout=120) for future in futures]
    return outcomes, time.perf_counter() - started


def single_flight(
    upstream_port: int,
    expire: Callable[[], None],
    call: Callable[[], object],
    delay: float = SINGLE_FLIGHT_REFRESH_DELAY,
) -> dict[str, Any]:
    """Expire a token, send ``SINGLE_FLIGHT_CALLERS`` concurrent calls; the upstream's refresh count and outcomes.

    The fake answers refreshes after ``delay`` seconds, which widens the race.
    """
    upstream_call(upstream_port, "POST", f"/_config?refresh_delay={delay}")
    try:
        expire()
        upstream_call(upstream_port, "POST", "/_reset")
        outcomes, wall = concurrent(SINGLE_FLIGHT_CALLERS, call)
        stats = upstream_call(upstream_port, "GET", "/_stats")
    finally:
        upstream_call(upstream_port, "POST", "/_config?refresh_delay=0")
    ok = sum(1 for outcome in outcomes if outcome == "ok")
    return {"refreshes": stats["refresh_requests"], "ok": ok, "failed": len(outcomes) - ok, "wall": wall}


def upstream_request(port: int, token: str) -> bytes:
    headers = {"Authorization": f"Bearer {token}", "revision": REVISION, "Accept": "application/vnd.api+json"}
    return http1.request("GET", HOST, port, "/api/profiles", headers)


def per_call(bench: Bench) -> None:
    """Sections 1 and 2, and the gunicorn memory row of section 3."""
    from oauth_integration import services
    from oauth_integration.models import OAuthToken

    args, table, up = bench.args, bench.table, bench.upstream
    customers, port = bench.customers, processes.free_port()
    tokens = {cid: OAuthToken.objects.retrieve(cid).access_token for cid in customers}
    upstream_requests = [upstream_request(up.port, tokens[cid]) for cid in customers]
    cookie = {"Cookie": bench.session_cookie}
    app_requests = [http1.request("GET", HOST, port, f"/profiles/{cid}", cookie) for cid in customers]
    n = args.concurrency

    step("the fake upstream, hit directly")
    fake = ([up.pid], up.port, upstream_requests)
    upstream_1, _ = load_row(
        bench,
        *fake,
        section="1",
        measurement="GET /api/profiles straight to the fake (token in hand), 1 conn",
        total=args.requests,
        concurrency=1,
        notes="keep-alive",
    )
    upstream_n, _ = load_row(
        bench,
        *fake,
        section="1",
        measurement=f"  same, {n} conns: the fake's own throughput",
        total=2 * args.requests,
        concurrency=n,
    )

    with processes.app_server(bench.env, port, bench.serving, bench.logs / f"{bench.serving.server}.log") as server:
        answer = processes.get(port, f"/profiles/{customers[0]}", cookie)
        if answer.status != 200:
            raise RuntimeError(f"/profiles answered {answer.status}: {answer.body[:300]!r}")
        workers = processes.children(server.pid)
        step(f"/profiles through {bench.serving.describe()}")
        upstream_call(up.port, "POST", "/_reset")
        app_1, app_cpu = measured_load(workers, port, app_requests, total=args.requests, concurrency=1)
        table.add_load(
            section="1",
            measurement="GET /profiles/<id> via the app server, staff session, 1 conn",
            result=app_1,
            cpu=sum(app_cpu),
            notes=versus(app_1, upstream_1),
        )
        app_n, cpu = measured_load(workers, port, app_requests, total=args.requests, concurrency=n)
        table.add_load(
            section="1",
            measurement=f"  same, {n} conns",
            result=app_n,
            cpu=sum(cpu),
            notes=f"{versus(app_n, upstream_n)}; worker CPU split {shares(cpu)}",
        )
        stats = upstream_call(up.port, "GET", "/_stats")
        table.add(
            section="1",
            measurement="  connections opened to the upstream by the app in the two runs above",
            n=f"{stats['connections'] - 1:,}",
            notes=f"for {stats['api_requests']:,} API calls: pooled keep-alive, one pool per worker",
        )

        step("single-flight refresh")
        single = seed.customer(len(customers))
        for measurement, call in (
            (
                f"{SINGLE_FLIGHT_CALLERS} concurrent GET /profiles, expired token ({bench.serving.describe()})",
                lambda: processes.get(port, f"/profiles/{single}", cookie).status,
            ),
            (
                f"{SINGLE_FLIGHT_CALLERS} threads calling services.get_profiles on an expired token",
                lambda: services.get_profiles(customer_identifier=single),
            ),
        ):
            outcome = single_flight(up.port, lambda: seed.expire(single), call)
            verdict = "OK" if outcome["refreshes"] == 1 and not outcome["failed"] else "FAIL"
            table.add(
                section="2",
                measurement=measurement,
                n=SINGLE_FLIGHT_CALLERS,
                rate=f"{outcome['refreshes']} refresh",
                notes=f"{verdict}: {outcome['ok']}/{SINGLE_FLIGHT_CALLERS} calls succeeded in {ms(outcome['wall'])}",
            )

        peaks = [processes.memory_kib(pid) for pid in processes.children(server.pid)]
        memory = (
            f"max {max(peaks) / 1024:.1f} MiB over {len(peaks)} workers "
            f"(master {processes.memory_kib(server.pid) / 1024:.1f} MiB)"
            if peaks
            else "n/a"
        )
    table.add(section="3", measurement="app worker peak RSS (VmHWM) after the load", notes=memory)
    in_process(bench, upstream_1, sum(app_cpu) / app_1.requests)


def in_process(bench: Bench, upstream: loadgen.LoadResult, request_cpu: float) -> None:
    """services.get_profiles with no HTTP server in front, and the SQL queries per call."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from oauth_integration import services

    step("services.get_profiles in-process")
    customers = bench.customers
    service, service_cpu = timed_calls(
        lambda i: services.get_profiles(customer_identifier=customers[i % len(customers)]), bench.args.requests, 100
    )
    django_share = request_cpu - service_cpu / service.requests
    bench.table.add_load(
        section="1",
        measurement="services.get_profiles in-process (no HTTP server in front), 1 thread",
        result=service,
        cpu=service_cpu,
        notes=f"+{(service.p50 - upstream.p50) * 1000:.2f} ms p50 over upstream; "
        f"Django's share of the request CPU ≈ {django_share * 1000:.2f} ms",
    )
    with CaptureQueriesContext(connection) as queries:
        services.get_profiles(customer_identifier=customers[0])
    service_queries = len(queries)
    client = Client(HTTP_HOST=HOST)
    client.cookies.load(bench.session_cookie)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/profiles/{customers[0]}")
    bench.table.add(
        section="1",
        measurement="SQL queries per call",
        notes=f"GET /profiles: {len(queries)} (HTTP {response.status_code}; the session and the user come from "
        f"the cache when one is shared); services.get_profiles: {service_queries}",
    )


def versus(app: loadgen.LoadResult, upstream: loadgen.LoadResult) -> str:
    return (
        f"{upstream.rate / app.rate:.1f}x fewer req/s, p50 {app.p50 / upstream.p50:.1f}x "
        f"(+{(app.p50 - upstream.p50) * 1000:.2f} ms) vs upstream"
    )
