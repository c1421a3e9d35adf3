"""The query parameters Klaviyo's endpoints share: page[size], sort, fields[...], additional-fields[...].

Each function checks one parameter against what the endpoint allows and raises a 400
pointing at that parameter otherwise; nothing is silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from klaviyo_sandbox import filters
from klaviyo_sandbox.exceptions import invalid
from klaviyo_sandbox.pagination import Ordering, Selection

Query = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Listing:
    """How a collection endpoint can be asked for: its resource's filters, sorts and page sizes."""

    resource: str
    filters: Mapping[str, filters.Field]
    orderings: tuple[Ordering, ...]
    default_sort: str
    page_size: int
    max_page_size: int | None = None  # None: the page size is fixed and page[size] is refused


def selection(query: Query, listing: Listing) -> Selection:
    """The rows the query asks for: its ``filter``, ``sort``, ``page[size]`` and ``page[cursor]``, checked."""
    return Selection(
        condition=filters.parse(query.get("filter"), listing.filters, resource=listing.resource),
        ordering=_ordering(query, listing),
        size=_page_size(query, listing),
        cursor=query.get("page[cursor]"),
    )


def _page_size(query: Query, listing: Listing) -> int:
    raw = query.get("page[size]")
    if raw is None or raw == "":
        return listing.page_size
    if listing.max_page_size is None:
        raise invalid("This endpoint does not accept page[size].", parameter="page[size]")
    # ASCII digits only ("²".isdigit() is true too), and few enough for int() to convert.
    size = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 0
    if not 1 <= size <= listing.max_page_size:
        raise invalid(f"page[size] must be an integer between 1 and {listing.max_page_size}.", parameter="page[size]")
    return size


def _ordering(query: Query, listing: Listing) -> Ordering:
    """The ``sort`` parameter (``field`` or ``-field``) as an Ordering; the listing's default when absent."""
    raw = query.get("sort") or listing.default_sort
    name = raw.removeprefix("-")
    for candidate in listing.orderings:
        if candidate.name == name:
            return Ordering(candidate.name, candidate.key, descending=raw.startswith("-"), temporal=candidate.temporal)
    raise invalid(f"'{raw}' is not a valid sort field for the resource '{listing.resource}'.", parameter="sort")


def _listed(query: Query, parameter: str, allowed: Iterable[str], what: str) -> tuple[str, ...] | None:
    raw = query.get(parameter)
    if raw is None:
        return None
    values = tuple(dict.fromkeys(value.strip() for value in raw.split(",")))
    unknown = [value for value in values if value not in allowed]
    if unknown or not all(values):
        shown = ", ".join(repr(value) for value in unknown) or "an empty value"
        raise invalid(f"{shown} is not a valid {what}.", parameter=parameter)
    return values


def sparse_fields(query: Query, resource: str, allowed: Iterable[str]) -> tuple[str, ...] | None:
    """``fields[<resource>]``: the attributes to answer with (None: all of them)."""
    return _listed(query, f"fields[{resource}]", frozenset(allowed), f"field of the resource '{resource}'")


def additional_fields(query: Query, resource: str, allowed: Iterable[str]) -> frozenset[str]:
    """``additional-fields[<resource>]``: attributes Klaviyo leaves out unless asked for."""
    values = _listed(query, f"additional-fields[{resource}]", frozenset(allowed), f"additional field of '{resource}'")
    return frozenset(values or ())


def include(query: Query, allowed: frozenset[str]) -> tuple[str, ...]:
    """``include``: the related resources the sandbox adds to the answer; any other is refused."""
    if "include" not in query:
        return ()
    values = tuple(value for value in query["include"].split(",") if value)
    refused = [value for value in values if value not in allowed]
    if refused or not values:
        detail = f"The sandbox does not support include={','.join(refused) or query['include']} on this endpoint."
        raise invalid(detail, parameter="include")
    return values


def no_include(query: Query) -> None:
    """``include`` is not imitated: say so instead of answering without the included resources."""
    if "include" in query:
        raise invalid("The sandbox does not support include on this endpoint.", parameter="include")
