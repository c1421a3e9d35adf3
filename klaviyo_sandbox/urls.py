"""The sandbox's routes, mounted under /sandbox/: Klaviyo's paths, below one prefix."""

from django.urls import path, re_path

from klaviyo_sandbox import views

app_name = "klaviyo_sandbox"

urlpatterns = [
    path("oauth/authorize", views.authorize, name="authorize"),
    path("oauth/token", views.token, name="token"),
    path("oauth/revoke", views.revoke, name="revoke"),
    # Klaviyo answers with and without the trailing slash.
    re_path(r"^api/profiles/?$", views.profiles, name="profiles"),
    re_path(r"^api/accounts/?$", views.accounts, name="accounts"),
]
