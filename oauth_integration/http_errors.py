"""How this app's exceptions become HTTP answers: one table, used by every view.

A view raises (or lets a service raise) an ``OAuthIntegrationError``; the
``answers_errors`` decorator turns it into a JSON:API error document or an HTML page
from the table below. A new exception type is handled by adding one line to ``ANSWERS``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from oauth_integration.exceptions import (
    AuthorizationRefused,
    AuthorizationStateError,
    ConnectionDeclined,
    EncryptionKeyError,
    InvalidCustomerIdentifier,
    InvalidGrant,
    InvalidInput,
    InvalidReturnURL,
    InvalidStartLink,
    KlaviyoAPIError,
    KlaviyoForbidden,
    KlaviyoThrottled,
    KlaviyoUnauthorized,
    KlaviyoUnavailable,
    NotAuthenticated,
    OAuthIntegrationError,
    PermissionMissing,
    ReauthorizationRequired,
    RefreshInProgress,
    StartLinkUsed,
    TokenDecryptionError,
    TokenNotFound,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """How one exception class is answered."""

    status: int
    code: str
    title: str
    detail: str = ""  # a fixed detail; by default the exception's own message
    klaviyo_code: bool = False  # prefer the error code Klaviyo sent, when there is one
    passthrough: Mapping[int, str] = field(default_factory=dict)  # Klaviyo statuses answered as is: title


UNDECRYPTABLE = Answer(500, "undecryptable", "Stored tokens cannot be decrypted; check TOKEN_ENCRYPTION_KEY.")

# The most specific class listed for an exception wins (looked up along its MRO).
ANSWERS: dict[type[OAuthIntegrationError], Answer] = {
    InvalidInput: Answer(400, "invalid_parameter", "Invalid query parameter"),
    NotAuthenticated: Answer(401, "not_authenticated", "Log in to continue."),
    PermissionMissing: Answer(403, "permission_denied", "You do not have permission to do this."),
    InvalidCustomerIdentifier: Answer(400, "invalid_customer_identifier", "Invalid customer identifier"),
    InvalidStartLink: Answer(403, "invalid_start_link", "This connect link is not valid"),
    StartLinkUsed: Answer(410, "start_link_used", "This connect link was already used"),
    InvalidReturnURL: Answer(400, "invalid_return_url", "Invalid return URL"),
    AuthorizationRefused: Answer(400, "authorization_failed", "Klaviyo did not connect the account"),
    ConnectionDeclined: Answer(403, "access_denied", "Connection declined"),
    AuthorizationStateError: Answer(400, "invalid_state", "This authorization cannot be completed"),
    InvalidGrant: Answer(
        400,
        "invalid_grant",
        "Klaviyo rejected the authorization",
        detail="The authorization code expired or was already used. Start again.",
    ),
    TokenNotFound: Answer(404, "not_connected", "This customer has not connected Klaviyo."),
    ReauthorizationRequired: Answer(409, "needs_reauthorization", "This customer must reconnect Klaviyo."),
    RefreshInProgress: Answer(503, "refresh_in_progress", "A token refresh is taking too long; try again."),
    KlaviyoThrottled: Answer(429, "throttled", "Klaviyo is rate limiting this customer.", klaviyo_code=True),
    KlaviyoUnauthorized: Answer(502, "klaviyo_unauthorized", "Klaviyo rejected a freshly refreshed token."),
    KlaviyoForbidden: Answer(403, "klaviyo_error", "The connection lacks a required scope.", klaviyo_code=True),
    KlaviyoAPIError: Answer(
        502,
        "klaviyo_error",
        "Klaviyo returned an error.",
        klaviyo_code=True,
        passthrough={400: "Klaviyo rejected the request.", 404: "Not found at Klaviyo."},
    ),
    KlaviyoUnavailable: Answer(502, "klaviyo_unavailable", "Klaviyo is unavailable."),
    TokenDecryptionError: UNDECRYPTABLE,
    EncryptionKeyError: UNDECRYPTABLE,
}
FALLBACK = Answer(500, "internal_error", "The request could not be completed.")


@dataclass(frozen=True, slots=True)
class Problem:
    """One error answer: status, machine code, human title and detail, extra headers."""

    status: int
    code: str
    title: str
    detail: str
    headers: dict[str, str]


def problem_for(exc: OAuthIntegrationError) -> Problem:
    """The answer to give for ``exc``."""
    answer = next((ANSWERS[cls] for cls in type(exc).__mro__ if cls in ANSWERS), FALLBACK)
    status, title = answer.status, answer.title
    klaviyo_status = getattr(exc, "status", None)
    if klaviyo_status in answer.passthrough:
        status, title = klaviyo_status, answer.passthrough[klaviyo_status]
    code = (getattr(exc, "code", None) if answer.klaviyo_code else None) or answer.code
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    return Problem(status, code, title, answer.detail or str(exc), headers)


def json_problem(request: HttpRequest, problem: Problem) -> HttpResponse:
    """A JSON:API error document, shaped like Klaviyo's own."""
    error = {"status": str(problem.status), "code": problem.code, "title": problem.title, "detail": problem.detail}
    return JsonResponse({"errors": [error]}, status=problem.status, headers=problem.headers or None)


def page_problem(*, note: str = "") -> Callable[[HttpRequest, Problem], HttpResponse]:
    """An HTML page; ``note`` is added to the detail of server-side (5xx) failures."""

    def render_page(request: HttpRequest, problem: Problem) -> HttpResponse:
        message = f"{problem.detail.rstrip('.')}. {note}" if note and problem.status >= 500 else problem.detail
        context = {"title": problem.title, "message": message}
        response = render(request, "oauth_integration/message.html", context, status=problem.status)
        for name, value in problem.headers.items():
            response[name] = value
        return response

    return render_page


def answers_errors(
    renderer: Callable[[HttpRequest, Problem], HttpResponse],
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Decorate a view so that the app's exceptions are answered through ``ANSWERS``."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except OAuthIntegrationError as exc:
                problem = problem_for(exc)
                if problem.status >= 500:
                    level = logging.ERROR if problem.code == UNDECRYPTABLE.code else logging.WARNING
                    logger.log(level, "%s %s answered %s: %s", request.method, request.path, problem.status, str(exc))
                return renderer(request, problem)

        return wrapper

    return decorate
