"""Installs that start in Klaviyo: which customers the logged-in user may connect.

Klaviyo's app listing sends the browser to the app's install URL (``/install``). The host
project names, in KLAVIYO_INSTALL_CUSTOMERS, a function ``(user) -> customer identifiers``;
``/install`` then hands the user the start link of their one customer, or a choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.utils.module_loading import import_string

from oauth_integration.conf import conf
from oauth_integration.exceptions import InvalidCustomerIdentifier
from oauth_integration.validators import validate_customer_identifier

logger = logging.getLogger(__name__)


def installs_enabled() -> bool:
    """True when KLAVIYO_INSTALL_CUSTOMERS names the host's function."""
    return bool(conf.install_customers)


def installable_customers(user: Any) -> list[str]:
    """The customer identifiers ``user`` may connect, in the host function's order, each once.

    Identifiers that are not valid customer identifiers are left out (and logged). Raises
    ImportError when KLAVIYO_INSTALL_CUSTOMERS names nothing importable (the system check
    reports it first).
    """
    function: Callable[[Any], Iterable[str]] = import_string(conf.install_customers)
    customers: list[str] = []
    for customer in function(user) or ():
        try:
            validate_customer_identifier(customer)
        except (InvalidCustomerIdentifier, TypeError):
            logger.warning("%s returned %r, which is not a customer identifier", conf.install_customers, customer)
            continue
        if customer not in customers:
            customers.append(customer)
    return customers
