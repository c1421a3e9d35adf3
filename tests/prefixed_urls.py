"""A host project's URLconf: the integration and the sandbox under prefixes of its choosing, beside its own pages."""

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import include, path, reverse

from oauth_integration.links import build_start_link

INTEGRATION_PREFIX = "/integrations/klaviyo/"
SANDBOX_PREFIX = "/dev/fake-klaviyo/"


@login_required
def connect_klaviyo(request: HttpRequest) -> HttpResponse:
    """The host's "Connect Klaviyo" button: a start link for the logged-in user's store."""
    link = build_start_link(
        f"store-{request.user.pk}", user=request.user, next=reverse("store-settings"), request=request
    )
    return HttpResponseRedirect(link)


def store_settings(request: HttpRequest) -> HttpResponse:
    """The host's own page the browser returns to, with ``klaviyo=<outcome>`` in its query."""
    return HttpResponse(f"Store settings; Klaviyo: {request.GET.get('klaviyo', '-')}", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path(INTEGRATION_PREFIX.strip("/") + "/", include("oauth_integration.urls")),
    path(SANDBOX_PREFIX.strip("/") + "/", include("klaviyo_sandbox.urls")),
    path("store/klaviyo/connect", connect_klaviyo, name="connect-klaviyo"),
    path("store/settings", store_settings, name="store-settings"),
]
