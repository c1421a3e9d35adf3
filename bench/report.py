"""The bench's output: tables whose rows are added by column name, figure formats, the machine header."""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen import LoadResult

MAIN_COLUMNS = {
    "section": "#",
    "measurement": "measurement",
    "n": "n",
    "rate": "rate",
    "p50": "p50",
    "p99": "p99",
    "cpu": "CPU/op",
    "notes": "notes",
}
COMPARE_COLUMNS = {"measurement": "measurement", "ours": "ours", "node": "Node example", "ratio": "ours/Node"}


@dataclass
class Table:
    """Rows of text cells keyed by column name; ``columns`` maps each name to its heading."""

    columns: dict[str, str]
    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, **cells: object) -> None:
        unknown = set(cells) - set(self.columns)
        if unknown:
            raise TypeError(f"unknown columns {sorted(unknown)}; columns are {list(self.columns)}")
        row = {name: "" if cells.get(name) is None else str(cells[name]) for name in self.columns}
        self.rows.append(row)
        print("  " + " | ".join(cell for cell in row.values() if cell), flush=True)

    def add_load(
        self, *, section: str, measurement: str, result: LoadResult, cpu: float | None = None, notes: str = ""
    ) -> None:
        """A row for a load run: count, rate, p50, p99, CPU per request, and any failures in the notes."""
        bad = {status: n for status, n in result.statuses.items() if status != 200}
        if result.errors or bad:
            notes = f"{notes}; errors {result.errors}, non-200 {bad}".lstrip("; ")
        self.add(
            section=section,
            measurement=measurement,
            n=f"{result.requests:,}",
            rate=per_s(result.rate),
            p50=ms(result.p50),
            p99=ms(result.p99),
            cpu=ms(cpu / result.requests) if cpu is not None and result.requests else None,
            notes=notes,
        )

    def render(self) -> str:
        if not self.rows:
            return ""
        names = list(self.columns)
        rows = sorted(self.rows, key=lambda row: row.get("section", ""))  # by section, in the order measured
        lines = [[self.columns[name] for name in names]] + [[row[name] for name in names] for row in rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(names))]

        def render_line(cells: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([render_line(lines[0]), rule] + [render_line(line) for line in lines[1:]])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def per_s(rate: float) -> str:
    return f"{rate:,.0f}/s"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def shares(parts: list[float]) -> str:
    """Each part's share of the whole, e.g. ``49% / 51%``."""
    total = sum(parts)
    return " / ".join(f"{part / total:.0%}" for part in parts) if total else "n/a"


def step(message: str) -> None:
    print(f"-- {message}", flush=True)


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
