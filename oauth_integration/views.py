"""HTTP views: parse the request, call one service; ``http_errors`` answers the exceptions."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from oauth_integration import access, services
from oauth_integration import metrics as app_metrics
from oauth_integration.conf import conf
from oauth_integration.exceptions import AuthorizationRefused
from oauth_integration.forms import CallbackForm, ConnectForm, ProfilesQueryForm, first_error
from oauth_integration.http_errors import answers_errors, json_problem, page_problem
from oauth_integration.links import build_start_link, callback_url, verify_start_link
from oauth_integration.services import install as install_service
from oauth_integration.validators import validate_customer_identifier

# The browser's half of the state binding: a random secret kept in its Django session.
BROWSER_BINDING_SESSION_KEY = "oauth_integration.browser_binding"


def _page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    return render(request, "oauth_integration/message.html", {"title": title, "message": message}, status=status)


@require_GET
@never_cache
@answers_errors(page_problem())
def home(request: HttpRequest) -> HttpResponse:
    """Landing page: connect a customer (``connect_customer``) and list connections (``view_oauthtoken``)."""
    if not conf.open_access and not request.user.is_authenticated:
        login_url = f"{reverse('admin:login')}?next={reverse('oauth_integration:home')}"
        return render(request, "oauth_integration/login_required.html", {"login_url": login_url})
    access.require(request.user, access.VIEW_CONNECTIONS, access.CONNECT_CUSTOMER)
    can_connect = access.allowed(request.user, access.CONNECT_CUSTOMER)
    form = ConnectForm(request.GET if "customer" in request.GET else None)
    if form.is_bound:
        access.require(request.user, access.CONNECT_CUSTOMER)
        if form.is_valid():
            link = build_start_link(form.cleaned_data["customer"], user=request.user, absolute=False)
            return HttpResponseRedirect(link)
    can_view = access.allowed(request.user, access.VIEW_CONNECTIONS)
    context = {
        "form": form,
        "connections": services.list_connections() if can_view else None,
        "can_connect": can_connect,
        "sandbox": conf.sandbox,
    }
    return render(request, "oauth_integration/home.html", context, status=400 if form.is_bound else 200)


@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
@answers_errors(page_problem())
def start(request: HttpRequest, customer_identifier: str) -> HttpResponse:
    """A start link: GET shows what it connects and changes nothing; the page's POST goes to Klaviyo."""
    validate_customer_identifier(customer_identifier)
    token = request.GET.get("token")
    # With open access (DEBUG only) an unsigned link (link None) goes straight to the consent page.
    link = None if not token and conf.open_access else verify_start_link(customer_identifier, token)
    # The state is bound to this browser's session cookie, which must be the one the
    # callback will see: move to the redirect URL's host first if we are elsewhere. (Without
    # KLAVIYO_REDIRECT_URL the callback is on this request's own host: nothing to move.)
    callback = urlsplit(conf.redirect_url)
    if request.method != "POST" and callback.netloc and request.get_host() != callback.netloc:
        return HttpResponseRedirect(f"{callback.scheme}://{callback.netloc}{request.get_full_path()}")
    if link is not None:
        if link.user_id and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        link.check_user(request.user)
        if request.method != "POST":
            context = {"link": link, "scopes": conf.required_scopes, "sandbox": conf.sandbox}
            return render(request, "oauth_integration/start.html", context)
    authorize_url = services.begin_authorization(
        customer_identifier=customer_identifier,
        browser_binding=_browser_binding(request),
        link=link,
        redirect_uri=callback_url(request),
    )
    return HttpResponseRedirect(authorize_url)


@require_GET
@never_cache
@answers_errors(page_problem())
def install(request: HttpRequest) -> HttpResponse:
    """Klaviyo's app listing sends the browser here (installs that start in Klaviyo).

    Anonymous visitors log in first (LOGIN_URL) and come back. A user with one customer
    (KLAVIYO_INSTALL_CUSTOMERS) goes to that customer's start link, made for them; with
    several, they choose (``?customer=``); with none, a 403 page. Off (404) until the
    setting names the host's function.
    """
    if not install_service.installs_enabled():
        raise Http404("Installs that start in Klaviyo are not set up on this site.")
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    customers = install_service.installable_customers(request.user)
    if not customers:
        return _page(
            request,
            403,
            "No account to connect",
            "Your account on this site has nothing Klaviyo can be connected to. "
            "Ask the site's team to give you access, then install the app again from Klaviyo.",
        )
    chosen = request.GET.get("customer")
    if chosen is None and len(customers) == 1:
        chosen = customers[0]
    if chosen is None:
        return render(request, "oauth_integration/install.html", {"customers": customers, "sandbox": conf.sandbox})
    if chosen not in customers:
        return _page(request, 403, "Not yours to connect", "Your account may not connect Klaviyo to that customer.")
    return HttpResponseRedirect(build_start_link(chosen, user=request.user, absolute=False))


def _browser_binding(request: HttpRequest) -> str:
    """This browser's binding secret, created in its session the first time."""
    binding = request.session.get(BROWSER_BINDING_SESSION_KEY)
    if not isinstance(binding, str):
        binding = secrets.token_urlsafe(32)
        request.session[BROWSER_BINDING_SESSION_KEY] = binding
    return binding


@require_GET
@never_cache
@answers_errors(page_problem(note="Nothing was stored; start again."))
def authorize(request: HttpRequest) -> HttpResponse:
    """Klaviyo's redirect back: exchange the code and store the customer's tokens."""
    form = CallbackForm(request.GET)
    if not form.is_valid():
        return _page(request, 400, "Malformed response from Klaviyo", first_error(form))
    data = form.cleaned_data
    binding = request.session.get(BROWSER_BINDING_SESSION_KEY)
    if data["error"]:
        declined = services.decline_authorization(
            state=data["state"],
            error=data["error"],
            error_description=data["error_description"],
            browser_binding=binding,
        )
        if declined.return_url:
            return HttpResponseRedirect(declined.return_url)
        raise AuthorizationRefused.for_code(data["error"])
    if not data["code"] or not data["state"]:
        return _page(request, 400, "Incomplete response from Klaviyo", "Both code and state are required.")
    connected = services.complete_authorization(state=data["state"], code=data["code"], browser_binding=binding)
    if connected.return_url:
        return HttpResponseRedirect(connected.return_url)
    context = {"connected": connected, "can_view": access.allowed(request.user, access.VIEW_CONNECTIONS)}
    return render(request, "oauth_integration/connected.html", context)


@require_GET
@never_cache
@answers_errors(json_problem)
def profiles(request: HttpRequest, customer_identifier: str) -> HttpResponse:
    """One page of the customer's Klaviyo profiles, as Klaviyo's JSON:API body (``view_oauthtoken``)."""
    access.require(request.user, access.VIEW_CONNECTIONS)
    validate_customer_identifier(customer_identifier)
    page_size, cursor = ProfilesQueryForm.page(request.GET)
    body = services.get_profiles_json(customer_identifier=customer_identifier, page_size=page_size, cursor=cursor)
    return HttpResponse(body, content_type="application/json")


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers, 503 otherwise (GET and HEAD)."""
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
