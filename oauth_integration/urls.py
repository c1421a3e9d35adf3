"""The integration's routes, as in Klaviyo's Node example, plus a landing page and a health check."""

from django.urls import path

from oauth_integration import views

app_name = "oauth_integration"

urlpatterns = [
    path("", views.home, name="home"),
    path("install", views.install, name="install"),
    path("start/<str:customer_identifier>", views.start, name="start"),
    path("authorize", views.authorize, name="authorize"),
    path("profiles/<str:customer_identifier>", views.profiles, name="profiles"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
]
