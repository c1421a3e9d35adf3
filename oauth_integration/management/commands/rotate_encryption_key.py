"""Re-encrypt every stored secret under TOKEN_ENCRYPTION_KEY, or check that all of them decrypt."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oauth_integration import services
from oauth_integration.exceptions import EncryptionKeyError
from oauth_integration.management.output import ProgressThrottle, name_some


class Command(BaseCommand):
    help = (
        "Re-encrypt the stored tokens and PKCE verifiers still under an older key (one of "
        "TOKEN_ENCRYPTION_KEY_FALLBACKS) with TOKEN_ENCRYPTION_KEY. Resumable: a rerun continues where "
        "an interrupted run stopped. With --check, change nothing: prove that every secret decrypts and "
        "count those still under an old key. Exits non-zero when any row cannot be decrypted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="Only check: every row decrypts with the configured keys; how many are under an old key.",
        )
        parser.add_argument(
            "--batch-size", type=int, default=500, metavar="ROWS", help="Rows per transaction (default: 500)."
        )

    def handle(self, *args: Any, check: bool, batch_size: int, verbosity: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        throttles: dict[str, ProgressThrottle] = {}

        def progress(report: services.KeyRotationReport) -> None:
            if verbosity < 1:
                return
            table = report.table
            done, total = report.scanned[table], report.totals[table]
            throttle = throttles.setdefault(table, ProgressThrottle(total))
            if throttle.due(done):
                what = f"{report.old_key} under an old key" if check else f"{report.resealed} re-encrypted"
                self.stderr.write(f"{table}: {done}/{max(done, total)} rows scanned; {what} so far")

        operation = services.check_encryption if check else services.rotate_encryption_key
        try:
            report = operation(batch_size=batch_size, progress=progress)
        except EncryptionKeyError as exc:
            raise CommandError(str(exc)) from exc

        scanned = ", ".join(f"{count} {table}" for table, count in report.scanned.items())
        if verbosity >= 1:
            if check:
                self.stdout.write(f"Checked {scanned} against key {report.current_key_id} and its fallbacks.")
                if report.old_key:
                    self.stdout.write(
                        f"{report.old_key} rows are still under an old key: run rotate_encryption_key "
                        "before removing any key from TOKEN_ENCRYPTION_KEY_FALLBACKS."
                    )
                elif not report.undecryptable:
                    self.stdout.write("Every row is under the current key: the fallback keys are no longer needed.")
            else:
                self.stdout.write(
                    f"Re-encrypted {report.resealed} rows under key {report.current_key_id} (scanned {scanned})."
                )
        if report.undecryptable:
            names = [f"{customer} ({table})" for table, customer in report.undecryptable]
            raise CommandError(
                f"{len(names)} rows cannot be decrypted with the configured keys and were left as they are: "
                f"{name_some(names)}. Add the key that encrypted them to TOKEN_ENCRYPTION_KEY_FALLBACKS, "
                "or have these customers reconnect."
            )
