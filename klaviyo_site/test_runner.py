"""Make ``python manage.py test`` run the same pytest suite as ``make test``."""

from __future__ import annotations

import sys
from typing import Any


class PytestTestRunner:
    """Runs pytest (per pytest-django's documentation for ``manage.py test``)."""

    def __init__(self, verbosity: int = 1, failfast: bool = False, keepdb: bool = False, **kwargs: Any) -> None:
        self.verbosity = verbosity
        self.failfast = failfast
        self.keepdb = keepdb

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        parser.add_argument("--keepdb", action="store_true", help="Preserves the test DB between runs.")

    def run_tests(self, test_labels: list[str], **kwargs: Any) -> int:
        import pytest

        argv = []
        if self.verbosity == 0:
            argv.append("--quiet")
        elif self.verbosity >= 2:
            argv.append("--verbose")
        if self.failfast:
            argv.append("--exitfirst")
        if self.keepdb:
            argv.append("--reuse-db")
        argv.extend(test_labels)
        sys.exit(pytest.main(argv))
