"""Klaviyo's API revisions: the one list the sandbox accepts in the ``revision`` header.

Stable revisions are the ``info.version`` of every published ``openapi/stable.json`` in
github.com/klaviyo/openapi (2022-10-17 to 2026-07-15), plus 2026-10-15, which the
``klaviyo-api`` Python SDK 25.0.0 (PyPI) sends. Beta revisions (``YYYY-MM-DD.pre``) are the
``info.version`` of every ``openapi/beta.json`` there, plus 2026-10-15.pre, named by
Klaviyo's API reference. Klaviyo answers 400 to a missing, malformed or unknown revision.
"""

from __future__ import annotations

import re

from klaviyo_sandbox.exceptions import APIError, invalid

STABLE: tuple[str, ...] = (
    "2022-10-17", "2023-01-24", "2023-02-22", "2023-06-15", "2023-07-15", "2023-08-15", "2023-09-15",
    "2023-10-15", "2023-12-15", "2024-02-15", "2024-05-15", "2024-06-15", "2024-07-15", "2024-10-15",
    "2025-01-15", "2025-04-15", "2025-07-15", "2025-10-15", "2026-01-15", "2026-04-15", "2026-07-15",
    "2026-10-15",
)  # fmt: skip
BETA: tuple[str, ...] = (
    "2022-11-14.pre", "2022-12-15.pre", "2023-01-25.pre", "2023-08-15.pre", "2025-01-15.pre", "2025-04-15.pre",
    "2025-07-15.pre", "2026-01-15.pre", "2026-04-15.pre", "2026-07-15.pre", "2026-10-15.pre",
)  # fmt: skip
KNOWN: frozenset[str] = frozenset(STABLE + BETA)
LATEST = STABLE[-1]
# The documented format: YYYY-MM-DD, optionally with a suffix such as ".pre".
_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}(\.[a-z]+)?")


def _invalid(detail: str) -> APIError:
    return invalid(detail, parameter="revision")


def check(revision: str | None) -> str:
    """The revision, if Klaviyo knows it. Raises APIError (400) when missing, malformed or unknown."""
    if not revision:
        raise _invalid(f"The revision header is required (e.g. revision: {LATEST}).")
    if not _FORMAT.fullmatch(revision):
        raise _invalid("The revision header must look like YYYY-MM-DD (or YYYY-MM-DD.pre for a beta).")
    if revision not in KNOWN:
        raise _invalid(f"{revision} is not a Klaviyo API revision (the latest is {LATEST}).")
    return revision
