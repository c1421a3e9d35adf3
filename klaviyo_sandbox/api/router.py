"""Every /api/... endpoint the sandbox imitates, and the one view that routes to them.

Each endpoint has Klaviyo's operation id, method, path, scopes and rate-limit tier (from
Klaviyo's OpenAPI description, revision 2026-07-15). An unknown path is a JSON:API 404
and a known path with another method a 405; one trailing slash is accepted, as Klaviyo
does. A matched call is admitted by ``gateway.admit`` before its view runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from klaviyo_sandbox import counters, gateway, jsonapi
from klaviyo_sandbox.api import accounts, events, lists, profiles
from klaviyo_sandbox.api.base import Call, Reply, View
from klaviyo_sandbox.exceptions import APIError, not_found
from klaviyo_sandbox.ratelimit import XL, XS, L, M, RateLimit, Tier
from klaviyo_sandbox.views import sandbox_only

LISTS_WRITE = Tier(10, 150, daily=150)  # create_list: M, and 150 a day


@dataclass(frozen=True, slots=True)
class Endpoint:
    operation: str
    method: str
    path: re.Pattern[str]
    scopes: tuple[str, ...]
    tier: Tier
    view: View


# Klaviyo's paths (below /api), scopes and tiers, as in its OpenAPI description.
_MEMBERS = "lists/{id}/relationships/profiles"
_READ_MEMBERS, _WRITE_MEMBERS = "lists:read profiles:read", "lists:write profiles:write"
_ROUTES: tuple[tuple[str, str, str, str, Tier, View], ...] = (
    # operation, method, path, scopes, tier, view
    ("get_accounts", "GET", "accounts", "accounts:read", XS, accounts.get_accounts),
    ("get_account", "GET", "accounts/{id}", "accounts:read", XS, accounts.get_account),
    ("get_profiles", "GET", "profiles", "profiles:read", L, profiles.get_profiles),
    ("create_profile", "POST", "profiles", "profiles:write", L, profiles.create_profile),
    ("get_profile", "GET", "profiles/{id}", "profiles:read", L, profiles.get_profile),
    ("update_profile", "PATCH", "profiles/{id}", "profiles:write", L, profiles.update_profile),
    ("create_or_update_profile", "POST", "profile-import", "profiles:write", L, profiles.create_or_update_profile),
    ("get_lists", "GET", "lists", "lists:read", L, lists.get_lists),
    ("create_list", "POST", "lists", "lists:write", LISTS_WRITE, lists.create_list),
    ("get_list", "GET", "lists/{id}", "lists:read", L, lists.get_list),
    ("update_list", "PATCH", "lists/{id}", "lists:write", M, lists.update_list),
    ("delete_list", "DELETE", "lists/{id}", "lists:write", M, lists.delete_list),
    ("get_profiles_for_list", "GET", "lists/{id}/profiles", _READ_MEMBERS, L, lists.get_list_profiles),
    ("get_profile_ids_for_list", "GET", _MEMBERS, _READ_MEMBERS, L, lists.get_list_profile_ids),
    ("add_profiles_to_list", "POST", _MEMBERS, _WRITE_MEMBERS, M, lists.add_profiles_to_list),
    ("remove_profiles_from_list", "DELETE", _MEMBERS, _WRITE_MEMBERS, M, lists.remove_profiles_from_list),
    ("get_events", "GET", "events", "events:read", XL, events.get_events),
    ("create_event", "POST", "events", "events:write", XL, events.create_event),
    ("get_metrics", "GET", "metrics", "metrics:read", M, events.get_metrics),
    ("get_metric", "GET", "metrics/{id}", "metrics:read", M, events.get_metric),
)
ENDPOINTS: tuple[Endpoint, ...] = tuple(
    Endpoint(operation, method, re.compile(path.replace("{id}", r"(?P<id>[^/]+)")), tuple(scopes.split()), tier, view)
    for operation, method, path, scopes, tier, view in _ROUTES
)


def _answer(reply: Reply, rate: RateLimit | None) -> HttpResponse:
    headers = rate.headers() if rate is not None else {}
    if reply.document is None:
        response = HttpResponse(status=reply.status, headers=headers)
        del response["Content-Type"]
        return response
    return JsonResponse(reply.document, status=reply.status, content_type=jsonapi.CONTENT_TYPE, headers=headers)


def error_response(error: APIError) -> JsonResponse:
    return JsonResponse(
        jsonapi.error_document(error), status=error.status, content_type=jsonapi.CONTENT_TYPE, headers=error.headers
    )


def _route(method: str, path: str) -> tuple[Endpoint, dict[str, str]]:
    """The endpoint for ``method`` and ``path``. Raises APIError 404 (no such path) or 405 (other methods)."""
    path = path.removesuffix("/")
    matches = [(endpoint, found) for endpoint in ENDPOINTS if (found := endpoint.path.fullmatch(path))]
    if not matches:
        raise not_found(f"There is no endpoint at /api/{path}.")
    for endpoint, found in matches:
        if endpoint.method == method:
            return endpoint, found.groupdict()
    allowed = ", ".join(endpoint.method for endpoint, _ in matches)
    title = f'Method "{method}" not allowed.'
    raise APIError(405, "method_not_allowed", title, title, headers={"Allow": allowed})


@csrf_exempt
@sandbox_only
def dispatch(request: HttpRequest, path: str) -> HttpResponse:
    """Route, admit, run the endpoint's view; every failure is a JSON:API error like Klaviyo's."""
    try:
        endpoint, args = _route(request.method or "", path)
    except APIError as exc:
        counters.count(counters.API_REQUESTS, grant_id=None)
        return error_response(exc)
    try:
        caller = gateway.admit(
            authorization=request.headers.get("Authorization"),
            revision=request.headers.get("revision"),
            operation=endpoint.operation,
            scopes=endpoint.scopes,
            tier=endpoint.tier,
        )
    except APIError as exc:
        return error_response(exc)
    api_root = request.build_absolute_uri(reverse("klaviyo_sandbox:api", kwargs={"path": ""})).removesuffix("/")
    try:
        reply = endpoint.view(Call(request=request, caller=caller, args=args, api_root=api_root))
    except APIError as exc:
        exc.headers.update(caller.rate_headers())
        return error_response(exc)
    return _answer(reply, caller.rate)
