"""Print a signed, single-use /start link for a customer."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from oauth_integration.exceptions import InvalidCustomerIdentifier, InvalidReturnURL
from oauth_integration.links import build_start_link


class Command(BaseCommand):
    help = (
        "Print a signed link that starts connecting CUSTOMER_IDENTIFIER to Klaviyo. It works once, "
        "for KLAVIYO_START_LINK_MAX_AGE seconds. Its address is KLAVIYO_REDIRECT_URL's origin, "
        "so that setting is required here."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer_identifier")
        parser.add_argument(
            "--user", metavar="USERNAME", help="Only this user, logged in to this site, can use the link."
        )
        parser.add_argument(
            "--next",
            metavar="URL",
            default="",
            help="Where the browser returns afterwards: a path on this site or a URL on a host in "
            "KLAVIYO_RETURN_URL_HOSTS (default: KLAVIYO_RETURN_URL, or this site's own page).",
        )

    def handle(self, *args: Any, customer_identifier: str, user: str | None, next: str, **options: Any) -> None:
        bound_to = None
        if user is not None:
            model = get_user_model()
            try:
                bound_to = model._default_manager.get_by_natural_key(user)
            except model.DoesNotExist:
                raise CommandError(f"No user is called {user!r}.") from None
        try:
            self.stdout.write(build_start_link(customer_identifier, user=bound_to, next=next))
        except (InvalidCustomerIdentifier, InvalidReturnURL) as exc:
            raise CommandError(str(exc)) from exc
        except ImproperlyConfigured as exc:
            raise CommandError(
                "KLAVIYO_REDIRECT_URL is not set, so this command does not know this site's address: set it to "
                f"the https:// URL of {reverse('oauth_integration:authorize')} that is registered in Klaviyo."
            ) from exc
