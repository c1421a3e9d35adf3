"""Query parameters checked against an operation of Klaviyo's description, for the generic engine.

``fields[...]``, ``additional-fields[...]`` and ``include`` against their ``enum``s, ``sort``
against its ``enum``, ``page[size]`` against its bounds, required parameters present, and
``filter`` against ``x-klaviyo-filters`` (each field's operators, list or single value,
value type). Every refusal is a 400 with ``source.parameter``. ``filter`` becomes a
predicate over a resource's values (``Values``: its id, attributes and relationships).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from klaviyo_sandbox import description, filters
from klaviyo_sandbox.exceptions import invalid

Values = Callable[[str], Any]  # a field name -> its value in one resource (None when it has none)
Predicate = Callable[[Values], bool]
_FAMILIES = re.compile(r"(fields|additional-fields|page)\[[^\]]*\]")


@dataclass(frozen=True, slots=True)
class Checked:
    """The query, checked: what the generic engine needs from it."""

    fields: Mapping[str, tuple[str, ...]]  # resource type -> attributes asked for
    additional: frozenset[str]
    include: tuple[str, ...]
    sort: str | None
    page_size: int
    cursor: str | None
    condition: Predicate


def _listed(raw: str) -> list[str]:
    return [value.strip() for value in raw.split(",")]


def check(operation: description.Operation, query: Mapping[str, str]) -> Checked:
    """The query of a call to ``operation``. Raises APIError 400 naming the parameter."""
    parameters = operation.parameters
    for name in query:
        if name not in parameters and (_FAMILIES.fullmatch(name) or name in ("include", "sort", "filter")):
            raise invalid(f"'{name}' is not a valid parameter for this endpoint.", parameter=name)
    fields: dict[str, tuple[str, ...]] = {}
    additional: set[str] = set()
    for name, parameter in parameters.items():
        raw = query.get(name)
        if raw is None:
            if parameter.get("required") and name != "company_id":
                raise invalid(f"The parameter '{name}' is required.", parameter=name)
            continue
        schema = description.resolve(parameter.get("schema"))
        if schema.get("type") == "array":
            allowed = description.resolve(schema.get("items")).get("enum")
            values = _listed(raw)
            bad = [value for value in values if not value or (allowed is not None and value not in allowed)]
            if bad:
                shown = ", ".join(repr(value) for value in bad)
                raise invalid(f"{shown} is not a valid value for '{name}'.", parameter=name)
            if name.startswith("fields["):
                fields[name[len("fields[") : -1]] = tuple(values)
            elif name.startswith("additional-fields["):
                additional.update(values)
        elif schema.get("type") == "integer":
            number = int(raw) if raw.isascii() and raw.lstrip("-").isdigit() and len(raw) < 10 else None
            low, high = schema.get("minimum"), schema.get("maximum")
            if number is None or (low is not None and number < low) or (high is not None and number > high):
                raise invalid(f"'{name}' must be an integer between {low} and {high}.", parameter=name)
        elif "enum" in schema and raw not in schema["enum"]:
            raise invalid(f"'{raw}' is not a valid value for '{name}'.", parameter=name)
    size_schema = description.resolve(parameters.get("page[size]", {}).get("schema"))
    page_size = int(query["page[size]"]) if "page[size]" in query else int(size_schema.get("default", 20))
    include = tuple(_listed(query["include"])) if "include" in query else ()
    condition = parse_filter(query["filter"], operation.filters) if "filter" in query else _always
    return Checked(
        fields=fields,
        additional=frozenset(additional),
        include=include,
        sort=query.get("sort"),
        page_size=page_size,
        cursor=query.get("page[cursor]"),
        condition=condition,
    )


def _always(values: Values) -> bool:
    return True


# --- filter ------------------------------------------------------------------------------------------

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": lambda have, want: have in want if isinstance(want, list) else have == want,
    "any": lambda have, want: have in want,
    "greater-than": lambda have, want: have is not None and have > want,
    "greater-or-equal": lambda have, want: have is not None and have >= want,
    "less-than": lambda have, want: have is not None and have < want,
    "less-or-equal": lambda have, want: have is not None and have <= want,
    "contains": lambda have, want: have is not None and want in have,
    "contains-any": lambda have, want: have is not None and any(item in have for item in want),
    "contains-all": lambda have, want: have is not None and all(item in have for item in want),
    "starts-with": lambda have, want: isinstance(have, str) and have.startswith(want),
    "ends-with": lambda have, want: isinstance(have, str) and have.endswith(want),
    "has": lambda have, want: bool(have),
}


def _bad(detail: str) -> Exception:
    return invalid(detail, parameter="filter")


def parse_filter(expression: str, allowed: Mapping[str, Any]) -> Predicate:
    """``expression`` as a predicate, checked against ``allowed`` (``x-klaviyo-filters``). Raises APIError 400."""
    if not allowed:
        raise _bad("This endpoint does not accept a filter.")
    tokens = filters.tokenize(expression)
    parser = _Parser(tokens, allowed)
    conditions = [parser.expression()]
    while parser.accept(","):
        conditions.append(parser.expression())
    if parser.position != len(tokens):
        raise _bad(f"Unexpected {tokens[parser.position][1]!r} in the filter.")
    return lambda values: all(condition(values) for condition in conditions)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], allowed: Mapping[str, Any]) -> None:
        self.tokens, self.allowed, self.position = tokens, allowed, 0

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

    def expression(self) -> Predicate:
        operator = self.word()
        self.expect("(")
        if operator in ("and", "or", "not"):
            parts = [self.expression()]
            while operator != "not" and self.accept(","):
                parts.append(self.expression())
            self.expect(")")
            if operator == "and":
                return lambda values: all(part(values) for part in parts)
            if operator == "or":
                return lambda values: any(part(values) for part in parts)
            return lambda values: not parts[0](values)
        if operator not in _OPERATORS:
            raise _bad(f"'{operator}' is not a supported filter operator.")
        name = self.word()
        spec = self.allowed.get(name)
        if spec is None:
            raise _bad(f"'{name}' is not a valid field for this endpoint's filter.")
        if operator == "has":
            if "has" not in spec["operators"].get("single", []):
                raise _bad(f"'has' is not a valid operator for '{name}'.")
            self.expect(")")
            return lambda values: _OPERATORS["has"](values(name), None)
        self.expect(",")
        raw = self.value()
        self.expect(")")
        kind = "list" if isinstance(raw, list) else "single"
        if operator not in spec["operators"].get(kind, []):
            allowed = sorted({op for ops in spec["operators"].values() for op in ops})
            what = "a list of values" if kind == "list" else "one value"
            raise _bad(f"'{operator}' with {what} is not valid for '{name}' (operators: {', '.join(allowed)}).")
        value_spec = spec.get("value", {})
        want = (
            [_convert(item, value_spec, name) for item in raw]
            if isinstance(raw, list)
            else _convert(raw, value_spec, name)
        )
        temporal = value_spec.get("format") == "date-time"
        test = _OPERATORS[operator]

        def predicate(values: Values) -> bool:
            have = values(name)
            if temporal and isinstance(have, str):
                have = filters.moment_of(have)
            try:
                return bool(test(have, want))
            except TypeError:
                return False

        return predicate

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
            return filters.Quoted(re.sub(r"\\(.)", r"\1", text[1:-1]))
        return text


def _convert(raw: Any, spec: Mapping[str, Any], name: str) -> Any:
    kind, form = spec.get("type", "string"), spec.get("format")
    if form == "date-time":
        moment: datetime | None = filters.moment_of(str(raw)) if isinstance(raw, str) else None
        if moment is None:
            raise _bad(f"The value for '{name}' must be a date and time, e.g. 2024-01-31T00:00:00Z.")
        return moment
    if kind == "string":
        if not isinstance(raw, filters.Quoted):
            raise _bad(f"The value for '{name}' must be a string in quotes, e.g. \"value\".")
        return str(raw)
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise _bad(f"The value for '{name}' must be true or false.")
        return raw == "true"
    if kind in ("integer", "number"):
        try:
            return int(raw) if kind == "integer" else float(raw)
        except ValueError as exc:
            raise _bad(f"The value for '{name}' must be a number.") from exc
    return str(raw)
