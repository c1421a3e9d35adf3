"""Calling Klaviyo as a customer: a usable token, one refresh-and-retry on 401, failures recorded."""

from __future__ import annotations

import logging
from typing import Any

from oauth_integration.exceptions import KlaviyoError, KlaviyoUnauthorized, ReauthorizationRequired, RefreshInProgress
from oauth_integration.klaviyo import account_id_and_name
from oauth_integration.klaviyo import client as klaviyo
from oauth_integration.models import ConnectionEvent, OAuthToken
from oauth_integration.services.failures import failure_reason, record_failure
from oauth_integration.services.refresh import fresh_connection

logger = logging.getLogger(__name__)
Event = ConnectionEvent.Kind


def get_profiles(
    *, customer_identifier: str, page_size: int | None = None, cursor: str | None = None
) -> dict[str, Any]:
    """One page of the customer's Klaviyo profiles, as Klaviyo's JSON:API body."""
    params: dict[str, str] = {}
    if page_size is not None:
        params["page[size]"] = str(page_size)
    if cursor:
        params["page[cursor]"] = cursor
    return call_klaviyo(customer_identifier=customer_identifier, path="/api/profiles", params=params)


def call_klaviyo(*, customer_identifier: str, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    """GET a Klaviyo API path as the customer.

    Refreshes first when the access token expires within the margin; on a 401 refreshes
    once and retries once. Raises TokenNotFound, ReauthorizationRequired, KlaviyoError.
    """
    connection = fresh_connection(customer_identifier)
    try:
        return _call(connection, path, params)
    except KlaviyoUnauthorized:
        logger.info("Klaviyo rejected the access token of %s; refreshing once", customer_identifier)
    connection = fresh_connection(customer_identifier, rejected_version=connection.version)
    try:
        return _call(connection, path, params)
    except KlaviyoUnauthorized as exc:
        detail = f"GET {path}: a freshly refreshed access token was rejected ({exc.code})"
        record_failure(customer_identifier, reason=failure_reason(exc), event=Event.CALL_FAILED, detail=detail)
        raise


def _call(connection: OAuthToken, path: str, params: dict[str, str] | None) -> dict[str, Any]:
    customer = connection.customer_identifier
    try:
        body = klaviyo.get(path, access_token=str(connection.access_token or ""), params=params)
    except KlaviyoUnauthorized:
        raise  # the caller refreshes once and retries
    except KlaviyoError as exc:
        record_failure(customer, reason=failure_reason(exc), event=Event.CALL_FAILED, detail=f"GET {path}: {exc}")
        raise
    if connection.failure_reason:
        OAuthToken.objects.clear_failure(customer)
    if not connection.called_since_refresh:
        OAuthToken.objects.mark_called(customer)  # once per access token, for the keep-alive
    return body


def check_connection(*, customer_identifier: str) -> str:
    """A cheap authenticated call (accounts); returns a one-line description of the account.

    The outcome, success or failure, is written to the connection's history.
    """
    try:
        body = call_klaviyo(customer_identifier=customer_identifier, path="/api/accounts")
    except (KlaviyoError, ReauthorizationRequired, RefreshInProgress) as exc:
        ConnectionEvent.objects.record(customer_identifier, Event.TESTED, f"failed: {exc}")
        raise
    account_id, name = account_id_and_name(body)
    result = f"OK: Klaviyo account {name or '?'} ({account_id or 'unknown id'})"
    ConnectionEvent.objects.record(customer_identifier, Event.TESTED, result)
    return result
