"""Delete pending authorizations that expired before the customer came back (run hourly)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from oauth_integration import services


class Command(BaseCommand):
    help = "Delete expired pending authorizations (OAuth state and PKCE verifier). Safe to run on several machines."

    def handle(self, *args: Any, verbosity: int, **options: Any) -> None:
        deleted = services.purge_expired_authorizations()
        if verbosity >= 1:
            self.stdout.write(f"Deleted {deleted} expired pending authorization{'' if deleted == 1 else 's'}.")
