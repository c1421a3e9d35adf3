"""Metrics at /metrics (in this process) and log lines: request ids, customers, the JSON format."""

import json
import logging
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from oauth_integration import services
from oauth_integration.exceptions import KlaviyoThrottled
from oauth_integration.logs import ContextFilter, JsonFormatter
from oauth_integration.models import ConnectionStatus
from tests.conftest import KLAVIYO, PROFILES_URL, TOKEN_URL, profiles_body, token_body

pytestmark = pytest.mark.django_db
METRICS_TOKEN = "metrics-token-for-tests"


def scrape(client, token=METRICS_TOKEN):
    return client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")


def samples(response):
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_is_a_404_without_a_configured_token_or_the_right_bearer(client, settings):
    settings.METRICS_TOKEN = ""
    assert scrape(client).status_code == 404
    settings.METRICS_TOKEN = METRICS_TOKEN
    assert client.get("/metrics").status_code == 404
    assert scrape(client, token="wrong").status_code == 404
    assert scrape(client).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        f"Basic {METRICS_TOKEN}",
        f"Token {METRICS_TOKEN}",
        METRICS_TOKEN,
        f"Bearer x{METRICS_TOKEN}",  # ends with the token
        f"xBearer {METRICS_TOKEN}",
        f"Bearer {METRICS_TOKEN}x",
        f"Bearer  {METRICS_TOKEN}",
        f"bearer {METRICS_TOKEN}",  # the scheme is matched exactly, as Prometheus sends it
        f"BEARER {METRICS_TOKEN}",
        "Bearer ",
        "",
    ],
)
def test_metrics_needs_exactly_bearer_and_the_token(client, settings, authorization):
    settings.METRICS_TOKEN = METRICS_TOKEN
    assert client.get("/metrics", HTTP_AUTHORIZATION=authorization).status_code == 404
    assert scrape(client).status_code == 200


@pytest.mark.parametrize("authorization", ["Bearer ", "Bearer", "", "Basic Og=="])
def test_metrics_do_not_exist_without_a_configured_token_whatever_the_header(client, settings, authorization):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION=authorization).status_code == 404


def test_metrics_count_calls_refreshes_throttling_and_connections(client, settings, mocked_responses, make_connection):
    settings.METRICS_TOKEN = METRICS_TOKEN
    make_connection("cust-1", expires_at=timezone.now() - timedelta(seconds=1))
    make_connection("cust-2", status=ConnectionStatus.NEEDS_REAUTHORIZATION)
    make_connection("cust-3", status=ConnectionStatus.REVOKED, access_token=None, refresh_token=None, expires_at=None)
    before = samples(scrape(client))

    mocked_responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    mocked_responses.get(PROFILES_URL, json=profiles_body("p1"))
    mocked_responses.get(
        f"{KLAVIYO}/api/profiles/01HPROFILE",
        status=429,
        json={"errors": [{"code": "throttled"}]},
        headers={"Retry-After": "0"},
    )
    services.get_profiles(customer_identifier="cust-1")
    with pytest.raises(KlaviyoThrottled):
        services.call_klaviyo(customer_identifier="cust-1", path="/api/profiles/01HPROFILE")
    response = scrape(client)

    assert response["Content-Type"].startswith("text/plain")
    after = samples(response)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("klaviyo_token_refreshes_total", outcome="success") == 1
    assert grew("klaviyo_api_requests_total", method="GET", endpoint="/api/profiles", status="200") == 1
    assert grew("klaviyo_api_requests_total", method="GET", endpoint="/api/profiles/{id}", status="429") == 1
    assert grew("klaviyo_api_request_duration_seconds_count", method="GET", endpoint="/api/profiles") == 1
    assert grew("klaviyo_api_throttled_total", endpoint="/api/profiles/{id}") == 1
    assert grew("klaviyo_api_retries_total", endpoint="/api/profiles/{id}", reason="429") == 2
    assert value(after, "klaviyo_connections", status="active") == 1
    assert value(after, "klaviyo_connections", status="needs_reauthorization") == 1
    assert value(after, "klaviyo_connections", status="revoked") == 1
    text = response.content.decode()
    assert "cust-1" not in text and "01HPROFILE" not in text and "at-2" not in text


