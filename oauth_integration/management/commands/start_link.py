"""Print a signed, expiring /start link for a customer."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oauth_integration.exceptions import InvalidCustomerIdentifier
from oauth_integration.links import build_start_link


class Command(BaseCommand):
    help = "Print a signed link that starts connecting CUSTOMER_IDENTIFIER to Klaviyo."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer_identifier")

    def handle(self, *args: Any, customer_identifier: str, **options: Any) -> None:
        try:
            self.stdout.write(build_start_link(customer_identifier))
        except InvalidCustomerIdentifier as exc:
            raise CommandError(str(exc)) from exc
