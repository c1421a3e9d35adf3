"""Shared fixtures: Klaviyo settings, a strict HTTP mock, and factories for stored rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import responses
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client, override_settings
from django.utils import timezone

from oauth_integration.klaviyo import TokenGrant
from oauth_integration.models import OAuthToken

KLAVIYO = "https://a.klaviyo.com"
TOKEN_URL = f"{KLAVIYO}/oauth/token"
REVOKE_URL = f"{KLAVIYO}/oauth/revoke"
PROFILES_URL = f"{KLAVIYO}/api/profiles"
ACCOUNTS_URL = f"{KLAVIYO}/api/accounts"
TEST_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
OTHER_KEY = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"


@pytest.fixture(scope="session", autouse=True)
def _plain_http():
    """The suite talks plain HTTP to the test client and the live server, whatever the HTTPS
    defaults of the environment. Session-wide, because middleware (and the live server's
    handler) read these settings once, when they are built."""
    with override_settings(
        SECURE_SSL_REDIRECT=False,
        SESSION_COOKIE_SECURE=False,
        CSRF_COOKIE_SECURE=False,
        # This process's own cache: a file cache would be shared with a development server.
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    ):
        yield


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache (database ids are reused between tests)."""
    cache.clear()


@pytest.fixture(autouse=True)
def _klaviyo_settings(settings):
    settings.DEBUG = False
    settings.KLAVIYO_SANDBOX = False
    settings.KLAVIYO_OPEN_ACCESS = False
    settings.KLAVIYO_CLIENT_ID = "client-id"
    settings.KLAVIYO_CLIENT_SECRET = "client-secret"
    settings.KLAVIYO_SCOPES = "accounts:read profiles:read"
    settings.KLAVIYO_REDIRECT_URL = "http://testserver/authorize"
    settings.KLAVIYO_AUTHORIZE_URL = "https://www.klaviyo.com/oauth/authorize"
    settings.KLAVIYO_BASE_URL = KLAVIYO
    settings.KLAVIYO_REVISION = "2026-07-15"
    settings.KLAVIYO_HTTP_TIMEOUT = 5.0
    settings.KLAVIYO_REFRESH_MARGIN_SECONDS = 60
    settings.KLAVIYO_MAX_RETRIES = 2
    settings.KLAVIYO_RETRY_MAX_WAIT = 10.0
    settings.KLAVIYO_START_LINK_MAX_AGE = 600
    settings.KLAVIYO_REFRESH_FAILURE_COOLDOWN = 5.0
    settings.TOKEN_ENCRYPTION_KEY = TEST_KEY
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = []
    settings.SECRET_KEY = "test-secret-key-for-signing-links-only"


@pytest.fixture
def open_access(settings):
    """Open access as `make run` has it: anyone may view and connect, which needs DEBUG."""
    settings.DEBUG = True
    settings.KLAVIYO_OPEN_ACCESS = True


@pytest.fixture
def mocked_responses():
    """Strict: an unmatched request raises, an unused registration fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def token_body(access: str = "at-new", refresh: str | None = "rt-new", expires_in: int = 3600, **extra: Any) -> dict:
    body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": expires_in}
    if refresh is not None:
        body["refresh_token"] = refresh
    body["scope"] = "accounts:read profiles:read"
    body.update(extra)
    return body


def profiles_body(*ids: str, next_url: str | None = None) -> dict:
    return {
        "data": [
            {"type": "profile", "id": pid, "attributes": {"email": f"{pid}@example.com", "first_name": "Ada"}}
            for pid in ids
        ],
        "links": {"self": PROFILES_URL, "next": next_url, "prev": None},
    }


def accounts_body(account_id: str = "ACC123", name: str = "Acme Store") -> dict:
    return {
        "data": [
            {
                "type": "account",
                "id": account_id,
                "attributes": {"contact_information": {"organization_name": name}},
            }
        ],
        "links": {"self": ACCOUNTS_URL},
    }


@pytest.fixture
def make_connection(db):
    """Create a stored connection (tokens encrypted by the model field)."""

    def make(customer_identifier: str = "cust-1", **overrides: Any) -> OAuthToken:
        values: dict[str, Any] = {
            "customer_identifier": customer_identifier,
            "access_token": f"at-{customer_identifier}",
            "refresh_token": f"rt-{customer_identifier}",
            "expires_at": timezone.now() + timedelta(hours=1),
            "scopes": "accounts:read profiles:read",
            "version": 1,
            # Connected an hour ago and called since: a connection in use.
            "connected_at": timezone.now() - timedelta(hours=1),
            "last_called_at": timezone.now() - timedelta(minutes=1),
            **overrides,
        }
        return OAuthToken.objects.create(**values)

    return make


def grant(access: str = "at-new", refresh: str | None = "rt-new", seconds: int = 3600) -> TokenGrant:
    return TokenGrant(
        access_token=access, refresh_token=refresh, expires_at=timezone.now() + timedelta(seconds=seconds), scopes=""
    )


def open_start_link(client: Client, link: str) -> HttpResponse:
    """Open a start link as a person does: its page (which changes nothing), then its button.

    Returns the button's answer: the redirect to Klaviyo, or why the link was refused.
    """
    parts = urlsplit(link)
    path = f"{parts.path}?{parts.query}"
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return client.post(path)


def grant_permissions(user: Any, *codenames: str) -> Any:
    """Give ``user`` the app's permissions named by codename (view_oauthtoken, connect_customer)."""
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="oauth_integration", codename__in=codenames)
    )
    return user
