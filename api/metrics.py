"""Prometheus metrics. Created once per process; every app instance shares them."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily

from services import db_watchdog

REQUESTS = Counter(
    "nfod_http_requests_total",
    "HTTP requests by route template and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "nfod_http_request_duration_seconds",
    "HTTP request latency by route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SWEEP_DURATION = Histogram(
    "nfod_sweep_duration_seconds",
    "Duration of one scheduler sweep",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
ALERTS_RAISED = Counter("nfod_alerts_raised_total", "Alerts raised by kind", ["kind"])
WEBHOOK_DELIVERIES = Counter(
    "nfod_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"]
)
OUTBOX_BACKLOG = Gauge("nfod_webhook_outbox_backlog", "Webhook deliveries still pending")
SWEEP_FAILURES = Counter("nfod_sweep_failures_total", "Sweeps that failed and will be retried")


class _AbandonedWaits:
    """The watchdog's count (services.db_watchdog), read when the metrics are scraped: a
    PostgreSQL server process that stopped answering while its host is fine."""

    def collect(self):
        yield CounterMetricFamily(
            "nfod_db_waits_abandoned",
            "Waits for PostgreSQL's answer given up after NFOD_DB_ANSWER_TIMEOUT_SECONDS",
            value=db_watchdog.abandoned_total(),
        )


REGISTRY.register(_AbandonedWaits())


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
