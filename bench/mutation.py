"""``python -m bench.mutation``: put one small bug at a time into the code and see whether the tests notice.

Each mutant below names a file, an exact piece of its text, the text that replaces it (a bug an
honest change could introduce), and the test files that ought to fail because of it. The run:

1. copies the project's files (tracked, and new ones git does not ignore) into a temporary folder;
2. runs the named test files of every mutant once, unchanged: they must pass, or nothing is judged;
3. for each mutant, writes the mutated file, runs its tests (``pytest -x``), and puts the file back.

A mutant is **caught** when its tests fail, **survived** when they pass, and **stale** when its text
is no longer found exactly once (the code moved on: the table needs updating). The exit status is 1
when any mutant survived or is stale. The database is the one the suite would use (SQLite unless
``DATABASE_URL`` names another); the project's own tree is never written.

    .venv/bin/python -m bench.mutation                      # every mutant (about 10 minutes here)
    .venv/bin/python -m bench.mutation --only decrypt-cache-without-context,metrics-token-suffix
    .venv/bin/python -m bench.mutation --list
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 900  # seconds one mutant's tests may take


@dataclass(frozen=True)
class Mutant:
    """One small bug: ``find`` (exactly once in ``path``) becomes ``replace``; ``tests`` should then fail."""

    name: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]


MUTANTS: tuple[Mutant, ...] = ()


def project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],  # noqa: S607 (git from PATH)
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return [name.decode() for name in listed if name and (ROOT / name.decode()).is_file()]


def copy_project(target: Path) -> None:
    for name in project_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)


def pytest(tree: Path, tests: tuple[str, ...]) -> int:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        completed = subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
            command, cwd=tree, capture_output=True, timeout=TIMEOUT, check=False, env=os.environ.copy()
        )
    except subprocess.TimeoutExpired:
        return -1
    return completed.returncode


def judge(tree: Path, mutant: Mutant) -> str:
    target = tree / mutant.path
    original = target.read_text()
    if original.count(mutant.find) != 1:
        return "stale"
    target.write_text(original.replace(mutant.find, mutant.replace))
    try:
        status = pytest(tree, mutant.tests)
    finally:
        target.write_text(original)
    if status == 0:
        return "survived"
    if status == 1:
        return "caught"
    return "caught (timeout)" if status == -1 else f"error (pytest exit {status})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated mutant names")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    args = parser.parse_args(argv)
    chosen = list(MUTANTS)
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {mutant.name for mutant in MUTANTS}
        if unknown:
            parser.error(f"no mutant named {', '.join(sorted(unknown))}")
        chosen = [mutant for mutant in MUTANTS if mutant.name in names]
    if args.list:
        for mutant in chosen:
            print(f"{mutant.name:45} {mutant.path}  ->  {' '.join(mutant.tests)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutation-") as folder:
        tree = Path(folder)
        copy_project(tree)
        suites = sorted({mutant.tests for mutant in chosen})
        print(f"{len(chosen)} mutants; first the {len(suites)} test selections unchanged", flush=True)
        for tests in suites:
            if pytest(tree, tests) != 0:
                print(f"the unchanged code fails {' '.join(tests)}: nothing judged", flush=True)
                return 2
        outcomes: dict[str, list[str]] = {}
        for mutant in chosen:
            begun = time.monotonic()
            outcome = judge(tree, mutant)
            outcomes.setdefault(outcome.split(" ")[0], []).append(mutant.name)
            print(f"{outcome:16} {mutant.name:45} {time.monotonic() - begun:6.1f} s", flush=True)
    counts = ", ".join(f"{len(names)} {outcome}" for outcome, names in sorted(outcomes.items()))
    print(f"mutants: {counts}")
    return 1 if outcomes.get("survived") or outcomes.get("stale") or outcomes.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
