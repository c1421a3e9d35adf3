"""HTTP views: parse the request, call one service; ``http_errors`` answers the exceptions."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from oauth_integration import metrics as app_metrics
from oauth_integration import services
from oauth_integration.conf import conf
from oauth_integration.exceptions import InvalidInput, NotAuthenticated, PermissionMissing
from oauth_integration.forms import CallbackForm, ConnectForm, ProfilesQueryForm, first_error
from oauth_integration.http_errors import answers_errors, json_problem, page_problem
from oauth_integration.links import build_start_link, verify_start_link
from oauth_integration.validators import validate_customer_identifier

# The browser's half of the state binding: a random secret kept in its Django session.
BROWSER_BINDING_SESSION_KEY = "oauth_integration.browser_binding"


def _page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    return render(request, "oauth_integration/message.html", {"title": title, "message": message}, status=status)


@require_GET
@never_cache
def home(request: HttpRequest) -> HttpResponse:
    """Landing page: connect a customer and list connections (staff only outside DEBUG/sandbox)."""
    if not conf.relaxed and not (request.user.is_authenticated and request.user.is_staff):
        login_url = f"{reverse('admin:login')}?next={reverse('oauth_integration:home')}"
        return render(request, "oauth_integration/login_required.html", {"login_url": login_url})
    form = ConnectForm(request.GET if "customer" in request.GET else None)
    if form.is_bound and form.is_valid():
        return HttpResponseRedirect(build_start_link(form.cleaned_data["customer"], absolute=False))
    connections = [
        (connection, build_start_link(connection.customer_identifier, absolute=False))
        for connection in services.list_connections()
    ]
    context = {"form": form, "connections": connections, "sandbox": conf.sandbox}
    return render(request, "oauth_integration/home.html", context, status=400 if form.is_bound else 200)


@require_GET
@never_cache
@answers_errors(page_problem())
def start(request: HttpRequest, customer_identifier: str) -> HttpResponse:
    """Send the browser to Klaviyo to connect ``customer_identifier``."""
    validate_customer_identifier(customer_identifier)
    if not conf.relaxed:
        verify_start_link(customer_identifier, request.GET.get("token"))

    # The state is bound to this browser's session cookie, which must be the one the
    # callback will see: move to the redirect URL's host first if we are elsewhere.
    callback_host = urlsplit(conf.redirect_url).netloc
    if callback_host and request.get_host() != callback_host:
        return HttpResponseRedirect(f"{urlsplit(conf.redirect_url).scheme}://{callback_host}{request.get_full_path()}")

    binding = request.session.get(BROWSER_BINDING_SESSION_KEY)
    if not isinstance(binding, str):
        binding = secrets.token_urlsafe(32)
        request.session[BROWSER_BINDING_SESSION_KEY] = binding
    authorize_url = services.begin_authorization(customer_identifier=customer_identifier, browser_binding=binding)
    return HttpResponseRedirect(authorize_url)


@require_GET
@never_cache
@answers_errors(page_problem(note="Nothing was stored; start again."))
def authorize(request: HttpRequest) -> HttpResponse:
    """Klaviyo's redirect back: exchange the code and store the customer's tokens."""
    form = CallbackForm(request.GET)
    if not form.is_valid():
        return _page(request, 400, "Malformed response from Klaviyo", first_error(form))
    data = form.cleaned_data
    if data["error"]:
        if data["error"] == "access_denied":
            return _page(
                request, 403, "Connection declined", "The Klaviyo account was not connected: access was denied."
            )
        detail = data["error_description"] or "no description"
        return _page(request, 400, "Klaviyo did not connect", f"Klaviyo reported {data['error']}: {detail}")
    if not data["code"] or not data["state"]:
        return _page(request, 400, "Incomplete response from Klaviyo", "Both code and state are required.")
    connected = services.complete_authorization(
        state=data["state"], code=data["code"], browser_binding=request.session.get(BROWSER_BINDING_SESSION_KEY)
    )
    return render(request, "oauth_integration/connected.html", {"connected": connected})


@require_GET
@never_cache
@answers_errors(json_problem)
def profiles(request: HttpRequest, customer_identifier: str) -> HttpResponse:
    """One page of the customer's Klaviyo profiles, as Klaviyo's JSON:API body."""
    if not conf.relaxed:
        if not request.user.is_authenticated:
            raise NotAuthenticated("Log in as a staff user to read profiles.")
        if not request.user.is_staff:
            raise PermissionMissing("Only staff users can read profiles.")
    validate_customer_identifier(customer_identifier)
    form = ProfilesQueryForm(request.GET)
    if not form.is_valid():
        raise InvalidInput(first_error(form))
    body = services.get_profiles_json(
        customer_identifier=customer_identifier,
        page_size=form.cleaned_data["page_size"],
        cursor=form.cleaned_data["cursor"],
    )
    return HttpResponse(body, content_type="application/json")


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers, 503 otherwise."""
    if services.database_is_up():
        return JsonResponse({"status": "ok"})
    return JsonResponse({"status": "database unavailable"}, status=503)


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, only for ``Authorization: Bearer <METRICS_TOKEN>`` (404 otherwise)."""
    token = conf.metrics_token
    given = request.headers.get("Authorization", "")
    if not token or not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise Http404("No such page.")
    return HttpResponse(app_metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
