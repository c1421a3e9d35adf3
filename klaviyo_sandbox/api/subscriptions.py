"""Bulk subscribe and unsubscribe jobs: 202 with no body, as Klaviyo answers; their effect is visible at once."""

from __future__ import annotations

from typing import Any

from klaviyo_sandbox import schemas
from klaviyo_sandbox.api.base import Call, Reply
from klaviyo_sandbox.store import subscriptions


def _checked_body(call: Call) -> dict[str, Any]:
    body = call.body()
    if call.operation is not None and call.operation.request_schema is not None:
        schemas.check_body(call.operation.request_schema, body)
    return body


def bulk_subscribe_profiles(call: Call) -> Reply:
    subscriptions.subscribe(account_id=call.account_id, body=_checked_body(call))
    return Reply(None, status=202)


def bulk_unsubscribe_profiles(call: Call) -> Reply:
    subscriptions.unsubscribe(account_id=call.account_id, body=_checked_body(call))
    return Reply(None, status=202)
