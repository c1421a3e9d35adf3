"""Each sandbox account's data and the use cases of the API endpoints, one module per resource."""

from __future__ import annotations

from typing import TypeVar

from django.db import connection
from django.db.models import Expression, Model
from django.db.models.functions import Collate

from klaviyo_sandbox.exceptions import not_found
from klaviyo_sandbox.pagination import Page, Selection, paginate

Row = TypeVar("Row", bound=Model)


def by_code_point(expression: Expression) -> Collate:
    """Text compared and sorted by code point, the same in every database whatever its collation."""
    return Collate(expression, "C" if connection.vendor == "postgresql" else "BINARY")


def owned(model: type[Row], account_id: str, pk: str) -> Row:
    """The account's ``model`` row with this id. Raises APIError 404 when the account has none."""
    row = model._default_manager.filter(account_id=account_id, pk=pk).first()
    if row is None:
        raise not_found(f"A {model._meta.verbose_name.removeprefix('sandbox ')} with id {pk} does not exist.")
    return row


def page_of(model: type[Model], account_id: str, selection: Selection) -> Page:
    """The selected page of the account's ``model`` rows."""
    return paginate(model._default_manager.filter(account_id=account_id), selection)
