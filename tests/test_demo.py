"""The demo of a write (/demo/<customer>): the calls it sends, Klaviyo's errors shown, input and permissions.

Klaviyo is mocked with the strict ``responses`` fixture: every request must match a
registration (method, URL, query, JSON body), and every registration must be used.
"""

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.test import Client
from responses import matchers

from klaviyo_site.demo.writes import MEMBERS_SHOWN, NEEDED_SCOPES
from oauth_integration.models import ConnectionStatus, FailureReason
from oauth_integration.operations import required_scopes
from tests.conftest import KLAVIYO, grant_permissions

pytestmark = pytest.mark.django_db

PAGE = "/demo/cust-1"
SCOPES = "accounts:read profiles:read profiles:write lists:read lists:write"
PROFILES, LISTS = f"{KLAVIYO}/api/profiles", f"{KLAVIYO}/api/lists"
JSON_API = "application/vnd.api+json"
FORM = {"email": "ada@example.com", "list_name": "Newsletter"}
# Klaviyo's 409 for a profile that exists: its id is in meta (and in KlaviyoAPIError.duplicate_profile_id).
DUPLICATE = {"status": 409, "code": "duplicate_profile", "title": "Conflict", "meta": {"duplicate_profile_id": "01DUP"}}


@pytest.fixture
def staff(client, django_user_model):
    """A logged-in user who may read connections and change them (write as a customer)."""
    user = django_user_model.objects.create_user("staff", password="pw")
    grant_permissions(user, "view_oauthtoken", "change_oauthtoken", "connect_customer")
    client.force_login(user)
    return user


@pytest.fixture
def connected(make_connection):
    return make_connection("cust-1", scopes=SCOPES, klaviyo_account_id="ACC1", klaviyo_account_name="Acme Store")


def expect_profile(rsps, *, status=201, answer=None, customer="cust-1"):
    body = {"data": {"type": "profile", "attributes": {"email": "ada@example.com"}}}
    headers = {"Authorization": f"Bearer at-{customer}", "revision": "2026-07-15", "Content-Type": JSON_API}
    match = [matchers.json_params_matcher(body), matchers.header_matcher(headers)]
    rsps.post(PROFILES, match=match, status=status, json=answer or {"data": {"type": "profile", "id": "01NEW"}})


def expect_list_lookup(rsps, *found):
    query = {"filter": 'equals(name,"Newsletter")', "fields[list]": "name"}
    data = [{"type": "list", "id": list_id, "attributes": {"name": "Newsletter"}} for list_id in found]
    rsps.get(LISTS, match=[matchers.query_param_matcher(query)], json={"data": data, "links": {"next": None}})


def expect_add(rsps, list_id, profile_id):
    body = {"data": [{"type": "profile", "id": profile_id}]}
    rsps.post(f"{LISTS}/{list_id}/relationships/profiles", match=[matchers.json_params_matcher(body)], status=204)


def expect_members(rsps, list_id, *pages):
    """``pages``: lists of (profile id, email); each page but the last links to the next."""
    url = f"{LISTS}/{list_id}/profiles"
    for number, members in enumerate(pages):
        query = {"fields[profile]": "email,joined_group_at", "page[size]": "100"}
        following = {**query, "page[cursor]": f"c{number + 1}"}  # Klaviyo's next link keeps the parameters
        if number:
            query["page[cursor]"] = f"c{number}"
        data = [
            {"type": "profile", "id": pid, "attributes": {"email": email, "joined_group_at": "2026-07-01T10:00:00Z"}}
            for pid, email in members
        ]
        links = {"next": f"{url}?{urlencode(following)}" if number < len(pages) - 1 else None}
        rsps.get(url, match=[matchers.query_param_matcher(query)], json={"data": data, "links": links})


def test_the_page_shows_the_form_and_calls_nothing(client, staff, connected, mocked_responses):
    response = client.get(PAGE)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in html and 'method="post"' in html
    assert "Acme Store" in html and 'id="scopes-needed"' not in html
    assert "at-cust-1" not in html and "rt-cust-1" not in html


def test_a_new_profile_joins_a_new_list_and_the_members_are_read_back(client, staff, connected, mocked_responses):
    expect_profile(mocked_responses)
    expect_list_lookup(mocked_responses)
    create = {"data": {"type": "list", "attributes": {"name": "Newsletter"}}}
    mocked_responses.post(
        LISTS, match=[matchers.json_params_matcher(create)], status=201, json={"data": {"type": "list", "id": "L1"}}
    )
    expect_add(mocked_responses, "L1", "01NEW")
    expect_members(mocked_responses, "L1", [("01OLD", "grace@example.com")], [("01NEW", "ada@example.com")])

    response = client.post(PAGE, FORM)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Added ada@example.com to “Newsletter”" in html
    assert "<code>01NEW</code> (new)" in html and "<code>L1</code> (new)" in html
    assert html.index("grace@example.com") < html.index('<tr class="this-one"><td>ada@example.com')
    for outcome in ("201 Created: profile 01NEW", "no list is called", "201 Created: list L1", "204 No Content"):
        assert outcome in html
    assert "200 OK: 2 members" in html


