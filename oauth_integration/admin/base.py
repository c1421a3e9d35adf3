"""What the admin pages share: read-only access, dates as people read them."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Model
from django.http import HttpRequest
from django.utils import formats, timezone


def when(value: datetime | None) -> str:
    """A date and time in the site's format and time zone ("" for none)."""
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT") if value else ""


def short_when(value: datetime | None) -> str:
    """A date and time in as little width as lists need: 2026-07-15 14:03 ("" for none)."""
    return formats.date_format(timezone.localtime(value), "Y-m-d H:i") if value else ""


class ReadOnlyAdminMixin:
    """Rows come from the services (connect, refresh, history), never from a form."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
