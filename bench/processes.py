"""The processes the bench serves with: the fake upstream, the app (granian or gunicorn) and the Node example.

Each is a context manager that starts the process, waits until it answers, and stops it
(SIGTERM, then SIGKILL) on the way out, also on failure or Ctrl-C. Also here: free ports,
process trees, CPU seconds and peak RSS read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import http1, loadgen

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
GUNICORN_CONF = "klaviyo_site/gunicorn.conf.py"


@dataclass(frozen=True)
class Server:
    """A started server: its port and main process (master, for gunicorn)."""

    port: int
    pid: int

    def pids(self) -> list[int]:
        """The main process and its children (gunicorn's workers)."""
        return [self.pid, *children(self.pid)]


@dataclass(frozen=True)
class Serving:
    """How the app is served: the server (granian, as ``make serve``, or gunicorn), worker
    processes, threads each, and gunicorn's worker class."""

    server: str
    workers: int
    threads: int
    worker_class: str = "gthread"

    def describe(self) -> str:
        if self.server == "granian":
            return f"granian {self.workers} workers x {self.threads} threads"
        return f"gunicorn {self.workers} workers x {self.threads} threads ({self.worker_class})"


def serving_defaults(env: dict[str, str], server: str) -> Serving:
    """The serving settings ``make serve`` (or ``make serve SERVER=gunicorn``) uses under ``env``."""
    if server == "granian":
        return Serving(
            "granian", _positive(env, "WEB_CONCURRENCY", 2), _positive(env, "SERVER_THREADS", 2), worker_class=""
        )
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        conf = runpy.run_path(str(ROOT / GUNICORN_CONF))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return Serving("gunicorn", int(conf["workers"]), int(conf["threads"]), str(conf["worker_class"]))


def _positive(env: dict[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    return int(value) if value else default


def free_port() -> int:
    import socket

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


def get(port: int, path: str, headers: dict[str, str] | None = None) -> http1.Message:
    return loadgen.fetch(HOST, port, http1.request("GET", HOST, port, path, headers))


def upstream_call(port: int, method: str, path: str) -> dict[str, Any]:
    """A control call to the fake upstream (``/_stats``, ``/_reset``, ``/_config``)."""
    return json.loads(loadgen.fetch(HOST, port, http1.request(method, HOST, port, path)).body)


@contextlib.contextmanager
def upstream_server(logs: Path) -> Iterator[Server]:
    with (logs / "upstream.log").open("w") as log:
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
            yield Server(port=int(line.split()[-1]), pid=process.pid)
        finally:
            stop(process)


@contextlib.contextmanager
def serve(name: str, command: list[str], *, cwd: Path, env: dict[str, str], port: int, log: Path) -> Iterator[Server]:
    """Run ``command`` until it answers HTTP on ``port`` (any status), then yield it; stop it afterwards."""
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError, EOFError, ValueError):
                    get(port, "/healthz")
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {log}")
                time.sleep(0.2)
            yield Server(port=port, pid=process.pid)
        finally:
            stop(process)


def app_server(
    env: dict[str, str], port: int, serving: Serving, log: Path
) -> contextlib.AbstractContextManager[Server]:
    """The app exactly as ``make serve`` starts it (granian, or gunicorn), with the serving settings spelled out."""
    if serving.server == "granian":
        command = [sys.executable, "-m", "klaviyo_site.serve", "--bind", f"{HOST}:{port}"]
        env = {**env, "WEB_CONCURRENCY": str(serving.workers), "SERVER_THREADS": str(serving.threads)}
        return serve("granian", command, cwd=ROOT, env=env, port=port, log=log)
    command = [
        *(sys.executable, "-m", "gunicorn", "klaviyo_site.wsgi", "--config", GUNICORN_CONF),
        *("--workers", str(serving.workers), "--threads", str(serving.threads)),
        *("--worker-class", serving.worker_class, "--bind", f"{HOST}:{port}"),
    ]
    return serve("gunicorn", command, cwd=ROOT, env=env, port=port, log=log)


def node(folder: Path, env: dict[str, str], port: int, log: Path) -> contextlib.AbstractContextManager[Server]:
    """The Node example (``node index.js``), installed in ``folder``."""
    command = [shutil.which("node") or "node", "index.js"]
    return serve("the Node example", command, cwd=folder, env=env, port=port, log=log)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by these processes."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds each of some processes spends between ``begin()`` and ``spent()``."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start: list[float] = []

    def begin(self) -> None:
        self.start = [cpu_seconds([pid]) for pid in self.pids]

    def spent(self) -> list[float]:
        return [cpu_seconds([pid]) - start for pid, start in zip(self.pids, self.start, strict=True)]


def memory_kib(pid: int, key: str = "VmHWM") -> int:
    """A ``/proc/<pid>/status`` memory figure (VmHWM: peak resident set size), in KiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0
