"""Klaviyo's answers read: JSON bodies, ``errors[]``, and every failure as one of our exceptions."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from oauth_integration.exceptions import (
    InvalidGrant,
    KlaviyoAPIError,
    KlaviyoErrorDetail,
    KlaviyoForbidden,
    KlaviyoThrottled,
    KlaviyoUnauthorized,
    KlaviyoUnavailable,
    KlaviyoWriteUncertain,
)
from oauth_integration.klaviyo.transport import IDEMPOTENT_METHODS, RETRY_STATUSES


def json_object(response: requests.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError as exc:
        raise KlaviyoUnavailable(f"Klaviyo answered HTTP {response.status_code} with a body that is not JSON") from exc
    if not isinstance(payload, dict):
        raise KlaviyoUnavailable(f"Klaviyo answered HTTP {response.status_code} with unexpected JSON")
    return payload


def _error_details(response: requests.Response) -> tuple[str | None, tuple[KlaviyoErrorDetail, ...]]:
    """The OAuth ``error`` or the first JSON:API ``errors[].code``, and every ``errors[]`` entry."""
    try:
        payload = response.json()
    except ValueError:
        return None, ()
    if not isinstance(payload, dict):
        return None, ()
    errors = payload.get("errors")
    details = (
        tuple(KlaviyoErrorDetail.from_json(entry) for entry in errors if isinstance(entry, dict))
        if isinstance(errors, list)
        else ()
    )
    code = payload.get("error")
    if code is None and details:
        code = details[0].code
    return (code[:64] if isinstance(code, str) else None), details


def _retry_after(response: requests.Response) -> int | None:
    raw = response.headers.get("Retry-After", "")
    return int(raw) if raw.isdigit() else None


def _unavailable(
    response: requests.Response, *, method: str = "GET", path: str = "", repeatable: bool = False
) -> KlaviyoUnavailable:
    if method not in IDEMPOTENT_METHODS and not repeatable:
        return KlaviyoWriteUncertain(
            f"{method} {path}: Klaviyo answered HTTP {response.status_code}", status=response.status_code
        )
    return KlaviyoUnavailable(f"Klaviyo answered HTTP {response.status_code}", status=response.status_code)


def transport_error(
    method: str, path: str, exc: requests.RequestException, *, repeatable: bool = False
) -> KlaviyoUnavailable:
    """A request that got no answer. A write that may have reached Klaviyo is uncertain, unless
    the caller said it may be sent twice (``repeatable``)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    nothing_sent = isinstance(exc, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)
    if method not in IDEMPOTENT_METHODS and not repeatable and not nothing_sent:
        return KlaviyoWriteUncertain(f"{method} {path}: no answer from Klaviyo ({type(exc).__name__})")
    return KlaviyoUnavailable(f"Klaviyo {path} unreachable ({type(exc).__name__})")


def token_endpoint_error(response: requests.Response) -> Exception:
    if response.status_code >= 500:
        return _unavailable(response)
    code, details = _error_details(response)
    if code == "invalid_grant":
        return InvalidGrant(status=response.status_code, code=code, errors=details)
    if response.status_code == 429:
        return KlaviyoThrottled(status=429, code=code, retry_after=_retry_after(response), errors=details)
    return KlaviyoAPIError(status=response.status_code, code=code, errors=details)


def api_error(response: requests.Response, *, method: str, path: str, repeatable: bool = False) -> Exception:
    status = response.status_code
    if status >= 500 or (status in RETRY_STATUSES and status != 429):
        return _unavailable(response, method=method, path=path, repeatable=repeatable)
    code, details = _error_details(response)
    if status == 401:
        return KlaviyoUnauthorized(status=status, code=code, errors=details)
    if status == 429:
        return KlaviyoThrottled(status=status, code=code, retry_after=_retry_after(response), errors=details)
    if status == 403:
        return KlaviyoForbidden(status=status, code=code, errors=details)
    return KlaviyoAPIError(status=status, code=code, errors=details)


def account_id_and_name(body: dict[str, Any]) -> tuple[str, str]:
    """The id and organization name of the first account in a ``GET /api/accounts`` body ("" if absent)."""
    data = body.get("data")
    first = data[0] if isinstance(data, list) and data else data
    if not isinstance(first, dict):
        return "", ""
    attributes = first.get("attributes") if isinstance(first.get("attributes"), dict) else {}
    contact = attributes.get("contact_information") if isinstance(attributes.get("contact_information"), dict) else {}
    name = contact.get("organization_name") or attributes.get("name") or ""
    return str(first.get("id") or "")[:64], str(name)[:255]


def page_cursor(value: str) -> str:
    """Accept a bare cursor or Klaviyo's full ``links.next`` URL; return the bare cursor.

    Raises ValueError when a URL is malformed or carries no ``page[cursor]``.
    """
    if not value.startswith(("http://", "https://")):
        return value
    try:
        found = parse_qs(urlsplit(value).query).get("page[cursor]")
    except ValueError as exc:
        raise ValueError("The cursor URL is malformed.") from exc
    if not found or not found[0]:
        raise ValueError("The URL has no page[cursor] parameter.")
    return found[0]
