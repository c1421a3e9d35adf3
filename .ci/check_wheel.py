"""Check a built wheel against this checkout: both apps whole, nothing else, dependencies that cover their imports.

* every file of ``oauth_integration`` and ``klaviyo_sandbox`` that git tracks (modules,
  migrations, templates, static files, data) is in the wheel;
* nothing else is: no ``klaviyo_site``, ``tests`` or ``bench``;
* every third-party module the two apps import is provided by a ``Requires-Dist`` of the
  wheel, except ``pytest`` (``oauth_integration.testing`` imports it only when present),
  ``gunicorn`` (only gunicorn itself loads ``oauth_integration.gunicorn``) and ``klaviyo_api``
  (``oauth_integration.sdk``, the ``sdk`` extra).

Usage: python check_wheel.py WHEEL REPOSITORY
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGES = ("oauth_integration", "klaviyo_sandbox")
# Module imported -> the distribution that provides it.
DISTRIBUTIONS = {
    "django": "django",
    "cryptography": "cryptography",
    "requests": "requests",
    "urllib3": "urllib3",
    "prometheus_client": "prometheus-client",
    "pythonjsonlogger": "python-json-logger",
    "jsonschema": "jsonschema",
    "referencing": "referencing",
}
OPTIONAL = {
    "pytest",  # the test kit's fixture, defined only when pytest is importable
    "gunicorn",  # oauth_integration.gunicorn: hooks that only gunicorn imports
    "klaviyo_api",  # oauth_integration.sdk: Klaviyo's SDK, the optional extra klaviyo-django-oauth[sdk]
}


def tracked_files(repository: Path) -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", *PACKAGES], cwd=repository, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name for name in listed if "__pycache__" not in name}


def imported_modules(source: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def problems(wheel: Path, repository: Path) -> list[str]:
    found: list[str] = []
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        contents = [name for name in names if ".dist-info/" not in name]
        for missing in sorted(tracked_files(repository) - names):
            found.append(f"missing from the wheel: {missing}")
        for extra in sorted(name for name in contents if name.split("/")[0] not in PACKAGES):
            found.append(f"not part of the two apps, yet in the wheel: {extra}")
        metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
        requires = {
            normalized(re.split(r"[ ;<>=!~\[(]", line.removeprefix("Requires-Dist:").strip())[0])
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line
        }
        imports: set[str] = set()
        for name in contents:
            if name.endswith(".py"):
                imports |= imported_modules(archive.read(name).decode())
    third_party = imports - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"} - OPTIONAL
    for module in sorted(third_party):
        distribution = DISTRIBUTIONS.get(module)
        if distribution is None:
            found.append(f"the apps import {module!r}: add its distribution to DISTRIBUTIONS and to dependencies")
        elif distribution not in requires:
            found.append(f"the apps import {module!r} but {distribution} is not a dependency (Requires-Dist)")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    wheel, repository = Path(argv[1]), Path(argv[2])
    found = problems(wheel, repository)
    for problem in found:
        print(f"wheel: {problem}", file=sys.stderr)
    if found:
        return 1
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    for package in PACKAGES:
        kinds = {
            kind: sum(1 for name in names if name.startswith(f"{package}/{kind}/"))
            for kind in ("migrations", "templates", "static", "data")
        }
        print(f"{wheel.name}: {package}: " + ", ".join(f"{count} {kind}" for kind, count in kinds.items()))
    print(f"{wheel.name}: {len(names)} files, the two apps whole and nothing else; dependencies cover their imports")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
