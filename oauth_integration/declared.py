"""Settings declared once: each app's defaults, numeric ranges and choices, read and checked here.

An app declares its settings as one ``DeclaredSettings`` (``oauth_integration/conf.py``,
``klaviyo_sandbox/conf.py``). From that declaration come:

* the value in use (``value``): ``django.conf.settings``, read on every access (so
  ``override_settings`` and pytest-django's ``settings`` fixture apply at once), or the
  default when the name is missing, ``None`` or empty;
* what is wrong with a value (``problem``), for the app's system check; messages name the
  setting, never its value;
* the number in use (``number``): a value of the wrong type takes the default, one out of
  range takes the default or, with ``clamp``, the nearest bound;
* how the example site reads each name from the environment (``kinds``): the type of its
  default, so a new setting is declared in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings

Number = type[int] | type[float]


class DeclaredSettings:
    def __init__(
        self,
        defaults: Mapping[str, Any],
        numbers: Mapping[str, tuple[Number, float, float | None]] | None = None,
        choices: Mapping[str, tuple[str, ...]] | None = None,
        *,
        clamp: bool = False,
    ) -> None:
        self.defaults = dict(defaults)
        self.numbers = dict(numbers or {})  # name: (type, smallest, largest or None)
        self.choices = dict(choices or {})
        self.clamp = clamp  # out of range: the nearest bound (True) or the default (False)

    def value(self, name: str) -> Any:
        """The configured value of ``name``, or its default when missing, ``None`` or empty."""
        value = getattr(settings, name, None)
        return self.defaults[name] if value is None or value == "" else value

    def problem(self, name: str, value: object) -> str | None:
        """Why ``value`` is not acceptable for ``name`` (None when it is)."""
        default = self.defaults[name]
        if name in self.numbers:
            kind, minimum, maximum = self.numbers[name]
            if not _number_like(kind, value) or not minimum <= value <= _upper(maximum):  # type: ignore[operator]
                noun = "an integer" if kind is int else "a number"
                bounds = f">= {minimum:g}" if maximum is None else f"between {minimum:g} and {maximum:g}"
                return f"{name} must be {noun} {bounds}"
        elif name in self.choices:
            if value not in self.choices[name]:
                return f"{name} must be one of: {', '.join(self.choices[name])}"
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                return f"{name} must be true or false"
        elif isinstance(default, str) and not isinstance(value, str):
            return f"{name} must be text"
        return None

    def problems(self, names: Any = None) -> list[str]:
        """The problem of every declared setting (or of ``names``) whose value in use has one."""
        return [found for name in (self.defaults if names is None else names) if (found := self.check(name))]

    def check(self, name: str) -> str | None:
        return self.problem(name, self.value(name))

    def number(self, name: str) -> Any:
        """The number in use: the default for a wrong type; out of range, the default or the nearest bound."""
        value = self.value(name)
        kind, minimum, maximum = self.numbers[name]
        if not _number_like(kind, value):
            return self.defaults[name]
        if minimum <= value <= _upper(maximum):
            return value
        if not self.clamp:
            return self.defaults[name]
        value = max(minimum, value)
        return value if maximum is None else min(maximum, value)

    def choice(self, name: str) -> Any:
        value = self.value(name)
        return value if value in self.choices[name] else self.defaults[name]

    def flag(self, name: str) -> bool:
        value = self.value(name)
        return value if isinstance(value, bool) else self.defaults[name]

    def kinds(self) -> dict[str, str]:
        """How each name is read from the environment: ``str``, ``int``, ``float``, ``bool`` or ``list``."""
        return {name: self._kind(name, default) for name, default in self.defaults.items()}

    def _kind(self, name: str, default: object) -> str:
        if name in self.numbers:
            return "int" if self.numbers[name][0] is int else "float"
        if isinstance(default, bool):
            return "bool"
        if isinstance(default, tuple | list):
            return "list"
        if isinstance(default, int | float):
            return type(default).__name__
        return "str"


def _number_like(kind: Number, value: object) -> bool:
    acceptable = (int,) if kind is int else (int, float)
    return not isinstance(value, bool) and isinstance(value, acceptable)


def _upper(maximum: float | None) -> float:
    return math.inf if maximum is None else maximum
