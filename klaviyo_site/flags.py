"""How the example site reads its environment's flags and counts (settings.py, gunicorn.conf.py
and serve.py read the same words)."""

import os

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def parse_bool(raw: str) -> bool:
    """True or False for one of those words, in any case; ValueError for anything else: a typo
    must not switch a setting off silently."""
    word = raw.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise ValueError(raw)


def positive_int(name: str, default: int) -> int:
    """The positive integer in the environment variable ``name``, or ``default`` when it is unset
    or empty; ValueError (naming the variable) for anything else."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)
