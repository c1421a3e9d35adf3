"""Replace the sandbox's copy of Klaviyo's OpenAPI description with another (e.g. a newer stable.json)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from klaviyo_sandbox import description


class Command(BaseCommand):
    help = (
        "Check a Klaviyo OpenAPI description (openapi/stable.json of github.com/klaviyo/openapi) and "
        "make it the one the sandbox answers from. Without --from, report the current one."
    )
    requires_system_checks: list[str] = []  # a file operation: works before the project is configured

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="source", metavar="PATH", help="The description to install.")
        parser.add_argument("--check", action="store_true", help="Only check --from; change nothing.")

    def handle(self, *args: Any, source: str | None, check: bool, **options: Any) -> None:
        if source is None:
            current = description.document()
            self.stdout.write(
                f"{description.DESCRIPTION_PATH}: revision {current['info']['version']}, {_count(current)} operations."
            )
            return
        try:
            raw = Path(source).read_bytes()
            candidate = json.loads(raw)
        except OSError as exc:
            raise CommandError(f"Cannot read {source}: {exc.strerror}.") from exc
        except (UnicodeDecodeError, ValueError) as exc:
            raise CommandError(f"{source} is not JSON.") from exc
        problems = description.problems(candidate)
        if problems:
            shown = "\n  ".join(problems[:20])
            raise CommandError(f"{source} cannot serve as the sandbox's description:\n  {shown}")
        summary = f"revision {candidate['info']['version']}, {_count(candidate)} operations"
        if check:
            self.stdout.write(f"{source} is usable: {summary}.")
            return
        target = description.DESCRIPTION_PATH
        # Write beside the target, then rename: a server reading it never sees half a file.
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".stable-", suffix=".json")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(raw)
            os.replace(temporary, target)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            raise CommandError(f"Cannot write {target}: {exc.strerror}.") from exc
        description.document.cache_clear()
        description.operations.cache_clear()
        description.by_id.cache_clear()
        self.stdout.write(f"Installed {summary} as {target}. Restart the server to serve it.")


def _count(document: dict[str, Any]) -> int:
    return sum(method in item for item in document["paths"].values() for method in description.METHODS)
