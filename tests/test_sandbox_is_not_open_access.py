"""Sandbox mode (the imitation of Klaviyo) and open access (anyone may view and connect) are two
settings. Open access is honoured only while DEBUG is on; the sandbox with DEBUG off is a
system-check error, and relaxes no permission."""

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import grant_permissions
from tests.test_checks import _settings_of
from tests.test_deploy import manage, production_env

pytestmark = pytest.mark.django_db

ANONYMOUS_PROFILES = (
    "from django.test import Client; "
    "print(Client(secure=True, HTTP_HOST='127.0.0.1').get('/profiles/cust-a').status_code)"
)


@pytest.fixture
def sandbox_in_production(settings):
    """A stray KLAVIYO_SANDBOX=true next to real credentials, with DEBUG off."""
    settings.DEBUG = False
    settings.KLAVIYO_SANDBOX = True


def test_the_sandbox_without_debug_relaxes_no_permission(client, sandbox_in_production, make_connection):
    make_connection("cust-a")
    assert client.get("/profiles/cust-a").status_code == 401
    assert client.get("/start/cust-a").status_code == 403  # unsigned
    home = client.get("/")
    assert home.status_code == 200 and "cust-a" not in home.content.decode()  # the login page
    client.force_login(get_user_model().objects.create_user("nobody-special", is_staff=True))
    assert client.get("/profiles/cust-a").status_code == 403


def test_open_access_is_ignored_while_debug_is_off(client, settings, sandbox_in_production, make_connection):
    settings.KLAVIYO_OPEN_ACCESS = True
    make_connection("cust-a")
    assert client.get("/profiles/cust-a").status_code == 401
    assert client.get("/start/cust-a").status_code == 403


def test_open_access_in_debug_lets_anyone_view_without_the_sandbox(client, settings, make_connection):
    settings.DEBUG = True
    settings.KLAVIYO_OPEN_ACCESS = True
    assert client.get("/profiles/nobody").status_code == 404  # allowed: simply not connected
    settings.KLAVIYO_OPEN_ACCESS = False
    assert client.get("/profiles/nobody").status_code == 401
    client.force_login(grant_permissions(get_user_model().objects.create_user("viewer"), "view_oauthtoken"))
    assert client.get("/profiles/nobody").status_code == 404


def test_check_deploy_fails_when_the_sandbox_is_on_with_debug_off(tmp_path):
    result = manage(production_env(tmp_path, KLAVIYO_SANDBOX="true"), "check", "--deploy")
    assert result.returncode != 0
    assert "klaviyo_sandbox.E002" in result.stderr


def test_a_stray_sandbox_setting_in_production_serves_no_profiles_to_anonymous_visitors(tmp_path):
    env = production_env(tmp_path, KLAVIYO_SANDBOX="true")
    assert manage(env, "migrate", "--no-input", "--skip-checks").returncode == 0
    result = manage(env, "shell", "--verbosity", "0", "-c", ANONYMOUS_PROFILES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "401"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "true"}, "(True, True)"),  # make run: no credentials, so the sandbox, and no login needed
        ({"DEBUG": "true", "KLAVIYO_OPEN_ACCESS": "false"}, "(True, False)"),
        ({"DEBUG": "true", "KLAVIYO_CLIENT_ID": "id", "KLAVIYO_CLIENT_SECRET": "secret"}, "(False, False)"),
        ({"DEBUG": "false", "KLAVIYO_SANDBOX": "true"}, "(True, False)"),
    ],
)
def test_the_example_site_opens_access_by_default_only_in_sandbox_mode_with_debug(env, expected):
    printed = _settings_of("settings.KLAVIYO_SANDBOX, settings.KLAVIYO_OPEN_ACCESS", SECRET_KEY="x" * 50, **env)
    assert printed == expected
