"""Admin for Klaviyo connections: read-only, secrets never shown; actions call services."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from oauth_integration.models import ConnectionEvent, OAuthToken, PkceCode


@admin.register(OAuthToken)
class OAuthTokenAdmin(admin.ModelAdmin):
    list_display = (
        "customer_identifier",
        "status",
        "klaviyo_account_name",
        "expires_at",
        "last_refreshed_at",
        "failure_reason",
        "connected_at",
    )
    list_filter = ("status",)
    search_fields = ("customer_identifier", "klaviyo_account_id", "klaviyo_account_name")
    exclude = ("access_token", "refresh_token", "refresh_lease_owner")
    readonly_fields = tuple(
        f.name
        for f in OAuthToken._meta.concrete_fields
        if f.name not in ("id", "access_token", "refresh_token", "refresh_lease_owner")
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(PkceCode)
class PkceCodeAdmin(admin.ModelAdmin):
    list_display = ("customer_identifier", "created_at", "expires_at")
    fields = ("customer_identifier", "created_at", "expires_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ConnectionEvent)
class ConnectionEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "customer_identifier", "kind", "detail")
    list_filter = ("kind",)
    search_fields = ("customer_identifier",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
