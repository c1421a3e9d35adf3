"""Calling Klaviyo as a customer, any method, every page: a usable token, one refresh-and-retry on
401, failures recorded on the connection."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from oauth_integration.exceptions import (
    KlaviyoError,
    KlaviyoForbidden,
    KlaviyoPagingError,
    KlaviyoUnauthorized,
    MissingScope,
    ReauthorizationRequired,
    RefreshInProgress,
)
from oauth_integration.klaviyo import account_id_and_name, check_path, page_cursor
from oauth_integration.klaviyo import client as klaviyo
from oauth_integration.models import ConnectionEvent, OAuthToken
from oauth_integration.operations import required_scopes
from oauth_integration.services.failures import failure_reason, is_connection_failure, record_failure
from oauth_integration.services.refresh import fresh_connection

logger = logging.getLogger(__name__)
Event = ConnectionEvent.Kind
T = TypeVar("T")
CURSOR = "page[cursor]"
MAX_PAGES = 10_000  # iter_klaviyo's default: a million profiles at Klaviyo's largest page size


def get_profiles(
    *, customer_identifier: str, page_size: int | None = None, cursor: str | None = None
) -> dict[str, Any]:
    """One page of the customer's Klaviyo profiles, as Klaviyo's JSON:API body."""
    params = _page_params(page_size, cursor)
    return call_klaviyo(customer_identifier=customer_identifier, path="/api/profiles", params=params) or {}


def get_profiles_json(*, customer_identifier: str, page_size: int | None = None, cursor: str | None = None) -> bytes:
    """``get_profiles``, as the JSON bytes Klaviyo sent, for a view that passes them on unchanged."""
    params = _page_params(page_size, cursor)
    return as_customer(
        customer_identifier,
        "GET",
        "/api/profiles",
        lambda token: klaviyo.relay("/api/profiles", access_token=token, params=params),
    )


def _page_params(page_size: int | None, cursor: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if page_size is not None:
        params["page[size]"] = str(page_size)
    if cursor:
        params["page[cursor]"] = cursor
    return params


def call_klaviyo(
    *,
    customer_identifier: str,
    path: str,
    method: str = "GET",
    params: dict[str, str] | None = None,
    json: Any = None,
    repeatable: bool = False,
) -> dict[str, Any] | None:
    """Call a Klaviyo API path as the customer: GET, POST, PATCH, PUT or DELETE.

    ``json`` goes as a JSON:API body. Returns the parsed JSON body, or None for 202/204.
    Refreshes first when the access token expires within the margin; on a 401 (nothing
    was applied) refreshes once and retries once. 429 is retried for every method;
    5xx and connection failures only for idempotent ones (a POST or PATCH that fails
    that way raises KlaviyoWriteUncertain), unless ``repeatable`` says the write may be applied
    twice (it carries its own idempotency key: an event's ``unique_id``, a profile import by
    e-mail): then it is retried too. Raises TokenNotFound, ReauthorizationRequired,
    MissingScope (the customer never granted the scope the call needs), KlaviyoAPIError
    (with every entry of Klaviyo's ``errors[]``) or another KlaviyoError. A ``path`` that is
    not an API path (``/api/...``, see ``klaviyo.check_path``) raises KlaviyoPathRefused (a
    ValueError: a programming error) before the token is read.
    """
    return as_customer(
        customer_identifier,
        method,
        path,
        lambda token: klaviyo.call(method, path, access_token=token, params=params, json=json, repeatable=repeatable),
    )


def as_customer(customer_identifier: str, method: str, path: str, send: Callable[[str], T]) -> T:
    """``send(access_token)`` with a usable token; on a 401, one refresh and one retry.

    What ``call_klaviyo`` and the SDK bound to a customer (``oauth_integration.sdk``) both do
    around one request: ``path`` checked first, the token refreshed (single-flight) when it
    expires within the margin, failures recorded on the connection. ``send`` raises the
    ``KlaviyoError`` of a failed request (``klaviyo.client.request`` does).
    """
    check_path(path)  # before the token is read, refreshed or sent
    connection = fresh_connection(customer_identifier)
    try:
        return _call(connection, method, path, send)
    except KlaviyoUnauthorized:
        logger.info(
            "Klaviyo rejected the access token of %s; refreshing once",
            customer_identifier,
            extra={"customer_identifier": customer_identifier},
        )
    connection = fresh_connection(customer_identifier, rejected_version=connection.version)
    try:
        return _call(connection, method, path, send)
    except KlaviyoUnauthorized as exc:
        detail = f"{method} {path}: a freshly refreshed access token was rejected ({exc.code})"
        record_failure(customer_identifier, reason=failure_reason(exc), event=Event.CALL_FAILED, detail=detail)
        raise


@dataclass(frozen=True)
class Page:
    """One page of a Klaviyo collection, as ``iter_pages`` hands it out.

    ``next_cursor`` is the ``page[cursor]`` of ``links.next`` (None on the last page): save it
    once the page is processed, and a later walk started with ``cursor=`` carries on there.
    """

    resources: list[dict[str, Any]]  # data[]
    included: list[dict[str, Any]]  # included[] (empty unless asked for with ``include``)
    next_cursor: str | None
    number: int  # 1 for the first page this walk read
    last: bool  # no links.next: the collection ends here


def iter_pages(
    *,
    customer_identifier: str,
    path: str,
    params: dict[str, str] | None = None,
    cursor: str | None = None,
    max_pages: int | None = None,
) -> Iterator[Page]:
    """The pages of a Klaviyo collection, in order, from the first or from a saved ``cursor``.

    Follows ``links.next`` (only its query: the host and path stay Klaviyo's and ``path``),
    one page in memory at a time, refreshing the token mid-walk when it expires. Stops after
    the last page, or quietly after ``max_pages`` pages (None: no limit): the last page's
    ``next_cursor`` then says where to resume. Raises what ``call_klaviyo`` raises, and
    KlaviyoPagingError when ``links.next`` leads back to a page already read (the walk
    would never end). ``cursor`` may be a bare cursor or a whole ``links.next`` URL.
    """
    page_params = dict(params or {})
    if cursor:
        page_params[CURSOR] = page_cursor(cursor)
    seen = {frozenset(page_params.items())}
    number = 0
    while True:
        body = call_klaviyo(customer_identifier=customer_identifier, path=path, params=page_params) or {}
        number += 1
        links = body.get("links") if isinstance(body.get("links"), dict) else {}
        next_url = links.get("next")
        next_params = (
            dict(parse_qsl(urlsplit(next_url).query, keep_blank_values=True))
            if isinstance(next_url, str) and next_url
            else None
        )
        yield Page(
            resources=_list(body.get("data")),
            included=_list(body.get("included")),
            next_cursor=(next_params.get(CURSOR) or None) if next_params is not None else None,
            number=number,
            last=next_params is None,
        )
        if next_params is None or (max_pages is not None and number >= max_pages):
            return
        if frozenset(next_params.items()) in seen:
            raise KlaviyoPagingError(f"GET {path}: links.next of page {number} leads back to a page already read")
        seen.add(frozenset(next_params.items()))
        page_params = next_params


def _list(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def iter_klaviyo(
    *,
    customer_identifier: str,
    path: str,
    params: dict[str, str] | None = None,
    max_pages: int | None = MAX_PAGES,
) -> Iterator[dict[str, Any]]:
    """Every resource of ``data[]`` across all pages of a Klaviyo collection, in order.

    ``iter_pages`` with only the resources: raises what it raises, and KlaviyoPagingError
    when there would be more than ``max_pages`` pages (None: no limit).
    """
    for page in iter_pages(customer_identifier=customer_identifier, path=path, params=params, max_pages=max_pages):
        yield from page.resources
        if not page.last and max_pages is not None and page.number >= max_pages:
            raise KlaviyoPagingError(f"GET {path}: more than {max_pages} pages (max_pages); stopped")


def _detail(exc: KlaviyoError, method: str, path: str) -> str:
    """The history's text for a failed call: which call, then what went wrong (said once)."""
    text, call = str(exc), f"{method} {path}"
    return text if call in text else f"{call}: {text}"


def _call(connection: OAuthToken, method: str, path: str, send: Callable[[str], T]) -> T:
    customer = connection.customer_identifier
    try:
        body = send(str(connection.access_token or ""))
    except KlaviyoUnauthorized:
        raise  # the caller refreshes once and retries
    except KlaviyoForbidden as exc:
        if missing := connection.missing_scopes(required_scopes(method, path)):
            exc = MissingScope(exc, scopes=missing, method=method, path=path)
        record_failure(customer, reason=failure_reason(exc), event=Event.CALL_FAILED, detail=_detail(exc, method, path))
        raise exc from None
    except KlaviyoError as exc:
        if is_connection_failure(exc):
            detail = _detail(exc, method, path)
            record_failure(customer, reason=failure_reason(exc), event=Event.CALL_FAILED, detail=detail)
        raise
    if connection.failure_reason:
        OAuthToken.objects.clear_failure(customer)
    if not connection.called_since_refresh:
        OAuthToken.objects.mark_called(customer)  # once per access token, for the keep-alive
    return body


@dataclass(frozen=True)
class AccessToken:
    """A usable access token for a customer, for code that calls Klaviyo itself. ``repr`` hides it."""

    access_token: str = field(repr=False)
    expires_at: datetime | None
    scopes: str  # what the customer granted, space-separated


def fresh_access_token(*, customer_identifier: str, rejected: str | None = None) -> AccessToken:
    """The customer's access token, valid for at least KLAVIYO_REFRESH_MARGIN_SECONDS more, for a
    client that calls Klaviyo on its own (another language, another service, an SDK).

    The guarantees of ``call_klaviyo``: a token that expires within the margin is refreshed
    first, by one worker at a time across every process (the others wait for it and get the
    new token). ``rejected``: a token Klaviyo just answered 401 to. If it is still the stored
    one it is refreshed (once, however many callers report it at the same time); if it was
    already replaced, the new one is returned. Send the token as ``Authorization: Bearer``
    with a ``revision`` header, and refresh nothing yourself: the refresh token never leaves
    this app. Raises TokenNotFound, ReauthorizationRequired, RefreshInProgress or KlaviyoError.
    """
    connection = fresh_connection(customer_identifier)
    if rejected is not None and secrets.compare_digest(str(connection.access_token or "").encode(), rejected.encode()):
        connection = fresh_connection(customer_identifier, rejected_version=connection.version)
    if not connection.called_since_refresh:
        OAuthToken.objects.mark_called(customer_identifier)  # handed out: the connection is in use
    return AccessToken(
        access_token=str(connection.access_token or ""), expires_at=connection.expires_at, scopes=connection.scopes
    )


def check_connection(*, customer_identifier: str) -> str:
    """A cheap authenticated call (accounts); returns a one-line description of the account.

    The outcome, success or failure, is written to the connection's history.
    """
    try:
        body = call_klaviyo(customer_identifier=customer_identifier, path="/api/accounts")
    except (KlaviyoError, ReauthorizationRequired, RefreshInProgress) as exc:
        ConnectionEvent.objects.record(customer_identifier, Event.TESTED, f"failed: {exc}")
        raise
    account_id, name = account_id_and_name(body or {})
    result = f"OK: Klaviyo account {name or '?'} ({account_id or 'unknown id'})"
    ConnectionEvent.objects.record(customer_identifier, Event.TESTED, result)
    return result
