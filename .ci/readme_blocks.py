"""Apply the README's host-project code blocks to a Django project, in the README's order.

Every fenced block of the section "Use it in your own Django project" is preceded by a
marker that says how it is applied:

    <!-- host-project: append mysite/settings.py -->   the block is added at the end of that file
    <!-- host-project: create shop/receivers.py -->    the file is written with the block (replacing it)
    <!-- host-project: run -->                         each line is a shell command, run in the project
    <!-- host-project: shell -->                       the block is run by `python manage.py shell -c`
    <!-- host-project: cron -->                        each crontab line's command is run once, in the
                                                       project (its leading `cd DIR &&` left out)
    <!-- host-project: serve -->                       like run, but the last line is a server: it is
                                                       started in the background on the address of its
                                                       --bind (HOST_PROJECT_BIND replaces it when set),
                                                       and while it answers HTTP there the command in
                                                       HOST_PROJECT_WHILE_SERVING runs; then it is
                                                       stopped (SIGTERM) and must exit cleanly. Both
                                                       run without the variables that
                                                       HOST_PROJECT_SERVE_UNSET names
    <!-- host-project: skip: REASON -->                not applied, for the reason given

A block without a marker, a marker without a block or a marker outside the section is an
error, so the README cannot say anything about a host project that this script does not
apply or explicitly skip. Commands run with the environment this script gets (the caller
puts the project's virtual environment first on PATH).

Usage: python readme_blocks.py README.md PROJECT_DIR
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SECTION = "## Use it in your own Django project"
MARKER = re.compile(r"^<!-- host-project: (?P<how>[a-z]+)(?::? (?P<argument>.+?))? -->$")
FENCE = re.compile(r"^```")


@dataclass(frozen=True)
class Block:
    line: int  # the marker's line number in the README
    how: str
    argument: str
    text: str


class ReadmeError(Exception):
    pass


def blocks(readme: str) -> list[Block]:
    """The section's marked blocks, in order. Raises ReadmeError for anything unmarked or misplaced."""
    lines = readme.splitlines()
    found: list[Block] = []
    in_section = False
    pending: tuple[int, str, str] | None = None
    number = 0
    while number < len(lines):
        line = lines[number]
        if line.startswith("## "):
            in_section = line.strip() == SECTION
        marker = MARKER.match(line.strip())
        if marker:
            if not in_section:
                raise ReadmeError(f"line {number + 1}: a host-project marker outside the section {SECTION!r}")
            if pending:
                raise ReadmeError(f"line {pending[0]}: a marker with no code block after it")
            pending = (number + 1, marker["how"], marker["argument"] or "")
        elif FENCE.match(line):
            end = next((i for i in range(number + 1, len(lines)) if FENCE.match(lines[i])), None)
            if end is None:
                raise ReadmeError(f"line {number + 1}: a code block that never ends")
            if in_section:
                if pending is None:
                    raise ReadmeError(f"line {number + 1}: a code block of {SECTION!r} without a host-project marker")
                found.append(Block(pending[0], pending[1], pending[2], "\n".join(lines[number + 1 : end]) + "\n"))
                pending = None
            number = end
        elif line.strip() and pending:
            raise ReadmeError(f"line {pending[0]}: the marker is not directly before a code block")
        number += 1
    if pending:
        raise ReadmeError(f"line {pending[0]}: a marker with no code block after it")
    if not found:
        raise ReadmeError(f"no host-project blocks: is there a section {SECTION!r}?")
    return found


def shell_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run(command: list[str], project: Path, shown: str, env: dict[str, str] | None = None) -> None:
    print(f"$ {shown}", flush=True)
    result = subprocess.run(command, cwd=project, check=False, env=env)
    if result.returncode != 0:
        raise ReadmeError(f"`{shown}` exited with {result.returncode}")


def serve(block: Block, server: str, project: Path) -> None:
    """Start ``server`` in the background, wait until its --bind address answers HTTP, run
    HOST_PROJECT_WHILE_SERVING, stop the server and require a clean exit."""
    bind = re.search(r"--bind[ =](\S+)", server)
    if not bind:
        raise ReadmeError(f"line {block.line}: the server command has no --bind HOST:PORT")
    address = os.environ.get("HOST_PROJECT_BIND") or bind[1]
    server = server.replace(bind[0], f"--bind {address}")
    unset = os.environ.get("HOST_PROJECT_SERVE_UNSET", "").split()
    env = {name: value for name, value in os.environ.items() if name not in unset}
    log = project / "serve.log"
    print(f"$ {server} &  (output in {log.name}; without {', '.join(unset) or 'nothing'})", flush=True)
    with log.open("w") as output:
        process = subprocess.Popen(["bash", "-c", f"exec {server}"], cwd=project, env=env, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise ReadmeError(f"line {block.line}: the server exited with {process.returncode}:\n{log.read_text()}")
            try:
                urllib.request.urlopen(f"http://{address}/", timeout=5).close()
                break
            except urllib.error.HTTPError:
                break  # it answers (404 and the like are answers)
            except OSError:
                if time.monotonic() > deadline:
                    raise ReadmeError(f"line {block.line}: nothing answers on {address}:\n{log.read_text()}") from None
                time.sleep(0.2)
        check = os.environ.get("HOST_PROJECT_WHILE_SERVING")
        if check:
            run(["bash", "-e", "-o", "pipefail", "-c", check], project, check, env)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise ReadmeError(f"line {block.line}: the server exited with {process.returncode}:\n{log.read_text()}")
    print(f"served on {address}, stopped cleanly")


def apply(block: Block, project: Path) -> None:
    """Do what the block's marker says, in ``project``."""
    if block.how in ("append", "create"):
        target = project / block.argument
        if block.how == "append":
            if not target.is_file():
                raise ReadmeError(f"line {block.line}: {block.argument} does not exist, nothing to append to")
            target.write_text(target.read_text().rstrip("\n") + "\n\n\n" + block.text)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
        print(f"{'appended to' if block.how == 'append' else 'wrote'} {block.argument}")
    elif block.how == "run":
        for line in shell_lines(block.text):
            run(["bash", "-e", "-o", "pipefail", "-c", line], project, line)
    elif block.how == "serve":
        *setup, server = shell_lines(block.text)
        for line in setup:
            run(["bash", "-e", "-o", "pipefail", "-c", line], project, line)
        serve(block, server, project)
    elif block.how == "cron":
        for line in shell_lines(block.text):
            command = re.sub(r"^cd \S+ && ", "", line.split(maxsplit=5)[5])
            run(["bash", "-e", "-o", "pipefail", "-c", command], project, command)
    elif block.how == "shell":
        run(["python", "manage.py", "shell", "-c", block.text], project, "python manage.py shell -c <the block>")
    elif block.how == "skip":
        if not block.argument:
            raise ReadmeError(f"line {block.line}: say why the block is skipped (skip: REASON)")
        print(f"not applied: {block.argument}")
    else:
        raise ReadmeError(f"line {block.line}: unknown host-project marker {block.how!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    readme, project = Path(argv[1]), Path(argv[2])
    try:
        found = blocks(readme.read_text())
        for position, block in enumerate(found, 1):
            what = f"{block.how} {block.argument}".strip()
            print(f"\n-- README block {position}/{len(found)} (line {block.line}): {what}", flush=True)
            apply(block, project)
    except ReadmeError as exc:
        print(f"README host-project blocks: {exc}", file=sys.stderr)
        return 1
    print(f"\nApplied the README's {len(found)} host-project blocks to {project}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
