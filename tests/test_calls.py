"""call_klaviyo with every method, its retry rules, Klaviyo's error bodies, and iter_klaviyo.

Klaviyo is mocked at the HTTP boundary with the strict ``responses`` fixture (which
replays urllib3's status retries); transport faults come from a real loopback server.
"""

import itertools
import json
import socket
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from responses import matchers

from klaviyo_sandbox.accounts import profiles_of
from oauth_integration import services
from oauth_integration.exceptions import (
    KlaviyoAPIError,
    KlaviyoPagingError,
    KlaviyoPathRefused,
    KlaviyoThrottled,
    KlaviyoUnavailable,
    KlaviyoWriteUncertain,
    MissingScope,
)
from oauth_integration.models import ConnectionEvent, FailureReason, OAuthToken
from tests.conftest import KLAVIYO, TOKEN_URL, token_body
from tests.wire_faults import ScriptedServer

pytest_plugins = ["oauth_integration.testing"]
pytestmark = pytest.mark.django_db

LISTS = f"{KLAVIYO}/api/lists"
EVENTS = f"{KLAVIYO}/api/events"
JSON_API = "application/vnd.api+json"
METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
IDEMPOTENT = {"GET", "PUT", "DELETE"}
BODY = {"data": {"type": "list", "attributes": {"name": "VIP"}}}
THROTTLED = {"errors": [{"id": "e1", "status": 429, "code": "throttled", "title": "Request was throttled."}]}


def call(method, path="/api/lists", **kwargs):
    return services.call_klaviyo(customer_identifier="cust-1", path=path, method=method, **kwargs)


def history():
    rows = ConnectionEvent.objects.filter(connection__customer_identifier="cust-1").order_by("id")
    return list(rows.values_list("kind", "detail"))


@pytest.fixture
def connected(make_connection):
    return make_connection("cust-1", scopes="accounts:read lists:read lists:write profiles:read")


@pytest.mark.parametrize("method", METHODS)
def test_every_method_sends_bearer_revision_json_api_body_and_returns_the_parsed_body(
    mocked_responses, connected, method
):
    headers = {"Authorization": "Bearer at-cust-1", "revision": "2026-07-15", "Accept": JSON_API}
    match = [matchers.header_matcher(headers), matchers.query_param_matcher({"a": "1"})]
    if method != "GET":
        match += [matchers.header_matcher({"Content-Type": JSON_API}), matchers.json_params_matcher(BODY)]
    mocked_responses.add(method, LISTS, match=match, json={"data": {"type": "list", "id": "L1"}})
    body = call(method, params={"a": "1"}, json=None if method == "GET" else BODY)
    assert body == {"data": {"type": "list", "id": "L1"}}


@pytest.mark.parametrize("status", [202, 204])
def test_202_and_204_return_none(mocked_responses, connected, status):
    mocked_responses.post(EVENTS, status=status, body="")
    assert call("POST", "/api/events", json={"data": {"type": "event"}}) is None


def test_an_unknown_method_is_refused_before_anything_is_sent(mocked_responses, connected):
    with pytest.raises(ValueError, match="Unsupported HTTP method"):
        call("TRACE")


@pytest.mark.parametrize("method", METHODS)
def test_a_429_is_retried_for_every_method(mocked_responses, connected, method):
    mocked_responses.add(method, LISTS, status=429, json=THROTTLED, headers={"Retry-After": "0"})
    mocked_responses.add(method, LISTS, json={"data": []})
    assert call(method, json=None if method == "GET" else BODY) == {"data": []}
    assert len(mocked_responses.calls) == 2


