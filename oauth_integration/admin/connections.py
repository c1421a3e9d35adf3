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
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.templatetags.static import static
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from oauth_integration import access, services
from oauth_integration.admin.base import ReadOnlyAdminMixin, short_when, when
from oauth_integration.admin.filters import ACCESS_EXPIRED_LABEL, ConnectionStatusFilter, ScopesFilter
from oauth_integration.admin.health import HealthPageMixin
from oauth_integration.conf import conf
from oauth_integration.exceptions import OAuthIntegrationError
from oauth_integration.http_errors import problem_for
from oauth_integration.links import build_start_link
from oauth_integration.models import ConnectionEvent, ConnectionStatus, OAuthToken

# Each selected connection costs one or two calls to Klaviyo within the request.
MAX_CONNECTIONS_PER_ACTION = 50
# Events shown on a connection's page; the rest are one link away.
HISTORY_LENGTH = 50
# The actions also offered as buttons on a connection's own page.
PAGE_ACTIONS = ("refresh_now", "test_connection", "revoke_and_disconnect")


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


@admin.register(OAuthToken)
class OAuthTokenAdmin(HealthPageMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    # Eight facts in six columns, so that the list fits a 1280 px window beside the filters.
    list_display = (
        "customer_identifier",
        "status_and_last_failure",
        "klaviyo_account",
        "granted_scopes",
        "access_expires",
        "connected",
    )
    list_filter = (ConnectionStatusFilter, ScopesFilter)
    search_fields = ("customer_identifier", "klaviyo_account_id", "klaviyo_account_name")
    search_help_text = "Search by customer identifier, Klaviyo account id or Klaviyo account name."
    ordering = ("customer_identifier",)
    # Only indexed columns can be sorted on: the changelist stays fast with 100,000 rows.
    sortable_by = ("customer_identifier", "access_expires", "connected")
    list_per_page = 50
    show_full_result_count = False
    actions = ("revoke_and_disconnect", "refresh_now", "test_connection", "show_start_links")
    fieldsets = (
        (None, {"fields": ("customer_identifier", "connection_status", "klaviyo_account_id", "klaviyo_account_name")}),
        ("Tokens", {"fields": ("granted_scopes", "expires_at", "last_refreshed_at", "connected_at", "updated_at")}),
        ("Last failure", {"fields": ("failure_reason", "failure_detail", "failed_at")}),
    )
    readonly_fields = (
        "customer_identifier",
        "connection_status",
        "klaviyo_account_id",
        "klaviyo_account_name",
        "granted_scopes",
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

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # The list needs the width the admin's navigation sidebar would take (the breadcrumbs remain).
        return super().changelist_view(request, {**(extra_context or {}), "is_nav_sidebar_enabled": False})

    def get_queryset(self, request: HttpRequest) -> QuerySet[OAuthToken]:
        return super().get_queryset(request).defer("access_token", "refresh_token")

    # --- "Revoke & disconnect" is the way to remove tokens ----------------------------------

    def has_manage_permission(self, request: HttpRequest) -> bool:
        """Who may run the actions: users allowed to change connections."""
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def has_connect_permission(self, request: HttpRequest) -> bool:
        """Who may make start links: users with the connect_customer permission."""
        return request.user.has_perm(access.CONNECT_CUSTOMER)

    # --- a connection's own page: the actions as buttons ----------------------------------------

    def get_urls(self) -> list[URLPattern]:
        run = self.admin_site.admin_view(require_POST(self.run_page_action))
        return [path("<int:object_id>/run/", run, name="oauth_integration_oauthtoken_run"), *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        buttons = [(name, getattr(self, name).short_description) for name in PAGE_ACTIONS]
        context = {**(extra_context or {}), "page_actions": buttons if self.has_manage_permission(request) else []}
        return super().change_view(request, object_id, form_url, context)

    def run_page_action(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """A button on a connection's page: the same action as on the list, for this one connection."""
        name = request.POST.get("action", "")
        if name not in PAGE_ACTIONS or not self.has_manage_permission(request):
            raise PermissionDenied
        selected = self.get_queryset(request).filter(pk=object_id)
        if not selected.exists():
            raise Http404
        response = getattr(self, name)(request, selected)
        return response or HttpResponseRedirect(reverse("admin:oauth_integration_oauthtoken_change", args=[object_id]))

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

    @admin.display(description="Scopes")
    def granted_scopes(self, obj: OAuthToken) -> str:
        missing = obj.missing_scopes(conf.required_scopes)
        if not missing:
            return obj.scopes or self.get_empty_value_display()
        return format_html('{}<br><strong class="needs-scopes">needs {}</strong>', obj.scopes, " ".join(missing))

    @admin.display(description="Access token expires", ordering="expires_at")
    def access_expires(self, obj: OAuthToken) -> str:
        expires = short_when(obj.expires_at) or self.get_empty_value_display()
        if obj.last_refreshed_at is None:
            return expires
        return format_html("{}<br><small>refreshed {}</small>", expires, short_when(obj.last_refreshed_at))

    @admin.display(description="Connected", ordering="connected_at")
    def connected(self, obj: OAuthToken) -> str:
        return short_when(obj.connected_at)

    @admin.display(description="Status")
    def status_and_last_failure(self, obj: OAuthToken) -> str:
        """The status, then the last failure (its reason, what Klaviyo said, when), if any."""
        status = self.connection_status(obj)
        if not obj.failure_reason:
            return status
        reason = "" if obj.status == ConnectionStatus.NEEDS_REAUTHORIZATION else obj.get_failure_reason_display()
        return format_html(
            '{}<div class="last-failure">{}<small>{} ({})</small></div>',
            status,
            format_html("<strong>{}</strong><br>", reason) if reason else "",
            obj.failure_detail,
            short_when(obj.failed_at),
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

    @admin.action(description="Show fresh start links", permissions=["connect"])
    def show_start_links(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> TemplateResponse | None:
        """Single-use links for the selected customers to connect again (for new scopes, say)."""
        selected = self._selected(request, queryset)
        if not selected:
            return None
        links = [
            (row, row.missing_scopes(conf.required_scopes), build_start_link(row.customer_identifier, request=request))
            for row in selected
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Fresh start links",
            "subtitle": None,
            "opts": self.opts,
            "links": links,
            "minutes": conf.start_link_max_age // 60,
        }
        return TemplateResponse(request, "admin/oauth_integration/oauthtoken/start_links.html", context)


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
