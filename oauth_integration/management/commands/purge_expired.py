"""Keep storage bounded (run hourly): expired authorizations, used links and sessions, old history."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oauth_integration import services
from oauth_integration.management.output import ProgressThrottle


class Command(BaseCommand):
    help = (
        "Delete expired pending authorizations, records of used start links that have expired, expired "
        "browser sessions, and connection history older than KLAVIYO_EVENT_RETENTION_DAYS (default 365), "
        "in short batches. Safe while serving and on several machines at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=1000, metavar="ROWS", help="Rows deleted per batch (default: 1000)."
        )

    def handle(self, *args: Any, batch_size: int, verbosity: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        throttles: dict[str, ProgressThrottle] = {}

        def progress(report: services.PurgeReport) -> None:
            kind = report.kind
            done, total = report.deleted[kind], report.totals[kind]
            throttle = throttles.setdefault(kind, ProgressThrottle(total))
            if verbosity >= 1 and throttle.due(done):
                self.stderr.write(f"{kind}: {done}/{max(done, total)} deleted")

        report = services.purge_expired(batch_size=batch_size, progress=progress)
        if verbosity >= 1:
            summary = ", ".join(f"{count} {kind}" for kind, count in report.deleted.items())
            self.stdout.write(f"Deleted {summary}.")
