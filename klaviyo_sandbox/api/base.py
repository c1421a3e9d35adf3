"""What a view receives (an admitted ``Call``) and returns (a ``Reply``), and the documents it answers with."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from klaviyo_sandbox import bodies, jsonapi, params
from klaviyo_sandbox.description import Operation
from klaviyo_sandbox.gateway import Caller
from klaviyo_sandbox.pagination import Page, Selection


@dataclass(frozen=True, slots=True)
class Call:
    """An admitted API call: the request, its caller, the path's parameters."""

    request: HttpRequest
    caller: Caller
    args: dict[str, str]
    api_root: str  # absolute URL of /api, without a trailing slash
    operation: Operation | None = None  # the operation of Klaviyo's description being served

    @property
    def account_id(self) -> str:
        return self.caller.account.id

    @property
    def query(self) -> dict[str, str]:
        return self.request.GET.dict()

    @property
    def self_url(self) -> str:
        return self.request.build_absolute_uri()

    @property
    def collection_url(self) -> str:
        return self.request.build_absolute_uri(self.request.path).rstrip("/")

    def body(self) -> dict[str, Any]:
        return bodies.document(self.request)


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer: a JSON:API document, or none (202, 204)."""

    document: dict[str, Any] | None
    status: int = 200


View = Callable[[Call], Reply]


def collection(call: Call, data: list[dict[str, Any]], page: Page | None) -> Reply:
    """A page of resources, with ``links.next`` and ``links.prev`` keeping the request's other parameters."""
    return Reply(
        jsonapi.collection_document(
            data, page, collection_url=call.collection_url, self_url=call.self_url, query=call.query
        )
    )


def single(call: Call, data: dict[str, Any], *, status: int = 200) -> Reply:
    """One resource; ``links.self`` is the request's URL (the collection's, for a create)."""
    self_url = call.collection_url if status == 201 else call.self_url
    return Reply(jsonapi.single_document(data, self_url=self_url), status=status)


def listed(
    call: Call,
    listing: params.Listing,
    page_of: Callable[[str, Selection], Page],
    shape: Callable[..., dict[str, Any]],
    fields: Iterable[str],
) -> Reply:
    """A collection endpoint: checks ``include`` and ``fields[type]``, selects the page, shapes each row."""
    params.no_include(call.query)
    chosen = params.sparse_fields(call.query, listing.resource, fields)
    page = page_of(call.account_id, params.selection(call.query, listing))
    return collection(call, [shape(row, api_root=call.api_root, fields=chosen) for row in page.rows], page)
