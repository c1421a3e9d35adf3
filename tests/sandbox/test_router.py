"""Routing from Klaviyo's description: every operation has a route, its scopes and its rate tier."""

import json

import pytest

from klaviyo_sandbox.scopes import KNOWN_SCOPES
from tests.sandbox.support import JSON_API, NORTHWIND, REVISION, api, error_of, token_for

pytestmark = pytest.mark.django_db

CLIENT = "/sandbox/client"


def every_scope_token():
    return token_for(scopes=" ".join(sorted(KNOWN_SCOPES)))


def client_call(client, method, path, body=None, *, revision=REVISION, **params):
    query = "&".join(f"{key}={value}" for key, value in params.items())
    payload = json.dumps(body) if body is not None else ""
    return client.generic(method, f"{CLIENT}{path}?{query}", payload, content_type=JSON_API, HTTP_REVISION=revision)


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/campaigns", "campaigns:read"),
        ("POST", "/catalog-items", "catalogs:write"),
        ("POST", "/profile-subscription-bulk-create-jobs", "subscriptions:write"),
        ("GET", "/segments/AbC123/profiles", "segments:read"),
    ],
)
def test_an_operation_without_a_hand_written_view_needs_the_scopes_the_description_names(client, method, path, scope):
    error = error_of(api(client, method, path, token_for(scopes="accounts:read"), body={}), 403)
    assert error["code"] == "permission_denied"
    assert scope in error["detail"]


def test_the_predictive_analytics_tier_applies_when_that_additional_field_is_asked_for(client):
    token = token_for()
    plain = api(client, "GET", "/profiles", token)
    predictive = api(client, "GET", "/profiles", token, **{"additional-fields[profile]": "predictive_analytics"})
    assert plain.status_code == predictive.status_code == 200
    assert plain["RateLimit-Limit"].endswith("750;w=1, 7500;w=60")
    assert predictive["RateLimit-Limit"].endswith("100;w=1, 1500;w=60")  # 10/s 150/m, times the scale of 10


def test_a_daily_limit_from_the_description_is_announced(client):
    response = api(client, "POST", "/lists", token_for(), body={"data": {"type": "list", "attributes": {"name": "A"}}})
    assert response.status_code == 201
    assert response["RateLimit-Limit"].endswith("100;w=1, 1500;w=60, 1500;w=86400")


def test_a_client_endpoint_needs_a_known_company_id_not_a_bearer_token(client):
    body = {"data": {"type": "event", "attributes": {}}}
    error = error_of(client_call(client, "POST", "/events", body, company_id="nope"), 400)
    assert error["source"] == {"parameter": "company_id"}
    error = error_of(client_call(client, "POST", "/events", body), 400)
    assert error["source"] == {"parameter": "company_id"}


def test_an_unknown_client_path_or_method_is_a_json_api_error(client):
    error = error_of(client_call(client, "GET", "/nothing-here", company_id=NORTHWIND), 404)
    assert error["detail"] == "There is no endpoint at /client/nothing-here."
    response = client_call(client, "GET", "/events", company_id=NORTHWIND)
    assert error_of(response, 405)["code"] == "method_not_allowed"
    assert response["Allow"] == "POST"


def test_a_nul_character_is_a_json_api_400_even_without_the_sites_middleware(rf):
    from klaviyo_sandbox.api import router

    request = rf.get("/sandbox/api/coupons", {"filter": "a\x00b"}, HTTP_REVISION=REVISION)
    response = router.dispatch(request, path="coupons")
    assert response.status_code == 400
    assert response["Content-Type"] == JSON_API
    (error,) = json.loads(response.content)["errors"]
    assert (error["code"], error["detail"]) == ("invalid", "NUL characters are not allowed.")


@pytest.mark.parametrize("path", ["/profiles", "/catalog-items"])
def test_page_cursor_also_takes_a_whole_links_next_url(client, path):
    token = every_scope_token()
    for number in range(3):
        item = {"external_id": f"S{number}", "title": "T", "description": "D", "url": "https://shop.example/"}
        api(client, "POST", "/catalog-items", token, body={"data": {"type": "catalog-item", "attributes": item}})
    first = api(client, "GET", path, token, **{"page[size]": "2"}).json()
    link = first["links"]["next"]
    assert link.startswith("http://testserver/sandbox/api/")
    by_cursor = api(client, "GET", link, token).json()
    by_url = api(client, "GET", path, token, **{"page[size]": "2", "page[cursor]": link}).json()
    assert [item["id"] for item in by_url["data"]] == [item["id"] for item in by_cursor["data"]]
    assert by_url["data"] and not {item["id"] for item in by_url["data"]} & {item["id"] for item in first["data"]}


@pytest.mark.parametrize("path", ["/segments/a%0Ab", "/segments/%0A", "/no%0Asuch"])
def test_a_path_with_a_line_break_is_still_answered_in_json_api(client, path):
    error = error_of(api(client, "GET", path, every_scope_token()), 404)
    assert error["code"] == "not_found"
