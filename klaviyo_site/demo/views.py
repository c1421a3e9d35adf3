"""The "Try a write" page: a form for one connected customer, the write, the list read back, Klaviyo's errors.

GET shows the form and changes nothing; its POST (CSRF-protected) runs ``writes.ListWrite``.
Reading needs ``view_oauthtoken``, writing also ``change_oauthtoken`` (both relaxed in
sandbox mode, as everywhere). Invalid input is a 400 and nothing is sent to Klaviyo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django import forms
from django.contrib.auth.views import redirect_to_login
from django.core.validators import RegexValidator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from klaviyo_site.demo.writes import NEEDED_SCOPES, ListWrite
from oauth_integration import access
from oauth_integration.conf import conf
from oauth_integration.exceptions import (
    KlaviyoAPIError,
    KlaviyoThrottled,
    KlaviyoUnavailable,
    KlaviyoWriteUncertain,
    MissingScope,
    OAuthIntegrationError,
    PermissionMissing,
    ReauthorizationRequired,
    TokenNotFound,
)
from oauth_integration.http_errors import answers_errors, page_problem, problem_for
from oauth_integration.models import ConnectionStatus, OAuthToken
from oauth_integration.validators import validate_customer_identifier

WRITE_PERMISSION = "oauth_integration.change_oauthtoken"
TEMPLATE = "demo/try_write.html"
# Where Klaviyo points (errors[].source.pointer) when it rejects a body member, and the form field it is.
FIELDS = {"/data/attributes/email": "email", "/data/attributes/name": "list_name"}
PLAIN_NAME = RegexValidator(r'^[^"\\\x00-\x1f\x7f]*\Z', "Use no double quotes, backslashes or control characters.")


class ListWriteForm(forms.Form):
    """An e-mail address and a list name; quotes and backslashes would need escaping in Klaviyo's filter."""

    email = forms.EmailField(label="E-mail address", max_length=254)
    list_name = forms.CharField(label="List name", max_length=255, validators=[PLAIN_NAME])


@dataclass(frozen=True, slots=True)
class Explained:
    """What went wrong, in words a person can act on."""

    title: str
    lines: list[str] = field(default_factory=list)
    reconnect: bool = False  # the customer must go through /start again


@require_http_methods(["GET", "POST"])
@never_cache
@answers_errors(page_problem())
def try_write(request: HttpRequest, customer_identifier: str) -> HttpResponse:
    """The form (GET); the write and the list's members, or why Klaviyo refused (POST)."""
    if not conf.open_access and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    access.require(request.user, access.VIEW_CONNECTIONS)
    connection = _connected(validate_customer_identifier(customer_identifier))
    can_write = access.allowed(request.user, WRITE_PERMISSION)
    form = ListWriteForm(request.POST if request.method == "POST" else None)
    context = {
        "connection": connection,
        "form": form,
        "can_write": can_write,
        "can_connect": access.allowed(request.user, access.CONNECT_CUSTOMER),
        "lacking": connection.missing_scopes(NEEDED_SCOPES),
        "sandbox": conf.sandbox,
    }
    if request.method != "POST":
        return render(request, TEMPLATE, context)
    if not can_write:
        raise PermissionMissing("Writing to a customer's Klaviyo account needs the permission to change connections.")
    if not form.is_valid():
        return render(request, TEMPLATE, context, status=400)
    write = ListWrite(connection.customer_identifier)
    status = 200
    try:
        context["added"] = write.add_to_list(**form.cleaned_data)
    except OAuthIntegrationError as exc:
        context["problem"] = explain(exc, write, form)
        status = problem_for(exc).status
    context["steps"] = write.steps
    return render(request, TEMPLATE, context, status=status)


def _connected(customer_identifier: str) -> OAuthToken:
    """The customer's connection (tokens not loaded); raises unless it is active."""
    fields = ("customer_identifier", "status", "scopes", "failure_reason", "klaviyo_account_id", "klaviyo_account_name")
    connection = OAuthToken.objects.filter(customer_identifier=customer_identifier).only(*fields).first()
    if connection is None:
        raise TokenNotFound(customer_identifier)
    if connection.status != ConnectionStatus.ACTIVE:
        reason = connection.get_failure_reason_display() if connection.failure_reason else connection.status
        raise ReauthorizationRequired(customer_identifier, reason=str(reason).lower())
    return connection


def explain(exc: OAuthIntegrationError, write: ListWrite, form: ListWriteForm) -> Explained:
    """Klaviyo's refusal of ``write.current``, in words; fields Klaviyo points at get the message too."""
    call = write.current
    if isinstance(exc, MissingScope):
        scopes = " ".join(exc.scopes)
        return Explained(
            "The connection lacks a scope",
            [
                f"Klaviyo refused {call}: this customer never granted {scopes}.",
                f"Add {scopes} to KLAVIYO_SCOPES (and allow it in your Klaviyo app's settings), restart, "
                "then the customer must reconnect: only a new consent grants a new scope.",
            ],
            reconnect=True,
        )
    if isinstance(exc, KlaviyoWriteUncertain):
        return Explained(
            "Klaviyo may or may not have applied the write",
            [
                f"{call} got no usable answer ({exc}), so it was not retried.",
                "Submitting again is safe: the profile and the list are looked up before anything is created.",
            ],
        )
    if isinstance(exc, KlaviyoThrottled):
        wait = f"in {exc.retry_after} seconds" if exc.retry_after else "later"
        return Explained("Klaviyo is rate limiting this customer", [f"{call} was throttled; try again {wait}."])
    if isinstance(exc, KlaviyoAPIError):
        lines = [f"Klaviyo answered {call} with HTTP {exc.status} ({exc.code or 'no error code'})."]
        for error in exc.errors:
            where = error.source_pointer or error.source_parameter
            lines.append(f"{error.title or error.code}: {error.detail}" + (f" (at {where})" if where else ""))
            if error.source_pointer in FIELDS and error.detail:
                form.add_error(FIELDS[error.source_pointer], f"Klaviyo: {error.detail}")
        return Explained("Klaviyo rejected the request", lines)
    if isinstance(exc, KlaviyoUnavailable):
        return Explained("Klaviyo is unavailable", [f"{call} failed: {exc}. Try again later."])
    if isinstance(exc, ReauthorizationRequired | TokenNotFound):
        return Explained("The customer must reconnect Klaviyo", [str(exc)], reconnect=True)
    return Explained("The request could not be completed", [f"{call}: {exc}" if call else str(exc)])
