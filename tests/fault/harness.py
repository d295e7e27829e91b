"""Runs the four services as processes, streams scripted deals at them, injects faults, and watches."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from cli.kafka_io import (
    CLI_SOURCE,
    SeenEvent,
    all_topics,
    publish,
    records_for,
    seen_event,
)
from cli.workload import ScriptedDeal
from contracts.topics import STAGE_SERVICES
from shared.envelope import KafkaRecord
from shared.kafka import client_options, group_progress, running
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# One line per scenario, printed at the end of the pytest run (see conftest.py).
SCENARIO_REPORT: list[str] = []
INFRA = REPO / "deploy" / "local" / "infra.sh"


class Pipeline:
    """The four stage services as separate processes, each one killable and restartable."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env = (
            os.environ
            | settings.environment()
            | {
                # Any free port: these processes are watched through Kafka, and must not clash with a
                # stack already running here (`make run`).
                "DEALFLOW_HTTP_PORT": "0",
                "DEALFLOW_RETRY_BUDGET_SECONDS": "20",
            }
        )

    def start(self, *services: str) -> None:
        for service in services or STAGE_SERVICES:
            log = (self.log_dir / f"{service}.log").open("ab")
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"], cwd=REPO, env=self.env, stdout=log, stderr=log
            )

    def kill9(self, service: str) -> None:
        process = self.processes[service]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, *services: str) -> None:
        chosen = [
            self.processes[service] for service in services or STAGE_SERVICES if service in self.processes
        ]
        for process in chosen:
            process.send_signal(signal.SIGTERM)
        for process in chosen:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def dead(self) -> list[str]:
        return [service for service, process in self.processes.items() if process.poll() is not None]

    def log_count(self, text: str) -> int:
        return sum(path.read_text(errors="replace").count(text) for path in self.log_dir.glob("*.log"))


@dataclass
class Observer:
    """Follows every topic from the start and keeps what it sees, with the time each record arrived."""

    settings: Settings
    seen: list[tuple[float, SeenEvent]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _clients: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def __aenter__(self) -> Observer:
        consumer = await self._clients.enter_async_context(
            running(
                AIOKafkaConsumer(
                    *all_topics(self.settings),
                    **client_options(self.settings),
                    group_id=None,
                    auto_offset_reset="earliest",
                    enable_auto_commit=False,
                    metadata_max_age_ms=2000,
                )
            )
        )

        async def collect() -> None:
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=500)
                except KafkaError:
                    # The broker is away (a fault scenario): watching must outlast it, not end.
                    await asyncio.sleep(0.5)
                    continue
                now = time.monotonic()
                self.seen.extend(
                    (now, seen_event(record)) for records in batches.values() for record in records
                )

        self._task = asyncio.create_task(collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._clients.aclose()

    @property
    def events(self) -> list[SeenEvent]:
        return [event for _, event in self.seen]

    def first_output_after(self, moment: float, source: str | None = None) -> float | None:
        for arrived, event in self.seen:
            event_source = event.headers.get("ce_source", "")
            emitted = event_source.startswith("/dealflow/") and event_source != CLI_SOURCE
            if arrived >= moment and emitted and source in (None, event_source.removeprefix("/dealflow/")):
                return arrived
        return None


async def publish_resiliently(settings: Settings, records: list[KafkaRecord]) -> None:
    """Publish, retrying the whole batch while the broker is away: copies are absorbed downstream."""
    while True:
        try:
            await publish(settings, records)
            return
        except KafkaError:
            await asyncio.sleep(1)


async def stream(
    settings: Settings,
    deals: list[ScriptedDeal],
    *,
    deals_per_second: float,
    extra: Iterable[KafkaRecord] = (),
) -> int:
    """Publish each deal's lead and activities at a steady rate, one chunk per 100 ms; returns inputs sent."""
    chunk = max(1, int(deals_per_second / 10))
    extra_records = list(extra)
    sent = 0
    for start in range(0, len(deals), chunk):
        records = records_for(
            settings, ((event, None) for deal in deals[start : start + chunk] for event in deal.events)
        )
        if extra_records:
            records.append(extra_records.pop())
        await publish_resiliently(settings, records)
        sent += len(records)
        await asyncio.sleep(0.1)
    if extra_records:
        await publish_resiliently(settings, extra_records)
        sent += len(extra_records)
    return sent


async def infra(action: str, server: str) -> None:
    process = await asyncio.create_subprocess_exec("bash", str(INFRA), action, server)
    assert await process.wait() == 0, f"infra.sh {action} {server} failed"


async def consumer_lag(settings: Settings, service: str, topics: list[str]) -> int:
    """Records in the service's input topics that its consumer group has not committed yet."""
    progress = await group_progress(settings, settings.consumer_group(service), topics)
    return sum(end - committed for committed, end in progress.values())


def input_topics(settings: Settings, service: str) -> list[str]:
    definition = importlib.import_module(f"services.{service}.service").definition()
    return [settings.topic(topic) for topic in definition.input_topics]
