"""Could the project's own sandbox replace the fast fake upstream? (``python -m bench --only sandbox``).

Serves the app in sandbox mode with gunicorn (as ``make serve``), gives it an access token
by creating a sandbox grant and token directly (stored as SHA-256 digests, as
klaviyo_sandbox/services.py does), and loads ``/sandbox/api/profiles`` with the same load
as the fake's ``/api/profiles``: the two rows give req/s and CPU per request of each.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from bench import http1, processes
from bench.context import REVISION, Bench
from bench.processes import HOST, upstream_call
from bench.report import ratio, step
from bench.scenarios import load_row, measured_load, upstream_request
from bench.seed import SCOPES, access_token


def sandbox_token(client_id: str) -> str:
    """A valid sandbox access token for the first sandbox account (rows created directly)."""
    from django.utils import timezone

    from klaviyo_sandbox.accounts import ACCOUNTS
    from klaviyo_sandbox.models import AccessToken, Grant
    from klaviyo_sandbox.services import digest

    token = f"sbx_at_{secrets.token_urlsafe(32)}"
    grant = Grant.objects.create(
        client_id=client_id,
        account_id=ACCOUNTS[0].id,
        scopes=SCOPES,
        refresh_token_hash=digest(f"sbx_rt_{secrets.token_urlsafe(32)}"),
    )
    AccessToken.objects.create(grant=grant, token_hash=digest(token), expires_at=timezone.now() + timedelta(hours=2))
    return token


def run(bench: Bench) -> None:
    args, table, up = bench.args, bench.table, bench.upstream
    n, total = args.concurrency, args.requests
    step(f"the fake upstream against the sandbox, {n} connections")
    fake_requests = [upstream_request(up.port, access_token())]
    upstream_call(up.port, "POST", "/_reset")
    fake_body = len(processes.get(up.port, "/api/profiles", {"Authorization": "Bearer at-x"}).body)
    fake, fake_cpu = load_row(
        bench,
        [up.pid],
        up.port,
        fake_requests,
        section="5",
        measurement=f"GET /api/profiles on the fast fake (bench/upstream.py), {n} conns",
        total=10 * total,  # the fake is fast, and CPU time is read in clock ticks
        concurrency=n,
        notes=f"{fake_body:,}-byte page",
    )

    port = processes.free_port()
    env = {**bench.env, "KLAVIYO_SANDBOX": "true", "KLAVIYO_SANDBOX_RATE_LIMIT": "0"}
    headers = {"Authorization": f"Bearer {sandbox_token(env['KLAVIYO_CLIENT_ID'])}", "revision": REVISION}
    with processes.app_server(env, port, bench.serving, bench.logs / f"sandbox-{bench.serving.server}.log") as server:
        answer = processes.get(port, "/sandbox/api/profiles", headers)
        if answer.status != 200:
            raise RuntimeError(f"the sandbox answered {answer.status}: {answer.body[:200]!r}")
        requests = [http1.request("GET", HOST, port, "/sandbox/api/profiles", headers)]
        sandbox, sandbox_cpu = measured_load(server.pids(), port, requests, total=total, concurrency=n)
    table.add_load(
        section="5",
        measurement=f"GET /sandbox/api/profiles on the sandbox ({bench.serving.describe()}), {n} conns",
        result=sandbox,
        cpu=sum(sandbox_cpu),
        notes=f"{len(answer.body):,}-byte page; {ratio(fake.rate, sandbox.rate)} fewer req/s, "
        f"{ratio(sum(sandbox_cpu) / sandbox.requests, sum(fake_cpu) / fake.requests)} the CPU per request of the fake",
    )
