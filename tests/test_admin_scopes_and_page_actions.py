"""The admin: which connections need new scopes, fresh start links for them, and actions on a connection's page."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from oauth_integration import services
from oauth_integration.links import verify_start_link
from oauth_integration.models import ConnectionEvent, ConnectionStatus, OAuthToken
from tests.conftest import ACCOUNTS_URL, TOKEN_URL, accounts_body, grant_permissions, token_body
from tests.test_admin import CONNECTIONS, change_url, kinds, messages_of, post_action, revoke_mock

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore:No directory at:UserWarning")]
Kind = ConnectionEvent.Kind


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def connections(make_connection, settings):
    """Three customers; the product now asks for events:write as well."""
    settings.KLAVIYO_SCOPES = "accounts:read profiles:read events:write"
    return {
        "complete": make_connection("cust-complete", scopes="accounts:read events:write profiles:read"),
        "old": make_connection("cust-old", scopes="accounts:read profiles:read"),
        "nothing": make_connection("cust-nothing", scopes=""),
    }


def listed(response) -> set[str]:
    return {row.customer_identifier for row in response.context["cl"].result_list}


def test_the_list_shows_and_filters_the_connections_that_need_new_scopes(admin_client, connections):
    page = admin_client.get(CONNECTIONS)
    needs = admin_client.get(CONNECTIONS, {"scopes": "needs_new_scopes"})
    complete = admin_client.get(CONNECTIONS, {"scopes": "complete"})

    html = page.content.decode()
    assert 'accounts:read profiles:read<br><strong class="needs-scopes">needs events:write</strong>' in html
    assert "needs accounts:read profiles:read events:write" in html
    assert "Needs new scopes" in html
    assert listed(needs) == {"cust-old", "cust-nothing"}
    assert listed(complete) == {"cust-complete"}


def test_a_scope_that_is_a_prefix_of_a_granted_one_is_still_missing(admin_client, make_connection, settings):
    settings.KLAVIYO_SCOPES = "profiles:read lists:read"
    make_connection("cust-1", scopes="profiles:read lists:read_extra")
    assert listed(admin_client.get(CONNECTIONS, {"scopes": "needs_new_scopes"})) == {"cust-1"}


def test_fresh_start_links_are_shown_for_the_selected_connections(admin_client, connections):
    response = post_action(admin_client, "show_start_links", connections["old"], connections["nothing"])

    html = response.content.decode()
    assert response.status_code == 200
    assert "Each link works once, for 10 minutes" in html
    links = dict(re.findall(r'<td>(cust-[a-z]+)</td>\s*<td>[^<]*</td>\s*<td><input[^>]*value="([^"]+)"', html))
    assert set(links) == {"cust-old", "cust-nothing"}
    for customer, link in links.items():
        token = re.search(r"token=([^&]+)", link.replace("&amp;", "&"))[1].replace("%3A", ":")
        assert verify_start_link(customer, token).user_id == ""  # for the customer: bound to nobody


def test_fresh_start_links_need_the_connect_permission(client, django_user_model, connections):
    viewer = django_user_model.objects.create_user("viewer", password="not-used-123", is_staff=True)
    client.force_login(grant_permissions(viewer, "view_oauthtoken"))
    assert "Show fresh start links" not in client.get(CONNECTIONS).content.decode()
    viewer.user_permissions.add(Permission.objects.get(codename="connect_customer"))
    assert "Show fresh start links" in client.get(CONNECTIONS).content.decode()


# --- the actions on a connection's own page -----------------------------------------------


def run(client: Client, row: OAuthToken, action: str, **extra: str):
    return client.post(f"{CONNECTIONS}{row.pk}/run/", {"action": action, **extra}, follow=True)


def test_a_connections_page_offers_refresh_test_and_revoke(admin_client, make_connection):
    html = admin_client.get(change_url(make_connection("cust-1"))).content.decode()
    for name, label in (
        ("refresh_now", "Refresh now"),
        ("test_connection", "Test connection"),
        ("revoke_and_disconnect", "Revoke &amp; disconnect"),
    ):
        assert f'<input type="hidden" name="action" value="{name}">' in html
        assert f'id="page-action-{name}">{label}</button>' in html


def test_refresh_from_a_connections_page_comes_back_to_it(admin_client, make_connection, mocked_responses):
    row = make_connection("cust-1")
    mocked_responses.post(TOKEN_URL, json=token_body(access="at-next", refresh="rt-next"))

    response = run(admin_client, row, "refresh_now")

    assert response.redirect_chain[-1][0] == change_url(row)
    [(level, text)] = messages_of(response)
    assert (level, text.split(";")[0]) == ("success", "Customer cust-1: refreshed")
    assert OAuthToken.objects.get(pk=row.pk).access_token == "at-next"


def test_test_from_a_connections_page_reports_the_account(admin_client, make_connection, mocked_responses):
    row = make_connection("cust-1")
    mocked_responses.get(ACCOUNTS_URL, json=accounts_body("ACC123", "Acme Store"))
    response = run(admin_client, row, "test_connection")
    assert messages_of(response) == [("success", "Customer cust-1: OK: Klaviyo account Acme Store (ACC123)")]
    assert kinds("cust-1") == [Kind.TESTED]


def test_revoke_from_a_connections_page_asks_first_then_revokes(admin_client, make_connection, mocked_responses):
    row = make_connection("cust-1")

    confirmation = run(admin_client, row, "revoke_and_disconnect")
    assert "Yes, revoke" in confirmation.content.decode()
    assert OAuthToken.objects.get(pk=row.pk).status == ConnectionStatus.ACTIVE

    revoke_mock(mocked_responses, "rt-cust-1")
    done = run(admin_client, row, "revoke_and_disconnect", post="yes")
    assert done.redirect_chain[-1][0] == change_url(row)
    assert OAuthToken.objects.get(pk=row.pk).status == ConnectionStatus.REVOKED


def test_view_only_staff_get_no_buttons_and_cannot_run_them(client, django_user_model, make_connection):
    row = make_connection("cust-1")
    viewer = django_user_model.objects.create_user("viewer", password="not-used-123", is_staff=True)
    client.force_login(grant_permissions(viewer, "view_oauthtoken"))

    assert "page-action-" not in client.get(change_url(row)).content.decode()
    assert client.post(f"{CONNECTIONS}{row.pk}/run/", {"action": "refresh_now"}).status_code == 403
    assert kinds("cust-1") == []


@pytest.mark.parametrize("action", ["delete_selected", "show_start_links", "nonsense", ""])
def test_only_the_three_page_actions_can_be_run_from_a_page(admin_client, make_connection, action):
    row = make_connection("cust-1")
    assert admin_client.post(f"{CONNECTIONS}{row.pk}/run/", {"action": action}).status_code == 403
    assert admin_client.get(f"{CONNECTIONS}{row.pk}/run/").status_code == 405
    assert admin_client.post(f"{CONNECTIONS}999999/run/", {"action": "refresh_now"}).status_code == 404


def test_a_host_product_can_ask_which_scopes_a_customer_must_still_grant(connections):
    assert services.missing_scopes(customer_identifier="cust-complete") == []
    assert services.missing_scopes(customer_identifier="cust-old") == ["events:write"]
    assert services.missing_scopes(customer_identifier="nobody") == ["accounts:read", "profiles:read", "events:write"]