@pytest.mark.parametrize("method", METHODS)
def test_a_429_past_the_retries_is_throttled_with_its_retry_after(mocked_responses, connected, method):
    mocked_responses.add(method, LISTS, status=429, json=THROTTLED, headers={"Retry-After": "0"})
    with pytest.raises(KlaviyoThrottled):
        call(method)
    assert len(mocked_responses.calls) == 3  # one try and KLAVIYO_MAX_RETRIES=2 retries


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("status", [503, 504, 524])
def test_a_server_error_is_retried_only_for_idempotent_methods(mocked_responses, connected, method, status):
    mocked_responses.add(method, LISTS, status=status, body="trouble")
    mocked_responses.add(method, LISTS, json={"data": []})
    if method in IDEMPOTENT:
        assert call(method) == {"data": []}
        assert len(mocked_responses.calls) == 2
    else:
        with pytest.raises(KlaviyoWriteUncertain, match="may or may not have been applied") as excinfo:
            call(method, json=BODY)
        assert excinfo.value.status == status
        assert len(mocked_responses.calls) == 1
        mocked_responses.calls.reset()
        call(method, json=BODY)  # the caller decides to send it again


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", METHODS)
def test_a_connection_dropped_after_sending_is_retried_only_for_idempotent_methods(settings, connected, method):
    answered = (200, {"Content-Type": JSON_API}, {"data": []})
    with ScriptedServer([("reset",), answered]) as server:
        settings.KLAVIYO_BASE_URL = server.url
        if method in IDEMPOTENT:
            assert call(method) == {"data": []}
            assert len(server.requests) == 2
        else:
            with pytest.raises(KlaviyoWriteUncertain):
                call(method, json=BODY)
            assert len(server.requests) == 1
            server.steps.clear()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("fault", [(503, {"Content-Type": "text/plain"}, "trouble"), ("reset",)])
def test_a_write_its_caller_calls_repeatable_is_retried_after_a_server_error_or_a_lost_connection(
    settings, connected, method, fault
):
    """Through urllib3's real retry loop: an event carrying its unique_id may be applied twice."""
    answered = (202, {"Content-Type": JSON_API}, "")
    with ScriptedServer([fault, answered]) as server:
        settings.KLAVIYO_BASE_URL = server.url
        assert call(method, path="/api/events", json=BODY, repeatable=True) is None
        assert [path for path, _ in server.requests] == ["/api/events", "/api/events"]


@pytest.mark.django_db(transaction=True)
def test_a_repeatable_write_that_keeps_failing_is_unavailable_not_uncertain(settings, connected):
    settings.KLAVIYO_MAX_RETRIES = 1
    trouble = (503, {"Content-Type": "text/plain"}, "trouble")
    with ScriptedServer([trouble, trouble]) as server:
        settings.KLAVIYO_BASE_URL = server.url
        with pytest.raises(KlaviyoUnavailable) as excinfo:
            call("POST", path="/api/events", json=BODY, repeatable=True)
        assert not isinstance(excinfo.value, KlaviyoWriteUncertain)  # safe to send again: nothing to check first
        assert len(server.requests) == 2
        server.steps[:] = [trouble]
        with pytest.raises(KlaviyoWriteUncertain):  # the same write, not declared repeatable: one try
            call("POST", path="/api/events", json=BODY)
        assert len(server.requests) == 3


@pytest.mark.parametrize("method", METHODS)
def test_a_connection_that_never_opened_is_not_uncertain(settings, connected, method):
    settings.KLAVIYO_BASE_URL = "http://127.0.0.1:9"  # discard port: nothing listens, nothing was sent
    settings.KLAVIYO_MAX_RETRIES = 0
    with pytest.raises(KlaviyoUnavailable) as excinfo:
        call(method, json=None if method == "GET" else BODY)
    assert not isinstance(excinfo.value, KlaviyoWriteUncertain)


@pytest.mark.parametrize("method", METHODS)
def test_a_401_refreshes_once_and_retries_once_for_every_method(mocked_responses, connected, method):
    unauthorized = {"errors": [{"id": "x", "status": 401, "code": "authentication_failed", "title": "t"}]}
    mocked_responses.add(
        method,
        LISTS,
        match=[matchers.header_matcher({"Authorization": "Bearer at-cust-1"})],
        status=401,
        json=unauthorized,
    )
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    mocked_responses.add(
        method, LISTS, match=[matchers.header_matcher({"Authorization": "Bearer at-2"})], json={"data": {"id": "L1"}}
    )
    assert call(method, json=None if method == "GET" else BODY) == {"data": {"id": "L1"}}
    assert [c.request.method for c in mocked_responses.calls] == [method, "POST", method]


