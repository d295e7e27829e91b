"""Prometheus metrics of one service process, served on its `/metrics` endpoint.

Each service instance has its own registry, so several services can run in one process (as the
integration tests do) without mixing their figures.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from contracts import event_model

# The `_created` series double every counter's output and no dashboard here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Handlers are pure and fast; a batch includes the database write and the broker's acknowledgement.
HANDLER_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


# Every database command this process sends, by client (its app name) and command name; each command is
# one round trip. Counted by the listener `shared.mongo.make_client` installs, and served by every
# service's /metrics (a process of several services shows each one's client as its own series).
DATABASE_COMMANDS = Counter(
    "dealflow_database_commands",
    "Commands sent to the database (one round trip each), per client and command name.",
    ["client", "command"],
    registry=None,
)


def known_type(event_type: str | None) -> str:
    """The event type as a label value, or "unknown": a label must never take arbitrary input values."""
    return event_type if event_type and event_model(event_type) is not None else "unknown"


class StageMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.registry.register(DATABASE_COMMANDS)
        by_type = ["service", "type"]
        by_reason = ["service", "type", "reason"]
        self.consumed = Counter(
            "dealflow_events_consumed", "Records read from the input topics.", by_type, registry=self.registry
        )
        self.produced = Counter(
            "dealflow_events_produced",
            "Events published and acknowledged by Kafka.",
            by_type,
            registry=self.registry,
        )
        self.rejected = Counter(
            "dealflow_events_rejected",
            "Inbound events refused by a rule (answered with activity.rejected).",
            by_reason,
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "dealflow_events_dead_lettered",
            "Records sent to the dead-letter topic.",
            by_reason,
            registry=self.registry,
        )
        self.duplicates = Counter(
            "dealflow_duplicates_absorbed",
            "Redelivered or replayed events recognised and skipped.",
            by_type,
            registry=self.registry,
        )
        self.parked = Counter(
            "dealflow_events_parked",
            "Events held until their deal exists.",
            by_type,
            registry=self.registry,
        )
        self.ignored = Counter(
            "dealflow_events_ignored",
            "Records on an input topic that are meant for another stage.",
            ["service"],
            registry=self.registry,
        )
        self.transient_faults = Counter(
            "dealflow_transient_faults",
            "Broker or database faults retried in place.",
            ["service"],
            registry=self.registry,
        )
        self.deadlines_announced = Counter(
            "dealflow_deadlines_announced",
            "Due deadlines published as deadline.reached events.",
            ["service"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "dealflow_handler_duration_seconds",
            "Time in a stage rule, per inbound event type.",
            by_type,
            buckets=HANDLER_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "dealflow_batch_duration_seconds",
            "Time to apply one batch: load, decide, write, publish, mark sent.",
            ["service"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_records = Histogram(
            "dealflow_batch_records",
            "Records per consumed batch.",
            ["service"],
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000),
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "dealflow_outbox_backlog",
            "Aggregates whose events are stored but not yet acknowledged by Kafka.",
            ["service"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "dealflow_consumer_lag",
            "Records not yet consumed, per assigned partition (high watermark minus position).",
            ["service", "topic", "partition"],
            registry=self.registry,
        )
        self.assigned_partitions = Gauge(
            "dealflow_assigned_partitions",
            "Input partitions this process owns.",
            ["service"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "dealflow_ready",
            "1 when the service is ready (see /readyz).",
            ["service"],
            registry=self.registry,
        )

    def total(self, name: str) -> float:
        """The sum of a counter over all its labels (for tests and the benchmark)."""
        return sum(
            sample.value
            for metric in self.registry.collect()
            if metric.name == name
            for sample in metric.samples
            if sample.name == f"{name}_total"
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
