"""No secret ever leaves through logs, responses, exceptions, command output or ``repr``.

Full flows run with every logger at DEBUG and every exception raised anywhere recorded
(a trace function sees each one, caught or not). The captured text is then searched for
the actual secret values: tokens, the authorization code, the PKCE verifier, the client
secret (plain and as the Basic auth header) and the encryption key.
"""

import base64
import json
import logging
import secrets
import sys
import threading
from datetime import timedelta
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from responses import matchers

from oauth_integration import pkce, services
from oauth_integration.klaviyo import TokenGrant
from oauth_integration.links import build_start_link
from oauth_integration.logs import ContextFilter, JsonFormatter
from oauth_integration.models import ConnectionEvent, ConnectionStatus, OAuthToken, PkceCode
from tests.conftest import (
    ACCOUNTS_URL,
    PROFILES_URL,
    REVOKE_URL,
    TOKEN_URL,
    accounts_body,
    grant_permissions,
    open_start_link,
    profiles_body,
    token_body,
)

pytestmark = pytest.mark.django_db(transaction=True)  # refresh_tokens runs worker threads

CUSTOMER = "leak-test-customer"


def secret(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(24)}"


class Capture(logging.Handler):
    """Every record, fully formatted: message, traceback, stack and the extras' repr, and the
    same record as the JSON line LOG_FORMAT=json writes."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self.json_lines: list[str] = []
        self.standard = set(vars(logging.makeLogRecord({})))
        self.context = ContextFilter()
        self.json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        extras = {key: value for key, value in vars(record).items() if key not in self.standard}
        self.lines.append(f"{self.format(record)} {extras!r} {record.args!r}")
        self.context.filter(record)
        self.json_lines.append(self.json.format(record))


@pytest.fixture
def log_capture():
    """Root and every known logger at DEBUG, all feeding one handler."""
    handler = Capture()
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        if logger is logging.getLogger() or not logger.propagate:
            logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled
            logger.removeHandler(handler)


@pytest.fixture
def raised():
    """Every exception raised while the test runs, in this thread and in threads it starts."""
    seen: list[BaseException] = []

    def local(frame, event, arg):
        if event == "exception":
            seen.append(arg[1])
        return local

    def start(frame, event, arg):
        frame.f_trace_lines = False
        return local

    previous = sys.gettrace()
    sys.settrace(start)
    threading.settrace(start)
    try:
        yield seen
    finally:
        sys.settrace(previous)
        threading.settrace(None)


def exception_text(exceptions: list[BaseException]) -> str:
    parts = []
    for exc in exceptions:
        parts += [str(exc), repr(exc), repr(exc.args), repr(getattr(exc, "__notes__", ""))]
    return "\n".join(parts)


def last_code_verifier(mocked_responses) -> str:
    """The PKCE verifier sent with the latest code exchange."""
    forms = (parse_qs(call.request.body) for call in reversed(mocked_responses.calls) if call.request.body)
    return next(form["code_verifier"][0] for form in forms if "code_verifier" in form)


def test_no_secret_leaks_from_full_flows(settings, mocked_responses, log_capture, raised):
    values = {name: secret(name) for name in ("client-secret", "code-1", "code-2", "code-3")}
    values |= {f"{kind}-{i}": secret(kind) for kind in ("access", "refresh") for i in range(1, 8)}
    settings.KLAVIYO_CLIENT_SECRET = values["client-secret"]
    settings.TOKEN_ENCRYPTION_KEY = secrets.token_hex(32)
    settings.KLAVIYO_MAX_RETRIES = 0
    settings.KLAVIYO_REFRESH_FAILURE_COOLDOWN = 0  # each failing step is followed by a fresh attempt
    texts: list[str] = []  # response bodies and headers, command output

    def keep(response):
        texts.append(response.content.decode("utf-8", "replace"))
        texts.append(repr(response.headers))
        return response

    def grant_body(i: int) -> dict:
        return token_body(access=values[f"access-{i}"], refresh=values[f"refresh-{i}"])

    browser = Client()
    staff = Client()
    staff.force_login(
        grant_permissions(get_user_model().objects.create_user("staff", is_staff=True), "view_oauthtoken")
    )
    link_tokens: list[str] = []  # the signed part of each start link

    def connect(code: str, tokens: int) -> None:
        link = build_start_link(CUSTOMER)
        link_tokens.append(parse_qs(urlsplit(link).query)["token"][0])
        location = keep(open_start_link(browser, link))["Location"]
        state = parse_qs(urlsplit(location).query)["state"][0]
        mocked_responses.post(TOKEN_URL, json=grant_body(tokens))
        mocked_responses.get(ACCOUNTS_URL, json=accounts_body())
        assert keep(browser.get(f"/authorize?code={values[code]}&state={state}")).status_code == 200

    def expire_soon() -> None:
        OAuthToken.objects.filter(customer_identifier=CUSTOMER).update(expires_at=timezone.now() + timedelta(seconds=5))

    def profiles() -> int:
        return keep(staff.get(f"/profiles/{CUSTOMER}?page_size=5")).status_code

    # Connect: code exchange (PKCE) and the account lookup.
    connect("code-1", tokens=1)
    verifiers = [parse_qs(call.request.body)["code_verifier"][0] for call in mocked_responses.calls[:1]]

    # Profiles with a refresh first (the token expires within the margin).
    expire_soon()
    mocked_responses.post(TOKEN_URL, json=grant_body(2))
    mocked_responses.get(PROFILES_URL, json=profiles_body("p1"))
    assert profiles() == 200

    # 401 -> refresh -> retry.
    mocked_responses.get(PROFILES_URL, status=401, json={"errors": [{"code": "authentication_failed"}]})
    mocked_responses.post(TOKEN_URL, json=grant_body(3))
    mocked_responses.get(PROFILES_URL, json=profiles_body("p2"))
    assert profiles() == 200

    # Klaviyo 500 and a body that is not JSON, on the API and on the token endpoint.
    mocked_responses.get(PROFILES_URL, status=500, body=f"boom {values['access-3']}")
    assert profiles() == 502
    mocked_responses.get(PROFILES_URL, status=200, body=f"<html>{values['access-3']}</html>")
    assert profiles() == 502
    expire_soon()
    mocked_responses.post(TOKEN_URL, status=500, body=f"boom {values['refresh-3']}")
    assert profiles() == 502
    mocked_responses.post(TOKEN_URL, status=200, body=f"<html>{values['refresh-3']}</html>")
    assert profiles() == 502

    # Keep-alive from the command line, then invalid_grant (the customer uninstalled the app).
    mocked_responses.post(TOKEN_URL, json=grant_body(4))
    out, err = StringIO(), StringIO()
    call_command("refresh_tokens", "--expiring-within", "600", stdout=out, stderr=err)
    texts += [out.getvalue(), err.getvalue()]
    expire_soon()
    mocked_responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "nope"})
    assert profiles() == 409
    assert OAuthToken.objects.get(customer_identifier=CUSTOMER).status == ConnectionStatus.NEEDS_REAUTHORIZATION

    # Reconnect and disconnect (revoke works), reconnect and disconnect (revoke fails).
    mocked_responses.post(  # the reconnect revokes the refresh token it replaces
        REVOKE_URL,
        match=[matchers.urlencoded_params_matcher({"token": values["refresh-4"], "token_type_hint": "refresh_token"})],
    )
    connect("code-2", tokens=5)
    verifiers.append(last_code_verifier(mocked_responses))
    mocked_responses.post(
        REVOKE_URL,
        match=[matchers.urlencoded_params_matcher({"token": values["refresh-5"], "token_type_hint": "refresh_token"})],
    )
    texts.append(repr(services.disconnect(customer_identifier=CUSTOMER)))
    connect("code-3", tokens=6)
    verifiers.append(last_code_verifier(mocked_responses))
    mocked_responses.post(REVOKE_URL, status=500, body=values["refresh-6"])
    texts.append(repr(services.disconnect(customer_identifier=CUSTOMER)))

    # Key rotation and its check.
    connect("code-1", tokens=7)
    for args in ((), ("--check",)):
        out, err = StringIO(), StringIO()
        call_command("rotate_encryption_key", *args, stdout=out, stderr=err)
        texts += [out.getvalue(), err.getvalue()]

    # The objects that carry secrets, as a developer would print them.
    row = OAuthToken.objects.get(customer_identifier=CUSTOMER)
    texts += [repr(row), str(row), repr(row.access_token), repr(row.refresh_token)]
    texts.append(repr(OAuthToken.objects.retrieve(CUSTOMER)))
    texts.append(repr(TokenGrant(values["access-1"], values["refresh-1"], timezone.now(), "accounts:read")))
    state = parse_qs(urlsplit(keep(open_start_link(browser, build_start_link(CUSTOMER)))["Location"]).query)["state"][0]
    pending = PkceCode.objects.get(state_hash=pkce.digest(state))
    texts += [repr(pending), repr(PkceCode.objects.get()), repr(PkceCode.objects.get().code_verifier)]
    verifiers.append(pending.code_verifier)
    assert ConnectionEvent.objects.filter(kind=ConnectionEvent.Kind.REVOKE_FAILED).count() == 1

    secrets_to_find = {
        **values,
        "encryption-key": settings.TOKEN_ENCRYPTION_KEY,
        "basic-auth": base64.b64encode(f"client-id:{values['client-secret']}".encode()).decode(),
        **{f"code-verifier-{i}": verifier for i, verifier in enumerate(verifiers)},
        **{f"start-link-signature-{i}": token.rsplit(":", 1)[1] for i, token in enumerate(link_tokens)},
    }
    logs = "\n".join([*log_capture.lines, *log_capture.json_lines])
    json_records = [json.loads(line) for line in log_capture.json_lines]
    assert any(r["customer_identifier"] == CUSTOMER and r["request_id"] for r in json_records)
    haystack = "\n".join([logs, exception_text(raised), *texts])
    # The capture works: the flows were logged and their exceptions recorded.
    assert f"Refreshed the Klaviyo token of {CUSTOMER}" in logs
    assert "needs reauthorization" in logs
    assert "Revoking the token of" in logs
    assert any(type(exc).__name__ == "InvalidGrant" for exc in raised)
    assert any(type(exc).__name__ == "JSONDecodeError" for exc in raised)
    assert len(verifiers) == 4
    leaks = {
        name: haystack[max(0, at - 80) : at + 80]  # where it was found, to see what leaked it
        for name, value in secrets_to_find.items()
        if (at := haystack.find(value)) >= 0
    }
    assert leaks == {}


def test_the_capture_would_see_a_leak(log_capture, raised):
    """The two capture mechanisms above really catch a logged or raised secret."""
    canary = secret("canary")
    logging.getLogger("django.request").debug("request failed for %s", canary)
    try:
        raise CommandError(f"failed with {canary}")
    except CommandError:
        pass
    assert canary in "\n".join(log_capture.lines)
    assert canary in exception_text(raised)