def test_a_400_carries_every_error_with_its_offending_field(mocked_responses, connected):
    errors = [
        {
            "id": "e-1",
            "status": 400,
            "code": "invalid",
            "title": "Invalid input.",
            "detail": "'name' is required",
            "source": {"pointer": "/data/attributes/name"},
        },
        {
            "id": "e-2",
            "status": 400,
            "code": "invalid",
            "title": "Invalid input.",
            "detail": "bad filter",
            "source": {"parameter": "filter"},
        },
    ]
    mocked_responses.post(LISTS, status=400, json={"errors": errors})
    with pytest.raises(KlaviyoAPIError) as excinfo:
        call("POST", json={"data": {"type": "list", "attributes": {}}})
    error = excinfo.value
    assert (error.status, error.code) == (400, "invalid")
    assert [(e.id, e.code, e.title, e.detail) for e in error.errors] == [
        ("e-1", "invalid", "Invalid input.", "'name' is required"),
        ("e-2", "invalid", "Invalid input.", "bad filter"),
    ]
    assert (error.errors[0].source_pointer, error.errors[1].source_parameter) == ("/data/attributes/name", "filter")


def test_a_duplicate_profile_exposes_the_existing_profile_id(mocked_responses, connected):
    duplicate = {
        "id": "e-9",
        "status": 409,
        "code": "duplicate_profile",
        "title": "Conflict.",
        "detail": "A profile already exists with one of these identifiers.",
        "source": {"pointer": "/data/attributes"},
        "meta": {"duplicate_profile_id": "01HEXISTING"},
    }
    mocked_responses.post(f"{KLAVIYO}/api/profiles", status=409, json={"errors": [duplicate]})
    with pytest.raises(KlaviyoAPIError) as excinfo:
        call("POST", "/api/profiles", json={"data": {"type": "profile", "attributes": {"email": "a@b.c"}}})
    assert (excinfo.value.status, excinfo.value.duplicate_profile_id) == (409, "01HEXISTING")


def test_a_403_for_a_scope_never_granted_names_the_scope(mocked_responses, connected):
    denied = {"errors": [{"id": "e", "status": 403, "code": "permission_denied", "title": "Permission denied."}]}
    mocked_responses.post(EVENTS, status=403, json=denied)
    with pytest.raises(MissingScope, match="not granted events:write; add it to KLAVIYO_SCOPES") as excinfo:
        call("POST", "/api/events", json={"data": {"type": "event"}})
    assert excinfo.value.scopes == ("events:write",)
    assert OAuthToken.objects.get().failure_reason == FailureReason.MISSING_SCOPE
    [(_, detail)] = history()
    assert detail.count("POST /api/events") == 1


def test_a_plain_403_in_the_history_names_the_call(mocked_responses, connected):
    mocked_responses.get(LISTS, status=403, json={"errors": [{"code": "permission_denied"}]})
    with pytest.raises(KlaviyoAPIError):
        call("GET")
    [(_, detail)] = history()
    assert "GET /api/lists: Klaviyo returned HTTP 403" in detail


def test_a_403_for_a_granted_scope_is_plain_forbidden(mocked_responses, connected):
    mocked_responses.get(LISTS, status=403, json={"errors": [{"code": "permission_denied"}]})
    with pytest.raises(KlaviyoAPIError) as excinfo:
        call("GET")
    assert excinfo.value.status == 403
    assert not isinstance(excinfo.value, MissingScope)


def test_every_recorded_failure_lands_in_the_history(mocked_responses, connected):
    mocked_responses.get(LISTS, status=503, body="down")
    with pytest.raises(KlaviyoUnavailable):
        call("GET")
    row = OAuthToken.objects.get()
    assert row.failure_reason == FailureReason.KLAVIYO_UNAVAILABLE
    [(kind, detail)] = history()
    assert kind == ConnectionEvent.Kind.CALL_FAILED
    assert "GET /api/lists" in detail and "503" in detail


@pytest.mark.parametrize(("status", "code"), [(400, "invalid"), (404, "not_found"), (409, "duplicate_profile")])
def test_klaviyos_answers_about_the_request_itself_are_the_callers_not_a_connection_failure(
    mocked_responses, connected, status, code
):
    mocked_responses.get(f"{LISTS}/L1", status=status, json={"errors": [{"code": code}]})
    with pytest.raises(KlaviyoAPIError) as excinfo:
        call("GET", "/api/lists/L1")
    assert excinfo.value.status == status
    assert OAuthToken.objects.get().failure_reason == ""
    assert history() == []


