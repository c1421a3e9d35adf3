"""Prometheus metrics of the integration: calls to Klaviyo, refreshes, throttling, connections.

Counters and the histogram live in ``prometheus_client``'s default registry; under
gunicorn they are written to its multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set
and cleaned by the hooks of ``oauth_integration.gunicorn``), so a scrape adds up every worker. The
connections gauge is read from the database when scraped, in one query.

No label ever holds a customer identifier, a token or an e-mail address: ``endpoint`` is
the API path with its ids replaced (``/api/profiles/{id}``), or ``other``. Nothing is
counted unless ``METRICS_TOKEN`` is set, since nothing could read it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from django.db.models import Count
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from oauth_integration.conf import conf
from oauth_integration.operations import endpoint_of

REFRESHES = Counter(
    "klaviyo_token_refreshes",
    "Token refreshes by outcome: success, invalid_grant (the customer must reconnect), unavailable "
    "(Klaviyo failed; retried later), waited (a caller used another worker's refresh).",
    ["outcome"],
)
API_REQUESTS = Counter(
    "klaviyo_api_requests", "Calls to Klaviyo's API by method, endpoint and status.", ["method", "endpoint", "status"]
)
API_DURATION = Histogram(
    "klaviyo_api_request_duration_seconds",
    "Duration of calls to Klaviyo's API, retries included.",
    ["method", "endpoint"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
THROTTLED = Counter("klaviyo_api_throttled", "Calls that Klaviyo throttled (429) after the retries.", ["endpoint"])
RETRIES = Counter("klaviyo_api_retries", "Retries of calls to Klaviyo, by reason.", ["endpoint", "reason"])


def enabled() -> bool:
    """Metrics are kept only when they can be read: with METRICS_TOKEN set (GET /metrics needs it)."""
    return bool(conf.metrics_token)


def count_refresh(outcome: str) -> None:
    """One refresh ended: success, invalid_grant, unavailable; or a caller waited for another's."""
    if enabled():
        REFRESHES.labels(outcome).inc()


def observe_call(method: str, path: str, status: int | str, seconds: float) -> None:
    """Count one call to the API (``status``: the HTTP status, or ``error`` without an answer)."""
    if not enabled():
        return
    endpoint = endpoint_of(path)
    API_REQUESTS.labels(method, endpoint, str(status)).inc()
    API_DURATION.labels(method, endpoint).observe(seconds)
    if status == 429:
        THROTTLED.labels(endpoint).inc()


def observe_retry(path: str, reason: str) -> None:
    if enabled():
        RETRIES.labels(endpoint_of(path), reason).inc()


class ConnectionsCollector(Collector):
    """``klaviyo_connections{status}``: connections by status, counted when scraped."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # Imported here: klaviyo.py records calls through this module and must not import models.
        from oauth_integration.models import ConnectionStatus, OAuthToken

        counts = dict.fromkeys(ConnectionStatus.values, 0)
        for row in OAuthToken.objects.order_by().values("status").annotate(n=Count("id")):
            counts[row["status"]] = row["n"]
        gauge = GaugeMetricFamily("klaviyo_connections", "Klaviyo connections by status.", labels=["status"])
        for status, count in counts.items():
            gauge.add_metric([status], count)
        yield gauge


def exposition() -> bytes:
    """Every metric in Prometheus' text format, added up across worker processes."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_DefaultMetrics())
    registry.register(ConnectionsCollector())
    return generate_latest(registry)


class _DefaultMetrics(Collector):
    """This process's own metrics (one process: ``runserver``, tests)."""

    def collect(self) -> Iterator[object]:
        yield from REGISTRY.collect()