def test_an_existing_profile_and_list_are_reused(client, staff, connected, mocked_responses):
    expect_profile(mocked_responses, status=409, answer={"errors": [DUPLICATE]})
    expect_list_lookup(mocked_responses, "L9", "L10")
    expect_add(mocked_responses, "L9", "01DUP")
    expect_members(mocked_responses, "L9", [("01DUP", "ada@example.com")])

    html = client.post(PAGE, FORM).content.decode()
    assert "<code>01DUP</code> (already in Klaviyo)" in html and "<code>L9</code> (already in Klaviyo)" in html
    assert "409 duplicate_profile: profile 01DUP already has this address" in html


def test_a_long_list_shows_its_first_members_only(client, staff, connected, mocked_responses):
    expect_profile(mocked_responses)
    expect_list_lookup(mocked_responses, "L1")
    expect_add(mocked_responses, "L1", "01NEW")
    members = [(f"01M{number:03}", f"m{number}@example.com") for number in range(MEMBERS_SHOWN + 10)]
    expect_members(mocked_responses, "L1", members)

    html = client.post(PAGE, FORM).content.decode()
    assert html.count("<tr><td>m") == MEMBERS_SHOWN
    assert f"Only the first {MEMBERS_SHOWN} members are shown." in html


def test_a_scope_never_granted_is_named_with_what_to_do(client, staff, make_connection, mocked_responses):
    make_connection("cust-1", scopes="accounts:read profiles:read")
    assert 'id="scopes-needed"' in client.get(PAGE).content.decode()
    denied = {"errors": [{"id": "e", "status": 403, "code": "permission_denied", "title": "Permission denied."}]}
    mocked_responses.post(PROFILES, status=403, json=denied)

    response = client.post(PAGE, FORM)
    html = response.content.decode()
    assert response.status_code == 403
    assert "Klaviyo refused POST /api/profiles: this customer never granted profiles:write." in html
    assert "Add profiles:write to KLAVIYO_SCOPES" in html and "the customer must reconnect" in html
    assert 'href="/?customer=cust-1" id="reconnect"' in html


def test_klaviyo_rejecting_a_field_shows_the_message_at_that_field(client, staff, connected, mocked_responses):
    invalid = {
        "id": "e-1",
        "status": 400,
        "code": "invalid",
        "title": "Invalid input.",
        "detail": "Invalid email address.",
        "source": {"pointer": "/data/attributes/email"},
    }
    mocked_responses.post(PROFILES, status=400, json={"errors": [invalid]})

    response = client.post(PAGE, FORM)
    html = response.content.decode()
    assert response.status_code == 400
    assert "Klaviyo answered POST /api/profiles with HTTP 400 (invalid)." in html
    assert "Invalid input.: Invalid email address. (at /data/attributes/email)" in html
    assert response.context["form"].errors["email"] == ["Klaviyo: Invalid email address."]


def test_a_write_without_an_answer_is_reported_as_uncertain(client, staff, connected, mocked_responses):
    expect_profile(mocked_responses)
    expect_list_lookup(mocked_responses)
    mocked_responses.post(LISTS, status=503)  # a POST is not retried after a 5xx

    response = client.post(PAGE, FORM)
    html = response.content.decode()
    assert response.status_code == 502
    assert "Klaviyo may or may not have applied the write" in html
    assert "POST /api/lists got no usable answer" in html and "Submitting again is safe" in html
    assert "201 Created: profile 01NEW" in html  # what was done before it


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"email": "not-an-address", "list_name": "Newsletter"}, "email"),
        ({"email": "", "list_name": "Newsletter"}, "email"),
        ({"email": "ada@example.com"}, "list_name"),
        ({"email": "ada@example.com", "list_name": "   "}, "list_name"),
        ({"email": "ada@example.com", "list_name": 'The "best" list'}, "list_name"),
        ({"email": "ada@example.com", "list_name": "back\\slash"}, "list_name"),
        ({"email": "ada@example.com", "list_name": "x" * 256}, "list_name"),
    ],
)
def test_bad_input_is_a_400_and_nothing_is_sent(client, staff, connected, mocked_responses, data, field):
    response = client.post(PAGE, data)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert 'class="field-error"' in response.content.decode()
    assert len(mocked_responses.calls) == 0


def test_anonymous_visitors_are_sent_to_log_in(client, connected, mocked_responses):
    assert client.get(PAGE).headers["Location"] == f"/admin/login/?next={PAGE}"
    assert client.post(PAGE, FORM).status_code == 302
    assert len(mocked_responses.calls) == 0


def test_reading_needs_view_and_writing_needs_change(client, django_user_model, connected, mocked_responses):
    user = django_user_model.objects.create_user("someone", password="pw")
    client.force_login(user)
    assert client.get(PAGE).status_code == 403

    grant_permissions(user, "view_oauthtoken")
    page = client.get(PAGE)
    assert page.status_code == 200
    assert 'id="no-write"' in page.content.decode() and 'method="post"' not in page.content.decode()
    refused = client.post(PAGE, FORM)
    assert refused.status_code == 403
    assert "needs the permission to change connections" in refused.content.decode()
    assert len(mocked_responses.calls) == 0


