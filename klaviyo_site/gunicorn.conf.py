"""gunicorn settings for ``make serve`` and the bench: the one place for the serving defaults.

Worker processes, threads per worker and the worker class come from the environment
(``WEB_CONCURRENCY``, default 2; ``GUNICORN_THREADS``, default 2; ``GUNICORN_WORKER_CLASS``,
default ``gthread``; ``GUNICORN_REUSE_PORT``, default on), so ``make serve`` and
``python -m bench`` serve the same way; a command-line ``--workers``/``--threads``/
``--worker-class`` still wins. The address comes from ``--bind``.
"""

import os

from klaviyo_site.flags import parse_bool
from oauth_integration import gunicorn as integration
from oauth_integration import serving
from oauth_integration.gunicorn import child_exit, logger_class, on_exit  # noqa: F401 (gunicorn's hooks)


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


accesslog = "-"  # stdout

# This only bounds a worker process that stops responding altogether.
timeout = 60
graceful_timeout = 30

# Several gunicorn instances may share a host; none needs the control socket in ~/.gunicorn.
control_socket_disable = True


# Prometheus metrics add up across the workers, and access lines leave out query strings and
# escape what clients sent: oauth_integration.gunicorn's hooks, which a host project uses too.
# on_starting below adds this site's own start-up check before the integration's.


def _refuse_taken_addresses(addresses) -> None:
    """Stop with a clear message when another server already listens on a TCP address:
    with SO_REUSEPORT the workers would otherwise share it with that server silently."""
    for address in addresses:
        if isinstance(address, tuple):  # not a Unix socket or an inherited descriptor
            serving.refuse_taken_address(address[0], address[1])


def on_starting(server):
    if server.cfg.reuse_port:
        _refuse_taken_addresses(server.cfg.address)
    integration.on_starting(server)


def when_ready(server):
    # With reuse_port the master holds no socket, so its own "Listening at" line is empty.
    if not server.cfg.reuse_port:
        return
    for address in server.cfg.address:
        where = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else address
        server.log.info("Workers listen at %s, each on its own socket (SO_REUSEPORT)", where)
