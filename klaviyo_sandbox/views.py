"""The sandbox's OAuth pages and endpoints: parse the request, call one service, shape the answer.

Every sandbox view (these and ``api.router.dispatch``) answers 404 unless
``KLAVIYO_SANDBOX`` is true at request time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from klaviyo_sandbox import consent, services
from klaviyo_sandbox.accounts import ACCOUNTS
from klaviyo_sandbox.conf import conf
from klaviyo_sandbox.exceptions import OAuthError
from klaviyo_sandbox.forms import AuthorizationRequestForm, ConsentForm
from klaviyo_sandbox.scopes import describe

View = Callable[..., HttpResponse]


def sandbox_only(view: View) -> View:
    """404 unless the sandbox is on (read per request, so settings overrides apply)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not conf.enabled:
            raise Http404("The Klaviyo sandbox is off.")
        return view(request, *args, **kwargs)

    return wrapper


# --- the consent page --------------------------------------------------------------------


def _page(request: HttpRequest, template: str, context: dict[str, object], status: int = 200) -> HttpResponse:
    """A sandbox page; its footer names the prefix the sandbox is mounted under."""
    sandbox_root = reverse("klaviyo_sandbox:token").removesuffix("oauth/token")
    return render(request, template, {**context, "sandbox_root": sandbox_root}, status=status)


def _invalid_authorization_request(request: HttpRequest, form: AuthorizationRequestForm) -> HttpResponse:
    problems = [(name, error) for name, errors in form.errors.items() for error in errors]
    return _page(request, "klaviyo_sandbox/invalid_request.html", {"problems": problems}, status=400)


@sandbox_only
@require_http_methods(["GET", "POST"])
@never_cache
def authorize(request: HttpRequest) -> HttpResponse:
    """GET: validate the app's request and ask for consent. POST: the user's answer (CSRF-protected)."""
    if request.method == "GET":
        form = AuthorizationRequestForm(request.GET)
        if not form.is_valid():
            return _invalid_authorization_request(request, form)
        scopes = [(scope, describe(scope)) for scope in form.cleaned_data["scope"]]
        context = {"form": form, "scopes": scopes, "accounts": ACCOUNTS, "app_name": conf.app_name}
        return _page(request, "klaviyo_sandbox/consent.html", context)

    answer = ConsentForm(request.POST)
    if not answer.is_valid():
        return _invalid_authorization_request(request, answer)
    authorization_request = answer.authorization_request()
    if answer.cleaned_data["decision"] == "deny":
        return HttpResponseRedirect(consent.deny(request=authorization_request))
    return HttpResponseRedirect(
        consent.approve(request=authorization_request, account_id=answer.cleaned_data["account"])
    )


# --- the app listing: installs that start in Klaviyo -------------------------------------


def _install_url() -> str:
    """The app's install URL: the integration's /install, when it is mounted in this project."""
    try:
        return reverse("oauth_integration:install")
    except NoReverseMatch:
        return ""


@sandbox_only
@require_safe
@never_cache
def apps(request: HttpRequest) -> HttpResponse:
    """The app's page in Klaviyo's listing, imitated: its Install button sends the browser to the
    app's install URL, as Klaviyo does for installs that start in Klaviyo."""
    return _page(request, "klaviyo_sandbox/apps.html", {"app_name": conf.app_name, "install_url": _install_url()})


# --- /oauth/token and /oauth/revoke ------------------------------------------------------


def _oauth_json(body: dict[str, object], status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    # RFC 6749 §5.1: token responses must not be cached.
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _oauth_error(error: OAuthError) -> JsonResponse:
    body: dict[str, object] = {"error": error.error}
    if error.description:
        body["error_description"] = error.description
    response = _oauth_json(body, status=error.status)
    if error.status == 401:
        response["WWW-Authenticate"] = 'Basic realm="oauth"'
    return response


@csrf_exempt
@sandbox_only
@require_POST
def token(request: HttpRequest) -> JsonResponse:
    """The token endpoint: authorization_code and refresh_token grants."""
    try:
        issued = services.token(authorization=request.headers.get("Authorization"), form=request.POST)
    except OAuthError as exc:
        return _oauth_error(exc)
    return _oauth_json(issued.as_json())


@csrf_exempt
@sandbox_only
@require_POST
def revoke(request: HttpRequest) -> JsonResponse:
    """The revocation endpoint: ``token`` (a refresh token) and ``token_type_hint``."""
    try:
        services.revoke(authorization=request.headers.get("Authorization"), form=request.POST)
    except OAuthError as exc:
        return _oauth_error(exc)
    return _oauth_json({})
