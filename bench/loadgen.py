"""A small closed-loop HTTP/1.1 load generator: several processes, raw sockets, keep-alive.

Each process owns one connection and sends its requests one after another (a fixed
number, after a warm-up), reconnecting whenever the server closes the connection (gunicorn's
sync workers close after every response; the reconnect is counted in that request's
latency). Requests are prepared bytes and responses are parsed just enough to find their
end, so one process drives well over ten thousand requests a second: the generator is
not the bottleneck (the fake upstream row of the table shows it).
"""

from __future__ import annotations

import multiprocessing
import queue
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def build_request(host: str, port: int, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Connection:
    """One keep-alive client connection that reopens itself when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.buffer = b""

    def open(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(READ_TIMEOUT)
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one request; return (status, body). Retries once on a stale keep-alive connection."""
        for attempt in (1, 2):
            if self.sock is None:
                self.open()
            try:
                self.sock.sendall(data)  # type: ignore[union-attr]
                return self._read_response()
            except (ConnectionError, EOFError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _recv(self) -> None:
        chunk = self.sock.recv(262144)  # type: ignore[union-attr]
        if not chunk:
            raise EOFError("server closed the connection")
        self.buffer += chunk

    def _read_response(self) -> tuple[int, bytes]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._recv()
        head = self.buffer[:end].split(b"\r\n")
        status = int(head[0].split(b" ", 2)[1])
        length = 0
        close = False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(self.buffer) < end + 4 + length:
            self._recv()
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        if close:
            self.close()
        return status, body


def _worker(
    host: str,
    port: int,
    requests: list[bytes],
    warmup: int,
    count: int,
    offset: int,
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue,
) -> None:
    connection = Connection(host, port)
    errors = 0
    statuses: dict[int, int] = {}
    for i in range(warmup):
        connection.request(requests[(offset + i) % len(requests)])
    barrier.wait(timeout=120)
    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(count):
        data = requests[(offset + warmup + i) % len(requests)]
        t0 = time.perf_counter()
        try:
            status, _ = connection.request(data)
        except (OSError, EOFError, ValueError):
            errors += 1
            connection.close()
            continue
        latencies.append(time.perf_counter() - t0)
        statuses[status] = statuses.get(status, 0) + 1
    finished = time.perf_counter()
    connection.close()
    results.put((started, finished, latencies, errors, statuses))


def run(
    host: str,
    port: int,
    requests: list[bytes],
    *,
    total: int,
    concurrency: int,
    warmup: int = 50,
    on_start: Callable[[], object] | None = None,
) -> LoadResult:
    """Send ``total`` requests over ``concurrency`` connections, each in its own process.

    ``on_start`` is called once every connection has finished its warm-up.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(concurrency + 1)
    results = context.Queue()
    per_worker = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]
    processes = [
        context.Process(
            target=_worker,
            args=(host, port, requests, warmup, n, i * 7919, barrier, results),
            daemon=True,
        )
        for i, n in enumerate(per_worker)
    ]
    for process in processes:
        process.start()
    barrier.wait(timeout=120)
    if on_start is not None:
        on_start()
    collected = []
    deadline = time.monotonic() + 600
    while len(collected) < len(processes):
        try:
            collected.append(results.get(timeout=1))
        except queue.Empty:
            failed = [p for p in processes if p.exitcode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                for process in processes:
                    process.kill()
                raise RuntimeError("a load generator process failed or timed out") from None
    for process in processes:
        process.join(timeout=30)
    latencies = [latency for _, _, worker_latencies, _, _ in collected for latency in worker_latencies]
    statuses: dict[int, int] = {}
    for *_, worker_statuses in collected:
        for status, n in worker_statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    started = min(c[0] for c in collected)
    finished = max(c[1] for c in collected)
    return LoadResult(
        requests=len(latencies),
        errors=sum(c[3] for c in collected),
        seconds=finished - started,
        latencies=latencies,
        statuses=statuses,
    )