# --- iter_klaviyo ----------------------------------------------------------------------------------


def page(ids, next_url=None):
    data = [{"type": "profile", "id": pid} for pid in ids]
    return {"data": data, "links": {"self": "x", "next": next_url, "prev": None}}


def test_iter_klaviyo_walks_every_page_and_refreshes_in_the_middle(mocked_responses, connected):
    profiles = f"{KLAVIYO}/api/profiles"
    next_1 = f"{profiles}?page%5Bsize%5D=2&page%5Bcursor%5D=C2&filter=equals%28email%2C%22x%22%29"
    next_2 = f"{profiles}?page%5Bsize%5D=2&page%5Bcursor%5D=C3&filter=equals%28email%2C%22x%22%29"

    def first_page_then_the_token_expires(request):
        OAuthToken.objects.update(expires_at=timezone.now() + timedelta(seconds=5))  # inside the margin
        return 200, {}, json.dumps(page(["p1", "p2"], next_1))

    first = {"page[size]": "2", "filter": 'equals(email,"x")'}
    mocked_responses.add_callback(
        "GET",
        profiles,
        callback=first_page_then_the_token_expires,
        match=[matchers.query_param_matcher(first), matchers.header_matcher({"Authorization": "Bearer at-cust-1"})],
    )
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    second = {**first, "page[cursor]": "C2"}
    third = {**first, "page[cursor]": "C3"}
    bearer_2 = matchers.header_matcher({"Authorization": "Bearer at-2"})
    mocked_responses.get(
        profiles, match=[matchers.query_param_matcher(second), bearer_2], json=page(["p3", "p4"], next_2)
    )
    mocked_responses.get(profiles, match=[matchers.query_param_matcher(third), bearer_2], json=page(["p5"]))

    walked = services.iter_klaviyo(customer_identifier="cust-1", path="/api/profiles", params=first)
    assert [profile["id"] for profile in walked] == ["p1", "p2", "p3", "p4", "p5"]
    assert [c.request.method for c in mocked_responses.calls] == ["GET", "POST", "GET", "GET"]


def test_iter_klaviyo_never_sends_the_token_to_another_host(mocked_responses, connected):
    mocked_responses.get(LISTS, json=page(["l1"], "https://evil.example/api/lists?page%5Bcursor%5D=C2"))
    mocked_responses.get(LISTS, match=[matchers.query_param_matcher({"page[cursor]": "C2"})], json=page(["l2"]))
    assert [item["id"] for item in services.iter_klaviyo(customer_identifier="cust-1", path="/api/lists")] == [
        "l1",
        "l2",
    ]
    assert all(call.request.url.startswith(LISTS) for call in mocked_responses.calls)


def test_iter_klaviyo_stops_on_an_empty_collection(mocked_responses, connected):
    mocked_responses.get(LISTS, json=page([]))
    assert list(services.iter_klaviyo(customer_identifier="cust-1", path="/api/lists")) == []


def test_a_write_that_timed_out_says_it_may_or_may_not_have_been_applied(mocked_responses, connected):
    mocked_responses.post(LISTS, body=requests.ReadTimeout())
    with pytest.raises(KlaviyoWriteUncertain, match="POST /api/lists: no answer from Klaviyo"):
        call("POST", json=BODY)
    [(_, detail)] = history()
    assert detail.count("POST /api/lists") == 1 and "no answer from Klaviyo (ReadTimeout)" in detail


def collect(walk, into, limit=50):
    """Take up to ``limit`` resources' ids (a walk that never ends stops here, not in the test run)."""
    into.extend(item["id"] for item in itertools.islice(walk, limit))


def test_iter_klaviyo_stops_when_links_next_leads_back_to_a_page_already_read(mocked_responses, connected):
    again = f"{LISTS}?page%5Bcursor%5D=C2"
    mocked_responses.get(LISTS, match=[matchers.query_param_matcher({})], json=page(["l1"], again))
    mocked_responses.get(LISTS, match=[matchers.query_param_matcher({"page[cursor]": "C2"})], json=page(["l2"], again))
    walked = []
    with pytest.raises(KlaviyoPagingError, match="leads back to a page already read"):
        collect(services.iter_klaviyo(customer_identifier="cust-1", path="/api/lists"), walked)
    assert walked == ["l1", "l2"]
    assert len(mocked_responses.calls) == 2


