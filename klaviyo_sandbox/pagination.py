"""Keyset pagination with opaque cursors, in any sort order, as Klaviyo's ``page[cursor]`` works.

A cursor is base64url of a JSON array ``[direction, sort, value, pk]``: the sort it was
made for, and the sort value and primary key of the last row of the page before it
(``next``) or the first row of the page after it (``prev``). Rows are ordered by the sort
key, then by primary key, so every row is on exactly one page however many share a value.
A leading "=" is ignored: Klaviyo's Python SDK sends one when it takes the cursor out of
a whole ``links.next`` URL. A whole ``links.next`` URL is accepted too (its ``page[cursor]``
is used): Klaviyo's SDKs pass one on when it is not an https:// link.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.db.models import Model, Q, QuerySet

from klaviyo_sandbox.exceptions import invalid


@dataclass(frozen=True, slots=True)
class Ordering:
    """Sort by ``key`` (a field or annotation of the queryset), then by primary key."""

    name: str  # as in the sort parameter, without "-"
    key: str
    descending: bool = False
    temporal: bool = False  # the key holds datetimes


@dataclass(frozen=True, slots=True)
class Selection:
    """Which rows a request asks for: a condition (its filter), an order, a page size and a cursor."""

    condition: Q
    ordering: Ordering
    size: int
    cursor: str | None


@dataclass(frozen=True, slots=True)
class Page:
    rows: Sequence[Any]
    next_cursor: str | None
    prev_cursor: str | None


def paginate(queryset: QuerySet[Any], selection: Selection) -> Page:
    """The selected page of ``queryset``'s rows: those meeting the condition, after (or before) the
    cursor, in order. Raises APIError 400 for a bad cursor."""
    ordering, size, cursor = selection.ordering, selection.size, selection.cursor
    queryset = queryset.filter(selection.condition)
    forward, after = True, None
    if cursor:
        forward, value, pk = _decode(cursor, ordering)
        after = (value, pk)
    ascending = forward != ordering.descending
    if after is not None:
        queryset = queryset.filter(_beyond(ordering.key, *after, ascending=ascending))
    sign = "" if ascending else "-"
    rows = list(queryset.order_by(f"{sign}{ordering.key}", f"{sign}pk")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    # Rows exist on the side the cursor came from (at least the row it names).
    has_next, has_prev = (more, cursor is not None) if forward else (True, more)
    return Page(
        rows=rows,
        next_cursor=_encode("next", ordering, rows[-1]) if rows and has_next else None,
        prev_cursor=_encode("prev", ordering, rows[0]) if rows and has_prev else None,
    )


def _beyond(key: str, value: Any, pk: Any, *, ascending: bool) -> Q:
    past = "gt" if ascending else "lt"
    return Q(**{f"{key}__{past}": value}) | Q(**{key: value, f"pk__{past}": pk})


def _encode(direction: str, ordering: Ordering, row: Model) -> str:
    value = getattr(row, ordering.key)
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([direction, ordering.name, value, row.pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def _decode(cursor: str, ordering: Ordering) -> tuple[bool, Any, Any]:
    bad = invalid("page[cursor] is not a valid cursor for this request.", parameter="page[cursor]")
    if cursor.startswith(("http://", "https://")):
        # A whole links.next (or links.prev) URL: its page[cursor].
        cursor = parse_qs(urlsplit(cursor).query).get("page[cursor]", [""])[0]
    try:
        cursor = cursor.lstrip("=")
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad from exc
    if not (isinstance(decoded, list) and len(decoded) == 4 and decoded[0] in ("next", "prev")):
        raise bad
    direction, name, value, pk = decoded
    if name != ordering.name or not isinstance(value, str | int) or not isinstance(pk, str | int):
        raise bad
    if ordering.temporal:
        try:
            value = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise bad from exc
    return direction == "next", value, pk
