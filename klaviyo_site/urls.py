"""Root URLconf: the admin, the OAuth integration's routes, the demo of a write and the Klaviyo sandbox.

The sandbox is always mounted; its views answer 404 unless KLAVIYO_SANDBOX is on.
"""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("sandbox/", include("klaviyo_sandbox.urls")),
    path("demo/", include("klaviyo_site.demo.urls")),
    path("", include("oauth_integration.urls")),
]
