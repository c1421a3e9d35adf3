"""Pending authorizations and the connection history: read-only lists."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from oauth_integration.admin.base import ReadOnlyAdminMixin
from oauth_integration.models import ConnectionEvent, PkceCode


@admin.register(PkceCode)
class PkceCodeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Pending authorizations: who started connecting and until when. No verifier, no hashes."""

    list_display = ("customer_identifier", "created_at", "expires_at", "expired")
    fields = ("customer_identifier", "created_at", "expires_at", "expired")
    readonly_fields = fields
    search_fields = ("customer_identifier",)
    ordering = ("-expires_at",)
    list_per_page = 50
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[PkceCode]:
        return super().get_queryset(request).only("id", "customer_identifier", "created_at", "expires_at")

    @admin.display(description="Expired", boolean=True)
    def expired(self, obj: PkceCode) -> bool:
        return obj.is_expired()


@admin.register(ConnectionEvent)
class ConnectionEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The connection history, as written by the services. Append-only."""

    list_display = ("created_at", "customer", "kind", "detail")
    list_filter = ("kind",)
    list_select_related = ("connection",)
    fields = ("created_at", "customer", "kind", "detail")
    readonly_fields = fields
    search_fields = ("connection__customer_identifier__exact",)
    search_help_text = "Search by exact customer identifier."
    list_per_page = 100
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # counting every kind would scan the whole history

    @admin.display(description="Customer", ordering="connection__customer_identifier")
    def customer(self, obj: ConnectionEvent) -> str:
        return obj.connection.customer_identifier
