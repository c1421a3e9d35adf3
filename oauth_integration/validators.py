"""Input rules shared by views, services and commands."""

from __future__ import annotations

import re
import unicodedata

from oauth_integration.exceptions import InvalidCustomerIdentifier

CUSTOMER_IDENTIFIER_MAX_LENGTH = 255
# Letters and digits of any script, plus . _ @ + - : ~ (so emails, UUIDs and slugs fit).
_CUSTOMER_IDENTIFIER = re.compile(r"[\w.@+\-:~]+")
# Path segments a URL normaliser removes or resolves: a link for them would lead elsewhere.
DOT_SEGMENTS = frozenset({".", ".."})


def validate_customer_identifier(value: str) -> str:
    """Return ``value`` if it is a usable customer identifier; raise InvalidCustomerIdentifier."""
    if not value:
        raise InvalidCustomerIdentifier("The customer identifier is empty.")
    if len(value) > CUSTOMER_IDENTIFIER_MAX_LENGTH:
        raise InvalidCustomerIdentifier(
            f"The customer identifier is longer than {CUSTOMER_IDENTIFIER_MAX_LENGTH} characters."
        )
    if not _CUSTOMER_IDENTIFIER.fullmatch(value):
        raise InvalidCustomerIdentifier("The customer identifier may contain only letters, digits and . _ @ + - : ~")
    if value in DOT_SEGMENTS:
        # Every browser and HTTP client rewrites /start/.. to / (RFC 3986 dot segments).
        raise InvalidCustomerIdentifier("The customer identifier cannot be . or .. (URLs drop them).")
    if unicodedata.normalize("NFKC", value) != value:
        # Full-width, ligature and other compatibility forms would make look-alike twins
        # of an existing identifier (full-width "cust-1" next to "cust-1").
        raise InvalidCustomerIdentifier("The customer identifier must be in Unicode NFKC form (no look-alike forms).")
    return value
