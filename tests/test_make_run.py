"""`make run PORT=...` and then `manage.py shell`: both reach the sandbox this server serves."""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

ROOT = Path(django_settings.BASE_DIR)
VENV = ROOT / ".venv"
SHELL_CALL = (
    "from oauth_integration.conf import conf\n"
    "from oauth_integration.exceptions import InvalidGrant\n"
    "from oauth_integration.klaviyo import client\n"
    "print(conf.base_url)\n"
    "try:\n"
    "    client.refresh(refresh_token='not-a-refresh-token')\n"
    "except InvalidGrant:\n"
    "    print('the sandbox answered: invalid_grant')\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fresh_checkout(tmp_path) -> Path:
    """The project's tracked files, as a fresh clone has them, sharing this checkout's virtualenv."""
    make, git = shutil.which("make"), shutil.which("git")
    if make is None or git is None or not (VENV / ".runtime").exists():
        pytest.skip("needs make, git and a virtualenv made by make")
    listed = subprocess.run([git, "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    checkout = tmp_path / "checkout"
    for name in listed.splitlines():
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)  # keeps the times: make sees the virtualenv as up to date
    (checkout / ".venv").symlink_to(VENV)
    return checkout


def plain_environment() -> dict[str, str]:
    """A developer's shell: nothing of this test run's configuration leaks into the project."""
    prefixes = ("KLAVIYO_", "TOKEN_", "DATABASE_URL", "DJANGO_", "PORT", "DEBUG", "SECRET_KEY", "MAKE", "MFLAGS")
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}


def test_make_run_with_a_port_and_then_a_shell_reach_the_same_sandbox(fresh_checkout):
    port = free_port()
    env = plain_environment()
    log = fresh_checkout / "make-run.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [shutil.which("make") or "make", "run", f"PORT={port}"],
            cwd=fresh_checkout,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # runserver and its reloader go down with the group
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)

        shell = subprocess.run(
            [str(fresh_checkout / ".venv/bin/python"), "manage.py", "shell", "-v", "0", "-c", SHELL_CALL],
            cwd=fresh_checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines() == [f"http://127.0.0.1:{port}/sandbox", "the sandbox answered: invalid_grant"]
    assert f"PORT={port}\n" in (fresh_checkout / ".env").read_text()
