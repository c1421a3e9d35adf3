"""gunicorn settings for ``make serve`` and the bench: the one place for the serving defaults.

Worker processes, threads per worker and the worker class come from the environment
(``WEB_CONCURRENCY``, default 2; ``GUNICORN_THREADS``, default 2; ``GUNICORN_WORKER_CLASS``,
default ``gthread``), so ``make serve`` and ``python -m bench`` serve the same way; a
command-line ``--workers``/``--threads``/``--worker-class`` still wins. The address comes
from ``--bind``.
"""

import contextlib
import glob
import os
import tempfile


def _positive(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    number = int(value)
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return number


workers = _positive("WEB_CONCURRENCY", 2)
threads = _positive("GUNICORN_THREADS", 2)
# gthread workers keep answering while a request waits for Klaviyo.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "").strip() or "gthread"

# Access log on stdout without query strings or referrers: Klaviyo's redirect to
# /authorize?code=...&state=... would otherwise write authorization codes into the log,
# and so would the Referer of the next page the browser opens.
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'

# This only bounds a worker process that stops responding altogether.
timeout = 60
graceful_timeout = 30

# Several gunicorn instances may share a host; none needs the control socket in ~/.gunicorn.
control_socket_disable = True


# Prometheus metrics add up across the workers through files in one directory: set before
# the workers start (they inherit it), its metric files removed when gunicorn starts and
# stops, a dead worker's live gauges dropped. PROMETHEUS_MULTIPROC_DIR may name it; by default one per gunicorn master.
_named_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
metrics_dir = _named_metrics_dir or os.path.join(tempfile.gettempdir(), f"klaviyo-metrics-{os.getpid()}")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir


def _clear_metrics() -> None:
    # Only prometheus_client's own files: the directory may be one the operator named.
    for path in glob.glob(os.path.join(metrics_dir, "*.db")):
        os.remove(path)


def on_starting(server):
    os.makedirs(metrics_dir, mode=0o700, exist_ok=True)
    _clear_metrics()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    _clear_metrics()
    if not _named_metrics_dir:  # our own: leave nothing behind
        with contextlib.suppress(OSError):
            os.rmdir(metrics_dir)
