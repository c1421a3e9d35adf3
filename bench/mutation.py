"""``python -m bench.mutation``: put one small bug at a time into the code and see whether the tests notice.

Each mutant below names a file, an exact piece of its text, the text that replaces it (a bug an
honest change could introduce), and the test files that ought to fail because of it. The run:

1. copies the project's files (tracked, and new ones git does not ignore) into a temporary folder;
2. runs the named test files of every mutant once, unchanged: they must pass, or nothing is judged;
3. for each mutant, writes the mutated file, runs its tests (``pytest -x``), and puts the file back.

A mutant is **caught** when its tests fail, **survived** when they pass, and **stale** when its text
is no longer found exactly once (the code moved on: the table needs updating). The exit status is 1
when any mutant survived or is stale. The database is the one the suite would use (SQLite unless
``DATABASE_URL`` names another); the project's own tree is never written.

    .venv/bin/python -m bench.mutation                      # every mutant (about 10 minutes here)
    .venv/bin/python -m bench.mutation --only decrypt-cache-without-context,metrics-token-suffix
    .venv/bin/python -m bench.mutation --list
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 900  # seconds one mutant's tests may take


@dataclass(frozen=True)
class Mutant:
    """One small bug: ``find`` (exactly once in ``path``) becomes ``replace``; ``tests`` should then fail."""

    name: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]


MUTANTS: tuple[Mutant, ...] = (
    # --- the core flows -------------------------------------------------------------------
    Mutant(
        "lease-claimed-while-held",
        "oauth_integration/models/connections.py",
        ".filter(Q(refresh_lease_until__isnull=True) | Q(refresh_lease_until__lt=now))",
        "",
        ("tests/test_single_flight.py", "tests/test_services.py"),
    ),
    Mutant(
        "pkce-verifier-not-sent",
        "oauth_integration/klaviyo/client.py",
        '"code_verifier": code_verifier,',
        "",
        ("tests/test_klaviyo.py", "tests/test_views.py"),
    ),
    Mutant(
        "ciphertext-not-bound-to-its-row",
        "oauth_integration/crypto.py",
        'sealed = ring.ciphers[ring.current_id].encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))',
        'sealed = ring.ciphers[ring.current_id].encrypt(nonce, plaintext.encode("utf-8"), None)',
        ("tests/test_fields.py", "tests/test_crypto.py"),
    ),
    Mutant(
        "profiles-without-permission-check",
        "oauth_integration/views.py",
        "    access.require(request.user, access.VIEW_CONNECTIONS)\n"
        "    validate_customer_identifier(customer_identifier)",
        "    validate_customer_identifier(customer_identifier)",
        ("tests/test_permissions.py",),
    ),
    Mutant(
        "write-retried-after-a-server-error",
        "oauth_integration/klaviyo/transport.py",
        "if status_code == 429 and status_code in (self.status_forcelist or ()):",
        "if status_code in (self.status_forcelist or ()):",
        ("tests/test_calls.py",),
    ),
    Mutant(
        "401-retried-without-a-refresh",
        "oauth_integration/services/calls.py",
        "    connection = fresh_connection(customer_identifier, rejected_version=connection.version)\n    try:",
        "    connection = fresh_connection(customer_identifier)\n    try:",
        ("tests/test_services.py", "tests/test_calls.py"),
    ),
    Mutant(
        "start-link-used-twice",
        "oauth_integration/services/connect.py",
        "if link.link_id and not UsedStartLink.objects.use(",
        "if link.link_id and False and not UsedStartLink.objects.use(",
        ("tests/test_start_links.py",),
    ),
    Mutant(
        "return-url-any-host",
        "oauth_integration/links.py",
        "return url_has_allowed_host_and_scheme(url, allowed_hosts=hosts, require_https=conf.https)",
        "return not urlsplit(url).netloc or urlsplit(url).netloc in hosts",
        ("tests/test_return_url.py",),
    ),
    Mutant(
        "disconnect-without-revoke",
        "oauth_integration/services/connect.py",
        "            klaviyo.revoke(refresh_token=refresh_token)\n",
        "            pass\n",
        ("tests/test_services.py", "tests/test_admin.py"),
    ),
    Mutant(
        "rotated-refresh-token-dropped",
        "oauth_integration/services/refresh.py",
        'values["refresh_token"] = grant.refresh_token',
        "pass",
        ("tests/test_services.py",),
    ),
    # --- the hand-written fast paths and defences (review of 2026-12-07: its 8 survivors) ---
    Mutant(
        "state-take-ignores-who-deleted-it",
        "oauth_integration/models/pending.py",
        "if pending is None or self.filter(pk=pending.pk).delete()[0] != 1:",
        "if pending is None or self.filter(pk=pending.pk).delete() is None:",
        ("tests/test_races.py",),
    ),
    Mutant(
        "decrypt-cache-without-context",
        "oauth_integration/crypto.py",
        "    return _open(kid, payload, context)",
        '    return (c := globals().setdefault("_C", {})).get((kid, payload))'
        " or c.setdefault((kid, payload), _open(kid, payload, context))",
        ("tests/test_fields.py",),
    ),
    Mutant(
        "metrics-token-suffix",
        "oauth_integration/views.py",
        'if not token or not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):',
        "if not token or not given.endswith(token):",
        ("tests/test_observability.py",),
    ),
    Mutant(
        "metrics-empty-token",
        "oauth_integration/views.py",
        'if not token or not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):',
        'if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):',
        ("tests/test_observability.py",),
    ),
    Mutant(
        "session-cookie-policy-removed",
        "oauth_integration/klaviyo/transport.py",
        "        self.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))",
        "        pass",
        ("tests/test_klaviyo.py",),
    ),
    Mutant(
        "send-through-the-cookie-jar",
        "oauth_integration/klaviyo/transport.py",
        "response = session.get_adapter(url).send(prepared, timeout",
        "response = session.send(prepared, allow_redirects=False, timeout",
        ("tests/test_klaviyo.py",),
    ),
    Mutant(
        "closed-pool-reused",
        "oauth_integration/klaviyo/transport.py",
        "if pool is None or pool.pool is None:",
        "if pool is None:",
        ("tests/test_klaviyo.py",),
    ),
    Mutant(
        "users-cached-across-requests",
        "klaviyo_site/settings.py",
        '    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"\n',
        '    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"\n'
        '    AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.AllowAllUsersModelBackend"]\n',
        ("tests/test_access_reflects_database.py",),
    ),
    Mutant(
        "permission-through-groups-ignored",
        "oauth_integration/auth.py",
        'f" OR EXISTS (SELECT 1 FROM {quote(membership.m2m_db_table())} ug"',
        'f" AND EXISTS (SELECT 1 FROM {quote(membership.m2m_db_table())} ug"',
        ("tests/test_auth_backend.py",),
    ),
    Mutant(
        "inactive-user-holds-permissions",
        "oauth_integration/auth.py",
        "if not user_obj.is_active or user_obj.is_anonymous or obj is not None:",
        "if user_obj.is_anonymous or obj is not None:",
        ("tests/test_auth_backend.py",),
    ),
    Mutant(
        "superuser-holds-permissions-that-do-not-exist",
        "oauth_integration/auth.py",
        "                cursor.execute(exists, [app_label, codename])",
        "                return True",
        ("tests/test_auth_backend.py",),
    ),
    Mutant(
        "inactive-user-logged-in",
        "oauth_integration/auth.py",
        "return user if self.user_can_authenticate(user) else None",
        "return user",
        ("tests/test_auth_backend.py", "tests/test_access_reflects_database.py"),
    ),
    Mutant(
        "row-values-not-converted",
        "oauth_integration/models/rows.py",
        "            found = convert(found, expression, connection)\n",
        "            pass\n",
        ("tests/test_auth_backend.py", "tests/test_services.py"),
    ),
    # --- the findings of the audit of 2026-12-07 ------------------------------------------
    Mutant(
        "repeatable-write-not-retried",
        "oauth_integration/klaviyo/transport.py",
        "allowed_methods=IDEMPOTENT_METHODS | REPEATABLE_WRITES if repeatable else IDEMPOTENT_METHODS,",
        "allowed_methods=IDEMPOTENT_METHODS,",
        ("tests/test_calls.py",),
    ),
    Mutant(
        "api-path-not-checked",
        "oauth_integration/klaviyo/transport.py",
        "if not path.startswith(API_PREFIX):",
        "if False:",
        ("tests/test_calls.py", "tests/test_klaviyo.py"),
    ),
    Mutant(
        "retry-never-sleeps",
        "oauth_integration/klaviyo/transport.py",
        "            time.sleep(self.planned_wait)",
        "            pass",
        ("tests/test_klaviyo.py",),
    ),
    Mutant(
        "paging-without-cycle-check",
        "oauth_integration/services/calls.py",
        "if frozenset(next_params.items()) in seen:",
        "if False:",
        ("tests/test_calls.py", "tests/test_services.py"),
    ),
    Mutant(
        "refresh-with-the-new-token-under-the-old-lease",
        "oauth_integration/services/refresh.py",
        "if latest is None or latest.version != connection.version:",
        "if latest is None:",
        ("tests/test_races.py", "tests/test_services.py"),
    ),
    Mutant(
        "foreign-browser-state-kept",
        "oauth_integration/services/connect.py",
        "    pending = PkceCode.objects.take(state)\n",
        "    peek = PkceCode.objects.filter(state_hash=pkce.digest(state)).first()\n"
        "    if peek is not None and (browser_binding is None or "
        "peek.browser_binding_hash != pkce.digest(browser_binding)):\n"
        '        raise AuthorizationStateError("This authorization was started in a different browser session.")\n'
        "    pending = PkceCode.objects.take(state)\n",
        ("tests/test_views.py", "tests/test_bad_input.py"),
    ),
    Mutant(
        "return-url-control-characters",
        "oauth_integration/links.py",
        "len(url) > RETURN_URL_MAX_LENGTH or _CONTROL_CHARACTERS.search(url):",
        "len(url) > RETURN_URL_MAX_LENGTH:",
        ("tests/test_return_url.py",),
    ),
    Mutant(
        "access-log-path-unescaped",
        "oauth_integration/gunicorn.py",
        'path = escaped(self._mask(environ.get("PATH_INFO", "-")))',
        'path = self._mask(environ.get("PATH_INFO", "-"))',
        ("tests/test_deploy.py::test_gunicorn_access_lines_escape_what_the_client_sent",),
    ),
    Mutant(
        "metrics-directory-group-writable",
        "oauth_integration/serving.py",
        "if found.st_mode & 0o022:",
        "if found.st_mode & 0o002:",
        (
            "tests/test_deploy.py::test_gunicorn_refuses_a_named_metrics_directory_others_could_write_to",
            "tests/test_serve.py::test_granian_refuses_a_named_metrics_directory_others_could_write_to",
        ),
    ),
    Mutant(
        "granian-access-path-unescaped",
        "klaviyo_site/serve.py",
        'path = escaped(self._mask(str(fields.get("path", "-"))))',
        'path = self._mask(str(fields.get("path", "-")))',
        ("tests/test_serve.py::test_granian_access_lines_escape_what_the_client_sent",),
    ),
    Mutant(
        "granian-shares-a-taken-port",
        "klaviyo_site/serve.py",
        "        serving.refuse_taken_address(host, port)\n",
        "",
        ("tests/test_serve.py::test_a_second_granian_on_a_taken_port_stops_and_the_first_keeps_serving",),
    ),
    Mutant(
        "request-id-from-any-client",
        "oauth_integration/logs.py",
        'given = request.headers.get(REQUEST_ID_HEADER, "") if conf.request_id_from_proxy else ""',
        'given = request.headers.get(REQUEST_ID_HEADER, "")',
        ("tests/test_observability.py",),
    ),
    Mutant(
        "sandbox-opens-access",
        "oauth_integration/access.py",
        "return conf.open_access or user.has_perm(permission)",
        "return conf.sandbox or user.has_perm(permission)",
        ("tests/test_sandbox_is_not_open_access.py",),
    ),
    Mutant(
        "open-access-without-debug",
        "oauth_integration/conf.py",
        'return bool(setting("KLAVIYO_OPEN_ACCESS")) and self.debug',
        'return bool(setting("KLAVIYO_OPEN_ACCESS"))',
        ("tests/test_sandbox_is_not_open_access.py",),
    ),
)


def project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],  # noqa: S607 (git from PATH)
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return [name.decode() for name in listed if name and (ROOT / name.decode()).is_file()]


def copy_project(target: Path) -> None:
    for name in project_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)


def pytest(tree: Path, tests: tuple[str, ...]) -> int:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        completed = subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
            command, cwd=tree, capture_output=True, timeout=TIMEOUT, check=False, env=os.environ.copy()
        )
    except subprocess.TimeoutExpired:
        return -1
    return completed.returncode


def judge(tree: Path, mutant: Mutant) -> str:
    target = tree / mutant.path
    original = target.read_text()
    if original.count(mutant.find) != 1:
        return "stale"
    target.write_text(original.replace(mutant.find, mutant.replace))
    try:
        status = pytest(tree, mutant.tests)
    finally:
        target.write_text(original)
    if status == 0:
        return "survived"
    if status == 1:
        return "caught"
    return "caught (timeout)" if status == -1 else f"error (pytest exit {status})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated mutant names")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    args = parser.parse_args(argv)
    chosen = list(MUTANTS)
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {mutant.name for mutant in MUTANTS}
        if unknown:
            parser.error(f"no mutant named {', '.join(sorted(unknown))}")
        chosen = [mutant for mutant in MUTANTS if mutant.name in names]
    if args.list:
        for mutant in chosen:
            print(f"{mutant.name:45} {mutant.path}  ->  {' '.join(mutant.tests)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutation-") as folder:
        tree = Path(folder)
        copy_project(tree)
        suites = sorted({mutant.tests for mutant in chosen})
        print(f"{len(chosen)} mutants; first the {len(suites)} test selections unchanged", flush=True)
        for tests in suites:
            if pytest(tree, tests) != 0:
                print(f"the unchanged code fails {' '.join(tests)}: nothing judged", flush=True)
                return 2
        outcomes: dict[str, list[str]] = {}
        for mutant in chosen:
            begun = time.monotonic()
            outcome = judge(tree, mutant)
            outcomes.setdefault(outcome.split(" ")[0], []).append(mutant.name)
            print(f"{outcome:16} {mutant.name:45} {time.monotonic() - begun:6.1f} s", flush=True)
    counts = ", ".join(f"{len(names)} {outcome}" for outcome, names in sorted(outcomes.items()))
    print(f"mutants: {counts}")
    return 1 if outcomes.get("survived") or outcomes.get("stale") or outcomes.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
