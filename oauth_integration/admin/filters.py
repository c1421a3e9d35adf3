"""The connections list's filters: status (with expired access split out) and missing scopes."""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from oauth_integration.conf import conf
from oauth_integration.models import ConnectionStatus, OAuthToken

ACCESS_EXPIRED = "access_expired"
ACCESS_EXPIRED_LABEL = "Access expired, will refresh"
NEEDS_NEW_SCOPES = "needs_new_scopes"


def status_conditions(now: datetime) -> dict[str, tuple[str, Q]]:
    """Each value of the status filter, in the list's order: its label and the rows it selects.

    The health page counts the same conditions, so its numbers match the filtered lists.
    """
    active = Q(status=ConnectionStatus.ACTIVE)
    return {
        ConnectionStatus.ACTIVE: (ConnectionStatus.ACTIVE.label, active & Q(expires_at__gt=now)),
        ACCESS_EXPIRED: (ACCESS_EXPIRED_LABEL, active & (Q(expires_at__lte=now) | Q(expires_at__isnull=True))),
        ConnectionStatus.NEEDS_REAUTHORIZATION: (
            ConnectionStatus.NEEDS_REAUTHORIZATION.label,
            Q(status=ConnectionStatus.NEEDS_REAUTHORIZATION),
        ),
        ConnectionStatus.REVOKED: (ConnectionStatus.REVOKED.label, Q(status=ConnectionStatus.REVOKED)),
    }


class ConnectionStatusFilter(admin.SimpleListFilter):
    """The stored status, with active connections split by whether their access token has expired."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(value, label) for value, (label, _) in status_conditions(timezone.now()).items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> QuerySet[OAuthToken]:
        selected = status_conditions(timezone.now()).get(self.value() or "")
        return queryset if selected is None else queryset.filter(selected[1])


class ScopesFilter(admin.SimpleListFilter):
    """Connections granted every scope now in KLAVIYO_SCOPES, or missing some (they must reconnect)."""

    title = "scopes"
    parameter_name = "scopes"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(NEEDS_NEW_SCOPES, "Needs new scopes"), ("complete", "Has every scope")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> QuerySet[OAuthToken]:
        lacking = queryset.missing_any_scope(conf.required_scopes)  # type: ignore[attr-defined]
        if self.value() == NEEDS_NEW_SCOPES:
            return lacking
        if self.value() == "complete":
            return queryset.exclude(pk__in=lacking.values("pk"))
        return queryset
