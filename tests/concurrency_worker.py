"""Run N threads that each read one customer's profiles, in a separate process.

Invoked by tests/test_single_flight.py as ``python -m tests.concurrency_worker``; the
environment supplies DATABASE_URL, KLAVIYO_BASE_URL and the credentials. Starts all
threads at the wall-clock time given, prints one JSON line with the outcomes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time


def main() -> None:
    customer, threads, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "klaviyo_site.settings")
    import django

    django.setup()
    from django.db import connection

    from oauth_integration import services

    outcomes: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            time.sleep(max(0.0, start_at - time.time()))
            services.get_profiles(customer_identifier=customer)
            outcome = "ok"
        except Exception as exc:  # noqa: BLE001 (reported to the parent test, which fails on it)
            outcome = f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()
