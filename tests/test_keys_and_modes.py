"""No token key from a public placeholder; no plain-http callback while HTTPS is on."""

import pytest

from oauth_integration import checks, crypto
from oauth_integration.exceptions import EncryptionKeyError
from tests.test_deploy import manage, production_env


def ids(messages):
    return sorted(message.id for message in messages)


def test_no_token_key_is_derived_from_the_public_placeholder_secret_key(settings):
    settings.DEBUG = True
    settings.TOKEN_ENCRYPTION_KEY = ""
    settings.SECRET_KEY = settings.INSECURE_DEV_SECRET_KEY

    messages = checks.check_encryption_keys()

    assert ids(messages) == ["oauth_integration.E011"]
    assert "secrets.token_hex(32)" in messages[0].hint
    with pytest.raises(EncryptionKeyError, match=r"secrets\.token_hex"):
        crypto.encrypt("a refresh token", context="test")


def test_a_real_secret_key_may_still_stand_in_for_the_token_key_in_debug(settings):
    settings.DEBUG = True
    settings.TOKEN_ENCRYPTION_KEY = ""
    assert checks.check_encryption_keys() == []
    assert ids(checks.check_derived_encryption_key()) == ["oauth_integration.W001"]
    assert crypto.decrypt(crypto.encrypt("a refresh token", context="test"), context="test") == "a refresh token"


def test_the_placeholder_secret_key_is_an_error_in_debug_outside_sandbox_mode(settings):
    settings.DEBUG = True
    settings.SECRET_KEY = settings.INSECURE_DEV_SECRET_KEY
    assert ids(checks.check_secret_key()) == ["oauth_integration.E008"]
    settings.KLAVIYO_SANDBOX = True
    assert checks.check_secret_key() == []


def test_a_plain_http_redirect_url_is_an_error_while_https_is_on(settings):
    settings.SESSION_COOKIE_SECURE = True
    settings.KLAVIYO_REDIRECT_URL = "http://connect.example.com/authorize"
    assert ids(checks.check_klaviyo_settings()) == ["oauth_integration.E012"]
    settings.KLAVIYO_REDIRECT_URL = "https://connect.example.com/authorize"
    assert checks.check_klaviyo_settings() == []


def test_check_deploy_fails_with_a_plain_http_redirect_url(tmp_path):
    env = production_env(tmp_path, KLAVIYO_REDIRECT_URL="http://connect.example.com/authorize")
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "oauth_integration.E012" in result.stderr
