"""Concurrent callers: ``run_threads`` for the tests, and a separate process of them.

As a process (``python -m tests.concurrency_worker CUSTOMER THREADS START_AT``, started by
tests/test_single_flight.py) it runs THREADS threads that each read the customer's
profiles, all starting at the wall-clock time START_AT, and prints one JSON line with the
outcomes. The environment supplies DATABASE_URL, KLAVIYO_BASE_URL and the credentials.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable

from django.db import connection


def run_threads(count: int, fn: Callable[[], object], *, start_at: float | None = None) -> list[str]:
    """Call ``fn`` from ``count`` threads released together (at ``start_at``, if given).

    Returns one outcome per thread: "ok" or "<exception class>: <message>".
    """
    barrier = threading.Barrier(count)
    outcomes: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            barrier.wait()
            if start_at is not None:
                time.sleep(max(0.0, start_at - time.time()))
            fn()
            outcome = "ok"
        except Exception as exc:  # noqa: BLE001 (reported to the test, which fails on it)
            outcome = f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def main() -> None:
    customer, threads, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "klaviyo_site.settings")
    import django

    django.setup()
    from oauth_integration import services

    outcomes = run_threads(threads, lambda: services.get_profiles(customer_identifier=customer), start_at=start_at)
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()
