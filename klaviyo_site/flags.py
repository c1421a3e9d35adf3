"""The words the example site takes for true and false in its environment (settings.py and
gunicorn.conf.py read the same ones)."""

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
