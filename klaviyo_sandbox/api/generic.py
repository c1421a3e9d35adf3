"""The generic engine: answers every operation of Klaviyo's description that has no hand-written view."""

from __future__ import annotations

from klaviyo_sandbox.api.base import Call, Reply
from klaviyo_sandbox.exceptions import APIError


def handle(call: Call) -> Reply:
    operation = call.operation
    name = operation.id if operation is not None else "this operation"
    detail = f"The sandbox does not imitate {name} yet."
    raise APIError(501, "not_implemented", "Not implemented.", detail)
