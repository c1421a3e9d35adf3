"""gunicorn hooks for a project that serves the integration: metrics added up over the workers, safe access lines.

A project served by gunicorn with more than one worker process needs these hooks, or each
scrape of ``/metrics`` sees one worker's counters. Either load this module as the config::

    gunicorn mysite.wsgi --config python:oauth_integration.gunicorn --workers 2 --access-logfile -

or import it at the top of the project's own ``gunicorn.conf.py`` (and call
``oauth_integration.gunicorn.on_starting(server)`` from an ``on_starting`` of your own)::

    from oauth_integration.gunicorn import *  # noqa: F403

What it sets:

* ``on_starting``: the directory of ``prometheus_client``'s multiprocess files, set in the
  environment before the workers start (they inherit it). ``PROMETHEUS_MULTIPROC_DIR`` may
  name it (made with mode 0700 when missing; one that another user owns or may write to is
  refused: they could plant symlinks named like the workers' files); otherwise each master
  makes a new one with ``tempfile.mkdtemp``, never one someone could have made beforehand
  under a name they could predict. Its metric files are removed when gunicorn starts.
* ``child_exit``: a dead worker's live gauges are dropped.
* ``on_exit``: the metric files are removed, and a directory of our own with them.
* ``logger_class``: ``AccessLogger``, one fixed access line without query strings or
  referrers (Klaviyo's redirect to the callback carries the authorization code), with
  every value a client chose escaped. It writes only where gunicorn's access log goes
  (``--access-logfile`` / ``accesslog``; none by default).

gunicorn is not a dependency of this distribution: this module is imported only by gunicorn.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from typing import Any

from gunicorn.glogging import Logger

__all__ = ["AccessLogger", "child_exit", "logger_class", "on_exit", "on_starting"]

# --- metrics over several worker processes ------------------------------------------------------

# The directory this master uses ("" until on_starting) and whether it made it itself.
metrics_dir = ""
_made_here = False


def check_named_metrics_dir(path: str) -> None:
    """Make ``path`` (mode 0700) if it does not exist; refuse one another user owns or may write
    to: they could plant symlinks named like the workers' files, which prometheus_client
    would then write through. Raises RuntimeError with the reason."""
    if not os.path.exists(path):
        os.makedirs(path, mode=0o700)
    found = os.stat(path)
    if not stat.S_ISDIR(found.st_mode):
        raise RuntimeError(f"PROMETHEUS_MULTIPROC_DIR {path} is not a directory")
    if found.st_uid != os.geteuid():
        raise RuntimeError(
            f"PROMETHEUS_MULTIPROC_DIR {path} belongs to uid {found.st_uid}, not to this user "
            f"(uid {os.geteuid()}): use a directory of this user's, writable only by it"
        )
    if found.st_mode & 0o022:
        raise RuntimeError(
            f"PROMETHEUS_MULTIPROC_DIR {path} may be written by other users "
            f"(mode {stat.S_IMODE(found.st_mode):04o}): chmod go-w it, or use another directory"
        )


def _clear_metrics() -> None:
    # Only prometheus_client's own files: the directory may be one the operator named.
    if not metrics_dir:  # on_starting stopped before choosing it
        return
    for path in glob.glob(os.path.join(metrics_dir, "*.db")):
        os.remove(path)


def on_starting(server: Any) -> None:
    """Choose the metrics directory (see the module's docstring) and set PROMETHEUS_MULTIPROC_DIR."""
    global metrics_dir, _made_here
    named = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if named:
        check_named_metrics_dir(named)
        metrics_dir, _made_here = named, False
    else:
        metrics_dir, _made_here = tempfile.mkdtemp(prefix="klaviyo-metrics-"), True
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    _clear_metrics()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    _clear_metrics()
    if _made_here:  # our own: leave nothing behind
        with contextlib.suppress(OSError):
            os.rmdir(metrics_dir)


# --- access lines ---------------------------------------------------------------------------------

# Everything but printable ASCII, and the quote and backslash that delimit the line's fields.
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def _code(found: re.Match[str]) -> str:
    character = ord(found.group())
    return f"\\x{character:02x}" if character < 0x100 else f"\\u{character:04x}"


def escaped(value: str) -> str:
    """``value`` with each control character, non-ASCII character, quote and backslash written
    as ``\\xNN`` (as nginx does), so that no request can start a line or a field of its own.
    WSGI strings hold one byte per character (latin-1), so ``\\xNN`` are the bytes received."""
    return _UNSAFE.sub(_code, value) if _UNSAFE.search(value) else value


class AccessLogger(Logger):
    """gunicorn's logger, writing one fixed access line without query strings or referrers.

    Klaviyo's redirect to the callback (``...?code=...&state=...``) would otherwise write
    authorization codes into the log, and so would the Referer of the next page the browser
    opens. The line is built from the few fields it shows (address, time, method, path,
    protocol, status, bytes, milliseconds, user agent): gunicorn's own formatting gathers
    every header and environment variable first, which cost more CPU than the rest of
    serving a request.

    Every field a client chooses is escaped (``escaped``): the path arrives percent-decoded,
    so ``/x%0A{...}`` would otherwise write a line of the attacker's making. E-mail addresses
    in the path are masked as in the application's lines (``j***@example.com``). With
    ``LOG_FORMAT = "json"`` in Django's settings (read once per worker) the line is one JSON
    object like the application's own lines, with the same escaped values.
    """

    _json: bool | None = None  # these two are set on the first request, in the worker
    _mask: Callable[[str], str] = str

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        if self._json is None:
            self._json, self._mask = _app_logging()
        status = str(resp.status).split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        milliseconds = request_time.seconds * 1000 + request_time.microseconds // 1000
        address = escaped(environ.get("REMOTE_ADDR", "-"))
        method = escaped(environ.get("REQUEST_METHOD", "-"))
        path = escaped(self._mask(environ.get("PATH_INFO", "-")))
        protocol = escaped(environ.get("SERVER_PROTOCOL", "-"))
        request = f"{method} {path} {protocol}"
        agent = escaped(environ.get("HTTP_USER_AGENT", "-"))
        if not self._json:
            self.access_log.info(
                '%s [%s] "%s" %s %s %sms "%s"',
                address,
                time.strftime("%d/%b/%Y:%H:%M:%S %z"),
                request,
                status,
                "-" if sent is None else sent,
                milliseconds,
                agent,
            )
            return
        now = time.time()
        line = {
            "time": f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))},{int(now % 1 * 1000):03d}",
            "level": "INFO",
            "logger": self.access_log.name,
            "message": f'{address} "{request}" {status}',
            "remote_addr": address,
            "method": method,
            "path": path,
            "protocol": protocol,
            "status": int(status) if status.isdigit() else status,
            "bytes": sent,
            "duration_ms": milliseconds,
            "user_agent": agent,
        }
        self.access_log.info("%s", json.dumps(line))


def _app_logging() -> tuple[bool, Callable[[str], str]]:
    """Whether the application logs JSON (Django's LOG_FORMAT), and its e-mail masking for paths
    such as /profiles/<e-mail>. The application is loaded by now."""
    from django.conf import settings

    from oauth_integration.logs import mask_emails

    return getattr(settings, "LOG_FORMAT", "plain") == "json", mask_emails


logger_class = AccessLogger
