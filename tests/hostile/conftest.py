"""The hostile suite's harness: the five services as processes, a raw producer, and a watcher of every topic.

The services run as `python -m services.<name>` processes, exactly as deployed: a record that kills or
wedges a process shows as such (an in-process service would take the test's own event loop with it),
and the suite depends only on the entry points and the topics, not on the runtime's internals, which is
what the suite is meant to judge. Five processes start in about ten seconds on two cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts import Topic, dead_letter_topic
from contracts.topics import SERVICES
from shared.kafka import client_options, existing_partitions, running
from shared.settings import Settings
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
# Lines printed at the end of the pytest run, whatever the verdict (see pytest_terminal_summary).
HOSTILE_REPORT: list[str] = []
KEEP_VALUES_UP_TO = 64 * 1024  # larger values seen on the topics are counted, not kept
# An event waiting for a deal that never opens is dead-lettered this long after it arrived; the suite
# waits for that, so it is short, but far longer than a good deal's activities wait for their lead.
PARKED_MAX_AGE_SECONDS = 40
SERVICE_SETTINGS = {
    "DEALFLOW_PARKED_MAX_AGE_SECONDS": str(PARKED_MAX_AGE_SECONDS),
    "DEALFLOW_TIMER_TICK_SECONDS": "1",
    "DEALFLOW_RETRY_BUDGET_SECONDS": "10",
    "DEALFLOW_LOG_LEVEL": "WARNING",
}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if HOSTILE_REPORT:
        terminalreporter.section("hostile input: outcome per class")
        for line in HOSTILE_REPORT:
            terminalreporter.write_line(line)


@dataclass
class Service:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 2500) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class Pipeline:
    """The five services as processes on the real servers, in the test's namespace."""

    def __init__(self, settings: Settings, log_dir: Path, overrides: dict[str, str]) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.env = os.environ | settings.environment() | overrides
        self.services: dict[str, Service] = {}

    def start(self) -> None:
        for name in SERVICES:
            port = free_port()
            log = self.log_dir / f"{name}.log"
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=REPO,
                env=self.env | {"DEALFLOW_HTTP_PORT": str(port)},
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            self.services[name] = Service(name, port, process, log)

    async def ready(self, timeout: float) -> None:
        """Every service answers /readyz with 200 (started, both servers answer, partitions assigned)."""
        deadline = time.monotonic() + timeout
        waiting = set(self.services)
        async with httpx.AsyncClient(timeout=2) as http:
            while waiting:
                for name in sorted(waiting):
                    service = self.services[name]
                    if service.process.poll() is not None:
                        pytest.fail(f"{name} exited with {service.process.returncode}:\n{service.tail()}")
                    try:
                        answer = await http.get(f"http://127.0.0.1:{service.port}/readyz")
                    except httpx.HTTPError:
                        continue
                    if answer.status_code == 200:
                        waiting.discard(name)
                if waiting and time.monotonic() > deadline:
                    pytest.fail(f"not ready after {timeout:.0f}s: {sorted(waiting)}")
                await asyncio.sleep(0.3)

    def dead(self) -> dict[str, int]:
        return {
            name: service.process.returncode
            for name, service in self.services.items()
            if service.process.poll() is not None
        }

    async def metric_total(self, metric: str) -> dict[str, float]:
        """A Prometheus counter's total per service, as each live service reports it now."""
        totals: dict[str, float] = {}
        async with httpx.AsyncClient(timeout=3) as http:
            for name, service in self.services.items():
                try:
                    text = (await http.get(f"http://127.0.0.1:{service.port}/metrics")).text
                except httpx.HTTPError:
                    continue
                totals[name] = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith(f"{metric}_total{{") or line.startswith(f"{metric}_total ")
                )
        return totals

    def stop(self) -> None:
        for service in self.services.values():
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in self.services.values():
            try:
                service.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait(timeout=10)


@dataclass(frozen=True)
class Seen:
    """A record read back from a topic; headers decoded leniently (the last of a repeated name wins)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, str]
    data: dict[str, Any] | None
    size: int

    @property
    def type(self) -> str:
        return self.headers.get("ce_type", "").removeprefix("io.dealflow.")

    @property
    def ce_id(self) -> str:
        return self.headers.get("ce_id", "")

    @property
    def source(self) -> str:
        return self.headers.get("ce_source", "")


def seen(record: Any) -> Seen:
    headers = {name: (value or b"").decode(errors="replace") for name, value in record.headers}
    data = None
    value = record.value
    if value is not None and len(value) <= KEEP_VALUES_UP_TO:
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            parsed = None
        data = parsed if isinstance(parsed, dict) else None
    return Seen(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        headers=headers,
        data=data,
        size=len(value or b""),
    )


@dataclass
class Observer:
    """Follows every topic of the namespace from the start, dead-letter topics included."""

    settings: Settings
    records: list[Seen] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def topics(self) -> list[str]:
        return [self.settings.topic(topic) for topic in Topic] + [
            self.settings.topic(dead_letter_topic(service)) for service in SERVICES
        ]

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[Observer]:
        consumer = AIOKafkaConsumer(
            *self.topics(),
            **client_options(self.settings),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=2000,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        async with running(consumer):

            async def collect() -> None:
                while True:
                    try:
                        batches = await consumer.getmany(timeout_ms=300, max_records=5000)
                    except KafkaError:
                        await asyncio.sleep(0.3)
                        continue
                    for records in batches.values():
                        self.records.extend(seen(record) for record in records)

            self._task = asyncio.create_task(collect())
            try:
                yield self
            finally:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    async def caught_up(self, timeout: float) -> bool:
        """Wait until every record now in the topics has been read (the evidence is complete)."""
        partitions = await existing_partitions(self.settings, self.topics())
        async with running(AIOKafkaConsumer(**client_options(self.settings))) as consumer:
            ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last: dict[tuple[str, int], int] = {}
            for record in self.records:
                last[(record.topic, record.partition)] = record.offset
            if all(last.get((tp.topic, tp.partition), -1) >= end - 1 for tp, end in ends.items() if end):
                return True
            await asyncio.sleep(0.5)
        return False

    def on(self, topics: Iterable[str]) -> list[Seen]:
        wanted = set(topics)
        return [record for record in self.records if record.topic in wanted]


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """A raw producer: any key (or none), any partition, any header bytes, null values."""
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        max_request_size=8 * 1024 * 1024,
        linger_ms=5,
    )


@pytest.fixture
async def hostile_pipeline(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Settings, Pipeline, Observer, AIOKafkaProducer]]:
    pipeline = Pipeline(settings, tmp_path, SERVICE_SETTINGS)
    pipeline.start()
    try:
        await pipeline.ready(timeout=90)
        observer = Observer(settings)
        async with observer.watching(), running(make_producer(settings)) as producer:
            yield settings, pipeline, observer, producer
    finally:
        pipeline.stop()
