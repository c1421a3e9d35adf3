"""Log lines an aggregator can parse: a request id on every line, the customer where relevant.

* ``request_id_middleware`` gives every request an id (a random one, or the
  ``X-Request-ID`` header's when ``REQUEST_ID_FROM_PROXY`` says a proxy sets it and it is a
  plain token of 1-64 characters), sends it back in ``X-Request-ID`` and keeps it
  for the duration of the request, and on the request itself for Django's own lines about
  the response (logged after the middleware has returned). A client's own header is not
  adopted: it could file its lines under the id of someone else's request.
* ``ContextFilter`` adds ``request_id`` and ``customer_identifier`` (from ``extra=``) to
  every record, so both the plain and the JSON format can show them.
* ``JsonFormatter`` writes one JSON object per line (time, level, logger, message,
  request id, customer identifier), using python-json-logger.
* ``PlainFormatter`` writes the plain format with control characters in the line written as
  escapes (``\\n``, ``\\x1b``): a message quoting what a client or Klaviyo sent cannot add a
  line of its own or send terminal escapes. A traceback still follows on lines of its own.
* Both formatters mask e-mail addresses (``mask_emails``: ``jane.doe@example.com`` is
  written ``j***@example.com``), in messages and in the customer identifier: customers
  identified by e-mail would otherwise have their address in every line about them.

Log messages never carry tokens, verifiers, secrets or keys (see ``exceptions.py``).
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from oauth_integration.conf import conf

REQUEST_ID_HEADER = "X-Request-ID"
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def request_id_middleware(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Give each request an id for its log lines, and return it in ``X-Request-ID``."""

    def middleware(request: HttpRequest) -> HttpResponse:
        given = request.headers.get(REQUEST_ID_HEADER, "") if conf.request_id_from_proxy else ""
        request_id = given if _ACCEPTED_ID.fullmatch(given) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = _request_id.set(request_id)
        try:
            response = get_response(request)
        finally:
            _request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response

    return middleware


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``customer_identifier`` (empty when not relevant) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get() or getattr(getattr(record, "request", None), "request_id", "")
        if not hasattr(record, "customer_identifier"):
            record.customer_identifier = ""
        return True


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_control(found: re.Match[str]) -> str:
    return found.group().encode("unicode_escape").decode("ascii")


# An e-mail address as customer identifiers and Klaviyo's messages write them: the local part
# is kept to its first character, the domain is kept.
_EMAIL = re.compile(r"(?<![\w.+\-~])([\w.+\-~])[\w.+\-~]*@(\w[\w\-]*(?:\.[\w\-]+)+)")


def mask_emails(text: str) -> str:
    """``text`` with every e-mail address masked: ``jane.doe@example.com`` -> ``j***@example.com``."""
    return _EMAIL.sub(r"\1***@\2", text) if "@" in text else text


class PlainFormatter(logging.Formatter):
    """``logging.Formatter`` whose line (time, level, logger, request id, message) holds no
    control character: each is written as its Python escape, ``\\n`` or ``\\x1b``, and no
    e-mail address (``mask_emails``)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = mask_emails(super().formatMessage(record))
        return _CONTROL.sub(_escape_control, line) if _CONTROL.search(line) else line


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id, customer_identifier
    (and status_code, exc_info when present), e-mail addresses masked (``mask_emails``).

    Only these fields are written. Other ``extra`` attributes are dropped: Django's request
    logger attaches the request itself, whose text includes the query string (an
    authorization code, on the OAuth callback).
    """

    FIELDS = ("time", "level", "logger", "message", "request_id", "customer_identifier", "status_code", "exc_info")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", ["asctime", "levelname", "name", "message", "request_id", "customer_identifier"])
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        super().__init__(*args, **kwargs)

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_record, record, message_dict)
        for key in [key for key in log_record if key not in self.FIELDS]:
            del log_record[key]
        for key in ("message", "customer_identifier"):
            if isinstance(log_record.get(key), str):
                log_record[key] = mask_emails(log_record[key])
