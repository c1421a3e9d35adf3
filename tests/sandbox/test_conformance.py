"""The conformance run (.ci/conformance.py): schemathesis against the sandbox, counts printed, exit status."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "conformance.py"


def run(*arguments):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.skipif(sys.platform == "win32", reason="the run needs a POSIX temporary directory")
def test_a_bounded_run_counts_what_it_tried_and_passes_when_nothing_failed():
    done = run("--examples", "2", "--operation", "create_catalog_item", "--operation", "get_catalog_items",
               "--operation", "get_coupon", "--operation", "create_client_event")  # fmt: skip
    lines = dict(line.strip().split(": ", 1) for line in done.stdout.splitlines() if line.startswith("  "))
    assert lines["operations tried"] == "4"
    assert int(lines["requests"]) >= 4
    for failing in ("no such endpoint", "server errors", "content type failures", "schema failures"):
        assert lines[failing] == "0", done.stdout + done.stderr[-3000:]
    assert done.returncode == 0


def test_a_run_that_tries_nothing_fails():
    done = run("--operation", "no_such_operation")
    assert "operations tried: 0" in done.stdout
    assert done.returncode == 1
