"""The HTTP endpoints ops and orchestrators use: liveness, readiness, Prometheus metrics, event docs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Collection, Mapping
from typing import Any, Protocol

from aiokafka import TopicPartition
from faststream.asgi import AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from prometheus_client import CONTENT_TYPE_LATEST

from contracts.asyncapi_html import asyncapi_page
from shared.metrics import StageMetrics

CHECK_TIMEOUT_SECONDS = 2.0


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _Broker(Protocol):
    async def ping(self, timeout: float | None) -> bool: ...


class _Database(Protocol):
    def command(self, command: str) -> Awaitable[Any]: ...


class _Outbox(Protocol):
    @property
    def backlog(self) -> int:
        """Aggregates whose stored events may not have reached the broker yet, known in memory."""
        ...


class OperatedService(Protocol):
    """What these endpoints read of a service: its name, whether it started and is free of faults, its
    broker and database (to ping them), its consumer's partitions and lag, its outbox backlog, and its
    metrics."""

    @property
    def definition(self) -> _Named: ...

    @property
    def started(self) -> bool: ...

    @property
    def healthy(self) -> bool:
        """False while a transient fault is being retried in place."""
        ...

    @property
    def broker(self) -> _Broker: ...

    @property
    def database(self) -> _Database: ...

    @property
    def outbox(self) -> _Outbox: ...

    @property
    def metrics(self) -> StageMetrics: ...

    def consumer_assignment(self) -> Collection[TopicPartition]: ...

    async def consumer_lag(self) -> Mapping[TopicPartition, int]: ...


def _json(body: dict[str, Any], status: int = 200) -> AsgiResponse:
    return AsgiResponse(json.dumps(body).encode(), status, {"Content-Type": "application/json"})


async def readiness(service: OperatedService) -> dict[str, Any]:
    """What /readyz reports: each check, and whether all of them pass."""
    kafka, database = await server_checks(service)
    checks = {
        "started": service.started,
        # A record whose write or publish is being retried holds its partition: not ready meanwhile.
        "no_fault_being_retried": service.healthy,
        "kafka": kafka,
        "database": database,
        # A replica beyond the partition count owns nothing: it is a standby, not ready to do work.
        "partitions_assigned": len(service.consumer_assignment()),
    }
    return {"ready": all(checks.values()), "checks": checks}


async def server_checks(service: OperatedService) -> tuple[bool, bool]:
    """Whether the broker and the database answer a ping, each within CHECK_TIMEOUT_SECONDS."""
    kafka, database = await asyncio.gather(
        service.broker.ping(timeout=CHECK_TIMEOUT_SECONDS), _database_answers(service)
    )
    return bool(kafka), database


async def _database_answers(service: OperatedService) -> bool:
    try:
        await asyncio.wait_for(service.database.command("ping"), CHECK_TIMEOUT_SECONDS)
    except Exception:
        return False
    return True


async def refresh_gauges(service: OperatedService) -> None:
    """Gauges that are read from the consumer and the database when they are scraped."""
    metrics, name = service.metrics, service.definition.name
    metrics.consumer_lag.clear()
    for partition, lag in (await service.consumer_lag()).items():
        metrics.consumer_lag.labels(name, partition.topic, str(partition.partition)).set(lag)
    metrics.assigned_partitions.labels(name).set(len(service.consumer_assignment()))
    metrics.outbox_backlog.labels(name).set(service.outbox.backlog)


def operations_routes(service: OperatedService) -> list[tuple[str, ASGIApp]]:
    @get(include_in_schema=False)
    async def healthz(scope: Scope) -> AsgiResponse:
        # Answering at all shows the event loop is alive; it does not depend on the servers, so an
        # outage of Kafka or the database makes the service unready, not restarted.
        return _json({"alive": True, "service": service.definition.name})

    @get(include_in_schema=False)
    async def readyz(scope: Scope) -> AsgiResponse:
        report = await readiness(service)
        service.metrics.ready.labels(service.definition.name).set(1 if report["ready"] else 0)
        return _json(report, 200 if report["ready"] else 503)

    @get(include_in_schema=False)
    async def metrics(scope: Scope) -> AsgiResponse:
        await refresh_gauges(service)
        return AsgiResponse(service.metrics.exposition(), 200, {"Content-Type": CONTENT_TYPE_LATEST})

    @get(include_in_schema=False)
    async def asyncapi(scope: Scope) -> AsgiResponse:
        return AsgiResponse(asyncapi_page().encode(), 200, {"Content-Type": "text/html; charset=utf-8"})

    return [("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics), ("/asyncapi", asyncapi)]
