"""Klaviyo's ``filter`` query parameter: parsed, checked against an endpoint's fields, turned into a Q.

Grammar (Klaviyo's JSON:API filtering)::

    filter     := expression ("," expression)*          several expressions: all must hold
    expression := "and(" expression ("," expression)* ")"
                | operator "(" field "," value ")"
    value      := "string" | 'string' | [value, ...] | datetime | number | true | false | null

Each endpoint names its fields, what each holds and which operators it allows (from
Klaviyo's OpenAPI description). Anything else is a 400 pointing at ``filter``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q
from django.utils.dateparse import parse_date, parse_datetime

from klaviyo_sandbox.exceptions import APIError, invalid

LOOKUPS = {
    "equals": "exact",
    "any": "in",
    "greater-than": "gt",
    "greater-or-equal": "gte",
    "less-than": "lt",
    "less-or-equal": "lte",
}
STRING, DATETIME, TIMESTAMP = "string", "datetime", "timestamp"
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<punct>[(),\[\]])
      | (?P<word>[^\s(),\[\]"']+)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Field:
    """A filterable field: the ORM lookup it reads, what its values are, the operators it allows."""

    lookup: str
    kind: str
    operators: frozenset[str]


def field(lookup: str, kind: str, *operators: str) -> Field:
    return Field(lookup=lookup, kind=kind, operators=frozenset(operators))


def parse(expression: str | None, fields: dict[str, Field], *, resource: str) -> Q:
    """The filter as a Q over the endpoint's queryset (an empty Q when there is none). Raises APIError 400."""
    if expression is None:
        return Q()
    tokens = tokenize(expression)
    parser = _Parser(tokens, fields, resource)
    conditions = [parser.expression()]
    while parser.accept(","):
        conditions.append(parser.expression())
    if parser.position != len(tokens):
        raise _bad(f"Unexpected {tokens[parser.position][1]!r} in the filter.")
    return _all(conditions)


def _bad(detail: str) -> APIError:
    return invalid(detail, parameter="filter")


def _all(conditions: list[Q]) -> Q:
    combined = Q()
    for condition in conditions:
        combined &= condition
    return combined


def tokenize(expression: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(expression.rstrip()):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise _bad(f"Invalid filter: cannot read it from character {position + 1} on.")
        kind = match.lastgroup or "word"
        tokens.append((kind, match.group(kind)))
        position = match.end()
    if not tokens:
        raise _bad("The filter is empty.")
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], fields: dict[str, Field], resource: str) -> None:
        self.tokens = tokens
        self.fields = fields
        self.resource = resource
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def accept(self, punctuation: str) -> bool:
        if self.peek() == ("punct", punctuation):
            self.position += 1
            return True
        return False

    def expect(self, punctuation: str) -> None:
        if not self.accept(punctuation):
            found = self.peek()
            raise _bad(f"Expected {punctuation!r} in the filter, found {found[1] if found else 'its end'!r}.")

    def word(self) -> str:
        token = self.peek()
        if token is None or token[0] != "word":
            raise _bad("Expected an operator or a field name in the filter.")
        self.position += 1
        return token[1]

    def expression(self) -> Q:
        operator = self.word()
        self.expect("(")
        if operator == "and":
            conditions = [self.expression()]
            while self.accept(","):
                conditions.append(self.expression())
            self.expect(")")
            return _all(conditions)
        if operator not in LOOKUPS:
            raise _bad(f"'{operator}' is not a supported filter operator.")
        name = self.word()
        spec = self.fields.get(name)
        if spec is None:
            raise _bad(f"'{name}' is not a valid field for the resource '{self.resource}'.")
        if operator not in spec.operators:
            allowed = ", ".join(sorted(spec.operators))
            raise _bad(f"'{operator}' is not a valid operator for '{name}' (allowed: {allowed}).")
        self.expect(",")
        raw = self.value()
        self.expect(")")
        if operator == "any":
            if not isinstance(raw, list) or not raw:
                raise _bad(f'any({name},...) needs a non-empty list of values, e.g. ["a","b"].')
            value: Any = [_convert(item, spec, name) for item in raw]
        else:
            value = _convert(raw, spec, name)
        return Q(**{f"{spec.lookup}__{LOOKUPS[operator]}": value})

    def value(self) -> Any:
        if self.accept("["):
            items = [] if self.accept("]") else [self.value()]
            if items:
                while self.accept(","):
                    items.append(self.value())
                self.expect("]")
            return items
        token = self.peek()
        if token is None or token[0] == "punct":
            raise _bad("Expected a value in the filter.")
        self.position += 1
        kind, text = token
        if kind == "string":
            return Quoted(re.sub(r"\\(.)", r"\1", text[1:-1]))
        return text


class Quoted(str):
    """A value written in quotes (a string), as opposed to a bare word (a date, number or keyword)."""


def _convert(raw: Any, spec: Field, name: str) -> Any:
    if spec.kind == STRING:
        if not isinstance(raw, Quoted):
            raise _bad(f"The value for '{name}' must be a string in quotes, e.g. \"value\".")
        return str(raw)
    if spec.kind == TIMESTAMP and isinstance(raw, str) and raw.isascii() and raw.isdigit():
        try:
            return datetime.fromtimestamp(int(raw), tz=UTC)
        except (ValueError, OverflowError, OSError) as exc:  # past the year 9999, or too many digits
            raise _bad(f"The value for '{name}' is not a timestamp in range, e.g. 1706659200.") from exc
    moment = moment_of(str(raw)) if isinstance(raw, str) else None
    if moment is None:
        raise _bad(f"The value for '{name}' must be a date and time, e.g. 2024-01-31T00:00:00Z.")
    return moment


def moment_of(text: str) -> datetime | None:
    """An ISO 8601 date and time (or date), in UTC when it names no offset; None when it is none."""
    try:
        moment = parse_datetime(text)
        if moment is None and (day := parse_date(text)) is not None:
            moment = datetime(day.year, day.month, day.day)
    except ValueError:
        return None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment
