"""The "Klaviyo connections: health" page: how many connections are in each state, which
ones need their customer to reconnect, refreshes and failures over time, and the refresh
tokens that have gone unused longest (Klaviyo drops them after 90 idle days).

A page of the connections admin (``HealthPageMixin`` adds ``health/`` to its URLs), for
the users who may view connections. Its cost does not grow with the number of
connections or events: one aggregate for the counts, one query per list, one grouped
count per chart window. Token columns are never loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce, TruncDay, TruncHour
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone

from oauth_integration.admin.chart import BarChart, Column, Series, bar_chart, buckets, fill
from oauth_integration.admin.filters import status_conditions
from oauth_integration.conf import conf
from oauth_integration.models import REFRESH_TOKEN_IDLE_LIFETIME, ConnectionEvent, ConnectionStatus, OAuthToken

TITLE = "Klaviyo connections: health"
# Rows in each list; the full, filtered connections list is one link away.
LIST_LENGTH = 20
# Refresh tokens this close to Klaviyo's idle limit are highlighted.
NEAR_LIMIT = timedelta(days=15)
Kind = ConnectionEvent.Kind
FAILURE_KINDS = (Kind.REFRESH_FAILED, Kind.NEEDS_REAUTHORIZATION, Kind.CALL_FAILED)
SERIES = (Series("refreshes", "Refreshes", "refresh"), Series("failures", "Failures", "failure"))
# Only what the lists show: never a token.
LISTED_FIELDS = ("pk", "customer_identifier", "klaviyo_account_id", "klaviyo_account_name", "status")


@dataclass(frozen=True)
class Window:
    """A chart's time span: ``count`` buckets of one ``per`` (hour or day), the current one last."""

    key: str
    title: str
    per: str
    count: int
    truncate: Callable[..., Any]
    label_format: str
    axis_format: str

    @property
    def step(self) -> timedelta:
        return timedelta(days=1) if self.per == "day" else timedelta(hours=1)

    def starts(self, now: datetime) -> list[datetime]:
        """Each bucket's start, in the current time zone as the database truncates."""
        current = timezone.localtime(now).replace(minute=0, second=0, microsecond=0)
        if self.per == "day":  # calendar days: local midnights
            return buckets(current.replace(hour=0) - self.step * (self.count - 1), self.step, self.count)
        return buckets(current.astimezone(UTC) - self.step * (self.count - 1), self.step, self.count)

    def column(self, index: int, start: datetime, values: tuple[int, ...]) -> Column:
        """The bucket from ``start``; named under the axis every third hour, every fifth day back from today."""
        local = timezone.localtime(start)
        named = (self.count - 1 - index) % 5 == 0 if self.per == "day" else local.hour % 3 == 0
        axis_label = formats.date_format(local, self.axis_format) if named else ""
        return Column(formats.date_format(local, self.label_format), axis_label, values)


WINDOWS = (
    Window("hours", "Last 24 hours", "hour", 24, TruncHour, "Y-m-d H:i", "H:i"),
    Window("days", "Last 30 days", "day", 30, TruncDay, "Y-m-d (D)", "M j"),
)


@dataclass(frozen=True)
class StatusCount:
    value: str
    label: str
    count: int
    url: str


@dataclass(frozen=True)
class IdleToken:
    """An active connection and how long its refresh token has gone unused."""

    connection: OAuthToken
    unused: timedelta

    @property
    def left(self) -> timedelta:
        return REFRESH_TOKEN_IDLE_LIFETIME - self.unused

    @property
    def days_left(self) -> str:
        if self.left <= timedelta(0):
            return "none: past the limit"
        return str(self.left.days) if self.left.days else "less than a day"

    @property
    def near_limit(self) -> bool:
        return self.left <= NEAR_LIMIT


