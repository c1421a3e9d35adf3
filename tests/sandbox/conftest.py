"""Every sandbox test runs with the sandbox on and its knobs at known values."""

import pytest


@pytest.fixture(autouse=True)
def _sandbox_on(settings):
    settings.KLAVIYO_SANDBOX = True
    settings.KLAVIYO_SANDBOX_ACCESS_TOKEN_LIFETIME = 3600
    settings.KLAVIYO_SANDBOX_ROTATE_REFRESH_TOKENS = False
    settings.KLAVIYO_SANDBOX_RATE_LIMIT_SCALE = 10.0
    settings.KLAVIYO_SANDBOX_API_FAILURE_RATE = 0.0
    settings.KLAVIYO_SANDBOX_FAIL_REFRESHES = 0
    settings.KLAVIYO_SANDBOX_REFRESH_FAILURE = "503"
    settings.KLAVIYO_SANDBOX_REFRESH_DELAY = 0.0
    settings.KLAVIYO_SANDBOX_API_DELAY = 0.0
