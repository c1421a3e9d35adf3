"""The one view behind /api/... and /client/...: every operation of Klaviyo's OpenAPI description.

Routes, scopes (``x-klaviyo-scopes``) and rate tiers (``x-klaviyo-ratelimit``, and the lower
tiers some parameter values bring) come from the description (``klaviyo_sandbox.description``).
The operations the sandbox imitates by hand (``HANDLERS``) run their own views; every other
one is answered by the generic engine (``klaviyo_sandbox.api.generic``). An unknown path is
a JSON:API 404 and a known path with another method a 405; one trailing slash is accepted,
as Klaviyo does. A matched call is admitted by ``gateway.admit`` (Bearer token, revision,
rate limit, scopes), or for a client-side endpoint ``gateway.admit_client`` (``company_id``),
before its view runs.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from klaviyo_sandbox import counters, description, gateway, jsonapi
from klaviyo_sandbox.api import accounts, events, generic, lists, profiles, subscriptions
from klaviyo_sandbox.api.base import Call, Reply, View
from klaviyo_sandbox.exceptions import APIError, invalid, not_found
from klaviyo_sandbox.ratelimit import RateLimit
from klaviyo_sandbox.views import sandbox_only

# The operations imitated by hand, by Klaviyo's operation id.
HANDLERS: dict[str, View] = {
    "get_accounts": accounts.get_accounts,
    "get_account": accounts.get_account,
    "get_profiles": profiles.get_profiles,
    "create_profile": profiles.create_profile,
    "get_profile": profiles.get_profile,
    "update_profile": profiles.update_profile,
    "create_or_update_profile": profiles.create_or_update_profile,
    "get_lists": lists.get_lists,
    "create_list": lists.create_list,
    "get_list": lists.get_list,
    "update_list": lists.update_list,
    "delete_list": lists.delete_list,
    "get_profiles_for_list": lists.get_list_profiles,
    "get_profile_ids_for_list": lists.get_list_profile_ids,
    "add_profiles_to_list": lists.add_profiles_to_list,
    "remove_profiles_from_list": lists.remove_profiles_from_list,
    "get_events": events.get_events,
    "create_event": events.create_event,
    "get_event": events.get_event,
    "get_metrics": events.get_metrics,
    "get_metric": events.get_metric,
    "bulk_subscribe_profiles": subscriptions.bulk_subscribe_profiles,
    "bulk_unsubscribe_profiles": subscriptions.bulk_unsubscribe_profiles,
}


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


def _route(method: str, path: str) -> tuple[description.Operation, dict[str, str]]:
    """The operation for ``method`` and ``path`` (``api/...`` or ``client/...``). Raises APIError 404
    (no such path) or 405 (other methods)."""
    operations, args = description.route(path)
    if not operations:
        raise not_found(f"There is no endpoint at /{path}.")
    for operation in operations:
        if operation.method == method:
            return operation, args
    allowed = ", ".join(operation.method for operation in operations)
    title = f'Method "{method}" not allowed.'
    raise APIError(405, "method_not_allowed", title, title, headers={"Allow": allowed})


def _admit(request: HttpRequest, operation: description.Operation) -> gateway.Caller:
    bucket, tier = operation.tier_for(request.GET)
    if operation.client:
        return gateway.admit_client(
            company_id=request.GET.get("company_id"),
            revision=request.headers.get("revision"),
            operation=bucket,
            tier=tier,
        )
    return gateway.admit(
        authorization=request.headers.get("Authorization"),
        revision=request.headers.get("revision"),
        operation=bucket,
        scopes=operation.scopes,
        tier=tier,
    )


def _serve(request: HttpRequest, path: str) -> HttpResponse:
    """Route, admit, run the operation's view; every failure is a JSON:API error like Klaviyo's."""
    try:
        if "\x00" in path or any("\x00" in key + "".join(values) for key, values in request.GET.lists()):
            # No Klaviyo value holds one, and PostgreSQL text cannot.
            raise invalid("NUL characters are not allowed.", parameter="")
        operation, args = _route(request.method or "", path)
    except APIError as exc:
        counters.count(counters.API_REQUESTS, grant_id=None)
        return error_response(exc)
    try:
        caller = _admit(request, operation)
    except APIError as exc:
        return error_response(exc)
    api_root = request.build_absolute_uri(reverse("klaviyo_sandbox:api", kwargs={"path": ""})).removesuffix("/")
    view = HANDLERS.get(operation.id, generic.handle)
    try:
        reply = view(Call(request=request, caller=caller, args=args, api_root=api_root, operation=operation))
    except APIError as exc:
        exc.headers.update(caller.rate_headers())
        return error_response(exc)
    return _answer(reply, caller.rate)


@csrf_exempt
@sandbox_only
def dispatch(request: HttpRequest, path: str) -> HttpResponse:
    """Every /api/... request."""
    return _serve(request, f"api/{path}")


@csrf_exempt
@sandbox_only
def dispatch_client(request: HttpRequest, path: str) -> HttpResponse:
    """Every /client/... request (client-side endpoints, authenticated by ``company_id``)."""
    return _serve(request, f"client/{path}")