def status_counts(now: datetime) -> tuple[list[StatusCount], int, int]:
    """(a count per value of the list's status filter, all connections, active ones near the idle limit): one query."""
    conditions = status_conditions(now)
    near = Q(status=ConnectionStatus.ACTIVE, last_used__lt=now - REFRESH_TOKEN_IDLE_LIFETIME + NEAR_LIMIT)
    counted = (
        OAuthToken.objects.alias(last_used=Coalesce("last_refreshed_at", "connected_at"))
        .order_by()
        .aggregate(
            **{value: Count("pk", filter=condition) for value, (_, condition) in conditions.items()},
            all_connections=Count("pk"),
            near_limit=Count("pk", filter=near),
        )
    )
    changelist = reverse("admin:oauth_integration_oauthtoken_changelist")
    counts = [
        StatusCount(value, label, counted[value], f"{changelist}?status={value}")
        for value, (label, _) in conditions.items()
    ]
    return counts, counted["all_connections"], counted["near_limit"]


def needing_reauthorization() -> list[OAuthToken]:
    """The connections that most recently came to need reauthorization, with their failure."""
    return list(
        OAuthToken.objects.filter(status=ConnectionStatus.NEEDS_REAUTHORIZATION)
        .order_by(F("failed_at").desc(nulls_last=True), "customer_identifier")
        .only(*LISTED_FIELDS, "failure_reason", "failure_detail", "failed_at")[:LIST_LENGTH]
    )


def idle_tokens(now: datetime) -> list[IdleToken]:
    """Active connections whose refresh token went unused longest (last refresh, else connection)."""
    rows = (
        OAuthToken.objects.active()
        .alias(last_used=Coalesce("last_refreshed_at", "connected_at"))
        .order_by("last_used", "customer_identifier")
        .only(*LISTED_FIELDS, "connected_at", "last_refreshed_at")[:LIST_LENGTH]
    )
    return [IdleToken(row, now - row.last_used_at) for row in rows]


def event_chart(window: Window, now: datetime) -> BarChart:
    """Refreshes and failures per bucket of ``window``, counted by the database in one grouped query."""
    starts = window.starts(now)
    counted_kinds = (Kind.REFRESHED, *FAILURE_KINDS)
    rows = (
        ConnectionEvent.objects.filter(
            created_at__gte=starts[0], created_at__lt=starts[-1] + window.step, kind__in=counted_kinds
        )
        .annotate(bucket=window.truncate("created_at"))
        .values("bucket")
        .annotate(
            refreshes=Count("pk", filter=Q(kind=Kind.REFRESHED)),
            failures=Count("pk", filter=Q(kind__in=FAILURE_KINDS)),
        )
        .order_by("bucket")
    )
    counted = {row["bucket"]: (row["refreshes"], row["failures"]) for row in rows}
    filled = zip(starts, fill(starts, counted, len(SERIES)), strict=True)
    return bar_chart([window.column(index, start, values) for index, (start, values) in enumerate(filled)], SERIES)


def health_context(now: datetime) -> dict[str, Any]:
    counts, total, near_limit = status_counts(now)
    reauthorization = next(count for count in counts if count.value == ConnectionStatus.NEEDS_REAUTHORIZATION)
    return {
        "counts": counts,
        "total": total,
        "reauthorization": reauthorization,
        "needing_reauthorization": needing_reauthorization(),
        "charts": [(window, event_chart(window, now)) for window in WINDOWS],
        "idle_tokens": idle_tokens(now),
        "near_limit": near_limit,
        "near_limit_days": (REFRESH_TOKEN_IDLE_LIFETIME - NEAR_LIMIT).days,
        "idle_limit_days": REFRESH_TOKEN_IDLE_LIFETIME.days,
        "keep_alive_days": conf.keep_alive_unused.days,
        "time_zone": timezone.get_current_timezone_name(),
    }


# The page is a view of the connections admin; type checkers see the ModelAdmin it extends.
_ModelAdmin = admin.ModelAdmin if TYPE_CHECKING else object


class HealthPageMixin(_ModelAdmin):
    """Adds the health page, ``health/``, to a connections admin."""

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.health_view)
        return [path("health/", view, name="oauth_integration_oauthtoken_health"), *super().get_urls()]

    def health_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": TITLE,
            "subtitle": None,
            "opts": self.opts,
            "is_nav_sidebar_enabled": False,  # the charts get the width
            **health_context(timezone.now()),
        }
        return TemplateResponse(request, "admin/oauth_integration/oauthtoken/health.html", context)
