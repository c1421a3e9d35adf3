"""``make serve``'s server: granian as ``python -m klaviyo_site.serve`` starts it, in subprocesses.

The same promises as gunicorn's (tests/test_deploy.py): the health check and static files
with the security headers, no query string in the access log, every field a client chose
escaped, metrics that add up over the workers in one scrape, a metrics directory of its own
or one that no other user can write to, and a clear stop on a taken address.
"""

import contextlib
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.test_deploy import (
    BASE_DIR,
    CONTROL,
    ESCAPED,
    FORGED_LINE,
    SECURITY_HEADERS,
    free_port,
    get,
    manage,
    production_env,
)
from tests.wire_faults import ScriptedServer

ACCESS_LINE = re.compile(rf'\S+ \[[^\]]+\] "[A-Z]+ {ESCAPED} HTTP/1\.[01]" \d{{3}} \d+ms')


@contextlib.contextmanager
def granian(env: dict[str, str], log: Path, errors: Path | None = None, port: int | None = None):
    """``python -m klaviyo_site.serve`` on a free loopback port until it answers; stopped with SIGTERM."""
    port = port or free_port()
    with log.open("w") as output, contextlib.ExitStack() as stack:
        error_output = stack.enter_context(errors.open("w")) if errors else subprocess.STDOUT
        process = subprocess.Popen(
            [sys.executable, "-m", "klaviyo_site.serve", "--bind", f"127.0.0.1:{port}"],
            cwd=BASE_DIR,
            env=env,
            stdout=output,
            stderr=error_output,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log.read_text() + (errors.read_text() if errors else "")
                try:
                    get(port, "/healthz")
                    break
                except OSError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def served(tmp_path):
    env = production_env(tmp_path, WEB_CONCURRENCY="1")
    for args in (("collectstatic", "--no-input", "--verbosity", "0"), ("migrate", "--no-input")):
        result = manage(env, *args)
        assert result.returncode == 0, result.stderr
    log = tmp_path / "access.log"
    with granian(env, log, errors=tmp_path / "errors.log") as port:
        yield port, log


def test_granian_serves_the_health_check_and_static_files_with_security_headers(served):
    port, _ = served
    status, headers, body = get(port, "/healthz")
    assert (status, body) == (200, b'{"status": "ok"}')
    assert SECURITY_HEADERS.items() <= headers.items()

    status, headers, body = get(port, "/static/admin/css/base.css", {"X-Forwarded-Proto": "https"})
    assert status == 200
    assert headers["content-type"].startswith("text/css")
    assert b"font-family" in body

    status, headers, body = get(port, "/start/cust-1", {"X-Forwarded-Proto": "https"})
    assert status == 403  # production rules: /start needs a signed link
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"


def test_granian_keeps_authorization_codes_out_of_the_access_log(served):
    port, log = served
    code = secrets.token_urlsafe(24)
    headers = {"X-Forwarded-Proto": "https", "Referer": f"https://connect.example.com/authorize?code={code}"}

    status, _, _ = get(port, f"/authorize?code={code}&state=unknown-state", headers)

    assert status == 400
    time.sleep(0.3)  # the access line is written after the response
    text = log.read_text()
    assert '"GET /authorize HTTP/1.1" 400' in text
    assert code not in text


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_granian_access_lines_escape_what_the_client_sent(tmp_path, log_format):
    env = production_env(tmp_path, LOG_FORMAT=log_format, WEB_CONCURRENCY="1")
    assert manage(env, "migrate", "--no-input").returncode == 0
    access, errors = tmp_path / "access.log", tmp_path / "errors.log"
    secure = {"X-Forwarded-Proto": "https"}
    with granian(env, access, errors=errors) as port:
        assert get(port, FORGED_LINE, secure)[0] == 404
        assert get(port, "/y%1B%5B2J%1B%5B31mRED%5C", secure)[0] == 404  # clear screen, red; a backslash
        assert get(port, "/profiles/jane.doe@example.com", secure)[0] == 401
        time.sleep(0.3)
    lines = [line for line in access.read_text().splitlines() if "/healthz" not in line]
    assert "jane.doe" not in access.read_text() + errors.read_text()
    for line in access.read_text().splitlines() + errors.read_text().splitlines():
        assert not CONTROL.search(line), line
        with contextlib.suppress(ValueError):
            assert json.loads(line).get("logger") != "oauth_integration.services.connect", line
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        assert {entry["logger"] for entry in entries} == {"granian.access"}
        requests = [(entry["method"], entry["path"], entry["status"]) for entry in entries]
    else:
        assert [line for line in lines if not ACCESS_LINE.fullmatch(line)] == []
        requests = [re.search(r'"(\S+) (.*) HTTP/1\.1" (\d+) ', line).groups() for line in lines]
        requests = [(method, path, int(status)) for method, path, status in requests]
    forged = r"/x\x0a{\x22level\x22:\x22CRITICAL\x22,\x22logger\x22:\x22oauth_integration.services.connect\x22,"
    assert [path for _, path, _ in requests if path.startswith("/x")] == [
        forged + r"\x22message\x22:\x22Customer acme connected Klaviyo account ATTACKER\x22}\x0a"
    ]
    assert ("GET", r"/y\x1b[2J\x1b[31mRED\x5c", 404) in requests
    assert ("GET", "/profiles/j***@example.com", 401) in requests


def test_metrics_from_two_granian_workers_add_up_and_need_the_token(tmp_path):
    """Calls served by both workers (each call holds a thread while Klaviyo answers slowly,
    one thread per worker), then one scrape that counts them all."""
    metrics_token = secrets.token_urlsafe(16)
    with ScriptedServer([("sleep", 0.4)] * 30) as klaviyo:
        env = production_env(
            tmp_path,
            KLAVIYO_BASE_URL=klaviyo.url,
            METRICS_TOKEN=metrics_token,
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
            HTTPS="false",
            BEHIND_PROXY="false",
            WEB_CONCURRENCY="2",
            SERVER_THREADS="1",
        )
        assert manage(env, "migrate", "--no-input").returncode == 0
        seeded = manage(
            env,
            "shell",
            "-c",
            "from datetime import timedelta; from django.utils import timezone; "
            "from oauth_integration.models import OAuthToken; "
            "OAuthToken.objects.create(customer_identifier='c1', access_token='at-1', refresh_token='rt-1', "
            "expires_at=timezone.now() + timedelta(hours=1), version=1); "
            "from django.contrib.auth import get_user_model; from django.test import Client; "
            "client = Client(); client.force_login(get_user_model().objects.create_superuser('ops')); "
            "print(client.cookies['sessionid'].value)",
        )
        assert seeded.returncode == 0, seeded.stderr
        session = {"Cookie": f"sessionid={seeded.stdout.split()[-1]}"}
        with granian(env, tmp_path / "access.log", errors=tmp_path / "errors.log") as port:
            statuses: list[int] = []
            for _ in range(5):  # rounds of concurrent calls until both workers have served some
                with ThreadPoolExecutor(max_workers=6) as pool:
                    statuses += pool.map(lambda _: get(port, "/profiles/c1", session)[0], range(6))
                if len(list((tmp_path / "metrics").glob("counter_*.db"))) == 2:
                    break
            assert statuses == [200] * len(statuses)
            assert get(port, "/metrics")[0] == 404
            status, headers, body = get(port, "/metrics", {"Authorization": f"Bearer {metrics_token}"})
            counter_files = list((tmp_path / "metrics").glob("counter_*.db"))
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert f'klaviyo_api_requests_total{{endpoint="/api/profiles",method="GET",status="200"}} {len(statuses)}.0' in text
    assert "c1" not in text and "at-1" not in text
    assert len(counter_files) == 2  # both workers served calls: one counter file each
    assert not list((tmp_path / "metrics").glob("*.db"))  # removed when the server stopped
    assert (tmp_path / "metrics").is_dir()  # the directory the operator named stays


def test_granian_leaves_no_metrics_directory_of_its_own_behind(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = production_env(tmp_path, TMPDIR=str(scratch), WEB_CONCURRENCY="1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    assert manage(env, "migrate", "--no-input").returncode == 0
    with granian(env, tmp_path / "access.log") as port:
        assert get(port, "/healthz")[0] == 200
        made = list(scratch.iterdir())
        assert [(path.name.startswith("klaviyo-metrics-"), stat.S_IMODE(path.stat().st_mode)) for path in made] == [
            (True, 0o700)
        ]
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    "owner_and_mode",
    [
        pytest.param((None, 0o777), id="world-writable"),
        pytest.param((None, 0o770), id="group-writable"),
        pytest.param(
            (65534, 0o700),
            id="another-users",
            marks=pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory away"),
        ),
    ],
)
def test_granian_refuses_a_named_metrics_directory_others_could_write_to(tmp_path, owner_and_mode):
    owner, mode = owner_and_mode
    named = tmp_path / "metrics"
    named.mkdir()
    named.chmod(mode)
    if owner is not None:
        os.chown(named, owner, owner)
    result = subprocess.run(
        [sys.executable, "-m", "klaviyo_site.serve", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=BASE_DIR,
        env=production_env(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(named)),
        capture_output=True,
        text=True,
        timeout=30,  # it stops at once; a server that starts runs until this
    )

    assert result.returncode != 0
    output = result.stdout + result.stderr
    if owner is None:
        assert f"PROMETHEUS_MULTIPROC_DIR {named} may be written by other users (mode {mode:04o})" in output
    else:
        assert f"PROMETHEUS_MULTIPROC_DIR {named} belongs to uid {owner}, not to this user" in output
    assert "Started worker" not in output


def test_a_second_granian_on_a_taken_port_stops_and_the_first_keeps_serving(served, tmp_path):
    port, _ = served
    result = subprocess.run(
        [sys.executable, "-m", "klaviyo_site.serve", "--bind", f"127.0.0.1:{port}"],
        cwd=BASE_DIR,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "Address already in use" in result.stdout + result.stderr
    assert get(port, "/healthz")[0] == 200


@pytest.mark.parametrize(("name", "value"), [("WEB_CONCURRENCY", "0"), ("SERVER_THREADS", "two")])
def test_a_malformed_worker_or_thread_count_stops_it_with_the_variables_name(tmp_path, name, value):
    result = subprocess.run(
        [sys.executable, "-m", "klaviyo_site.serve", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=BASE_DIR,
        env=production_env(tmp_path, **{name: value}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert f"{name} must be a positive integer, not {value!r}" in result.stderr
