"""Conformance of the sandbox to Klaviyo's OpenAPI description, checked with schemathesis.

Every operation of klaviyo_sandbox/data/openapi/stable.json gets EXAMPLES requests
generated from its schemas (path, query and body), sent in-process to the project's WSGI
app (sandbox on, a fresh SQLite database, an access token holding every scope, rate
limiting off). Each answer is checked: a route answered it (no "There is no endpoint"),
no 5xx, its Content-Type and its body conform to the operation's responses.

    python .ci/conformance.py [--examples N] [--budget SECONDS] [--operation ID ...] [-v]

``CONFORMANCE_DUMP=PATH`` appends every request body sent to PATH, one JSON document a line.
Prints the counts and exits 1 when any of them is not zero. ``fields[...]`` answers leave
out attributes that were not asked for, as Klaviyo's do, so a schema failure of an answer
to a sparse-fieldset request is counted apart ("sparse fieldsets, as Klaviyo") and does
not fail the run.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REVISION = "2026-07-15"
_DETAIL = 1500  # characters of a failure's report shown by -v


def _setup(database: Path) -> str:
    """Configure Django on a new database; the access token of a grant holding every scope."""
    sys.path.insert(0, str(ROOT))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="klaviyo_site.settings",
        DEBUG="true",
        KLAVIYO_SANDBOX="true",
        KLAVIYO_CLIENT_ID="conformance-client",
        KLAVIYO_CLIENT_SECRET="conformance-secret",  # noqa: S106 (a throwaway sandbox app)
        DATABASE_URL=f"sqlite:///{database}",
        ALLOWED_HOSTS="localhost,testserver",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from klaviyo_sandbox.accounts import ACCOUNTS
    from klaviyo_sandbox.scopes import KNOWN_SCOPES
    from klaviyo_sandbox.services import issue_tokens

    settings.KLAVIYO_SANDBOX_RATE_LIMIT_SCALE = 0
    logging.disable(logging.WARNING)  # 4xx answers are expected by the hundred; server errors are counted
    settings.KLAVIYO_SANDBOX_JOB_DELAY = 0
    call_command("migrate", verbosity=0, interactive=False)
    return issue_tokens(account_id=ACCOUNTS[0].id, scopes=sorted(KNOWN_SCOPES)).access_token


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1, help="requests generated per operation (default 1)")
    parser.add_argument("--budget", type=float, default=0, help="stop starting operations after SECONDS (0: none)")
    parser.add_argument("--operation", action="append", default=[], help="only these operation ids")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every failure")
    options = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        token = _setup(Path(scratch) / "conformance.sqlite3")
        return _run(token, options)


def _run(token: str, options: argparse.Namespace) -> int:
    import schemathesis

    from klaviyo_sandbox import description
    from klaviyo_sandbox.accounts import ACCOUNTS
    from klaviyo_site.wsgi import application

    raw = json.loads(description.DESCRIPTION_PATH.read_text())
    raw["servers"] = [{"url": "http://localhost/sandbox"}]
    schema = schemathesis.openapi.from_dict(raw)
    # The example site refuses NUL characters in a plain-text 400 before any view runs (klaviyo_site.middleware).
    schema.config.generation.update(allow_x00=False)
    counts: Counter[str] = Counter()
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}", "revision": REVISION}
    sending = {"counts": counts, "options": options, "headers": headers, "app": application, "company": ACCOUNTS[0].id}

    for result in schema.get_all_operations():
        operation = result.ok()
        operation_id = operation.definition.raw.get("operationId", operation.label)
        if options.operation and operation_id not in options.operation:
            continue
        if options.budget and time.monotonic() - started > options.budget:
            counts["operations skipped (time budget)"] += 1
            continue
        counts["operations tried"] += 1

        _probe(operation, options.examples, functools.partial(_send, operation_id=operation_id, **sending))

    elapsed = time.monotonic() - started
    print(f"conformance: {elapsed:.0f} s, {options.examples} example(s) per operation")
    for key in ("operations tried", "operations skipped (time budget)", "requests", "2xx answers", "4xx answers"):
        print(f"  {key}: {counts[key]}")
    failing = ("no such endpoint", "server errors", "content type failures", "schema failures")
    excused = (
        "sparse fieldsets, as Klaviyo",
        "null links, as Klaviyo",
        "objects no answer can satisfy (oneOf of open objects)",
    )
    for key in (*failing, *excused):
        print(f"  {key}: {counts[key]}")
    return 1 if any(counts[key] for key in failing) or not counts["operations tried"] else 0


def _probe(operation: Any, examples: int, send: Callable[[Any], None]) -> None:
    """Send ``examples`` requests generated from ``operation``'s schemas."""
    import hypothesis

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy())
    def probe(case: Any) -> None:
        send(case)

    probe()


def _send(
    case: Any,
    *,
    operation_id: str,
    counts: Counter[str],
    options: argparse.Namespace,
    headers: dict[str, str],
    app: Any,
    company: str,
) -> None:
    """Send one case to the app and count what its answer was."""
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

    if case.operation.path.startswith("/client/"):
        case.query = {**(case.query or {}), "company_id": company}
    response = case.call(app=app, headers=headers)
    if os.environ.get("CONFORMANCE_DUMP"):
        with Path(os.environ["CONFORMANCE_DUMP"]).open("a") as dump:
            dump.write(json.dumps(case.body, default=str) + "\n")
    counts["requests"] += 1
    counts[f"{response.status_code // 100}xx answers"] += 1
    text = response.text
    if response.status_code == 404 and "There is no endpoint" in text:
        counts["no such endpoint"] += 1
        _report(options, operation_id, "no such endpoint", text)
    if response.status_code >= 500:
        counts["server errors"] += 1
        _report(options, operation_id, f"{response.status_code}", text)
    for name, check in (("content type", content_type_conformance), ("schema", response_schema_conformance)):
        try:
            case.validate_response(response, checks=[check])
        except FailureGroup as failures:
            sparse = any(key.startswith("fields[") for key in (case.query or {}))
            kinds = {_excused(str(failure), sparse=sparse) for failure in failures.exceptions}
            label = f"{name} failures" if name != "schema" or None in kinds else sorted(kinds)[0]
            counts[label] += 1
            if label.endswith("failures"):
                _report(options, operation_id, name, f"{str(failures)[:_DETAIL]}\n{text[:800]}")


def _excused(failure: str, *, sparse: bool) -> str | None:
    """The difference Klaviyo's own answers have too, if ``failure`` is one (None: a real failure).

    ``links.next``/``prev`` are null in recorded answers (the description says string), and a
    sparse fieldset leaves out attributes the description marks required (and a dotted name such as
    ``definition.data`` answers part of an object). A few oneOf in the
    description cannot be satisfied by any object."""
    if "null is not of type" in failure and "CollectionLinks/properties/" in failure:
        return "null links, as Klaviyo"
    if sparse and ("is a required property" in failure or "/properties/attributes/properties/" in failure):
        return "sparse fieldsets, as Klaviyo"
    if "is valid under more than one of the schemas listed in the 'oneOf' keyword" in failure:
        # e.g. EmailContentSubObject and SMSContentSubObject: objects that allow any member, so every
        # object is valid under both and no answer, Klaviyo's included, can satisfy the oneOf.
        return "objects no answer can satisfy (oneOf of open objects)"
    return None


def _report(options: argparse.Namespace, operation_id: str, what: str, detail: str) -> None:
    if options.verbose:
        print(f"--- {operation_id}: {what}\n{detail}\n", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
