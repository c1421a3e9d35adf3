"""A small closed-loop HTTP/1.1 load generator: one process per connection, raw sockets, keep-alive.

Each process owns one connection and sends its requests one after another, either a fixed
number or for a fixed time, after a warm-up (a number of requests or seconds); the
measured phase starts for every connection at once. It reconnects whenever the server
closes the connection, counting the reconnect in that request's latency. Requests are
prepared bytes and responses are framed by ``bench/http1.py``, so one process drives
well over ten thousand requests a second: the generator is not the bottleneck (the fake
upstream rows of the table show it).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import queue
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import http1

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50: float
    p99: float
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failures(self) -> int:
        """Transport errors plus answers other than 200."""
        return self.errors + sum(n for status, n in self.statuses.items() if status != 200)

    @classmethod
    def of(
        cls, latencies: list[float], seconds: float, errors: int = 0, statuses: dict[int, int] | None = None
    ) -> LoadResult:
        ordered = sorted(latencies)

        def percentile(fraction: float) -> float:
            if not ordered:
                return float("nan")
            return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

        return cls(len(ordered), errors, seconds, percentile(0.5), percentile(0.99), statuses or {})


@dataclass(frozen=True)
class Budget:
    """How long each connection warms up and then is measured: requests, or seconds when ``timed``."""

    warmup: float
    measure: float
    timed: bool = False

    def running(self, phase: float, started: float, done: int) -> bool:
        return time.monotonic() - started < phase if self.timed else done < phase


class Connection:
    """One keep-alive client connection that reopens itself when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, data: bytes) -> http1.Message:
        """Send one request and read its response. Retries once on a stale keep-alive connection."""
        for attempt in (1, 2):
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sock.settimeout(READ_TIMEOUT)
                self.buffer = b""
            try:
                self.sock.sendall(data)
                return self._response()
            except (ConnectionError, EOFError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _response(self) -> http1.Message:
        while (parsed := http1.parse(self.buffer)) is None:
            chunk = self.sock.recv(262144)  # type: ignore[union-attr]
            if not chunk:
                raise EOFError("server closed the connection")
            self.buffer += chunk
        message, used = parsed
        self.buffer = self.buffer[used:]
        if message.close:
            self.close()
        return message


def fetch(host: str, port: int, data: bytes) -> http1.Message:
    """One request on a connection of its own."""
    connection = Connection(host, port)
    try:
        return connection.request(data)
    finally:
        connection.close()


def _worker(
    host: str,
    port: int,
    requests: list[bytes],
    budget: Budget,
    offset: int,
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue,
) -> None:
    connection = Connection(host, port)
    sent = 0
    started = time.monotonic()
    while budget.running(budget.warmup, started, sent):
        connection.request(requests[(offset + sent) % len(requests)])
        sent += 1
    barrier.wait(timeout=120)
    errors, done = 0, 0
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    started = time.monotonic()
    while budget.running(budget.measure, started, done):
        data = requests[(offset + sent + done) % len(requests)]
        done += 1
        t0 = time.perf_counter()
        try:
            status = connection.request(data).status
        except (OSError, EOFError, ValueError):
            errors += 1
            connection.close()
            continue
        latencies.append(time.perf_counter() - t0)
        statuses[status] = statuses.get(status, 0) + 1
    finished = time.monotonic()
    connection.close()
    results.put((started, finished, latencies, errors, statuses))


def run(
    host: str,
    port: int,
    requests: list[bytes],
    *,
    budget: Budget,
    concurrency: int,
    on_start: Callable[[], object] | None = None,
) -> LoadResult:
    """Drive ``concurrency`` connections, each in its own process, for ``budget``.

    A count budget is shared out among the connections. ``on_start`` is called once every
    connection has finished its warm-up, as the measured phase starts.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(concurrency + 1)
    results = context.Queue()
    shares = [budget] * concurrency
    if not budget.timed:
        total = int(budget.measure)
        shares = [
            Budget(budget.warmup, total // concurrency + (1 if i < total % concurrency else 0))
            for i in range(concurrency)
        ]
    processes = [
        context.Process(target=_worker, args=(host, port, requests, share, i * 7919, barrier, results), daemon=True)
        for i, share in enumerate(shares)
    ]
    for process in processes:
        process.start()
    finished = False
    try:
        barrier.wait(timeout=120)
        if on_start is not None:
            on_start()
        collected = []
        deadline = time.monotonic() + 600
        while len(collected) < len(processes):
            try:
                collected.append(results.get(timeout=1))
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in processes) or time.monotonic() > deadline:
                    raise RuntimeError("a load generator process failed or timed out") from None
        finished = True
    finally:
        for process in processes:
            if finished:
                process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
    statuses: dict[int, int] = {}
    for *_, worker_statuses in collected:
        for status, n in worker_statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    latencies = [latency for c in collected for latency in c[2]]
    seconds = max(c[1] for c in collected) - min(c[0] for c in collected)
    return LoadResult.of(latencies, seconds, sum(c[3] for c in collected), statuses)
