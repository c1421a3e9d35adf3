"""The sandbox's settings: defaults defined once, every value checked by one system check."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks

from klaviyo_sandbox.conf import DEFAULTS, conf

ROOT = Path(__file__).resolve().parents[2]

# Under Django 6 run_checks() without databases= runs the model checks against every
# configured database (a JSONField asks whether the database supports JSON).
pytestmark = pytest.mark.django_db


def check_messages():
    return [message for message in run_checks() if message.id.startswith("klaviyo_sandbox.")]


def test_the_sandbox_without_debug_is_a_check_error(settings):
    settings.DEBUG = False
    errors = [message for message in check_messages() if message.id == "klaviyo_sandbox.E002"]
    assert [message.is_serious() for message in errors] == [True]
    settings.DEBUG = True
    assert "klaviyo_sandbox.E002" not in {message.id for message in check_messages()}
    settings.DEBUG = False
    settings.KLAVIYO_SANDBOX = False
    assert "klaviyo_sandbox.E002" not in {message.id for message in check_messages()}


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("KLAVIYO_SANDBOX_API_FAILURE_RATE", 1.5, "must be a number between 0 and 1"),
        ("KLAVIYO_SANDBOX_API_FAILURE_RATE", "half", "must be a number between 0 and 1"),
        ("KLAVIYO_SANDBOX_REFRESH_FAILURE", "500", "must be one of: 503, invalid_grant"),
        ("KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME", 0, "must be an integer >= 1"),
        ("KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME", 2.5, "must be an integer >= 1"),
        ("KLAVIYO_SANDBOX_RATE_LIMIT_SCALE", -1, "must be a number >= 0"),
        ("KLAVIYO_SANDBOX_FAIL_REFRESHES", True, "must be an integer >= 0"),
        ("KLAVIYO_SANDBOX_REFRESH_DELAY", 61, "must be a number between 0 and 60"),
        ("KLAVIYO_SANDBOX_API_DELAY", -0.5, "must be a number between 0 and 60"),
        ("KLAVIYO_SANDBOX_JOB_DELAY", 3601, "must be a number between 0 and 3600"),
        ("KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS", "yes", "must be true or false"),
        ("KLAVIYO_SANDBOX_APP_NAME", 42, "must be text"),
    ],
)
def test_the_check_names_every_malformed_setting(settings, name, value, problem):
    setattr(settings, name, value)
    messages = [message.msg for message in check_messages() if message.id == "klaviyo_sandbox.E001"]
    assert messages == [f"Malformed sandbox setting: {name} {problem}."]


def test_the_defaults_pass_the_check_and_unset_or_empty_settings_take_them(settings):
    for name in DEFAULTS:
        setattr(settings, name, None)
    assert [message.id for message in check_messages() if message.id != "klaviyo_sandbox.E002"] == []
    settings.KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME = ""
    assert conf.access_token_lifetime == 3600
    assert conf.rate_limit_scale == 10
    assert conf.refresh_failure == "503"
    assert conf.refresh_delay == conf.api_delay == 0
    assert conf.app_name == "Klaviyo Connections (development app)"


def test_out_of_range_values_are_clamped_and_wrong_types_fall_back(settings):
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 1.5
    settings.KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME = "long"
    settings.KLAVIYO_SANDBOX_REFRESH_FAILURE = "500"
    assert conf.api_failure_rate == 1.0
    assert conf.access_token_lifetime == 3600
    assert conf.refresh_failure == "503"


def test_the_environment_feeds_every_sandbox_setting_and_malformed_values_are_reported():
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("KLAVIYO_")},
        "DEBUG": "true",
        "KLAVIYO_SANDBOX": "true",
        "KLAVIYO_SANDBOX_RATE_LIMIT_SCALE": "0.5",
        "KLAVIYO_SANDBOX_REFRESH_DELAY": "soon",
    }
    code = (
        "import django; django.setup(); from klaviyo_sandbox.conf import conf; "
        "from django.conf import settings; print(conf.rate_limit_scale, settings.SETTINGS_ERRORS)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "klaviyo_site.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "0.5 ['KLAVIYO_SANDBOX_REFRESH_DELAY must be a number']"