def _endless_pages(request):
    cursor = int(dict(request.params).get("page[cursor]", "0"))
    return 200, {}, json.dumps(page([f"l{cursor}"], f"{LISTS}?page%5Bcursor%5D={cursor + 1}"))


def test_iter_klaviyo_reads_at_most_max_pages(mocked_responses, connected):
    mocked_responses.add_callback("GET", LISTS, callback=_endless_pages)
    walked = []
    with pytest.raises(KlaviyoPagingError, match="more than 3 pages"):
        collect(services.iter_klaviyo(customer_identifier="cust-1", path="/api/lists", max_pages=3), walked)
    assert walked == ["l0", "l1", "l2"]
    assert len(mocked_responses.calls) == 3


def test_iter_klaviyo_with_exactly_max_pages_pages_ends_normally(mocked_responses, connected):
    mocked_responses.get(
        LISTS, match=[matchers.query_param_matcher({})], json=page(["l1"], f"{LISTS}?page%5Bcursor%5D=C2")
    )
    mocked_responses.get(LISTS, match=[matchers.query_param_matcher({"page[cursor]": "C2"})], json=page(["l2"]))
    walked = services.iter_klaviyo(customer_identifier="cust-1", path="/api/lists", max_pages=2)
    assert [item["id"] for item in walked] == ["l1", "l2"]


# --- iter_pages: resumable walks ---------------------------------------------------------------


def test_iter_pages_hands_out_resources_included_and_the_next_cursor(mocked_responses, connected):
    body = page(["l1"], f"{LISTS}?page%5Bsize%5D=1&page%5Bcursor%5D=C2")
    body["included"] = [{"type": "tag", "id": "t1"}]
    mocked_responses.get(LISTS, match=[matchers.query_param_matcher({"page[size]": "1", "include": "tags"})], json=body)
    mocked_responses.get(
        LISTS, match=[matchers.query_param_matcher({"page[size]": "1", "page[cursor]": "C2"})], json=page(["l2"])
    )
    pages = list(
        services.iter_pages(
            customer_identifier="cust-1", path="/api/lists", params={"page[size]": "1", "include": "tags"}
        )
    )
    assert [(p.number, [r["id"] for r in p.resources], p.included, p.next_cursor, p.last) for p in pages] == [
        (1, ["l1"], [{"type": "tag", "id": "t1"}], "C2", False),
        (2, ["l2"], [], None, True),
    ]


@pytest.mark.parametrize("cursor", ["C7", f"{LISTS}?page%5Bcursor%5D=C7&page%5Bsize%5D=1", "http://x/?page[cursor]=C7"])
def test_iter_pages_starts_from_a_saved_cursor_bare_or_as_a_links_next_url(mocked_responses, connected, cursor):
    mocked_responses.get(LISTS, match=[matchers.query_param_matcher({"page[cursor]": "C7"})], json=page(["l7"]))
    walk = services.iter_pages(customer_identifier="cust-1", path="/api/lists", cursor=cursor)
    assert [[r["id"] for r in p.resources] for p in walk] == [["l7"]]


def test_iter_pages_stops_quietly_after_max_pages_with_the_cursor_to_resume_from(mocked_responses, connected):
    mocked_responses.add_callback("GET", LISTS, callback=_endless_pages)
    pages = list(services.iter_pages(customer_identifier="cust-1", path="/api/lists", max_pages=2))
    assert [(p.number, p.next_cursor, p.last) for p in pages] == [(1, "1", False), (2, "2", False)]
    assert len(mocked_responses.calls) == 2
    resumed = services.iter_pages(customer_identifier="cust-1", path="/api/lists", cursor="2", max_pages=1)
    assert [[r["id"] for r in p.resources] for p in resumed] == [["l2"]]


def test_iter_pages_stops_when_links_next_leads_back_to_a_page_already_read(mocked_responses, connected):
    again = f"{LISTS}?page%5Bcursor%5D=C2"
    mocked_responses.get(LISTS, match=[matchers.query_param_matcher({"page[cursor]": "C2"})], json=page(["l2"], again))
    walk = services.iter_pages(customer_identifier="cust-1", path="/api/lists", cursor="C2")
    assert next(walk).next_cursor == "C2"
    with pytest.raises(KlaviyoPagingError, match="leads back"):
        next(walk)


