"""The test kit host projects use: a customer connected to the sandbox without a browser."""

import pytest

from oauth_integration import services, signals
from oauth_integration.models import ConnectionEvent, OAuthToken

pytest_plugins = ["oauth_integration.testing"]
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_connected_customer_can_be_called_read_and_write_through_the_sandbox(klaviyo_sandbox, settings):
    settings.KLAVIYO_SCOPES = "accounts:read profiles:read lists:read lists:write"
    heard = []

    def receiver(sender, **kwargs):
        heard.append(
            (
                kwargs["customer_identifier"],
                kwargs["klaviyo_account_id"],
                kwargs["klaviyo_account_name"],
                kwargs["scopes"],
                kwargs["reconnected"],
            )
        )

    signals.connected.connect(receiver)
    try:
        connected = klaviyo_sandbox.connect("cust-1", account="bluebell")
    finally:
        signals.connected.disconnect(receiver)

    assert (connected.klaviyo_account_id, connected.klaviyo_account_name) == ("SbxB4k", "Bluebell Bakery")
    granted = "accounts:read profiles:read lists:read lists:write"
    assert heard == [("cust-1", "SbxB4k", "Bluebell Bakery", granted, False)]
    assert ConnectionEvent.objects.filter(connection__customer_identifier="cust-1", kind="connected").exists()
    profiles = list(
        services.iter_klaviyo(customer_identifier="cust-1", path="/api/profiles", params={"page[size]": "10"})
    )
    assert len(profiles) == 43  # every profile of the Bluebell Bakery account, across 5 pages
    created = services.call_klaviyo(
        customer_identifier="cust-1",
        path="/api/lists",
        method="POST",
        json={"data": {"type": "list", "attributes": {"name": "Test kit"}}},
    )
    assert created["data"]["attributes"]["name"] == "Test kit"
    assert OAuthToken.objects.get().scopes == "accounts:read profiles:read lists:read lists:write"


def test_an_unknown_sandbox_account_is_a_clear_error(klaviyo_sandbox):
    with pytest.raises(ValueError, match="No sandbox account 'acme'"):
        klaviyo_sandbox.connect("cust-1", account="acme")
