"""The Klaviyo connections list and a connection's page, with its history and its actions.

The changelist never decrypts anything: its queryset defers both token columns, and no
display method touches them. Nothing here is edited by hand; the three actions each
delegate to one service per customer and report the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.templatetags.static import static
from django.utils import timezone
from django.utils.html import format_html

from oauth_integration import services
from oauth_integration.admin.base import ReadOnlyAdminMixin, when
from oauth_integration.exceptions import OAuthIntegrationError
from oauth_integration.http_errors import problem_for
from oauth_integration.models import ConnectionEvent, ConnectionStatus, OAuthToken

# Each selected connection costs one or two calls to Klaviyo within the request.
MAX_CONNECTIONS_PER_ACTION = 50
# Events shown on a connection's page; the rest are one link away.
HISTORY_LENGTH = 50

ACCESS_EXPIRED = "access_expired"
ACCESS_EXPIRED_LABEL = "Access expired, will refresh"


class RecentHistoryFormSet(BaseInlineFormSet):
    """The newest events only; the rest are one link away."""

    def get_queryset(self) -> QuerySet[ConnectionEvent]:
        if not hasattr(self, "_recent"):  # sliced once: the forms index into its cached rows
            self._recent = super().get_queryset()[:HISTORY_LENGTH]
        return self._recent


class ConnectionEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ConnectionEvent
    formset = RecentHistoryFormSet
    fields = ("created_at", "kind", "detail")
    readonly_fields = fields
    template = "admin/oauth_integration/oauthtoken/history_inline.html"
    verbose_name_plural = "Connection history"
    extra = 0


class ConnectionStatusFilter(admin.SimpleListFilter):
    """The stored status, with active connections split by whether their access token has expired."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            (ConnectionStatus.ACTIVE, ConnectionStatus.ACTIVE.label),
            (ACCESS_EXPIRED, ACCESS_EXPIRED_LABEL),
            (ConnectionStatus.NEEDS_REAUTHORIZATION, ConnectionStatus.NEEDS_REAUTHORIZATION.label),
            (ConnectionStatus.REVOKED, ConnectionStatus.REVOKED.label),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> QuerySet[OAuthToken]:
        value = self.value()
        now = timezone.now()
        if value == ConnectionStatus.ACTIVE:
            return queryset.filter(status=ConnectionStatus.ACTIVE, expires_at__gt=now)
        if value == ACCESS_EXPIRED:
            return queryset.filter(status=ConnectionStatus.ACTIVE).filter(
                Q(expires_at__lte=now) | Q(expires_at__isnull=True)
            )
        if value in (ConnectionStatus.NEEDS_REAUTHORIZATION, ConnectionStatus.REVOKED):
            return queryset.filter(status=value)
        return queryset