def test_each_request_gets_an_id_echoed_in_its_response(client):
    first, second = client.get("/healthz"), client.get("/healthz")
    assert re.fullmatch("[0-9a-f]{32}", first["X-Request-ID"]) and first["X-Request-ID"] != second["X-Request-ID"]


def test_a_clients_request_id_is_not_adopted_unless_a_proxy_sets_it(client, settings):
    """Otherwise anyone could file lines under the id of another request (here, a 32-hex one)."""
    taken = client.get("/healthz")["X-Request-ID"]
    assert client.get("/healthz", HTTP_X_REQUEST_ID=taken)["X-Request-ID"] != taken
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-1234.abc")["X-Request-ID"] != "lb-1234.abc"

    settings.REQUEST_ID_FROM_PROXY = True
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-1234.abc")["X-Request-ID"] == "lb-1234.abc"
    assert client.get("/healthz", HTTP_X_REQUEST_ID="a" * 64)["X-Request-ID"] == "a" * 64


@pytest.mark.parametrize("forged", ["bad id\n<x>", 'id"}, {"level": "CRITICAL', "a" * 65, "", "id\x1b[2J"])
def test_a_malformed_request_id_is_never_logged_even_from_a_proxy(client, settings, caplog, forged):
    settings.REQUEST_ID_FROM_PROXY = True
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.get("/profiles/cust-1", HTTP_X_REQUEST_ID=forged)  # refused: Django logs a line
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    ContextFilter().filter(record)
    assert re.fullmatch("[0-9a-f]{32}", record.request_id)
    assert response["X-Request-ID"] == record.request_id


def test_djangos_own_line_about_a_refused_request_carries_its_id(client, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.get("/profiles/cust-1")  # logged in as nobody: refused
    assert response.status_code == 401
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    ContextFilter().filter(record)  # as the handlers do, after the middleware has returned
    assert record.request_id == response["X-Request-ID"]


def test_json_log_lines_carry_time_level_logger_message_request_and_customer_only():
    record = logging.LogRecord(
        "oauth_integration.services", logging.WARNING, __file__, 1, "Customer %s did %s", ("c-9", "x"), None
    )
    record.customer_identifier = "c-9"
    record.request = "<WSGIRequest: GET '/authorize?code=SECRET-CODE'>"  # what Django's request logger attaches
    ContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert set(line) == {"time", "level", "logger", "message", "request_id", "customer_identifier"}
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING",
        "oauth_integration.services",
        "Customer c-9 did x",
    )
    assert line["customer_identifier"] == "c-9"
    assert "SECRET-CODE" not in json.dumps(line)


def configured_formatter(name):
    """The formatter ``name`` exactly as settings.LOGGING makes it."""
    from logging.config import DictConfigurator

    from django.conf import settings

    return DictConfigurator(settings.LOGGING).configure_formatter(dict(settings.LOGGING["formatters"][name]))


def test_plain_log_lines_write_control_characters_as_escapes():
    forged = "boom\n2026-12-07 00:00:00,000 CRITICAL oauth_integration.services.connect [x] Customer acme\x1b[2J"
    record = logging.LogRecord(
        "oauth_integration.services.connect", logging.WARNING, __file__, 1, "Klaviyo said: %s", (forged,), None
    )
    ContextFilter().filter(record)

    line = configured_formatter("plain").format(record)

    assert "WARNING oauth_integration.services.connect [] Klaviyo said: boom\\n2026-12-07 00:00:00,000 CRITICAL" in line
    assert "\n" not in line and "\x1b" not in line
    assert r"[x] Customer acme\x1b[2J" in line


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_log_lines_mask_e_mail_addresses(log_format):
    record = logging.LogRecord(  # as services/connect.py logs a connection
        "oauth_integration.services.connect",
        logging.INFO,
        __file__,
        1,
        "Customer %s connected %s",
        ("jane.doe@example.com", "Acme (ops+klaviyo@acme.example.org)"),
        None,
    )
    record.customer_identifier = "jane.doe@example.com"
    ContextFilter().filter(record)

    line = configured_formatter(log_format).format(record)

    assert "jane.doe" not in line and "ops+klaviyo" not in line
    if log_format == "json":
        line = json.loads(line)
        assert line["customer_identifier"] == "j***@example.com"
        line = line["message"]
    assert line.endswith("Customer j***@example.com connected Acme (o***@acme.example.org)")
