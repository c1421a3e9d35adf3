import base64
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from responses import matchers

from oauth_integration import pkce, services
from oauth_integration.exceptions import TokenDecryptionError
from oauth_integration.links import build_start_link
from oauth_integration.models import ConnectionEvent, ConnectionStatus, FailureReason, OAuthToken, PkceCode
from tests.conftest import (
    ACCOUNTS_URL,
    OTHER_KEY,
    REVOKE_URL,
    TOKEN_URL,
    accounts_body,
    open_start_link,
    token_body,
)

pytestmark = [
    pytest.mark.django_db,
    # WhiteNoise notes that collectstatic has not run; the admin's pages do not need it here.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

CONNECTIONS = "/admin/oauth_integration/oauthtoken/"
PENDING = "/admin/oauth_integration/pkcecode/"
EVENTS = "/admin/oauth_integration/connectionevent/"
BASIC_AUTH = "Basic " + base64.b64encode(b"client-id:client-secret").decode()
Kind = ConnectionEvent.Kind


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """admin_client and friends create users; hashing their passwords properly is slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def change_url(row) -> str:
    return f"/admin/oauth_integration/{row._meta.model_name}/{row.pk}/change/"


def stored_ciphertexts(customer: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, refresh_token FROM oauth_integration_oauthtoken WHERE customer_identifier = %s",
            [customer],
        )
        return [value for value in cursor.fetchone() if value]


def forbidden_fragments(secret: str) -> list[str]:
    """The secret, and for an encrypted envelope its payload and both ends of it."""
    if "$" not in secret:
        return [secret]
    payload = secret.rsplit("$", 1)[1]
    return [secret, payload, payload[:16], payload[-16:]]


def assert_shows_no_secret(html: str, secrets: list[str]) -> None:
    assert secrets
    for secret in secrets:
        for fragment in forbidden_fragments(secret):
            assert fragment not in html


def secrets_of(*customers: str) -> list[str]:
    found: list[str] = []
    for customer in customers:
        found += [f"at-{customer}", f"rt-{customer}", *stored_ciphertexts(customer)]
    return found


def post_action(client: Client, action: str, *rows: OAuthToken, **extra: str):
    """Tick ``rows`` on the changelist, pick ``action`` and press Go."""
    data = {"action": action, "index": "0", "_selected_action": [str(row.pk) for row in rows], **extra}
    return client.post(CONNECTIONS, data, follow=True)


def confirm_revoke(client: Client, *rows: OAuthToken):
    """Press "Yes, revoke" on the confirmation page for ``rows``."""
    data = {"action": "revoke_and_disconnect", "post": "yes", "_selected_action": [str(row.pk) for row in rows]}
    return client.post(CONNECTIONS, data, follow=True)


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in response.context["messages"]]


def kinds(customer: str) -> list[str]:
    return list(ConnectionEvent.objects.filter(connection__customer_identifier=customer).values_list("kind", flat=True))


def revoke_mock(mocked_responses, refresh_token: str, **reply):
    mocked_responses.post(
        REVOKE_URL,
        match=[
            matchers.urlencoded_params_matcher({"token": refresh_token, "token_type_hint": "refresh_token"}),
            matchers.header_matcher({"Authorization": BASIC_AUTH}),
        ],
        **(reply or {"status": 200}),
    )


# --- pages -------------------------------------------------------------------------------


def test_changelist_shows_each_status_account_scopes_and_last_failure(admin_client, make_connection):
    now = timezone.now()
    make_connection("cust-active", klaviyo_account_id="ACC123", klaviyo_account_name="Acme Store")
    make_connection("cust-expired", expires_at=now - timedelta(minutes=5))
    make_connection(
        "cust-broken",
        status=ConnectionStatus.NEEDS_REAUTHORIZATION,
        failure_reason=FailureReason.EXPIRED_INACTIVE,
        failure_detail="Klaviyo returned HTTP 400 (invalid_grant)",
        failed_at=now,
    )
    make_connection("cust-revoked", access_token=None, refresh_token=None, expires_at=None, status="revoked")

    response = admin_client.get(CONNECTIONS)

    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        "cust-active",
        "Acme Store (ACC123)",
        "accounts:read profiles:read",
        "Access expired, will refresh",
        "Needs reauthorization:<br><small>Refresh token expired from inactivity</small>",
        "Klaviyo returned HTTP 400 (invalid_grant)",
        "Revoked",
        "Revoke &amp; disconnect",
        "Refresh now",
        "Test connection",
    ):
        assert text in html
    rows = {row.customer_identifier: row for row in response.context["cl"].result_list}
    admin = response.context["cl"].model_admin
    assert "Active" in admin.connection_status(rows["cust-active"])
    assert "Access expired, will refresh" in admin.connection_status(rows["cust-expired"])
    assert "Revoked" in admin.connection_status(rows["cust-revoked"])
    assert_shows_no_secret(html, secrets_of("cust-active", "cust-expired", "cust-broken"))


@pytest.mark.parametrize(
    ("status_filter", "expected"),
    [
        ("active", {"cust-active"}),
        ("access_expired", {"cust-expired"}),
        ("needs_reauthorization", {"cust-broken"}),
        ("revoked", {"cust-revoked"}),
        ("", {"cust-active", "cust-expired", "cust-broken", "cust-revoked"}),
    ],
)
def test_status_filter_includes_the_access_expired_state(admin_client, make_connection, status_filter, expected):
    make_connection("cust-active")
    make_connection("cust-expired", expires_at=timezone.now() - timedelta(seconds=1))
    make_connection("cust-broken", status=ConnectionStatus.NEEDS_REAUTHORIZATION, failure_reason="revoked")
    make_connection("cust-revoked", access_token=None, refresh_token=None, expires_at=None, status="revoked")

    response = admin_client.get(CONNECTIONS, {"status": status_filter} if status_filter else {})

    assert response.status_code == 200
    assert {row.customer_identifier for row in response.context["cl"].result_list} == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [("cust-2", {"cust-2"}), ("ACC-B", {"cust-2"}), ("Beta Shop", {"cust-2"}), ("acme", {"cust-1"})],
)
def test_search_by_customer_and_klaviyo_account(admin_client, make_connection, query, expected):
    make_connection("cust-1", klaviyo_account_id="ACC-A", klaviyo_account_name="Acme Store")
    make_connection("cust-2", klaviyo_account_id="ACC-B", klaviyo_account_name="Beta Shop")

    response = admin_client.get(CONNECTIONS, {"q": query})

    assert {row.customer_identifier for row in response.context["cl"].result_list} == expected
    assert_shows_no_secret(response.content.decode(), secrets_of("cust-1", "cust-2"))


def test_change_page_shows_the_connection_and_its_history_newest_first(admin_client, make_connection):
    row = make_connection("cust-1", klaviyo_account_id="ACC123", klaviyo_account_name="Acme Store")
    now = timezone.now()
    ConnectionEvent.objects.create(
        connection=row, kind=Kind.CONNECTED, detail="first-event", created_at=now - timedelta(days=2)
    )
    ConnectionEvent.objects.create(
        connection=row, kind=Kind.REFRESHED, detail="second-event", created_at=now - timedelta(days=1)
    )
    ConnectionEvent.objects.create(connection=make_connection("cust-10"), kind=Kind.REVOKED, detail="someone-else")

    response = admin_client.get(change_url(row))

    assert response.status_code == 200
    html = response.content.decode()
    assert "cust-1" in html
    assert "Acme Store" in html
    assert "Connection history" in html
    assert html.index("second-event") < html.index("first-event")
    assert "someone-else" not in html
    assert f"connection__id__exact={row.pk}" in html
    assert_shows_no_secret(html, secrets_of("cust-1"))


def test_event_list_filters_by_exact_customer(admin_client, make_connection):
    mine = make_connection("cust-1")
    ConnectionEvent.objects.create(connection=mine, kind=Kind.CONNECTED, detail="mine")
    ConnectionEvent.objects.create(connection=make_connection("cust-10"), kind=Kind.CONNECTED, detail="not-mine")

    by_link = admin_client.get(EVENTS, {"connection__id__exact": mine.pk})
    by_search = admin_client.get(EVENTS, {"q": "cust-1"})
    everything = admin_client.get(EVENTS)

    for response in (by_link, by_search):
        assert response.status_code == 200
        assert [event.detail for event in response.context["cl"].result_list] == ["mine"]
    assert everything.status_code == 200
    assert "not-mine" in everything.content.decode()


def test_pending_authorizations_list_shows_expiry_but_no_verifier_state_or_binding(admin_client):
    authorize_url = services.begin_authorization(customer_identifier="cust-1", browser_binding="binding-secret")
    state = parse_qs(urlsplit(authorize_url).query)["state"][0]
    pending = PkceCode.objects.get(customer_identifier="cust-1")
    PkceCode.objects.filter(pk=pending.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    with connection.cursor() as cursor:
        cursor.execute("SELECT code_verifier FROM oauth_integration_pkcecode WHERE id = %s", [pending.pk])
        (stored_verifier,) = cursor.fetchone()
    hidden = [
        pending.code_verifier,
        stored_verifier,
        state,
        pending.state_hash,
        pending.browser_binding_hash,
        "binding-secret",
    ]

    with CaptureQueriesContext(connection) as queries:
        listing = admin_client.get(PENDING)
        detail = admin_client.get(change_url(pending))

    assert listing.status_code == 200
    assert detail.status_code == 200
    assert "cust-1" in listing.content.decode()
    assert 'alt="True"' in listing.content.decode()  # the expired column
    for response in (listing, detail):
        assert_shows_no_secret(response.content.decode(), hidden)
    assert not [query["sql"] for query in queries if "code_verifier" in query["sql"]]


def test_pages_never_load_or_decrypt_tokens(admin_client, make_connection, settings):
    rows = [make_connection(f"cust-{i}") for i in range(3)]
    ConnectionEvent.objects.create(connection=rows[1], kind=Kind.CONNECTED)
    # Under another key every decryption fails: a page that decrypted would crash.
    settings.TOKEN_ENCRYPTION_KEY = OTHER_KEY
    with pytest.raises(TokenDecryptionError):
        _ = OAuthToken.objects.get(pk=rows[0].pk).access_token

    with CaptureQueriesContext(connection) as queries:
        responses = [
            admin_client.get(CONNECTIONS),
            admin_client.get(CONNECTIONS, {"q": "cust", "status": "active"}),
            admin_client.get(change_url(rows[1])),
            post_action(admin_client, "revoke_and_disconnect", *rows),  # the confirmation page
        ]

    assert [response.status_code for response in responses] == [200, 200, 200, 200]
    assert "Yes, revoke" in responses[-1].content.decode()
    assert not [query["sql"] for query in queries if "access_token" in query["sql"] or "refresh_token" in query["sql"]]


def add_bulk_connections(start: int, stop: int, kinds: tuple[str, ...] = (Kind.CONNECTED,)) -> None:
    """Connections bulk-<start> to bulk-<stop - 1>, in each status in turn, access tokens from an hour
    expired to an hour left, connected up to 100 days ago; each with one event (``kinds`` in turn)
    from the last 800 hours."""
    now = timezone.now()
    statuses = list(ConnectionStatus)
    created = OAuthToken.objects.bulk_create(
        OAuthToken(
            customer_identifier=f"bulk-{i:05d}",
            access_token=f"at-bulk-{i}",
            refresh_token=f"rt-bulk-{i}",
            expires_at=now + timedelta(minutes=(i % 120) - 60),
            status=statuses[i % len(statuses)],
            failure_reason=FailureReason.REVOKED if i % len(statuses) else "",
            failed_at=now - timedelta(minutes=i) if i % len(statuses) else None,
            connected_at=now - timedelta(days=i % 100),
            klaviyo_account_id=f"ACC{i}",
            klaviyo_account_name=f"Store {i}",
        )
        for i in range(start, stop)
    )
    ConnectionEvent.objects.bulk_create(
        ConnectionEvent(connection=row, kind=kinds[i % len(kinds)], created_at=now - timedelta(hours=i % 800))
        for i, row in enumerate(created)
    )


def test_changelist_query_count_does_not_grow_with_the_number_of_connections(admin_client):
    def count_queries(url: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url)
        assert response.status_code == 200
        return len(queries)

    pages = [CONNECTIONS, f"{CONNECTIONS}?status=access_expired&o=-8", f"{CONNECTIONS}?q=Store&p=2", EVENTS]
    add_bulk_connections(0, 200)
    admin_client.get(CONNECTIONS)  # the first request puts the session and the user in the cache
    small = [count_queries(url) for url in pages]
    add_bulk_connections(200, 2000)
    large = [count_queries(url) for url in pages]

    assert OAuthToken.objects.count() == 2000
    assert small == large
    assert large[0] <= 4  # session, user, count, one page of rows (and nothing per row)


# --- who may see what --------------------------------------------------------------------


ADMIN_PAGES = [CONNECTIONS, PENDING, EVENTS]


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_logged_in_non_staff_users_are_sent_to_the_login_page(client, django_user_model, url):
    client.force_login(django_user_model.objects.create_user("customer", password="not-used-123"))

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_permissions_cannot_see_connections(client, django_user_model, make_connection):
    row = make_connection("cust-1")
    client.force_login(django_user_model.objects.create_user("staff", password="not-used-123", is_staff=True))

    assert client.get(CONNECTIONS).status_code == 403
    assert client.get(change_url(row)).status_code == 403


def test_view_only_staff_see_connections_but_get_no_actions(
    client, django_user_model, make_connection, mocked_responses
):
    row = make_connection("cust-1")
    user = django_user_model.objects.create_user("viewer", password="not-used-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_oauthtoken"))
    client.force_login(user)

    page = client.get(CONNECTIONS)
    attempt = post_action(client, "refresh_now", row)

    assert page.status_code == 200
    assert "Refresh now" not in page.content.decode()
    assert attempt.status_code == 200
    assert kinds("cust-1") == []  # nothing ran; the strict mock saw no request


@pytest.mark.parametrize(
    "url",
    [
        f"{CONNECTIONS}add/",
        f"{PENDING}add/",
        f"{EVENTS}add/",
    ],
)
def test_nothing_can_be_added_by_hand(admin_client, url):
    assert admin_client.get(url).status_code == 403


def test_connections_cannot_be_edited_or_deleted_by_hand(admin_client, make_connection):
    row = make_connection("cust-1", klaviyo_account_name="Acme Store")

    page = admin_client.get(change_url(row))
    edit = admin_client.post(change_url(row), {"klaviyo_account_name": "Changed", "scopes": "everything"})
    delete = admin_client.post(f"{CONNECTIONS}{row.pk}/delete/", {"post": "yes"})

    html = page.content.decode()
    assert "View Klaviyo connection" in html
    assert 'name="_save"' not in html
    assert 'name="klaviyo_account_name"' not in html
    assert "<textarea" not in html
    assert edit.status_code == 403
    assert delete.status_code == 403
    row.refresh_from_db()
    assert row.klaviyo_account_name == "Acme Store"
    assert "delete_selected" not in admin_client.get(CONNECTIONS).content.decode()


def test_actions_need_a_csrf_token(django_user_model, make_connection, mocked_responses):
    row = make_connection("cust-1")
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_superuser("root", password="not-used-123"))

    response = client.post(CONNECTIONS, {"action": "refresh_now", "index": "0", "_selected_action": [str(row.pk)]})

    assert response.status_code == 403
    assert kinds("cust-1") == []


# --- actions -----------------------------------------------------------------------------


def test_revoke_asks_for_confirmation_before_calling_klaviyo(admin_client, make_connection, mocked_responses):
    row = make_connection("cust-1", klaviyo_account_id="ACC123", klaviyo_account_name="Acme Store")

    response = post_action(admin_client, "revoke_and_disconnect", row)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Yes, revoke" in html
    assert "No, take me back" in html
    assert "cust-1" in html
    assert "Acme Store (ACC123)" in html
    assert 'name="post" value="yes"' in html
    assert "csrfmiddlewaretoken" in html
    assert_shows_no_secret(html, secrets_of("cust-1"))
    row.refresh_from_db()
    assert row.status == ConnectionStatus.ACTIVE
    assert kinds("cust-1") == []


def test_revoke_revokes_the_refresh_token_at_klaviyo_then_disconnects(admin_client, make_connection, mocked_responses):
    row = make_connection("cust-1")
    revoke_mock(mocked_responses, "rt-cust-1")

    response = confirm_revoke(admin_client, row)

    assert ("success", "Customer cust-1: revoked at Klaviyo and disconnected.") in messages_of(response)
    assert len(mocked_responses.calls) == 1
    row = OAuthToken.objects.get(pk=row.pk)
    assert row.status == ConnectionStatus.REVOKED
    assert row.access_token is None
    assert row.refresh_token is None
    assert stored_ciphertexts("cust-1") == []
    assert kinds("cust-1") == [Kind.REVOKED]
    assert LogEntry.objects.get().change_message == "Revoked & disconnected"
    page = admin_client.get(change_url(row)).content.decode()
    assert "revoked at Klaviyo" in page  # the history outlives the tokens


@pytest.mark.parametrize(
    "reply",
    [{"status": 500, "json": {"error": "server_error"}}, {"body": requests.ConnectionError("reset")}],
    ids=["klaviyo-500", "connection-error"],
)
def test_revoke_failure_at_klaviyo_still_disconnects_and_is_recorded(
    admin_client, make_connection, mocked_responses, reply
):
    row = make_connection("cust-1")
    revoke_mock(mocked_responses, "rt-cust-1", **reply)

    response = confirm_revoke(admin_client, row)

    [(level, text)] = messages_of(response)
    assert level == "warning"
    assert text.startswith("Customer cust-1: disconnected here, but revoking at Klaviyo failed")
    row = OAuthToken.objects.get(pk=row.pk)
    assert row.status == ConnectionStatus.REVOKED
    assert row.refresh_token is None
    assert kinds("cust-1") == [Kind.REVOKED, Kind.REVOKE_FAILED]
    assert ConnectionEvent.objects.get(kind=Kind.REVOKED).detail == "removed locally only"
    page = admin_client.get(change_url(row)).content.decode()
    assert "Revoke at Klaviyo failed" in page


def test_revoke_of_a_connection_without_tokens_calls_nobody(admin_client, make_connection, mocked_responses):
    row = make_connection("cust-1", access_token=None, refresh_token=None, expires_at=None, status="revoked")

    response = confirm_revoke(admin_client, row)

    assert messages_of(response) == [("info", "Customer cust-1: had no token to revoke; disconnected.")]
    assert len(mocked_responses.calls) == 0


def test_revoke_reports_each_customer(admin_client, make_connection, mocked_responses):
    first = make_connection("cust-1")
    second = make_connection("cust-2")
    revoke_mock(mocked_responses, "rt-cust-1")
    revoke_mock(mocked_responses, "rt-cust-2", status=503)

    response = confirm_revoke(admin_client, first, second)

    levels = {text.split(":", 1)[0]: level for level, text in messages_of(response)}
    assert levels == {"Customer cust-1": "success", "Customer cust-2": "warning"}
    assert set(OAuthToken.objects.values_list("status", flat=True)) == {ConnectionStatus.REVOKED}


def test_refresh_now_exchanges_the_refresh_token_and_stores_the_new_tokens(
    admin_client, make_connection, mocked_responses
):
    row = make_connection("cust-1")
    mocked_responses.post(
        TOKEN_URL,
        match=[
            matchers.urlencoded_params_matcher({"grant_type": "refresh_token", "refresh_token": "rt-cust-1"}),
            matchers.header_matcher({"Authorization": BASIC_AUTH}),
        ],
        json=token_body(access="at-cust-1-next", refresh="rt-cust-1-next"),
    )

    response = post_action(admin_client, "refresh_now", row)

    [(level, text)] = messages_of(response)
    assert level == "success"
    assert text.startswith("Customer cust-1: refreshed; access token valid until ")
    row = OAuthToken.objects.get(pk=row.pk)
    assert row.access_token == "at-cust-1-next"
    assert row.refresh_token == "rt-cust-1-next"
    assert row.last_refreshed_at is not None
    assert kinds("cust-1") == [Kind.REFRESHED]
    assert_shows_no_secret(response.content.decode(), secrets_of("cust-1"))


def test_refresh_now_with_a_rejected_refresh_token_flags_the_connection(
    admin_client, make_connection, mocked_responses
):
    row = make_connection("cust-1")
    mocked_responses.post(
        TOKEN_URL,
        match=[
            matchers.urlencoded_params_matcher({"grant_type": "refresh_token", "refresh_token": "rt-cust-1"}),
            matchers.header_matcher({"Authorization": BASIC_AUTH}),
        ],
        status=400,
        json={"error": "invalid_grant"},
    )

    response = post_action(admin_client, "refresh_now", row)

    [(level, text)] = messages_of(response)
    assert level == "error"
    assert text.startswith("Customer cust-1: refresh failed: ")
    row.refresh_from_db()
    assert row.status == ConnectionStatus.NEEDS_REAUTHORIZATION
    assert kinds("cust-1") == [Kind.NEEDS_REAUTHORIZATION]
    assert "Needs reauthorization:<br><small>Revoked or uninstalled in Klaviyo</small>" in response.content.decode()


def test_test_connection_reads_the_account_and_reports_it(admin_client, make_connection, mocked_responses):
    row = make_connection("cust-1")
    mocked_responses.get(
        ACCOUNTS_URL,
        match=[matchers.header_matcher({"Authorization": "Bearer at-cust-1", "revision": "2026-07-15"})],
        json=accounts_body("ACC123", "Acme Store"),
    )

    response = post_action(admin_client, "test_connection", row)

    assert messages_of(response) == [("success", "Customer cust-1: OK: Klaviyo account Acme Store (ACC123)")]
    assert kinds("cust-1") == [Kind.TESTED]


def test_test_connection_refreshes_an_expired_access_token_first(admin_client, make_connection, mocked_responses):
    row = make_connection("cust-1", expires_at=timezone.now() - timedelta(minutes=1))
    mocked_responses.post(
        TOKEN_URL,
        match=[
            matchers.urlencoded_params_matcher({"grant_type": "refresh_token", "refresh_token": "rt-cust-1"}),
            matchers.header_matcher({"Authorization": BASIC_AUTH}),
        ],
        json=token_body(access="at-cust-1-next", refresh="rt-cust-1-next"),
    )
    mocked_responses.get(
        ACCOUNTS_URL,
        match=[matchers.header_matcher({"Authorization": "Bearer at-cust-1-next"})],
        json=accounts_body("ACC123", "Acme Store"),
    )

    response = post_action(admin_client, "test_connection", row)

    assert messages_of(response) == [("success", "Customer cust-1: OK: Klaviyo account Acme Store (ACC123)")]
    assert kinds("cust-1") == [Kind.TESTED, Kind.REFRESHED]


def test_test_connection_reports_success_and_failure_per_customer(admin_client, make_connection, mocked_responses):
    good = make_connection("cust-good")
    short = make_connection("cust-short")
    mocked_responses.get(
        ACCOUNTS_URL,
        match=[matchers.header_matcher({"Authorization": "Bearer at-cust-good"})],
        json=accounts_body("ACC123", "Acme Store"),
    )
    mocked_responses.get(
        ACCOUNTS_URL,
        match=[matchers.header_matcher({"Authorization": "Bearer at-cust-short"})],
        status=403,
        json={"errors": [{"id": "1", "status": 403, "code": "permission_denied", "title": "t", "detail": "d"}]},
    )

    response = post_action(admin_client, "test_connection", good, short)

    assert messages_of(response) == [
        ("success", "Customer cust-good: OK: Klaviyo account Acme Store (ACC123)"),
        ("error", "Customer cust-short: test failed: Klaviyo returned HTTP 403 (permission_denied)"),
    ]
    assert sorted(kinds("cust-short")) == sorted([Kind.CALL_FAILED, Kind.TESTED])
    assert "Missing scope (403)" in response.content.decode()  # the changelist shows the failure


def test_actions_refuse_more_connections_than_one_page(admin_client, make_connection, mocked_responses):
    rows = OAuthToken.objects.bulk_create(
        OAuthToken(customer_identifier=f"cust-{i:02d}", access_token=f"at-{i}", refresh_token=f"rt-{i}")
        for i in range(51)
    )

    for action in ("revoke_and_disconnect", "refresh_now", "test_connection"):
        # "Select all 51" in the browser: the rows of the page are ticked, and select_across is set.
        response = post_action(admin_client, action, *rows[:50], select_across="1")
        [(level, text)] = messages_of(response)
        assert level == "error"
        assert text.startswith("Select at most 50 connections at a time")

    assert ConnectionEvent.objects.count() == 0
    assert set(OAuthToken.objects.values_list("status", flat=True)) == {ConnectionStatus.ACTIVE}


# --- reconnecting ------------------------------------------------------------------------


@pytest.mark.parametrize("previous", ["revoked", "needs_reauthorization"])
def test_reconnecting_through_start_again_shows_in_the_history(
    admin_client, client, make_connection, mocked_responses, previous
):
    row = make_connection("cust-1", klaviyo_account_id="ACC123", klaviyo_account_name="Acme Store")
    if previous == "revoked":
        revoke_mock(mocked_responses, "rt-cust-1")
        confirm_revoke(admin_client, row)
    else:
        mocked_responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
        post_action(admin_client, "refresh_now", row)
    assert OAuthToken.objects.get(pk=row.pk).status == previous

    started = open_start_link(client, build_start_link("cust-1"))
    assert started.status_code == 302
    query = parse_qs(urlsplit(started["Location"]).query)
    verifier = PkceCode.objects.get(customer_identifier="cust-1").code_verifier
    assert query["code_challenge"] == [pkce.code_challenge(verifier)]
    mocked_responses.post(
        TOKEN_URL,
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "grant_type": "authorization_code",
                    "code": "code-again",
                    "code_verifier": verifier,
                    "redirect_uri": "http://testserver/authorize",
                }
            ),
            matchers.header_matcher({"Authorization": BASIC_AUTH}),
        ],
        json=token_body(access="at-cust-1-again", refresh="rt-cust-1-again"),
    )
    mocked_responses.get(
        ACCOUNTS_URL,
        match=[matchers.header_matcher({"Authorization": "Bearer at-cust-1-again"})],
        json=accounts_body("ACC999", "New Store"),
    )
    if previous == "needs_reauthorization":  # its refresh token may still be live: revoked at Klaviyo
        revoke_mock(mocked_responses, "rt-cust-1")
    connected = client.get("/authorize", {"code": "code-again", "state": query["state"][0]})
    assert connected.status_code == 200

    page = admin_client.get(change_url(row))
    listing = admin_client.get(CONNECTIONS)

    html = page.content.decode()
    history = html.split('id="connection-history"', 1)[1]
    assert history.index("Reconnected to a different Klaviyo account") < history.index("Reconnected</td>")
    assert "from ACC123 to ACC999" in history
    assert f"Klaviyo account New Store (ACC999); was {previous}" in history
    assert "New Store (ACC999)" in listing.content.decode()
    newest = [Kind.ACCOUNT_CHANGED, Kind.RECONNECTED]
    assert kinds("cust-1")[:3] == (
        [Kind.REVOKED, *newest] if previous == "needs_reauthorization" else [*newest, Kind.REVOKED]
    )
    assert OAuthToken.objects.get(pk=row.pk).status == ConnectionStatus.ACTIVE
    for response in (page, listing):
        assert_shows_no_secret(response.content.decode(), [*secrets_of("cust-1"), "at-cust-1-again", verifier])
