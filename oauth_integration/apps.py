"""App configuration: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig


class OAuthIntegrationConfig(AppConfig):
    name = "oauth_integration"
    verbose_name = "Klaviyo integration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from oauth_integration import checks  # noqa: F401  (registers the checks)