@admin.register(OAuthToken)
class OAuthTokenAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "customer_identifier",
        "connection_status",
        "klaviyo_account",
        "scopes",
        "access_expires",
        "last_refreshed_at",
        "last_failure",
        "connected_at",
    )
    list_filter = (ConnectionStatusFilter,)
    search_fields = ("customer_identifier", "klaviyo_account_id", "klaviyo_account_name")
    search_help_text = "Search by customer identifier, Klaviyo account id or Klaviyo account name."
    ordering = ("customer_identifier",)
    # Only indexed columns can be sorted on: the changelist stays fast with 100,000 rows.
    sortable_by = ("customer_identifier", "access_expires", "last_refreshed_at", "connected_at")
    list_per_page = 50
    show_full_result_count = False
    actions = ("revoke_and_disconnect", "refresh_now", "test_connection")
    fieldsets = (
        (None, {"fields": ("customer_identifier", "connection_status", "klaviyo_account_id", "klaviyo_account_name")}),
        ("Tokens", {"fields": ("scopes", "expires_at", "last_refreshed_at", "connected_at", "updated_at")}),
        ("Last failure", {"fields": ("failure_reason", "failure_detail", "failed_at")}),
    )
    readonly_fields = (
        "customer_identifier",
        "connection_status",
        "klaviyo_account_id",
        "klaviyo_account_name",
        "scopes",
        "expires_at",
        "last_refreshed_at",
        "connected_at",
        "updated_at",
        "failure_reason",
        "failure_detail",
        "failed_at",
    )
    # Secrets and the refresh lease are neither loaded nor shown.
    exclude = (
        "access_token",
        "refresh_token",
        "refresh_lease_owner",
        "refresh_lease_until",
        "refresh_failed_until",
        "version",
    )
    inlines = (ConnectionEventInline,)

    class Media:
        css = {"all": ("oauth_integration/admin.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[OAuthToken]:
        return super().get_queryset(request).defer("access_token", "refresh_token")

    # --- "Revoke & disconnect" is the way to remove tokens ----------------------------------

    def has_manage_permission(self, request: HttpRequest) -> bool:
        """Who may run the actions: users allowed to change connections."""
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    # --- columns ---------------------------------------------------------------------------

    @admin.display(description="Status")
    def connection_status(self, obj: OAuthToken) -> str:
        if obj.status == ConnectionStatus.ACTIVE:
            if obj.expires_within(timedelta(0)):
                return self._status(ACCESS_EXPIRED_LABEL, "icon-clock.svg")
            return self._status(ConnectionStatus.ACTIVE.label, "icon-yes.svg")
        if obj.status == ConnectionStatus.NEEDS_REAUTHORIZATION:
            return self._status(
                ConnectionStatus.NEEDS_REAUTHORIZATION.label, "icon-alert.svg", obj.get_failure_reason_display()
            )
        return self._status(obj.get_status_display(), "icon-no.svg")

    @staticmethod
    def _status(label: str, icon: str, reason: str = "") -> str:
        html = format_html('<img src="{}" alt="" width="13" height="13"> {}', static(f"admin/img/{icon}"), label)
        if reason:
            html = format_html("{}:<br><small>{}</small>", html, reason)
        return html

    @admin.display(description="Klaviyo account")
    def klaviyo_account(self, obj: OAuthToken) -> str:
        if not obj.klaviyo_account_id and not obj.klaviyo_account_name:
            return self.get_empty_value_display()
        return format_html("{} ({})", obj.klaviyo_account_name or "?", obj.klaviyo_account_id or "unknown id")

    @admin.display(description="Access token expires", ordering="expires_at")
    def access_expires(self, obj: OAuthToken) -> str:
        return when(obj.expires_at) or self.get_empty_value_display()

    @admin.display(description="Last failure")
    def last_failure(self, obj: OAuthToken) -> str:
        if not obj.failure_reason:
            return self.get_empty_value_display()
        return format_html(
            "<strong>{}</strong><br>{}<br><small>{}</small>",
            obj.get_failure_reason_display(),
            obj.failure_detail,
            when(obj.failed_at),
        )

    # --- actions: each calls one service per selected customer ---------------------------------

    def _selected(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> list[OAuthToken]:
        """The selected connections, or none (with an error message) when more than a page is selected."""
        selected = list(queryset.order_by("customer_identifier")[: MAX_CONNECTIONS_PER_ACTION + 1])
        if len(selected) > MAX_CONNECTIONS_PER_ACTION:
            self.message_user(
                request,
                f"Select at most {MAX_CONNECTIONS_PER_ACTION} connections at a time: "
                "each one is a call to Klaviyo. Nothing was done.",
                messages.ERROR,
            )
            return []
        return selected

    def _for_each(
        self,
        request: HttpRequest,
        selected: list[OAuthToken],
        service: Callable[..., Any],
        *,
        failed: str,
        report: Callable[[Any], tuple[int, str]],
        log: str = "",
    ) -> None:
        """Call ``service`` for each selected customer and report each outcome.

        ``report`` turns a result into (message level, text); a failure is reported as
        "<failed>: <what went wrong>", worded by the app's one error mapping.
        """
        for connection in selected:
            customer = connection.customer_identifier
            try:
                result = service(customer_identifier=customer)
            except OAuthIntegrationError as exc:
                problem = problem_for(exc)
                self.message_user(request, f"Customer {customer}: {failed}: {problem.detail}", messages.ERROR)
                continue
            level, text = report(result)
            self.message_user(request, f"Customer {customer}: {text}", level)
            if log:
                self.log_change(request, connection, log)

    @admin.action(description="Revoke & disconnect", permissions=["manage"])
    def revoke_and_disconnect(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> TemplateResponse | None:
        selected = self._selected(request, queryset)
        if selected and request.POST.get("post") != "yes":
            return TemplateResponse(
                request,
                "admin/oauth_integration/oauthtoken/revoke_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Revoke & disconnect Klaviyo connections",
                    "subtitle": None,
                    "opts": self.opts,
                    "connections": selected,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "media": self.media,
                },
            )
        self._for_each(
            request,
            selected,
            services.disconnect,
            failed="not disconnected",
            report=_disconnected,
            log="Revoked & disconnected",
        )
        return None

    @admin.action(description="Refresh now", permissions=["manage"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> None:
        self._for_each(
            request,
            self._selected(request, queryset),
            services.refresh_connection,
            failed="refresh failed",
            report=lambda row: (messages.SUCCESS, f"refreshed; access token valid until {when(row.expires_at)}."),
            log="Refreshed now",
        )

    @admin.action(description="Test connection", permissions=["manage"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> None:
        self._for_each(
            request,
            self._selected(request, queryset),
            services.check_connection,
            failed="test failed",
            report=lambda text: (messages.SUCCESS, text),
        )


def _disconnected(result: services.Disconnected) -> tuple[int, str]:
    if result.revoked_at_klaviyo:
        return messages.SUCCESS, "revoked at Klaviyo and disconnected."
    if result.failure:
        return (
            messages.WARNING,
            f"disconnected here, but revoking at Klaviyo failed ({result.failure}); "
            "the app may still be listed in the customer's Klaviyo account.",
        )
    return messages.INFO, "had no token to revoke; disconnected."
