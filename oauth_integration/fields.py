"""``EncryptedTextField``: the one place where secrets are encrypted and decrypted.

Keep this import path stable: migrations reference it.

How it works, and why no code path can store plain text:

* Reading: ``from_db_value`` wraps the column in an opaque ``Ciphertext``. The model
  attribute (a data descriptor) decrypts it on first access, using the row's identity
  (``bind_to``, e.g. the customer identifier) as authenticated context. Rows that are
  listed but whose secrets are never touched are never decrypted.
* Writing: the attribute hands out ``BoundSecret`` strings that carry that context.
  ``save()``, ``create()``, ``update_or_create()``, ``bulk_create()`` and
  ``bulk_update()`` all read the attribute, so they all encrypt, bound to their row.
  ``EncryptedQuerySet.update()`` binds each row's value to that row (to the identity given
  as ``bound_to=``, or else to each row's own, read first). A bare string
  reaching the database layer any other way raises instead of being stored.
* Lookups other than ``isnull`` raise: ciphertext is randomised, equality can never match.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import FieldError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, Value, When
from django.db.models.lookups import Lookup
from django.db.models.query_utils import DeferredAttribute

from oauth_integration import crypto


class Ciphertext:
    """A secret as stored, not yet decrypted. Its repr never shows the envelope."""

    __slots__ = ("envelope",)

    def __init__(self, envelope: str) -> None:
        self.envelope = envelope

    def __repr__(self) -> str:
        return "<Ciphertext>"


class BoundSecret(str):
    """Plaintext that knows which row and field it belongs to. ``repr`` hides it."""

    context: str

    def __new__(cls, value: str, context: str) -> BoundSecret:
        obj = super().__new__(cls, value)
        obj.context = context
        return obj

    def __repr__(self) -> str:
        return "'<secret>'"


class _EncryptedAttribute(DeferredAttribute):
    """Data descriptor: always consulted, so every read decrypts and every write binds."""

    field: EncryptedTextField

    def __get__(self, instance: models.Model | None, cls: type | None = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if value is None:
            return None
        context = self.field.context_for(instance)
        if isinstance(value, Ciphertext):
            value = crypto.decrypt(value.envelope, context=context)
            instance.__dict__[self.field.attname] = value
        return BoundSecret(str(value), context)

    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """Text encrypted with AES-GCM, bound to its model, field and row (``bind_to``)."""

    descriptor_class = _EncryptedAttribute

    def __init__(self, *args: Any, bind_to: str, **kwargs: Any) -> None:
        self.bind_to = bind_to
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["bind_to"] = self.bind_to
        return name, path, args, kwargs

    def context(self, bind_value: object) -> str:
        if bind_value in (None, ""):
            raise ValueError(f"{self.model._meta.label}.{self.name} cannot be encrypted before {self.bind_to} is set")
        return f"{self.model._meta.label_lower}.{self.name}:{bind_value}"

    def context_for(self, instance: models.Model) -> str:
        return self.context(getattr(instance, self.bind_to))

    def from_db_value(self, value: str | None, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        return None if value is None else Ciphertext(value)

    def get_db_prep_save(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        if value is None or hasattr(value, "as_sql"):
            # bulk_update() passes a Case/When expression; its Values come back one by one.
            return value
        if isinstance(value, BoundSecret):
            return crypto.encrypt(str(value), context=value.context)
        raise TypeError(
            f"{self.model._meta.label}.{self.name} only stores values bound to a row; "
            "assign it on a model instance or use QuerySet.update() on this model"
        )

    def get_lookup(self, lookup_name: str) -> type[Lookup] | None:
        if lookup_name != "isnull":
            raise FieldError(f"{type(self).__name__} does not support '{lookup_name}' lookups.")
        return super().get_lookup(lookup_name)


class EncryptedQuerySet(models.QuerySet):
    """``update()`` that binds each row's secret to that row, in one UPDATE that keeps every
    filter of the queryset: a row that stops matching meanwhile is left alone."""

    def update(self, *, bound_to: Mapping[str, object] | None = None, **kwargs: Any) -> int:
        """``bound_to``: the row identity (``{"customer_identifier": ...}``), when the caller knows
        it: only rows with that identity are updated, and the secrets are bound to it without
        reading the rows first. Otherwise each matching row's own identity is read and used."""
        secret_fields = {
            name: field
            for name in kwargs
            if isinstance(field := self.model._meta.get_field(name), EncryptedTextField)
            and kwargs[name] is not None
            # Expressions (bulk_update's Case/When) carry BoundSecret values already.
            and not hasattr(kwargs[name], "resolve_expression")
        }
        queryset = self.filter(**bound_to) if bound_to else self
        if not secret_fields:
            return super(EncryptedQuerySet, queryset).update(**kwargs)
        bind_names = sorted({field.bind_to for field in secret_fields.values()})
        identity = {**(bound_to or {}), **{name: kwargs[name] for name in bind_names if name in kwargs}}
        if all(name in identity for name in bind_names):
            # Every matching row has (or is given) this identity: one context for all of them.
            values = {
                name: BoundSecret(str(kwargs[name]), field.context(identity[field.bind_to]))
                for name, field in secret_fields.items()
            }
            return super(EncryptedQuerySet, queryset).update(**{**kwargs, **values})
        # One CASE per secret, keyed by primary key, on the rows matching right now; the UPDATE
        # repeats the queryset's own conditions, so it stays atomic without a transaction.
        rows = list(queryset.values_list("pk", *bind_names))
        if not rows:
            return 0
        values = {}
        for name, field in secret_fields.items():
            position = bind_names.index(field.bind_to) + 1
            cases = [
                When(
                    pk=row[0],
                    then=Value(BoundSecret(str(kwargs[name]), field.context(row[position])), output_field=field),
                )
                for row in rows
            ]
            values[name] = Case(*cases, output_field=field)
        rows_now = queryset.filter(pk__in=[row[0] for row in rows])
        return super(EncryptedQuerySet, rows_now).update(**{**kwargs, **values})
