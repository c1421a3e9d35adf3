"""Keep-alive for cron: refresh connections about to expire or unused for too long."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oauth_integration import services
from oauth_integration.conf import conf
from oauth_integration.exceptions import EncryptionKeyError
from oauth_integration.management.output import ProgressThrottle, name_some

MAX_CONCURRENCY = 32  # the pooled HTTP session keeps at most 32 connections to Klaviyo
MAX_UNUSED_DAYS = 89  # Klaviyo refresh tokens die after 90 days without use


def _bounded_int(low: int, high: int | None = None) -> Any:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}")
        return value

    return parse


class Command(BaseCommand):
    help = (
        "Refresh the Klaviyo tokens of active connections whose refresh token has not been used for a "
        "while (Klaviyo drops it after 90 idle days) and, when asked to, of connections in use whose "
        "access token expires soon. Safe to run on several machines at once. Exits non-zero when any "
        "refresh failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--expiring-within",
            type=_bounded_int(0),
            default=None,
            metavar="SECONDS",
            help="Also refresh connections in use whose access token expires within this many seconds; "
            "0 never does (default: KLAVIYO_KEEP_ALIVE_EXPIRING_WITHIN, 0: calls refresh them when needed).",
        )
        parser.add_argument(
            "--unused-days",
            type=_bounded_int(1, MAX_UNUSED_DAYS),
            default=None,
            metavar="DAYS",
            help="Refresh connections whose refresh token has not been used for this many days "
            "(default: KLAVIYO_KEEP_ALIVE_UNUSED_DAYS, 75).",
        )
        parser.add_argument(
            "--concurrency",
            type=_bounded_int(1, MAX_CONCURRENCY),
            default=4,
            metavar="N",
            help="Refreshes running at the same time (default: 4).",
        )

    def handle(
        self,
        *args: Any,
        expiring_within: int | None,
        unused_days: int | None,
        concurrency: int,
        verbosity: int,
        **options: Any,
    ) -> None:
        expiring = conf.keep_alive_expiring_within if expiring_within is None else timedelta(seconds=expiring_within)
        unused = conf.keep_alive_unused if unused_days is None else timedelta(days=unused_days)
        throttle: ProgressThrottle | None = None

        def progress(report: services.RefreshReport) -> None:
            nonlocal throttle
            if verbosity < 1:
                return
            throttle = throttle or ProgressThrottle(report.due)
            if throttle.due(report.processed):
                total = max(report.due, report.processed)  # connections may fall due during the run
                self.stderr.write(f"processed {report.processed}/{total}: {_counts(report)}")

        try:
            report = services.refresh_due_connections(
                expiring_within=expiring or None,
                unused_for=unused,
                concurrency=concurrency,
                progress=progress,
            )
        except EncryptionKeyError as exc:
            raise CommandError(str(exc)) from exc

        if verbosity >= 1:
            if report.processed == 0:
                self.stdout.write("No connection is due for a refresh.")
            else:
                self.stdout.write(f"Done: {report.processed} connections due; {_counts(report)}.")
        if report.failed:
            raise CommandError(
                f"{report.failed} refreshes failed: {name_some(sorted(report.failed_customers))}. "
                "The log and each connection's history say why; the next run retries them."
            )


def _counts(report: services.RefreshReport) -> str:
    return (
        f"{report.refreshed} refreshed, {report.skipped} skipped (refreshed elsewhere or no longer due), "
        f"{report.needs_reauthorization} need reauthorization, {report.failed} failed"
    )