def test_a_post_without_the_csrf_token_is_refused(staff, connected, mocked_responses):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)
    assert browser.post(PAGE, FORM).status_code == 403
    assert len(mocked_responses.calls) == 0


def test_open_access_lets_anyone_try(client, settings, open_access, connected, mocked_responses):
    settings.KLAVIYO_SANDBOX = True
    html = client.get(PAGE).content.decode()
    assert 'method="post"' in html


@pytest.mark.parametrize(
    ("overrides", "status", "text"),
    [
        (None, 404, "has not connected Klaviyo"),
        ({"status": ConnectionStatus.REVOKED}, 409, "must reconnect Klaviyo (revoked)"),
        (
            {"status": ConnectionStatus.NEEDS_REAUTHORIZATION, "failure_reason": FailureReason.EXPIRED_INACTIVE},
            409,
            "must reconnect Klaviyo",
        ),
    ],
)
def test_only_a_connected_customer_can_be_written_to(
    client, staff, make_connection, mocked_responses, overrides, status, text
):
    if overrides is not None:
        make_connection("cust-1", **overrides)
    for response in (client.get(PAGE), client.post(PAGE, FORM)):
        assert response.status_code == status
        assert text in response.content.decode()
    assert len(mocked_responses.calls) == 0


def test_the_landing_page_links_each_active_connection_to_the_demo(client, staff, make_connection):
    make_connection("shop-1")
    make_connection("shop-2", status=ConnectionStatus.REVOKED)
    html = client.get("/").content.decode()
    assert 'href="/demo/shop-1" class="try-write"' in html
    assert 'href="/demo/shop-2"' not in html


def test_the_needed_scopes_are_klaviyos_for_the_four_calls():
    calls = [
        ("POST", "/api/profiles"),
        ("GET", "/api/lists"),
        ("POST", "/api/lists"),
        ("POST", "/api/lists/L1/relationships/profiles"),
        ("GET", "/api/lists/L1/profiles"),
    ]
    assert {scope for call in calls for scope in required_scopes(*call)} == set(NEEDED_SCOPES)


def test_make_run_asks_for_the_demos_scopes_in_sandbox_mode_only():
    """The example site's defaults, read from a fresh process as ``make run`` starts it."""
    code = "from oauth_integration.conf import conf; print(conf.scopes)"
    base = {**os.environ, "DJANGO_SETTINGS_MODULE": "klaviyo_site.settings", "KLAVIYO_SCOPES": "", "DEBUG": "true"}

    def scopes(**env):
        run = [sys.executable, "-c", f"import django; django.setup(); {code}"]
        done = subprocess.run(run, env={**base, **env}, cwd=django_settings.BASE_DIR, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return set(done.stdout.split())

    sandbox = scopes(KLAVIYO_CLIENT_ID="", KLAVIYO_CLIENT_SECRET="", KLAVIYO_SANDBOX="")
    assert sandbox == {"accounts:read", "profiles:read", *NEEDED_SCOPES}
    assert scopes(KLAVIYO_CLIENT_ID="real-id", KLAVIYO_CLIENT_SECRET="real-secret", KLAVIYO_SANDBOX="") == {
        "accounts:read",
        "profiles:read",
    }
    # The .env that `make run` writes leaves the default alone.
    sample = (Path(django_settings.BASE_DIR) / ".env-sample").read_text()
    assert not re.search(r"(?m)^KLAVIYO_SCOPES=", sample)


def test_the_readmes_write_example_runs(make_connection, mocked_responses, capsys):
    """The example under "Calling Klaviyo as a customer", against Klaviyo mocked as for the page."""
    readme = (Path(django_settings.BASE_DIR) / "README.md").read_text()
    section = readme[readme.index("### Calling Klaviyo as a customer") : readme.index("**Retries.**")]
    example = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    make_connection("cust-42", scopes=SCOPES)
    expect_profile(mocked_responses, status=409, answer={"errors": [DUPLICATE]}, customer="cust-42")
    lookup = {"filter": 'equals(name,"Newsletter")'}
    mocked_responses.get(LISTS, match=[matchers.query_param_matcher(lookup)], json={"data": [], "links": {}})
    mocked_responses.post(LISTS, status=201, json={"data": {"type": "list", "id": "L1"}})
    expect_add(mocked_responses, "L1", "01DUP")
    members = {"data": [{"type": "profile", "id": "01DUP", "attributes": {"email": "ada@example.com"}}], "links": {}}
    mocked_responses.get(
        f"{LISTS}/L1/profiles", match=[matchers.query_param_matcher({"fields[profile]": "email"})], json=members
    )

    exec(compile(example, "README.md", "exec"), {})  # noqa: S102
    assert capsys.readouterr().out == "01DUP ada@example.com\n"
