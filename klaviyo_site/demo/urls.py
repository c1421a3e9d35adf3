"""The demo's one page, mounted under /demo/ by the example site."""

from django.urls import path

from klaviyo_site.demo import views

app_name = "demo"

urlpatterns = [
    path("<str:customer_identifier>", views.try_write, name="try_write"),
]
