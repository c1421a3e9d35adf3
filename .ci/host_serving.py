"""While the host project is served as README.md's step 10 says (gunicorn, 2 workers, the hooks
of oauth_integration.gunicorn, the sandbox standing in for Klaviyo), check what a person would:

* someone not logged in who opens the connect view is sent to LOGIN_URL, a page that exists;
* a customer connected through the sandbox, then calls to /profiles served by both workers:
  one scrape of /metrics counts every call.

Run by .ci/host_project in the project's directory with its virtual environment, through
HOST_PROJECT_WHILE_SERVING; the server's address is HOST_PROJECT_BIND, the scrape's token
METRICS_TOKEN (the server has the same).

Usage: python host_serving.py
"""

from __future__ import annotations

import http.client
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ADDRESS = os.environ["HOST_PROJECT_BIND"]
CUSTOMER = "store-1"
PROFILES = f"/integrations/klaviyo/profiles/{CUSTOMER}"


def expect(condition: object, problem: object) -> None:
    if not condition:
        raise SystemExit(f"host project served: {problem}")


def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = ADDRESS.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def counter_files() -> set[Path]:
    """The counter files the project's gunicorn workers hold open (from /proc: the directory is
    the one oauth_integration.gunicorn chose, unknown to this script)."""
    found: set[Path] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "oauth_integration.gunicorn" not in command or ADDRESS not in command:
                continue
            targets = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        found.update(Path(target) for target in targets if re.search(r"/counter_\d+\.db$", target))
    return found


def main() -> int:
    # Someone not logged in is sent to the login page LOGIN_URL names, and it is there.
    status, headers, _ = get("/settings/klaviyo/connect")
    expect(status == 302, status)
    login = headers["location"]
    expect(login.startswith("/admin/login/?next="), login)
    expect(get(login)[0] == 200, login)
    print(f"the connect view sends someone not logged in to {login} (200)")

    # A customer connected through the sandbox the server serves (the real flow, minus the browser).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    sys.path.insert(0, os.getcwd())
    import django

    django.setup()
    from oauth_integration.testing import connect_customer

    connected = connect_customer(CUSTOMER, account="bluebell")
    print(f"{CUSTOMER} connected to {connected.klaviyo_account_name} through the sandbox on {ADDRESS}")

    # Rounds of concurrent calls until both workers have counted some. Each call to /profiles
    # makes a call to the sandbox on the same server: with at most 3 at once, a worker (4
    # threads) always has a thread left for the sandbox's answer, whichever worker takes them.
    statuses: list[int] = []
    for _ in range(8):
        with ThreadPoolExecutor(max_workers=3) as pool:
            statuses += pool.map(lambda _: get(PROFILES)[0], range(6))
        counters = counter_files()
        if len(counters) == 2:
            break
    expect(statuses == [200] * len(statuses), statuses)
    expect(len(counters) == 2, f"one worker served every call: {counters}")
    expect(len({path.parent for path in counters}) == 1, f"the workers count in different directories: {counters}")

    token = os.environ["METRICS_TOKEN"]
    status, _, body = get("/integrations/klaviyo/metrics", {"Authorization": f"Bearer {token}"})
    expect(status == 200, status)
    found = re.search(
        r'^klaviyo_api_requests_total\{endpoint="/api/profiles",method="GET",status="200"\} (\S+)$',
        body.decode(),
        re.MULTILINE,
    )
    expect(found, body.decode())
    expect(float(found[1]) == len(statuses), f"one scrape counted {found[1]} of {len(statuses)} calls")
    print(f"{len(statuses)} calls served by 2 workers, and one scrape of /metrics counts {found[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
