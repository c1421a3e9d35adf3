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
import json
import os
import time
from collections.abc import Callable
from typing import Any

from gunicorn.glogging import Logger

from oauth_integration import serving
from oauth_integration.serving import escaped

__all__ = ["AccessLogger", "child_exit", "logger_class", "on_exit", "on_starting"]

# --- metrics over several worker processes ------------------------------------------------------

# The directory this master uses ("" until on_starting) and whether it made it itself.
metrics_dir = ""
_made_here = False


def on_starting(server: Any) -> None:
    """Choose the metrics directory (``serving.metrics_directory``) and set PROMETHEUS_MULTIPROC_DIR."""
    global metrics_dir, _made_here
    metrics_dir, _made_here = serving.metrics_directory()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    serving.clear_metrics(metrics_dir)
    if _made_here:  # our own: leave nothing behind
        with contextlib.suppress(OSError):
            os.rmdir(metrics_dir)


# --- access lines ---------------------------------------------------------------------------------


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
