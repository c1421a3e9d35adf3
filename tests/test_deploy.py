"""Production configuration: ``check --deploy`` and gunicorn + WhiteNoise, in subprocesses.

Security settings are computed when settings.py is imported, from the environment, so
these tests start fresh processes with a production-like environment instead of using
the ``settings`` fixture. Only loopback is used.
"""

import contextlib
import gzip
import http.client
import json
import os
import re
import secrets
import socket
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.wire_faults import ScriptedServer

BASE_DIR = Path(django_settings.BASE_DIR)


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Every variable settings.py reads, set explicitly so that no local .env fills a gap."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="klaviyo_site.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="connect.example.com,127.0.0.1",
        CSRF_TRUSTED_ORIGINS="",
        PORT="8000",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
        KLAVIYO_CLIENT_ID="production-client-id",
        KLAVIYO_CLIENT_SECRET=secrets.token_urlsafe(32),
        KLAVIYO_SANDBOX="false",
        KLAVIYO_OPEN_ACCESS="false",
        KLAVIYO_SCOPES="accounts:read profiles:read",
        KLAVIYO_REDIRECT_URL="https://connect.example.com/authorize",
        KLAVIYO_AUTHORIZE_URL="https://www.klaviyo.com/oauth/authorize",
        KLAVIYO_BASE_URL="https://a.klaviyo.com",
        KLAVIYO_REVISION="2026-07-15",
        TOKEN_ENCRYPTION_KEY=secrets.token_hex(32),
        TOKEN_ENCRYPTION_KEY_FALLBACKS="",
        HTTPS="",  # empty: the production default (on when DEBUG is off)
        SECURE_SSL_REDIRECT="",
        SECURE_HSTS_SECONDS="",
        BEHIND_PROXY="true",
        LOG_LEVEL="INFO",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_reports_nothing_with_production_settings(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_without_a_real_secret_key(tmp_path):
    result = manage(production_env(tmp_path, SECRET_KEY=""), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "oauth_integration.E008" in result.stderr


@pytest.mark.parametrize(("level", "error"), [("", False), ("debug", False), ("verbose", True)])
def test_log_level_never_stops_django_from_starting(tmp_path, level, error):
    result = manage(production_env(tmp_path, LOG_LEVEL=level), "check", "--deploy")
    assert "Traceback" not in result.stderr
    assert ("LOG_LEVEL must be one of" in result.stderr) is error
    assert result.returncode == (1 if error else 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path, *args: str, errors: Path | None = None, before: tuple[str, ...] = ()):
    """gunicorn as ``make serve`` runs it (its config file), with ``args``, on a free loopback port;
    its stderr goes to ``errors`` when given, else into ``log`` with its stdout (the access log).
    ``before``: a command that ends by running its arguments (gunicorn's command line)."""
    port = free_port()
    with log.open("w") as output, contextlib.ExitStack() as stack:
        error_output = stack.enter_context(errors.open("w")) if errors else subprocess.STDOUT
        process = subprocess.Popen(
            [
                *before,
                *(sys.executable, "-m", "gunicorn", "klaviyo_site.wsgi", "--config", "klaviyo_site/gunicorn.conf.py"),
                *args,
                *("--bind", f"127.0.0.1:{port}"),
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=output,
            stderr=error_output,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log.read_text()
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
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert process.returncode == 0, log.read_text()


@pytest.fixture
def gunicorn(tmp_path):
    """gunicorn as ``make serve`` runs it (after collectstatic and migrate)."""
    env = production_env(tmp_path)
    for args in (("collectstatic", "--no-input", "--verbosity", "0"), ("migrate", "--no-input")):
        result = manage(env, *args)
        assert result.returncode == 0, result.stderr
    log = tmp_path / "gunicorn.log"
    with serving(env, log, "--workers", "1", "--threads", "2") as port:
        yield port, log


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


def test_gunicorn_serves_the_health_check_and_static_files_with_security_headers(gunicorn):
    port, _ = gunicorn

    status, headers, body = get(port, "/healthz")  # a load balancer's plain-HTTP probe
    assert (status, body) == (200, b'{"status": "ok"}')
    assert SECURITY_HEADERS.items() <= headers.items()
    assert "strict-transport-security" not in headers

    proxied = {"X-Forwarded-Proto": "https", "Accept-Encoding": "gzip"}  # through the TLS proxy
    status, headers, body = get(port, "/static/admin/css/base.css", proxied)
    assert status == 200
    assert headers["content-type"].startswith("text/css")
    assert headers["content-encoding"] == "gzip"  # compressed by collectstatic, served by WhiteNoise
    assert b"font-family" in gzip.decompress(body)
    assert "max-age" in headers["cache-control"]

    status, headers, _ = get(port, "/start/cust-1?token=x")  # plain HTTP elsewhere: off to HTTPS
    assert status == 301
    assert headers["location"] == f"https://127.0.0.1:{port}/start/cust-1?token=x"

    status, headers, body = get(port, "/start/cust-1", {"X-Forwarded-Proto": "https"})
    assert status == 403  # production rules: /start needs a signed link
    assert SECURITY_HEADERS.items() <= headers.items()
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
    assert b"not signed" in body


def test_gunicorn_keeps_authorization_codes_out_of_the_access_log(gunicorn):
    port, log = gunicorn
    code = secrets.token_urlsafe(24)
    headers = {"X-Forwarded-Proto": "https", "Referer": f"https://connect.example.com/authorize?code={code}"}

    status, _, _ = get(port, f"/authorize?code={code}&state=unknown-state", headers)

    assert status == 400
    time.sleep(0.2)  # the access log line is written after the response
    text = log.read_text()
    assert '"GET /authorize HTTP/1.1" 400' in text
    assert code not in text


# A request whose path, once percent-decoded, holds a line of JSON claiming to be the app's.
FORGED_LINE = (
    "/x%0A%7B%22level%22%3A%22CRITICAL%22%2C%22logger%22%3A%22oauth_integration.services.connect%22%2C"
    "%22message%22%3A%22Customer%20acme%20connected%20Klaviyo%20account%20ATTACKER%22%7D%0A"
)
ESCAPED = r'(?:[^"\\\x00-\x1f\x7f-\uffff]|\\x[0-9a-f]{2}|\\u[0-9a-f]{4})*'  # printable, or \xNN
ACCESS_LINE = re.compile(rf'\S+ \[[^\]]+\] "[A-Z]+ {ESCAPED} HTTP/1\.[01]" \d{{3}} (?:\d+|-) \d+ms "{ESCAPED}"')
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_gunicorn_access_lines_escape_what_the_client_sent(tmp_path, log_format):
    env = production_env(tmp_path, LOG_FORMAT=log_format)
    access, errors = tmp_path / "access.log", tmp_path / "errors.log"
    secure = {"X-Forwarded-Proto": "https"}
    with serving(env, access, "--workers", "1", errors=errors) as port:
        assert get(port, FORGED_LINE, secure)[0] == 404
        assert get(port, "/y%1B%5B2J%1B%5B31mRED%5C", secure)[0] == 404  # clear screen, red; a backslash
        assert get(port, "/z", {**secure, "User-Agent": 'Mozilla" 200 5 1ms "evil'})[0] == 404
        assert get(port, "/profiles/jane.doe@example.com", secure)[0] == 401  # Django logs it too
        time.sleep(0.2)  # the access log line is written after the response
    lines = access.read_text().splitlines()
    assert "jane.doe" not in access.read_text() + errors.read_text()

    for line in lines + errors.read_text().splitlines():
        assert not CONTROL.search(line), line
        with contextlib.suppress(ValueError):
            assert json.loads(line).get("logger") != "oauth_integration.services.connect", line
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        assert {entry["logger"] for entry in entries} == {"gunicorn.access"}
        requests = [(entry["method"], entry["path"], entry["status"], entry["user_agent"]) for entry in entries]
    else:
        assert [line for line in lines if not ACCESS_LINE.fullmatch(line)] == []
        requests = [re.search(r'"(\S+) (.*) HTTP/1\.1" (\d+) .* "(.*)"$', line).groups() for line in lines]
        requests = [(method, path, int(status), agent) for method, path, status, agent in requests]
    forged = r"/x\x0a{\x22level\x22:\x22CRITICAL\x22,\x22logger\x22:\x22oauth_integration.services.connect\x22,"
    assert [path for _, path, _, _ in requests if path.startswith("/x")] == [
        forged + r"\x22message\x22:\x22Customer acme connected Klaviyo account ATTACKER\x22}\x0a"
    ]
    assert ("GET", r"/y\x1b[2J\x1b[31mRED\x5c", 404) in [request[:3] for request in requests]
    assert ("GET", "/z", 404, r"Mozilla\x22 200 5 1ms \x22evil") in requests
    assert ("GET", "/profiles/j***@example.com", 401) in [request[:3] for request in requests]


def test_gunicorn_refuses_malformed_requests_with_4xx(gunicorn):
    port, _ = gunicorn
    secure = {"X-Forwarded-Proto": "https"}
    assert get(port, "/healthz", {"Cookie": 'sessionid="\\000abcdefghijkl"'})[0] == 400
    assert get(port, "/start/" + "a" * 100_000, secure)[0] in (400, 414)
    assert get(port, "/profiles/%00", secure)[0] == 400


def test_metrics_from_two_gunicorn_workers_add_up_and_need_the_token(tmp_path):
    """Calls served by both workers of a sync gunicorn (each call holds its worker while Klaviyo
    answers slowly), then one scrape that counts them all."""
    metrics_token = secrets.token_urlsafe(16)
    with ScriptedServer([("sleep", 0.4)] * 30) as klaviyo:
        env = production_env(
            tmp_path,
            KLAVIYO_BASE_URL=klaviyo.url,
            METRICS_TOKEN=metrics_token,
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
            HTTPS="false",
            BEHIND_PROXY="false",
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
        with serving(env, tmp_path / "gunicorn.log", "--workers", "2", "--worker-class", "sync") as port:
            statuses: list[int] = []
            # Rounds of 6 concurrent calls until both workers have served some (a worker
            # still booting when the first round starts leaves it all to the other).
            for _ in range(5):
                with ThreadPoolExecutor(max_workers=6) as pool:
                    statuses += pool.map(lambda _: get(port, "/profiles/c1", session)[0], range(6))
                if len(list((tmp_path / "metrics").glob("counter_*.db"))) == 2:
                    break
            assert statuses == [200] * len(statuses)
            assert get(port, "/metrics")[0] == 404
            assert get(port, "/metrics", {"Authorization": "Bearer wrong"})[0] == 404
            status, headers, body = get(port, "/metrics", {"Authorization": f"Bearer {metrics_token}"})
            counter_files = list((tmp_path / "metrics").glob("counter_*.db"))
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    calls = f"{len(statuses)}.0"
    assert f'klaviyo_api_requests_total{{endpoint="/api/profiles",method="GET",status="200"}} {calls}' in text
    assert 'klaviyo_connections{status="active"} 1.0' in text
    assert "c1" not in text and "at-1" not in text
    assert len(counter_files) == 2  # both workers served calls: one counter file each
    assert not list((tmp_path / "metrics").glob("*.db"))  # removed when gunicorn stopped
    assert (tmp_path / "metrics").is_dir()  # the directory the operator named stays


def test_gunicorn_leaves_no_metrics_directory_of_its_own_behind(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = production_env(tmp_path, TMPDIR=str(scratch))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    assert manage(env, "migrate", "--no-input").returncode == 0
    with serving(env, tmp_path / "gunicorn.log", "--workers", "1") as port:
        assert get(port, "/healthz")[0] == 200
        assert [path.name.startswith("klaviyo-metrics-") for path in scratch.iterdir()] == [True]
    assert list(scratch.iterdir()) == []


def test_gunicorn_makes_a_new_metrics_directory_not_one_made_beforehand_under_its_pid(tmp_path):
    """Another local user who guesses the master's pid could make that directory first (world-
    writable, with symlinks named like the workers' files); it is left alone."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = production_env(tmp_path, TMPDIR=str(scratch))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # The shell makes the directory under its own pid, then becomes gunicorn's master (exec).
    plant = 'mkdir -m 0777 "$TMPDIR/klaviyo-metrics-$$" && exec "$@"'
    with serving(env, tmp_path / "gunicorn.log", "--workers", "1", before=("sh", "-c", plant, "sh")) as port:
        assert get(port, "/healthz")[0] == 200
        (planted,) = [path for path in scratch.iterdir() if stat.S_IMODE(path.stat().st_mode) == 0o777]
        made = [path for path in scratch.iterdir() if path != planted]
        assert [(path.name.startswith("klaviyo-metrics-"), stat.S_IMODE(path.stat().st_mode)) for path in made] == [
            (True, 0o700)
        ]
    assert list(scratch.iterdir()) == [planted]  # its own removed; the other user's left alone


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
def test_gunicorn_refuses_a_named_metrics_directory_others_could_write_to(tmp_path, owner_and_mode):
    owner, mode = owner_and_mode
    named = tmp_path / "metrics"
    named.mkdir()
    named.chmod(mode)
    if owner is not None:
        os.chown(named, owner, owner)
    result = subprocess.run(
        [
            *(sys.executable, "-m", "gunicorn", "klaviyo_site.wsgi", "--config", "klaviyo_site/gunicorn.conf.py"),
            *("--bind", f"127.0.0.1:{free_port()}"),
        ],
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
    assert "Booting worker" not in output


def test_a_second_gunicorn_on_a_taken_port_stops_with_a_clear_message(gunicorn, tmp_path):
    port, _ = gunicorn  # already serving; its workers listen with SO_REUSEPORT
    result = subprocess.run(
        [
            *(sys.executable, "-m", "gunicorn", "klaviyo_site.wsgi", "--config", "klaviyo_site/gunicorn.conf.py"),
            *("--bind", f"127.0.0.1:{port}"),
        ],
        cwd=BASE_DIR,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stdout + result.stderr
    status, _, _ = get(port, "/healthz")
    assert status == 200  # the first one still answers every request


def test_without_reuse_port_the_master_listens_as_gunicorn_does_by_default(tmp_path):
    env = production_env(tmp_path, GUNICORN_REUSE_PORT="false")
    assert manage(env, "migrate", "--no-input").returncode == 0
    log = tmp_path / "gunicorn.log"
    with serving(env, log, "--workers", "1") as port:
        status, _, _ = get(port, "/healthz")
        assert status == 200
        text = log.read_text()
        assert f"Listening at: http://127.0.0.1:{port}" in text
        assert "SO_REUSEPORT" not in text
