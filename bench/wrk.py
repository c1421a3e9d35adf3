"""Load with wrk, when it is on PATH: a warm-up run, then a measured run, summarised by a Lua script.

The script cycles through the given paths (one list per wrk thread) with the given
headers and prints one JSON line at the end (requests, duration, errors, latency
percentiles), which becomes a ``loadgen.LoadResult``. The script holds the headers (a
session cookie, say), so it is written with mode 0600 into a temporary directory that
the caller removes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from bench.loadgen import LoadResult

SCRIPT = """
local paths = {%(paths)s}
local headers = {%(headers)s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1], headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nBENCH {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII text is a valid Lua string literal


def write_script(folder: Path, paths: list[str], headers: dict[str, str]) -> Path:
    script = folder / "load.lua"
    body = SCRIPT % {
        "paths": ", ".join(_lua(p) for p in paths),
        "headers": ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in headers.items()),
    }
    descriptor = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(body)
    return script


def _wrk(url: str, script: Path, threads: int, connections: int, seconds: float) -> dict[str, int]:
    completed = subprocess.run(  # noqa: S603 (wrk from PATH, arguments built here)
        [
            *(shutil.which("wrk") or "wrk", "--threads", str(threads), "--connections", str(connections)),
            *("--duration", f"{max(1, round(seconds))}s", "--timeout", "30s", "--script", str(script), url),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line.removeprefix("BENCH "))
    raise RuntimeError(f"wrk exited {completed.returncode} without a summary: {completed.stderr.strip()[:300]}")


def run(
    host: str,
    port: int,
    paths: list[str],
    headers: dict[str, str],
    *,
    folder: Path,
    threads: int,
    connections: int,
    warmup: float,
    seconds: float,
    on_start: Callable[[], object] | None = None,
) -> LoadResult:
    """Warm up for ``warmup`` seconds (discarded), then measure for ``seconds``."""
    script = write_script(folder, paths, headers)
    url = f"http://{host}:{port}"
    try:
        if warmup > 0:
            _wrk(url, script, threads, connections, warmup)
        if on_start is not None:
            on_start()
        summary = _wrk(url, script, threads, connections, seconds)
    finally:
        script.unlink(missing_ok=True)
    bad = summary["status"]
    errors = summary["connect"] + summary["read"] + summary["write"] + summary["timeout"]
    return LoadResult(
        requests=summary["requests"],
        errors=errors,
        seconds=summary["duration_us"] / 1e6,
        p50=summary["p50_us"] / 1e6,
        p99=summary["p99_us"] / 1e6,
        # wrk counts answers of status 400 and above without telling which: reported as status 0.
        statuses={200: summary["requests"] - bad, 0: bad} if bad else {200: summary["requests"]},
    )
