"""/metrics in Prometheus's text format (prometheus-client).

Most figures are read from the store when scraped (`StoreCollector`), because the work happens in
other processes: `digest send`, `publisher worker`, the scheduler, the inbound listener. Only the
HTTP request counts are this process's own (`HttpMetrics` counts each request by its route).
Each web app has its own `CollectorRegistry`: nothing is global, and tests can build many apps.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from publisher.errors import PublisherError
from publisher.inbound.parse import Kind
from publisher.publication import Metrics

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Exported even at 0, so every documented series exists from the first scrape.
INBOUND_KINDS = tuple(kind.value for kind in Kind)
SUPPRESSION_REASONS = ("complaint", "hard_bounce", "smtp_bounce")
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StoreCollector(Collector):
    """Turns `Publication.metrics()` into metric families, afresh at every scrape."""

    def __init__(self, read: Callable[[], Metrics]) -> None:
        self.read = read

    def describe(self) -> list[Metric]:
        """Nothing up front: without this, registering the collector would run a scrape (and open
        the store) while the web app is being built."""
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("publisher_store_up", "1 when the database answered this scrape, else 0")
        try:
            found = self.read()
        except PublisherError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _ledger(found)
        yield from _audience(found)
        yield from _runs(found)


def _ledger(found: Metrics) -> Iterator[Metric]:
    stats = found.stats
    issues = GaugeMetricFamily("publisher_issues", "Issues by newsletter and state", labels=["newsletter", "state"])
    for (newsletter, state), count in sorted(stats.issues.items()):
        issues.add_metric([newsletter, state], count)
    rows = GaugeMetricFamily(
        "publisher_deliveries", "Delivery ledger rows by newsletter and state", labels=["newsletter", "state"]
    )
    delivered = CounterMetricFamily(
        "publisher_delivered", "Messages accepted by the mail server, ever", labels=["newsletter"]
    )
    failed = CounterMetricFamily(
        "publisher_delivery_failures", "Recipients given up on (5xx or retries exhausted), ever", labels=["newsletter"]
    )
    for (newsletter, state), count in sorted(stats.deliveries.items()):
        rows.add_metric([newsletter, state], count)
    every = sorted(set(found.newsletters) | {newsletter for newsletter, _state in stats.deliveries})
    for newsletter in every:  # 0 before a newsletter's first send: a series that appears late breaks rate()
        delivered.add_metric([newsletter], stats.deliveries.get((newsletter, "delivered"), 0))
        failed.add_metric([newsletter], stats.deliveries.get((newsletter, "failed"), 0))
    yield from (issues, rows, delivered, failed)
    window = stats.window.total_seconds()
    yield GaugeMetricFamily(
        "publisher_send_rate_per_second",
        f"Messages delivered per second over the last {int(window)} seconds, by every sender",
        value=stats.delivered_recently / window,
    )
    yield GaugeMetricFamily(
        "publisher_ledger_backlog", "Recipients still to try (pending, sending, deferred)", value=stats.backlog
    )


def _audience(found: Metrics) -> Iterator[Metric]:
    stats = found.stats
    people = GaugeMetricFamily("publisher_subscribers", "Subscribers by status", labels=["status"])
    for status, count in sorted(stats.subscribers.items()):
        people.add_metric([status], count)
    inbound = CounterMetricFamily(
        "publisher_inbound_messages",
        "Returned mail and webhook events taken in, by what they were (bounce, soft_bounce, complaint, ...)",
        labels=["kind"],
    )
    for kind in sorted(set(INBOUND_KINDS) | set(stats.inbound)):
        inbound.add_metric([kind], stats.inbound.get(kind, 0))
    bounces = CounterMetricFamily("publisher_bounces", "Bounces taken in (hard and soft), ever", labels=["type"])
    bounces.add_metric(["hard"], stats.inbound.get("bounce", 0))
    bounces.add_metric(["soft"], stats.inbound.get("soft_bounce", 0))
    complaints = CounterMetricFamily(
        "publisher_complaints", "Spam complaints taken in, ever", value=stats.inbound.get("complaint", 0)
    )
    suppressed = GaugeMetricFamily("publisher_suppressed", "Addresses suppressed now, by reason", labels=["reason"])
    for reason in sorted(set(SUPPRESSION_REASONS) | set(stats.suppressions)):
        suppressed.add_metric([reason], stats.suppressions.get(reason, 0))
    yield from (people, inbound, bounces, complaints, suppressed)


def _runs(found: Metrics) -> Iterator[Metric]:
    labels = ["kind", "name"]
    durations = SummaryMetricFamily(
        "publisher_run_duration_seconds",
        "Imports, feed builds and scheduler jobs: how many ran and their total time",
        labels=labels,
    )
    failures = CounterMetricFamily("publisher_run_failures", "Runs that ended in an error", labels=labels)
    last_ok = GaugeMetricFamily(
        "publisher_run_last_success_timestamp_seconds", "When the last successful run finished", labels=labels
    )
    last = GaugeMetricFamily("publisher_run_last_duration_seconds", "How long the last run took", labels=labels)
    for run in found.runs:
        key = [run.kind, run.name]
        durations.add_metric(key, count_value=run.runs, sum_value=run.seconds)
        failures.add_metric(key, run.failures)
        last.add_metric(key, run.last_seconds)
        if run.last_ok_at is not None:
            last_ok.add_metric(key, run.last_ok_at.timestamp())
    yield from (durations, failures, last_ok, last)


@dataclass
class Registry:
    """One web app's metrics: the store's, read at scrape time, and its own HTTP requests."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls, read: Callable[[], Metrics]) -> Registry:
        registry = CollectorRegistry(auto_describe=True)
        registry.register(StoreCollector(read))
        requests = Counter(
            "publisher_http_requests",
            "HTTP requests answered by this web process, by route and status",
            ["route", "method", "status"],
            registry=registry,
        )
        latency = Histogram(
            "publisher_http_request_duration_seconds",
            "Time to answer, by route",
            ["route"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        return cls(registry, requests, latency)

    def exposition(self) -> bytes:
        """The text format; reads the store (call it in a worker thread)."""
        return generate_latest(self.registry)


def token_matches(header: str, token: str) -> bool:
    """`Authorization: Bearer <token>` naming the configured token (compared in constant time)."""
    scheme, _, given = header.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def route_label(scope: Scope) -> str:
    """The template of the route that answered (`/admin/issues/{name}`), never the raw path: a
    route inside a Mount is prefixed by the mount's path; a mounted app is named by its mount."""
    route = scope.get("route")
    if route is None:
        return "unmatched"
    prefix = scope.get("root_path", "")
    return prefix + route.path if isinstance(route, Route) else prefix or route.path


# Methods counted by name; any other method string a client sends is counted as "other", so no
# request can add a series (a label value) of its own choosing.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def status_label(status: int) -> str:
    """A status code as sent (100-599); anything else an app could produce is "other"."""
    return str(status) if 100 <= status <= 599 else "other"


class HttpMetrics:
    """Counts every HTTP request by the route that answered it (the template, never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Registry) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = route_label(scope)
            self.metrics.requests.labels(route, method_label(scope["method"]), status_label(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
