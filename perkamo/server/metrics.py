"""Prometheus metrics: request counts and latencies per route and status, refusals, and
the runtime's own statistics (actors, mailboxes, group commit, webhooks) read at scrape
time."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from perkamo.cluster.node import ClusterStatistics
from perkamo.runtime import RuntimeStatistics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _RuntimeCollector(Collector):
    def __init__(self, source: Callable[[], RuntimeStatistics]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        s = self._source()
        actors, writer, hooks = s.actors, s.writer, s.webhooks
        yield GaugeMetricFamily("perkamo_actors_resident", "Profiles in memory", actors.resident)
        yield GaugeMetricFamily("perkamo_actors_running", "Profiles with work", actors.running)
        yield GaugeMetricFamily("perkamo_mailbox_depth", "Messages waiting", actors.queued)
        yield GaugeMetricFamily(
            "perkamo_mailbox_depth_max", "Deepest mailbox seen", actors.max_mailbox_depth
        )
        yield GaugeMetricFamily(
            "perkamo_messages_pending", "Messages admitted and not yet answered", actors.pending
        )
        yield GaugeMetricFamily(
            "perkamo_admission_bound", "Messages the server admits before 503", actors.max_pending
        )
        yield CounterMetricFamily("perkamo_actor_activations", "Activations", actors.activations)
        yield CounterMetricFamily("perkamo_actor_passivations", "Passivations", actors.passivations)
        yield CounterMetricFamily("perkamo_actor_failures", "Handler failures", actors.failures)
        yield CounterMetricFamily("perkamo_group_commit_flushes", "Flushes", writer.flushes)
        yield CounterMetricFamily("perkamo_group_commit_units", "Units committed", writer.units)
        yield CounterMetricFamily(
            "perkamo_group_commit_flush_seconds", "Time in flushes", writer.total_flush_seconds
        )
        yield GaugeMetricFamily(
            "perkamo_group_commit_flush_units_max", "Largest flush", writer.max_flush_units
        )
        yield GaugeMetricFamily(
            "perkamo_group_commit_last_flush_seconds", "Last flush", writer.last_flush_seconds
        )
        yield CounterMetricFamily(
            "perkamo_group_commit_failed_flushes", "Flushes that failed", writer.failed_flushes
        )
        deliveries = CounterMetricFamily(
            "perkamo_webhook_attempts", "Webhook delivery attempts by result", labels=["status"]
        )
        for status in ("delivered", "retrying", "failed"):
            deliveries.add_metric([status], getattr(hooks, status))
        yield deliveries
        yield GaugeMetricFamily("perkamo_streams_open", "Live streams open", s.streams.open)
        yield CounterMetricFamily("perkamo_streams_opened", "Live streams opened", s.streams.opened)
        yield CounterMetricFamily(
            "perkamo_streams_evicted", "Live streams closed for a newer one", s.streams.evicted
        )
        yield CounterMetricFamily(
            "perkamo_stream_changes", "Committed changes handed to live streams",
            s.changes_published,
        )  # fmt: skip
        yield from _cluster_metrics(s.cluster)
        sweeper = s.sweeper
        yield CounterMetricFamily(
            "perkamo_sweeper_ticks", "Ticks sent by the sweeper", sweeper.ticks
        )
        yield CounterMetricFamily(
            "perkamo_sweeper_failed_ticks", "Ticks answered with an error", sweeper.failed
        )
        yield GaugeMetricFamily(
            "perkamo_sweeper_lag_seconds",
            "How long after its due time the sweeper's latest tick was sent",
            sweeper.lag_seconds,
        )


def _cluster_metrics(c: ClusterStatistics) -> Iterable[Metric]:
    links = c.links
    yield GaugeMetricFamily("perkamo_cluster_members", "Live members, this one included", c.members)
    yield GaugeMetricFamily("perkamo_shards_owned", "Shards this member owns", c.shards)
    yield CounterMetricFamily(
        "perkamo_forwarded_messages", "Messages sent to the member owning them", links.forwarded
    )
    yield CounterMetricFamily(
        "perkamo_forwarded_answered", "Forwarded messages answered by their owner", links.answered
    )
    yield CounterMetricFamily(
        "perkamo_forwarded_seconds",
        "Round trips of answered forwards, summed",
        links.forward_seconds,
    )
    yield CounterMetricFamily(
        "perkamo_forwarded_lost", "Forwards whose link broke after sending", links.failed
    )
    latency = GaugeMetricFamily(
        "perkamo_forward_latency_seconds",
        "Round trip of the last 1,000 forwards",
        labels=["quantile"],
    )
    recent = sorted(links.latencies)
    for q in (0.5, 0.99):
        value = recent[min(int(q * len(recent)), len(recent) - 1)] if recent else 0.0
        latency.add_metric([str(q)], value)
    yield latency
    yield CounterMetricFamily(
        "perkamo_served_for_members", "Messages other members forwarded here", links.served
    )
    yield CounterMetricFamily(
        "perkamo_internal_refused", "Internal connections refused (no cluster secret)",
        links.refused_handshakes,
    )  # fmt: skip
    yield CounterMetricFamily("perkamo_shards_acquired", "Shards taken", c.acquired)
    yield CounterMetricFamily("perkamo_shards_handed_over", "Shards handed over", c.released)
    yield GaugeMetricFamily(
        "perkamo_hand_over_last_seconds", "The last hand-over's duration", c.hand_over_seconds
    )


class Metrics:
    """``/metrics``: request counts and latencies (the edge observes every request) and the
    runtime's statistics, read at each scrape."""

    content_type = CONTENT_TYPE

    def __init__(
        self, runtime_statistics: Callable[[], RuntimeStatistics], member: str = ""
    ) -> None:
        self.member = member
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "perkamo_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "perkamo_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.refusals = Counter(
            "perkamo_refusals",
            "Requests refused for rate or usage limits",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_RuntimeCollector(runtime_statistics))

    def observe(self, route: str, status: int, seconds: float, code: str | None) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if code in ("rate_limited", "usage_limit_exceeded"):
            self.refusals.labels(code).inc()

    def render(self) -> bytes:
        """Every series labelled with this member's id (several members share a port)."""
        return label_member(generate_latest(self.registry), self.member)


def label_member(text: bytes, member: str) -> bytes:
    if not member:
        return text
    label = f'member="{member}"'.encode()
    lines = []
    for line in text.split(b"\n"):
        if line and not line.startswith(b"#"):
            name, brace, rest = line.partition(b"{")
            if brace:
                line = name + b"{" + label + (b"," if not rest.startswith(b"}") else b"") + rest
            else:
                name, _, value = line.partition(b" ")
                line = name + b"{" + label + b"} " + value
        lines.append(line)
    return b"\n".join(lines)
