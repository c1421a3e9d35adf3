"""App configuration: registers the sandbox's system checks, nothing else."""

from __future__ import annotations

from django.apps import AppConfig


class KlaviyoSandboxConfig(AppConfig):
    name = "klaviyo_sandbox"
    verbose_name = "Klaviyo sandbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from klaviyo_sandbox import checks  # noqa: F401  (registers the checks)
