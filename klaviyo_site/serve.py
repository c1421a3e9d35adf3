"""``python -m klaviyo_site.serve``: serve the site with granian, as ``make serve`` does.

granian is an HTTP server written in Rust: it parses requests and writes responses outside
Python, so the workers' Python time goes to Django alone. Worker processes and the threads
each runs Django in come from the environment (``WEB_CONCURRENCY``, default 2;
``SERVER_THREADS``, default 2), the address from ``--bind HOST:PORT`` (default
127.0.0.1:8000). A taken address stops it at start-up (checked first: granian's workers
listen with SO_REUSEPORT, and would otherwise share the port with the other server).

* **Access log**: one line per request on stdout, never with the query string (Klaviyo's
  redirect to /authorize?code=...&state=... would put authorization codes there) or the
  Referer; each field a client chooses is escaped (``\\xNN``) and e-mail addresses masked,
  as gunicorn's access line is (``oauth_integration.gunicorn``). ``LOG_FORMAT=json`` makes
  it one JSON object like the application's lines.
* **Metrics**: the workers add up their Prometheus counters through files in one directory,
  chosen and checked as for gunicorn (``oauth_integration.serving.metrics_directory``): the
  one ``PROMETHEUS_MULTIPROC_DIR`` names, if it belongs to this user and no one else can
  write to it, or a new private one, removed when the server stops.

gunicorn stays available (``make serve SERVER=gunicorn``, klaviyo_site/gunicorn.conf.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from klaviyo_site.flags import positive_int
from oauth_integration import serving
from oauth_integration.serving import escaped

ACCESS_FORMAT = "%(addr)s %(method)s %(path)s %(protocol)s %(status)s %(dt_ms)s"


class AccessFormatter(logging.Formatter):
    """granian's access records (a dict of fields) as our access line: escaped, masked, no query."""

    def __init__(self, *args: Any, json_lines: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.json_lines = json_lines
        self._mask: Callable[[str], str] | None = None

    def format(self, record: logging.LogRecord) -> str:
        fields = record.args if isinstance(record.args, dict) else {}
        if self._mask is None:
            from oauth_integration.logs import mask_emails

            self._mask = mask_emails
        address = escaped(str(fields.get("addr", "-")))
        method = escaped(str(fields.get("method", "-")))
        path = escaped(self._mask(str(fields.get("path", "-"))))
        protocol = escaped(str(fields.get("protocol", "-")))
        status = fields.get("status", "-")
        milliseconds = int(float(fields.get("dt_ms", 0) or 0))
        request = f"{method} {path} {protocol}"
        when = time.localtime(record.created)
        if not self.json_lines:
            return f'{address} [{time.strftime("%d/%b/%Y:%H:%M:%S %z", when)}] "{request}" {status} {milliseconds}ms'
        return json.dumps(
            {
                "time": f"{time.strftime('%Y-%m-%d %H:%M:%S', when)},{int(record.msecs):03d}",
                "level": "INFO",
                "logger": "granian.access",
                "message": f'{address} "{request}" {status}',
                "remote_addr": address,
                "method": method,
                "path": path,
                "protocol": protocol,
                "status": status,
                "duration_ms": milliseconds,
            }
        )


def logging_config(json_lines: bool) -> dict[str, Any]:
    """granian's own lines as it writes them; access lines through ``AccessFormatter``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "server": {"()": "logging.Formatter", "fmt": "[%(levelname)s] %(message)s"},
            "access": {"()": f"{__name__}.AccessFormatter", "json_lines": json_lines},
        },
        "handlers": {
            "server": {"formatter": "server", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
            "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "_granian": {"handlers": ["server"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def parse_bind(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--bind takes HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m klaviyo_site.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--bind", type=parse_bind, default=("127.0.0.1", 8000), help="HOST:PORT (127.0.0.1:8000)")
    args = parser.parse_args(argv)
    workers = positive_int("WEB_CONCURRENCY", 2)
    threads = positive_int("SERVER_THREADS", 2)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "klaviyo_site.settings")
    from django.conf import settings  # the settings alone (LOG_FORMAT may come from .env): no app is loaded

    json_lines = getattr(settings, "LOG_FORMAT", "plain") == "json"
    host, port = args.bind
    try:
        serving.refuse_taken_address(host, port)
        directory, own = serving.metrics_directory()
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None

    from granian import Granian

    server = Granian(
        "klaviyo_site.wsgi:application",
        address=host,
        port=port,
        interface="wsgi",
        workers=workers,
        blocking_threads=threads,
        websockets=False,
        log_dictconfig=logging_config(json_lines),
        log_access=True,
        log_access_format=ACCESS_FORMAT,
        respawn_failed_workers=True,
    )
    try:
        server.serve()
    finally:
        serving.clear_metrics(directory)
        if own:
            with contextlib.suppress(OSError):
                os.rmdir(directory)


if __name__ == "__main__":
    sys.exit(main())
