"""Klaviyo's error redirects: a fixed message per OAuth error code; the description is logged, never shown."""

import logging

import pytest

from oauth_integration.models import OAuthToken, PkceCode

pytestmark = pytest.mark.django_db

CRAFTED = "Your account is locked. Call +1 555 0100 or visit evil.example to restore access"


@pytest.mark.parametrize(
    ("error", "status", "shown"),
    [
        ("access_denied", 403, "access was denied"),
        ("server_error", 400, "Klaviyo had a problem"),
        ("temporarily_unavailable", 400, "Klaviyo is temporarily unavailable"),
        ("invalid_scope", 400, "Klaviyo refused the requested permissions"),
        ("made_up_code", 400, "Klaviyo did not connect the account"),
    ],
)
def test_an_error_redirect_shows_a_fixed_message_and_only_logs_the_description(client, caplog, error, status, shown):
    caplog.set_level(logging.INFO, logger="oauth_integration")

    response = client.get("/authorize", {"error": error, "error_description": CRAFTED, "state": "some-state"})

    html = response.content.decode()
    assert response.status_code == status
    assert shown in html
    assert "555" not in html and "evil.example" not in html and "locked" not in html
    assert "made_up_code" not in html
    assert CRAFTED in caplog.text
    assert OAuthToken.objects.count() == PkceCode.objects.count() == 0


def test_a_description_with_line_breaks_is_logged_on_one_line(client, caplog):
    caplog.set_level(logging.INFO, logger="oauth_integration")
    client.get("/authorize", {"error": "server_error", "error_description": "first\r\nFAKE LOG LINE"})
    assert [line for line in caplog.text.splitlines() if line.startswith("FAKE LOG LINE")] == []
