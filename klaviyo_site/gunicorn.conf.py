"""gunicorn settings for ``make serve`` and the bench: the one place for the serving defaults.

Worker processes, threads per worker and the worker class come from the environment
(``WEB_CONCURRENCY``, default 2; ``GUNICORN_THREADS``, default 2; ``GUNICORN_WORKER_CLASS``,
default ``gthread``; ``GUNICORN_REUSE_PORT``, default on), so ``make serve`` and
``python -m bench`` serve the same way; a command-line ``--workers``/``--threads``/
``--worker-class`` still wins. The address comes from ``--bind``.
"""

import contextlib
import glob
import json
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Callable

from gunicorn.glogging import Logger

from klaviyo_site.flags import parse_bool


def _positive(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    number = int(value)
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return number


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return parse_bool(value)
    except ValueError:
        raise ValueError(f"{name} must be true or false, not {value!r}") from None


workers = _positive("WEB_CONCURRENCY", 2)
threads = _positive("GUNICORN_THREADS", 2)
# gthread workers keep answering while a request waits for Klaviyo.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "").strip() or "gthread"

# Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel spreads new
# connections over them. With one shared socket, a burst of keep-alive connections could
# all land on the worker that woke first and stay there: one worker did all the work, at
# half the throughput, in about one benchmark round in five. on_starting below still
# refuses an address another server is listening on. With only a few long-lived client
# connections the kernel's split can be uneven, and systemd socket activation (fd://)
# needs the master's own socket: GUNICORN_REUSE_PORT=false for those.
reuse_port = _flag("GUNICORN_REUSE_PORT", True)


# Everything but printable ASCII, and the quote and backslash that delimit the line's fields.
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def _code(found: re.Match) -> str:
    character = ord(found.group())
    return f"\\x{character:02x}" if character < 0x100 else f"\\u{character:04x}"


def _escaped(value: str) -> str:
    """``value`` with each control character, non-ASCII character, quote and backslash written
    as ``\\xNN`` (as nginx does), so that no request can start a line or a field of its own.
    WSGI strings hold one byte per character (latin-1), so ``\\xNN`` are the bytes received."""
    return _UNSAFE.sub(_code, value) if _UNSAFE.search(value) else value


class AccessLogger(Logger):
    """gunicorn's logger, writing one fixed access line without query strings or referrers.

    Klaviyo's redirect to /authorize?code=...&state=... would otherwise write authorization
    codes into the log, and so would the Referer of the next page the browser opens. The line
    is built from the few fields it shows (address, time, method, path, protocol, status,
    bytes, milliseconds, user agent): gunicorn's own formatting gathers every header and
    environment variable first, which cost more CPU than the rest of serving a request.

    Every field a client chooses is escaped (``_escaped``): the path arrives percent-decoded,
    so ``/x%0A{...}`` would otherwise write a line of the attacker's making. E-mail addresses
    in the path are masked as in the application's lines (``j***@example.com``). With
    ``LOG_FORMAT=json`` (Django's setting, read once per worker) the line is one JSON object
    like the application's own lines, with the same escaped values.
    """

    _json: bool | None = None  # these two are set on the first request, in the worker
    _mask: Callable[[str], str] = str

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        if self._json is None:
            self._json, self._mask = _app_logging()
        status = str(resp.status).split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        milliseconds = request_time.seconds * 1000 + request_time.microseconds // 1000
        address = _escaped(environ.get("REMOTE_ADDR", "-"))
        method = _escaped(environ.get("REQUEST_METHOD", "-"))
        path = _escaped(self._mask(environ.get("PATH_INFO", "-")))
        protocol = _escaped(environ.get("SERVER_PROTOCOL", "-"))
        request = f"{method} {path} {protocol}"
        agent = _escaped(environ.get("HTTP_USER_AGENT", "-"))
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
    """Whether the application logs JSON (Django's LOG_FORMAT, which also reads .env), and its
    e-mail masking for paths such as /profiles/<e-mail>. The application is loaded by now."""
    from django.conf import settings

    from oauth_integration.logs import mask_emails

    return getattr(settings, "LOG_FORMAT", "plain") == "json", mask_emails


logger_class = AccessLogger
accesslog = "-"  # stdout

# This only bounds a worker process that stops responding altogether.
timeout = 60
graceful_timeout = 30

# Several gunicorn instances may share a host; none needs the control socket in ~/.gunicorn.
control_socket_disable = True


# Prometheus metrics add up across the workers through files in one directory: set before
# the workers start (they inherit it), its metric files removed when gunicorn starts and
# stops, a dead worker's live gauges dropped. PROMETHEUS_MULTIPROC_DIR may name it; by default
# on_starting makes a new one per gunicorn master (tempfile.mkdtemp: a fresh name, mode 0700),
# never one that someone else may have made beforehand under a name they could predict.
_named_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
metrics_dir = _named_metrics_dir


def _check_named_metrics_dir(path: str) -> None:
    """Make ``path`` (mode 0700) if it does not exist; refuse one another user owns or may write
    to: they could plant symlinks named like the workers' files, which prometheus_client
    would then write through."""
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
    if not metrics_dir:  # on_starting stopped before making it
        return
    for path in glob.glob(os.path.join(metrics_dir, "*.db")):
        os.remove(path)


def _refuse_taken_addresses(addresses) -> None:
    """Stop with a clear message when another server already listens on a TCP address:
    with SO_REUSEPORT the workers would otherwise share it with that server silently."""
    for address in addresses:
        if not isinstance(address, tuple):  # a Unix socket or an inherited descriptor
            continue
        host, port = address[0], address[1]
        if not port:
            raise RuntimeError("gunicorn needs a fixed port here (--bind host:port, not port 0)")
        for family, kind, proto, _, sockaddr in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(sockaddr)
                except OSError as exc:
                    raise RuntimeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def on_starting(server):
    global metrics_dir
    if server.cfg.reuse_port:
        _refuse_taken_addresses(server.cfg.address)
    if _named_metrics_dir:
        _check_named_metrics_dir(_named_metrics_dir)
    else:
        metrics_dir = tempfile.mkdtemp(prefix="klaviyo-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    _clear_metrics()


def when_ready(server):
    # With reuse_port the master holds no socket, so its own "Listening at" line is empty.
    if not server.cfg.reuse_port:
        return
    for address in server.cfg.address:
        where = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else address
        server.log.info("Workers listen at %s, each on its own socket (SO_REUSEPORT)", where)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    _clear_metrics()
    if not _named_metrics_dir:  # our own: leave nothing behind
        with contextlib.suppress(OSError):
            os.rmdir(metrics_dir)
