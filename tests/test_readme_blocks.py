"""The README's host-project blocks, as .ci/readme_blocks.py reads and applies them (CI runs them all)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("readme_blocks", ROOT / ".ci" / "readme_blocks.py")
readme_blocks = sys.modules.setdefault("readme_blocks", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(readme_blocks)

SECTION = readme_blocks.SECTION


def test_every_block_of_the_readme_section_is_marked_and_the_section_covers_what_a_host_needs():
    found = readme_blocks.blocks((ROOT / "README.md").read_text())
    applied = [(block.how, block.argument) for block in found if block.how != "skip"]
    assert ("append", "mysite/settings.py") in applied
    assert ("create", "mysite/urls.py") in applied
    assert ("create", "conftest.py") in applied
    assert ("cron", "") in applied
    assert ("shell", "") in applied
    assert ("serve", "") in applied
    texts = "".join(block.text for block in found)
    for needed in (
        '"oauth_integration"',
        'include("oauth_integration.urls")',
        "python manage.py migrate",
        "refresh_tokens",
        "purge_expired",
        "signals.connected",
        'pytest_plugins = ["oauth_integration.testing"]',
        "klaviyo_sandbox.connect(",
        "django_db(transaction=True)",
        "LOGIN_URL",
        "METRICS_TOKEN",
        "--config python:oauth_integration.gunicorn --workers 2",
    ):
        assert needed in texts, needed
    assert "klaviyo_site" not in texts


def readme(body):
    return f"# Project\n\n```sh\nnot in the section\n```\n\n{SECTION}\n\n{body}\n## Next\n\n```sh\nafter\n```\n"


def test_marked_blocks_are_read_in_order_with_how_to_apply_them():
    text = readme(
        "<!-- host-project: create a.py -->\n```python\nA = 1\n```\n\n"
        "<!-- host-project: skip: shown only -->\n\n```sh\npip install x\n```\n"
    )
    found = readme_blocks.blocks(text)
    assert [(b.how, b.argument, b.text) for b in found] == [
        ("create", "a.py", "A = 1\n"),
        ("skip", "shown only", "pip install x\n"),
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("```python\nA = 1\n```\n", "without a host-project marker"),
        ("<!-- host-project: run -->\nSome prose.\n```sh\nls\n```\n", "not directly before a code block"),
        ("<!-- host-project: run -->\n", "not directly before a code block"),
        ("<!-- host-project: run -->\n<!-- host-project: run -->\n```sh\nls\n```\n", "no code block after it"),
        ("<!-- host-project: run -->\n```sh\nls\n", "never ends"),
    ],
)
def test_an_unmarked_or_stray_block_is_an_error(body, problem):
    with pytest.raises(readme_blocks.ReadmeError, match=problem):
        readme_blocks.blocks(readme(body))


def test_a_marker_outside_the_section_is_an_error():
    text = "# Project\n\n<!-- host-project: run -->\n```sh\nls\n```\n\n" + readme("")
    with pytest.raises(readme_blocks.ReadmeError, match="outside the section"):
        readme_blocks.blocks(text)


def test_blocks_are_applied_to_the_project(tmp_path):
    (tmp_path / "settings.py").write_text("DEBUG = True\n")
    found = readme_blocks.blocks(
        readme(
            "<!-- host-project: append settings.py -->\n```python\nX = 1\n```\n"
            "<!-- host-project: create app/receivers.py -->\n```python\nY = 2\n```\n"
            "<!-- host-project: run -->\n```sh\n# a comment\necho ran > ran.txt\n```\n"
            "<!-- host-project: cron -->\n```\n*/5 * * * *  cd /srv/site && echo cron > cron.txt\n```\n"
        )
    )
    for block in found:
        readme_blocks.apply(block, tmp_path)
    assert (tmp_path / "settings.py").read_text() == "DEBUG = True\n\n\nX = 1\n"
    assert (tmp_path / "app" / "receivers.py").read_text() == "Y = 2\n"
    assert (tmp_path / "ran.txt").read_text() == "ran\n"
    assert (tmp_path / "cron.txt").read_text() == "cron\n"
    failing = readme_blocks.blocks(readme("<!-- host-project: run -->\n```sh\nfalse\n```\n"))[0]
    with pytest.raises(readme_blocks.ReadmeError, match="`false` exited with 1"):
        readme_blocks.apply(failing, tmp_path)
