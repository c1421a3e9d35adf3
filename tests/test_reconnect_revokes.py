"""A reconnect revokes the refresh token it replaces at Klaviyo, best effort, and says so in the history."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from responses import matchers

from oauth_integration import services
from oauth_integration.models import ConnectionEvent, ConnectionStatus, OAuthToken
from tests.conftest import ACCOUNTS_URL, REVOKE_URL, TOKEN_URL, accounts_body, token_body

pytestmark = pytest.mark.django_db
BINDING = "binding-of-this-browser"


def reconnect(mocked_responses, refresh_token: str) -> services.Connected:
    """The customer goes through Klaviyo's consent again; Klaviyo grants ``refresh_token``."""
    authorize_url = services.begin_authorization(customer_identifier="cust-1", browser_binding=BINDING)
    state = parse_qs(urlsplit(authorize_url).query)["state"][0]
    mocked_responses.post(TOKEN_URL, json=token_body("at-again", refresh_token))
    mocked_responses.get(ACCOUNTS_URL, json=accounts_body("ACC2", "Other Store"))
    return services.complete_authorization(state=state, code="code-again", browser_binding=BINDING)


def revoked(token: str):
    return [matchers.urlencoded_params_matcher({"token": token, "token_type_hint": "refresh_token"})]


def history() -> list[tuple[str, str]]:
    return list(ConnectionEvent.objects.order_by("id").values_list("kind", "detail"))


def test_a_reconnect_revokes_the_previous_refresh_token(mocked_responses, make_connection):
    make_connection("cust-1")
    mocked_responses.post(REVOKE_URL, match=revoked("rt-cust-1"), json={})

    reconnect(mocked_responses, "rt-again")

    assert OAuthToken.objects.get().refresh_token == "rt-again"
    assert history()[-1] == ("revoked", "previous refresh token revoked at Klaviyo")


@pytest.mark.parametrize(
    "failure", [{"status": 503, "body": "down"}, {"body": requests.ConnectionError("reset")}], ids=["503", "reset"]
)
def test_a_failed_revoke_keeps_the_new_connection_and_is_recorded(mocked_responses, make_connection, failure):
    make_connection("cust-1")
    mocked_responses.post(REVOKE_URL, match=revoked("rt-cust-1"), **failure)

    connected = reconnect(mocked_responses, "rt-again")

    row = OAuthToken.objects.get()
    assert connected.reconnected
    assert (row.status, row.refresh_token) == (ConnectionStatus.ACTIVE, "rt-again")
    kind, detail = history()[-1]
    assert kind == "revoke_failed"
    assert detail.startswith("previous refresh token not revoked")
    assert "rt-cust-1" not in detail


def test_the_same_refresh_token_granted_again_is_not_revoked(mocked_responses, make_connection):
    make_connection("cust-1")
    reconnect(mocked_responses, "rt-cust-1")  # the strict mock has no revoke registered
    assert [kind for kind, _ in history()] == ["reconnected"]  # no revoke attempted, none failed


def test_a_disconnected_customer_has_nothing_to_revoke_when_reconnecting(mocked_responses, make_connection):
    make_connection("cust-1", access_token=None, refresh_token=None, status=ConnectionStatus.REVOKED)
    reconnect(mocked_responses, "rt-again")
    assert [kind for kind, _ in history()] == ["reconnected"]
    assert OAuthToken.objects.get().refresh_token == "rt-again"
