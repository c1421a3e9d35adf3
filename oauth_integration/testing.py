"""A test kit for host projects: customers connected to the built-in sandbox, no browser needed.

With pytest and pytest-django, add ``pytest_plugins = ["oauth_integration.testing"]`` to
your ``conftest.py`` and use the ``klaviyo_sandbox`` fixture::

    def test_my_sync(klaviyo_sandbox):
        klaviyo_sandbox.connect("cust-1", account="northwind")
        profiles = list(services.iter_klaviyo(customer_identifier="cust-1", path="/api/profiles"))

The fixture serves the sandbox on pytest-django's live server (real HTTP on loopback, so
retries, timeouts and refresh run as in production) and points the integration at it.
Without pytest, ``connect_customer`` does the same against a sandbox your own test server
serves, once ``sandbox_settings(live_server_url)`` are in effect (``override_settings``).

``klaviyo_sandbox`` (the app) and its URLs (``include("klaviyo_sandbox.urls")``) must be
installed in the test settings.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.urls import reverse

from oauth_integration import services
from oauth_integration.klaviyo import close_sessions
from oauth_integration.services.connect import Connected

# Friendly names of the sandbox's three accounts (their ids work too).
ACCOUNTS = {"northwind": "SbxN7w", "bluebell": "SbxB4k", "juniper": "SbxJ2q"}


def sandbox_settings(server_url: str) -> dict[str, Any]:
    """The settings that point the integration at the sandbox served at ``server_url``."""
    server_url = server_url.rstrip("/")
    sandbox_root = reverse("klaviyo_sandbox:token").removesuffix("/oauth/token")
    return {
        "KLAVIYO_SANDBOX": True,
        "KLAVIYO_CLIENT_ID": "sandbox-client-id",
        "KLAVIYO_CLIENT_SECRET": "sandbox-client-secret",
        "KLAVIYO_BASE_URL": f"{server_url}{sandbox_root}",
        "KLAVIYO_AUTHORIZE_URL": f"{server_url}{reverse('klaviyo_sandbox:authorize')}",
        "KLAVIYO_REDIRECT_URL": f"{server_url}{reverse('oauth_integration:authorize')}",
    }


def connect_customer(customer_identifier: str, *, account: str = "northwind") -> Connected:
    """Connect ``customer_identifier`` to a sandbox account as a customer would, minus the browser.

    Runs the real flow: ``begin_authorization``, the sandbox's consent (Allow, for
    ``account``: a friendly name or an account id), and ``complete_authorization``, which
    exchanges the code with the sandbox over HTTP. Sends the ``connected`` signal.
    Raises ValueError for an unknown account.
    """
    from klaviyo_sandbox.consent import approve
    from klaviyo_sandbox.forms import AuthorizationRequestForm

    binding = secrets.token_urlsafe(16)
    authorize_url = services.begin_authorization(customer_identifier=customer_identifier, browser_binding=binding)
    request = AuthorizationRequestForm(dict(parse_qsl(urlsplit(authorize_url).query)))
    if not request.is_valid():
        raise ValueError(f"The sandbox refused the authorization request: {request.errors.as_text()}")
    back = dict(
        parse_qsl(urlsplit(approve(request=request.authorization_request(), account_id=_account_id(account))).query)
    )
    return services.complete_authorization(state=back["state"], code=back["code"], browser_binding=binding)


def _account_id(account: str) -> str:
    from klaviyo_sandbox.accounts import get_account

    account_id = ACCOUNTS.get(account.lower(), account)
    if get_account(account_id) is None:
        raise ValueError(f"No sandbox account {account!r}; use one of {', '.join(ACCOUNTS)}")
    return account_id


@dataclass(frozen=True)
class Sandbox:
    """What the ``klaviyo_sandbox`` fixture hands a test."""

    url: str  # the sandbox's base URL, as KLAVIYO_BASE_URL

    def connect(self, customer_identifier: str, *, account: str = "northwind") -> Connected:
        return connect_customer(customer_identifier, account=account)


try:
    import pytest
except ImportError:  # pragma: no cover (the plain helpers above need no pytest)
    pytest = None

if pytest is not None:

    @pytest.fixture
    def klaviyo_sandbox(live_server: Any, settings: Any) -> Iterator[Sandbox]:
        """The sandbox on the live server, the integration pointed at it; needs database access
        that other threads can see (``@pytest.mark.django_db(transaction=True)``)."""
        for name, value in sandbox_settings(live_server.url).items():
            setattr(settings, name, value)
        yield Sandbox(url=settings.KLAVIYO_BASE_URL)
        close_sessions()  # let the live server's threads end with their database connections
