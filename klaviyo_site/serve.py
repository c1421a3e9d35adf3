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
  as gunicorn's access line is (klaviyo_site/gunicorn.conf.py). ``LOG_FORMAT=json`` makes
  it one JSON object like the application's lines.
* **Metrics**: the workers add up their Prometheus counters through files in one directory,
  a new private one per server (``tempfile.mkdtemp``), or the one ``PROMETHEUS_MULTIPROC_DIR``
  names, which must belong to this user and be writable by no one else. Its metric files
  are removed when the server starts and stops; a directory of its own is removed too.

gunicorn stays available (``make serve SERVER=gunicorn``, klaviyo_site/gunicorn.conf.py).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import os
import re
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from klaviyo_site.flags import positive_int

ACCESS_FORMAT = "%(addr)s %(method)s %(path)s %(protocol)s %(status)s %(dt_ms)s"
# Everything but printable ASCII, and the quote and backslash that delimit the line's fields.
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def escaped(value: str) -> str:
    """``value`` with each control character, non-ASCII character, quote and backslash written
    as ``\\xNN`` (as nginx does), so that no request can start a line or a field of its own."""
    return _UNSAFE.sub(_code, value) if _UNSAFE.search(value) else value


def _code(found: re.Match[str]) -> str:
    character = ord(found.group())
    return f"\\x{character:02x}" if character < 0x100 else f"\\u{character:04x}"


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


def metrics_directory(named: str) -> tuple[str, bool]:
    """The directory the workers' metric files go to, and whether this server made it.

    A named one is made (0700) when missing; otherwise it must be a directory of this user's
    that no one else can write to: another user could plant symlinks named like the workers'
    files, which prometheus_client would then write through. Raises SystemExit with the reason."""
    if not named:
        return tempfile.mkdtemp(prefix="klaviyo-metrics-"), True
    if not os.path.exists(named):
        os.makedirs(named, mode=0o700)
    found = os.stat(named)
    if not stat.S_ISDIR(found.st_mode):
        raise SystemExit(f"PROMETHEUS_MULTIPROC_DIR {named} is not a directory")
    if found.st_uid != os.geteuid():
        raise SystemExit(
            f"PROMETHEUS_MULTIPROC_DIR {named} belongs to uid {found.st_uid}, not to this user "
            f"(uid {os.geteuid()}): use a directory of this user's, writable only by it"
        )
    if found.st_mode & 0o022:
        raise SystemExit(
            f"PROMETHEUS_MULTIPROC_DIR {named} may be written by other users "
            f"(mode {stat.S_IMODE(found.st_mode):04o}): chmod go-w it, or use another directory"
        )
    return named, False


def clear_metrics(directory: str) -> None:
    # Only prometheus_client's own files: the directory may be one the operator named.
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)


def refuse_a_taken_address(host: str, port: int) -> None:
    """Stop with a clear message when another server already listens on the address: granian's
    workers listen with SO_REUSEPORT, and would otherwise share it with that server silently."""
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror}") from None


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
    refuse_a_taken_address(host, port)
    directory, own = metrics_directory(os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip())
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # the workers inherit it
    clear_metrics(directory)

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
        clear_metrics(directory)
        if own:
            with contextlib.suppress(OSError):
                os.rmdir(directory)


if __name__ == "__main__":
    sys.exit(main())
