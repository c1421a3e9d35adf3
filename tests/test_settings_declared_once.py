"""Each setting is declared once, in its app's conf (default, type, range): the example site reads
the environment by that declaration, and .env-sample and the README's tables name every one."""

import ast
import re
from pathlib import Path

import pytest

from klaviyo_sandbox.conf import SETTINGS as SANDBOX_SETTINGS
from oauth_integration.conf import SETTINGS as APP_SETTINGS
from oauth_integration.declared import DeclaredSettings
from tests.test_checks import _settings_of

ROOT = Path(__file__).resolve().parents[1]
DECLARED = {**APP_SETTINGS.kinds(), **SANDBOX_SETTINGS.kinds()}
# A value of each kind, as written in the environment, and as the settings module must read it.
SAMPLES = {
    "str": ("text", "text"),
    "int": ("7", 7),
    "float": ("0.5", 0.5),
    "bool": ("true", True),
    "list": ("a, b", ["a", "b"]),
}


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_every_declared_setting_is_in_the_env_sample_and_a_readme_table(name):
    assert re.search(rf"^(# )?{name}=", (ROOT / ".env-sample").read_text(), re.MULTILINE)
    assert re.search(rf"^\| [^\n]*`{name}`[^\n]*\|", (ROOT / "README.md").read_text(), re.MULTILINE)


def test_the_site_reads_every_declared_setting_from_the_environment_by_its_type():
    env = {name: SAMPLES[kind][0] for name, kind in DECLARED.items()}
    env.update(DEBUG="true", SECRET_KEY="x" * 50, TOKEN_ENCRYPTION_KEY_FALLBACKS="a, b")
    printed = _settings_of(f"{{name: getattr(settings, name) for name in {sorted(DECLARED)!r}}}", **env)
    assert ast.literal_eval(printed) == {name: SAMPLES[kind][1] for name, kind in DECLARED.items()}


def test_a_malformed_number_of_either_app_is_reported_by_name():
    numbers = [name for name, kind in DECLARED.items() if kind in ("int", "float")]
    printed = _settings_of("settings.SETTINGS_ERRORS", DEBUG="true", SECRET_KEY="x" * 50, **dict.fromkeys(numbers, "x"))
    reported = ast.literal_eval(printed)
    assert sorted(message.split()[0] for message in reported) == sorted(numbers)


def test_the_settings_module_names_no_declared_setting_itself():
    """A new setting needs its declaration only: the site's settings retype none of the names."""
    source = (ROOT / "klaviyo_site" / "settings.py").read_text()
    retyped = {name for name in DECLARED if re.search(rf'_env\("{name}"', source)}
    assert retyped == set()


def test_numbers_out_of_range_take_the_default_or_the_nearest_bound(settings):
    declared = DeclaredSettings({"A": 5, "B": 0.5}, {"A": (int, 1, None), "B": (float, 0, 1)})
    clamped = DeclaredSettings(declared.defaults, declared.numbers, clamp=True)
    settings.A, settings.B = 0, 1.5
    assert (declared.number("A"), declared.number("B")) == (5, 0.5)
    assert (clamped.number("A"), clamped.number("B")) == (1, 1)
    assert declared.problems() == ["A must be an integer >= 1", "B must be a number between 0 and 1"]
    settings.A, settings.B = True, "half"
    assert (clamped.number("A"), clamped.number("B")) == (5, 0.5)
    settings.A, settings.B = "", None
    assert (declared.number("A"), declared.number("B"), declared.problems()) == (5, 0.5, [])
