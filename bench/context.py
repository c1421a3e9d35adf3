"""What every part of a bench run shares: options, tables, settings, the fake upstream, the seeded customers."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from bench.processes import Server, Serving
from bench.report import COMPARE_COLUMNS, MAIN_COLUMNS, Table

SINGLE_FLIGHT_CALLERS = 20
SINGLE_FLIGHT_REFRESH_DELAY = 0.05  # seconds the fake takes to answer a refresh, to widen the race
REVISION = "2026-07-15"


@dataclass
class Bench:
    args: argparse.Namespace
    env: dict[str, str]  # the app's environment (production settings), inherited by gunicorn and manage.py
    upstream: Server
    serving: Serving
    logs: Path  # bench/results/: server logs and the latest table
    tmp: Path  # removed at the end
    header: list[str] = field(default_factory=list)
    table: Table = field(default_factory=lambda: Table(MAIN_COLUMNS))
    compare: Table = field(default_factory=lambda: Table(COMPARE_COLUMNS))
    session_cookie: str = ""  # the staff user's session, sent with every /profiles request
    customers: list[str] = field(default_factory=list)  # connected, not expired: the ones the load uses
