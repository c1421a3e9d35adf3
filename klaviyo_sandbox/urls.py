"""The sandbox's routes: Klaviyo's paths, below the prefix a project mounts them under (/sandbox/ in klaviyo_site)."""

from django.urls import path, re_path

from klaviyo_sandbox import views
from klaviyo_sandbox.api import router

app_name = "klaviyo_sandbox"

urlpatterns = [
    path("apps", views.apps, name="apps"),
    path("oauth/authorize", views.authorize, name="authorize"),
    path("oauth/token", views.token, name="token"),
    path("oauth/revoke", views.revoke, name="revoke"),
    # Every /api/... and /client/... path, known or not: the router answers in JSON:API (404, 405 included).
    re_path(r"^api/(?P<path>[\s\S]*)$", router.dispatch, name="api"),
    re_path(r"^client/(?P<path>[\s\S]*)$", router.dispatch_client, name="client"),
]
