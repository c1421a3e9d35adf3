"""Root URLconf: the admin and the OAuth integration's routes."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("oauth_integration.urls")),
]