@pytest.mark.django_db(transaction=True)
def test_a_walk_interrupted_after_page_3_and_resumed_from_its_saved_cursor_visits_every_profile_once(
    klaviyo_sandbox, caplog
):
    klaviyo_sandbox.connect("cust-9", account="northwind")
    visited, saved = [], None

    class Interrupted(Exception):
        pass

    def walk(cursor):
        nonlocal saved
        params = {"page[size]": "7", "sort": "created"}
        for walked in services.iter_pages(
            customer_identifier="cust-9", path="/api/profiles", params=params, cursor=cursor
        ):
            visited.extend(resource["id"] for resource in walked.resources)
            saved = walked.next_cursor  # the checkpoint, once the page is processed
            if cursor is None and walked.number == 3:
                raise Interrupted

    with pytest.raises(Interrupted):
        walk(None)
    assert len(visited) == 21 and saved
    walk(saved)

    everyone = [seed.id for seed in profiles_of("SbxN7w")]
    assert sorted(visited) == sorted(everyone)
    assert len(visited) == len(set(visited)) == len(everyone) > 21
    assert saved is None
    caplog.get_records("call").clear()


# --- fresh_access_token: for clients that call Klaviyo themselves -----------------------------


def test_fresh_access_token_hands_out_a_usable_token_without_refreshing_it(mocked_responses, connected):
    OAuthToken.objects.update(last_called_at=None)
    token = services.fresh_access_token(customer_identifier="cust-1")
    assert (token.access_token, token.scopes) == ("at-cust-1", "accounts:read lists:read lists:write profiles:read")
    assert "at-cust-1" not in repr(token)
    assert OAuthToken.objects.get().last_called_at is not None  # handed out: in use, kept alive


def test_fresh_access_token_refreshes_one_that_expires_within_the_margin(mocked_responses, connected):
    OAuthToken.objects.update(expires_at=timezone.now() + timedelta(seconds=10))
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2", expires_in=3600))
    token = services.fresh_access_token(customer_identifier="cust-1")
    assert token.access_token == "at-2"
    assert token.expires_at > timezone.now() + timedelta(minutes=59)


def test_fresh_access_token_refreshes_a_rejected_token_once_and_not_one_already_replaced(mocked_responses, connected):
    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    assert services.fresh_access_token(customer_identifier="cust-1", rejected="at-cust-1").access_token == "at-2"
    # A second caller reports the same rejected token: it was already replaced, no refresh.
    assert services.fresh_access_token(customer_identifier="cust-1", rejected="at-cust-1").access_token == "at-2"
    assert len(mocked_responses.calls) == 1


# --- a path that would leave Klaviyo -------------------------------------------------------


@pytest.fixture
def listener():
    """A real socket on loopback that nothing should ever connect to."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(0.3)
        yield sock


@pytest.mark.parametrize("shape", ["@{host}/api/profiles", ":x@{host}/api/lists"])
def test_a_path_naming_another_host_is_refused_and_that_host_hears_nothing(settings, connected, listener, shape):
    settings.KLAVIYO_BASE_URL = "http://127.0.0.1:9"  # what stands for Klaviyo: nothing listens there
    settings.KLAVIYO_HTTP_TIMEOUT = 0.5
    settings.KLAVIYO_MAX_RETRIES = 0
    other = f"127.0.0.1:{listener.getsockname()[1]}"
    with pytest.raises(KlaviyoPathRefused, match="an API path starts with /api/"):
        call("GET", shape.format(host=other))
    with pytest.raises(TimeoutError):
        listener.accept()  # no connection was ever opened to it
    assert history() == []  # a programming error is not a failure of the customer's connection


def test_a_refused_path_is_refused_before_the_token_is_read_or_refreshed(mocked_responses, make_connection):
    make_connection("cust-1", expires_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(KlaviyoPathRefused):
        services.call_klaviyo(customer_identifier="cust-1", path="@attacker.example/api/profiles")
    with pytest.raises(KlaviyoPathRefused):
        next(services.iter_klaviyo(customer_identifier="cust-1", path=".attacker.example/api/lists"))
    assert len(mocked_responses.calls) == 0  # no refresh either
    assert history() == []
