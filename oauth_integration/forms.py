"""Validation of query parameters arriving at the views."""

from __future__ import annotations

import re

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.http import QueryDict

from oauth_integration.exceptions import InvalidCustomerIdentifier, InvalidInput
from oauth_integration.klaviyo import page_cursor
from oauth_integration.validators import CUSTOMER_IDENTIFIER_MAX_LENGTH, validate_customer_identifier

_PRINTABLE_ASCII_PATTERN = r"^[\x21-\x7e]*\Z"
_PRINTABLE_ASCII = RegexValidator(_PRINTABLE_ASCII_PATTERN, "Only printable ASCII characters are allowed.")


class QueryForm(forms.Form):
    """A form over a query string in which each parameter may appear at most once.

    ``?a=1&a=2`` is ambiguous (Django would silently keep the last value), so it is rejected.
    """

    def clean(self) -> dict:
        cleaned = super().clean()
        if hasattr(self.data, "getlist"):
            for name in self.fields:
                if len(self.data.getlist(name)) > 1:
                    self.add_error(name, "Give this parameter only once.")
        return cleaned


class CallbackForm(QueryForm):
    """Klaviyo's redirect to /authorize: ``code`` + ``state``, or ``error`` + ``state``."""

    code = forms.CharField(required=False, max_length=2048, validators=[_PRINTABLE_ASCII])
    state = forms.CharField(
        required=False, max_length=128, validators=[RegexValidator(r"^[A-Za-z0-9_\-]*\Z", "Malformed state.")]
    )
    error = forms.CharField(
        required=False, max_length=64, validators=[RegexValidator(r"^[a-z_]*\Z", "Malformed error code.")]
    )
    error_description = forms.CharField(required=False, max_length=500)


class ProfilesQueryForm(QueryForm):
    """``?page_size=1..100`` and ``?cursor=`` (a cursor or Klaviyo's full ``links.next`` URL)."""

    page_size = forms.IntegerField(required=False, min_value=1, max_value=100)
    cursor = forms.CharField(required=False, max_length=4096, validators=[_PRINTABLE_ASCII])

    @classmethod
    def page(cls, query: QueryDict) -> tuple[int | None, str | None]:
        """``(page_size, cursor)`` from the query string, or InvalidInput (a 400).

        Without a query string there is nothing to validate: building the form would cost
        more than the rest of a /profiles view around the call to Klaviyo.
        """
        if not query:
            return None, None
        form = cls(query)
        if not form.is_valid():
            raise InvalidInput(first_error(form))
        return form.cleaned_data["page_size"], form.cleaned_data["cursor"]

    def clean_cursor(self) -> str | None:
        """The bare cursor, also when Klaviyo's whole ``links.next`` URL was given."""
        value: str = self.cleaned_data["cursor"]
        if not value:
            return None
        try:
            cursor = page_cursor(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        # A URL is percent-encoded; the cursor inside it must be printable ASCII once decoded.
        if not re.match(_PRINTABLE_ASCII_PATTERN, cursor):
            raise ValidationError("The URL's page[cursor] may contain only printable ASCII characters.")
        return cursor


class ConnectForm(forms.Form):
    """The landing page's ``?customer=`` box: which customer identifier to connect."""

    customer = forms.CharField(label="Customer identifier", max_length=CUSTOMER_IDENTIFIER_MAX_LENGTH)

    def clean_customer(self) -> str:
        value: str = self.cleaned_data["customer"]
        try:
            return validate_customer_identifier(value)
        except InvalidCustomerIdentifier as exc:
            raise forms.ValidationError(str(exc)) from exc


def first_error(form: forms.Form) -> str:
    """One readable line describing what is wrong with ``form``'s input."""
    for name, errors in form.errors.items():
        return f"{name}: {errors[0]}"
    return "invalid input"
