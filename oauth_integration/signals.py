"""Signals for the host site: a customer connected, was refreshed, must reconnect, disconnected.

Each is sent once, after the database commit of what it reports (at once when no
transaction is open; never when the transaction rolls back), with ``sender=OAuthToken``
and the keyword arguments ``customer_identifier`` and ``klaviyo_account_id``:

* ``connected``: also ``reconnected`` (True when the customer had connected before),
  ``klaviyo_account_name`` (the account's organization name, "" if it could not be read)
  and ``scopes`` (what the customer granted, space-separated, as stored on the connection);
* ``refreshed``;
* ``needs_reauthorization``: also ``reason`` (a ``FailureReason`` value);
* ``disconnected``.

A receiver that raises is logged and ignored: it never breaks the flow or loses tokens.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

connected = Signal()
refreshed = Signal()
needs_reauthorization = Signal()
disconnected = Signal()


def send_after_commit(signal: Signal, *, customer_identifier: str, klaviyo_account_id: str, **kwargs: Any) -> None:
    """Send ``signal`` once the current transaction commits; log (and ignore) receivers that raise."""
    from oauth_integration.models import OAuthToken  # the sender; models import nothing from here

    def send() -> None:
        responses = signal.send_robust(
            sender=OAuthToken, customer_identifier=customer_identifier, klaviyo_account_id=klaviyo_account_id, **kwargs
        )
        for receiver, response in responses:
            if isinstance(response, Exception):
                logger.error(
                    "A receiver of a Klaviyo connection signal failed: %r",
                    receiver,
                    exc_info=(type(response), response, response.__traceback__),
                    extra={"customer_identifier": customer_identifier},
                )

    transaction.on_commit(send, robust=True)
