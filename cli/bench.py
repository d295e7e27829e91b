"""`make bench`: each stage and the whole pipeline measured against raw Kafka and database baselines.

Everything runs against the same servers as the services, in one process tree, so the ratios compare
like with like. Figures go to the terminal as one table and to bench/results.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import ReplaceOne

from cli.kafka_io import SeenEvent, publish, records_for, seen_event
from cli.namespaces import delete_namespace
from cli.workload import scripted_deals
from contracts import Event, Topic
from contracts.events import (
    Company,
    Contact,
    DealWon,
    LeadCaptured,
    LeadQualified,
    Money,
    Needs,
    NextStep,
    ProspectIdentified,
    QuoteLine,
)
from contracts.topics import STAGE_SERVICES
from shared.envelope import KafkaRecord
from shared.kafka import client_options, ensure_topics, existing_partitions, running
from shared.mongo import make_client
from shared.settings import Settings

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results.json"


@dataclass
class Result:
    name: str
    count: int
    seconds: float
    per_second: float
    ratio_to_kafka: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


# --- baselines -----------------------------------------------------------------------------------


async def kafka_baseline(settings: Settings, count: int) -> Result:
    """A plain aiokafka loop: consume the leads, produce one record per input. No validation, no database."""
    source, target = settings.topic("bench.baseline-in"), settings.topic("bench.baseline-out")
    leads = records_for(settings, ((lead, None) for lead in _leads(count)))
    await publish(settings, [KafkaRecord(source, r.key, r.value, r.headers) for r in leads])
    consumer = AIOKafkaConsumer(
        source,
        **client_options(settings),
        group_id=f"{settings.namespace}.baseline",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=500,
    )
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    async with running(consumer), running(producer):
        started, done, futures = time.perf_counter(), 0, []
        while done < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for records in batches.values():
                for record in records:
                    futures.append(
                        await producer.send(
                            target, value=record.value, key=record.key, headers=list(record.headers)
                        )
                    )
                done += len(records)
            await asyncio.gather(*futures)
            futures.clear()
            await consumer.commit()
        seconds = time.perf_counter() - started
    return Result("baseline: aiokafka consume + produce", count, round(seconds, 2), _rate(count, seconds))


async def database_baseline(settings: Settings, count: int) -> Result:
    """A plain PyMongo async bulk upsert of as many documents, 500 per round trip."""
    client = make_client(settings, app_name="dealflow-bench")
    collection = client[f"{settings.namespace}_bench"]["baseline"]
    documents = [
        {"_id": f"doc-{n}", "state": {"n": n, "text": "x" * 200}, "version": 1} for n in range(count)
    ]
    started = time.perf_counter()
    for start in range(0, count, 500):
        batch = documents[start : start + 500]
        await collection.bulk_write(
            [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in batch], ordered=False
        )
    seconds = time.perf_counter() - started
    await client.close()
    return Result("baseline: PyMongo bulk upsert", count, round(seconds, 2), _rate(count, seconds))


# --- stages --------------------------------------------------------------------------------------


def _leads(count: int) -> list[LeadCaptured]:
    return [deal.events[0] for deal in scripted_deals(count, prefix="bench")]  # type: ignore[misc]


def _stage_inputs(service: str, count: int) -> list[Event]:
    now = datetime.now(UTC)
    contact, company = Contact(email="cto@bench.example"), Company(name="Bench", country="DE")
    if service == "prospecting":
        return list(_leads(count))
    if service == "qualification":
        return [
            ProspectIdentified(
                deal_id=f"bench-{n:06d}",
                lead_id=f"bench-{n:06d}",
                contact=contact,
                company=company,
                source="bench",
                marketing_consent=False,
                fit_score=90,
                tier="A",
                owner="rep",
                next_step=NextStep(action="first_touch", due_at=now + timedelta(hours=4)),
            )
            for n in range(count)
        ]
    amount = Money(amount_minor=100_000, currency="EUR")
    if service == "proposal":
        return [
            LeadQualified(
                deal_id=f"bench-{n:06d}",
                owner="rep",
                contact=contact,
                company=company,
                framework="BANT",
                needs=Needs(),
                amount=amount,
                qualified_at=now,
            )
            for n in range(count)
        ]
    return [
        DealWon(
            deal_id=f"bench-{n:06d}",
            customer=company,
            contact=contact,
            owner="rep",
            lines=[
                QuoteLine(product="dealflow-seat", quantity=1, unit_price_minor=100_000, total_minor=100_000)
            ],
            amount=amount,
            won_at=now,
            stage_history=[],
        )
        for n in range(count)
    ]


class ServiceProcesses:
    """Stage services as separate processes, whose peak memory (VmHWM) is read before they stop."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.env = (
            os.environ
            | settings.environment()
            | {
                # Any free port: these processes are watched through Kafka, and must not clash with a
                # stack already running here (`make run`).
                "DEALFLOW_HTTP_PORT": "0",
                "DEALFLOW_LOG_LEVEL": "WARNING",
            }
        )
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *services: str) -> None:
        for service in services:
            log = (self.log_dir / f"bench-{service}.log").open("ab")
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"], cwd=REPO, env=self.env, stdout=log, stderr=log
            )

    def peak_rss_mb(self) -> dict[str, float]:
        peaks = {}
        for service, process in self.processes.items():
            status = Path(f"/proc/{process.pid}/status")
            for line in status.read_text().splitlines() if status.exists() else []:
                if line.startswith("VmHWM:"):
                    peaks[service] = round(int(line.split()[1]) / 1024, 1)
        return peaks

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


async def _count_outputs(
    settings: Settings, topics: Iterable[str], wanted: Callable[[SeenEvent], bool], count: int, timeout: float
) -> tuple[list[float], list[SeenEvent]]:
    """Follow the topics until `count` matching events arrived; their arrival times and the events."""
    partitions = await existing_partitions(settings, list(topics))
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    arrivals: list[float] = []
    events: list[SeenEvent] = []
    async with running(consumer):
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        while len(arrivals) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200, max_records=2000)).values():
                now = time.perf_counter()
                for record in records:
                    event = seen_event(record)
                    if wanted(event):
                        arrivals.append(now)
                        events.append(event)
    return arrivals, events


async def stage_alone(settings: Settings, service: str, count: int, log_dir: Path) -> Result:
    """Input topic pre-filled with `count` events; time from the service's start to its last output."""
    inputs = _stage_inputs(service, count)
    await ensure_topics(
        settings, [settings.topic(topic) for topic in Topic]
    )  # so the count sees every output
    await publish(settings, records_for(settings, ((event, None) for event in inputs)))
    processes = ServiceProcesses(settings, log_dir)
    started = time.perf_counter()
    processes.start(service)
    try:
        arrivals, _ = await _count_outputs(
            settings,
            [settings.topic(topic) for topic in Topic],
            lambda event: event.headers.get("ce_source") == f"/dealflow/{service}",
            count,
            timeout=max(120.0, count / 20),
        )
        peak = processes.peak_rss_mb()
    finally:
        processes.stop()
    seconds = (arrivals[-1] if arrivals else time.perf_counter()) - started
    steady = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    return Result(
        f"stage alone: {service}",
        len(arrivals),
        round(seconds, 2),
        _rate(len(arrivals), seconds),
        extra={
            "expected": count,
            "steady_per_second": _rate(len(arrivals), steady),
            "peak_rss_mb": peak.get(service),
        },
    )


async def end_to_end(settings: Settings, count: int, rate: float | None, log_dir: Path) -> Result:
    """Scripted won deals (lead and activities published together) at a steady rate, or all at once."""
    deals = scripted_deals(count, prefix=f"e2e{'s' if rate is None else ''}", seed=11)
    won_deals = {deal.deal_id for deal in deals if deal.outcome == "won"}
    processes = ServiceProcesses(settings, log_dir)
    processes.start(*STAGE_SERVICES)
    await asyncio.sleep(8)  # let every service join its group before the clock starts
    started = time.perf_counter()
    try:
        interval = 0.1
        chunk = len(deals) if rate is None else max(1, int(rate * interval))
        for start in range(0, len(deals), chunk):
            tick = time.perf_counter()
            batch = deals[start : start + chunk]
            await publish(
                settings, records_for(settings, ((event, None) for deal in batch for event in deal.events))
            )
            if rate is not None:
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - tick)))
        arrivals, events = await _count_outputs(
            settings,
            [settings.topic(Topic.DEALS_WON)],
            lambda e: e.key in won_deals,
            len(won_deals),
            timeout=600,
        )
        peak = processes.peak_rss_mb()
    finally:
        processes.stop()
    lead_times = await _lead_publish_times(settings, won_deals)
    latencies = sorted((event.timestamp_ms - lead_times.get(event.key, 0)) for event in events)
    seconds = (arrivals[-1] if arrivals else time.perf_counter()) - started
    return Result(
        "end to end: " + (f"{rate:g} leads/s offered" if rate else "saturation"),
        len(arrivals),
        round(seconds, 2),
        _rate(len(arrivals), seconds),
        extra={
            "deals_won_expected": len(won_deals),
            "leads": count,
            "latency_ms": _percentiles(latencies),
            "peak_rss_mb": peak,
        },
    )


async def _lead_publish_times(settings: Settings, deal_ids: set[str]) -> dict[str, int]:
    _, leads = await _count_outputs(
        settings, [settings.topic(Topic.LEADS)], lambda e: e.key in deal_ids, len(deal_ids), timeout=60
    )
    return {event.key: event.timestamp_ms for event in leads}


def _percentiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    quantiles = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {"p50": quantiles[49], "p95": quantiles[94], "p99": quantiles[98], "max": float(max(values))}


# --- the run -------------------------------------------------------------------------------------


def machine(settings: Settings) -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kafka_bootstrap_servers": settings.kafka_bootstrap_servers,
        "mongodb_uri": settings.mongodb_uri.get_secret_value().split("@")[-1],
        "partitions": settings.partitions,
        "batch_max_records": settings.batch_max_records,
    }


async def run(settings: Settings, count: int, rate: float, log_dir: Path) -> dict[str, Any]:
    settings = settings.model_copy(update={"namespace": f"bench{uuid.uuid4().hex[:8]}"})
    # A baseline run lasts well under a second, so one run swings by half; the median of three holds.
    kafka_runs = [
        await kafka_baseline(settings.model_copy(update={"namespace": f"{settings.namespace}k{n}"}), count)
        for n in range(3)
    ]
    kafka = sorted(kafka_runs, key=lambda run: run.per_second)[1]
    kafka.extra["runs_per_second"] = [run.per_second for run in kafka_runs]
    results = [kafka, await database_baseline(settings, count)]
    kafka_rate = kafka.per_second
    for service in STAGE_SERVICES:
        result = await stage_alone(
            settings.model_copy(update={"namespace": f"{settings.namespace}{service[:4]}"}),
            service,
            count,
            log_dir,
        )
        result.ratio_to_kafka = round(result.per_second / kafka_rate, 3) if kafka_rate else None
        results.append(result)
    e2e_count = max(50, count // 10)
    for offered in (rate, None):
        suffix = "steady" if offered else "sat"
        results.append(
            await end_to_end(
                settings.model_copy(update={"namespace": f"{settings.namespace}{suffix}"}),
                e2e_count,
                offered,
                log_dir,
            )
        )
    await delete_namespace(settings)
    return {
        "machine": machine(settings),
        "count": count,
        "rate": rate,
        "results": [asdict(r) for r in results],
    }


def table(report: dict[str, Any]) -> str:
    lines = [f"{'measure':<42}{'count':>8}{'seconds':>10}{'per s':>10}{'x kafka':>9}  details"]
    for result in report["results"]:
        ratio = "" if result["ratio_to_kafka"] is None else f"{result['ratio_to_kafka']:.3f}"
        details = ", ".join(f"{key}={value}" for key, value in result["extra"].items())
        figures = f"{result['count']:>8}{result['seconds']:>10}{result['per_second']:>10}{ratio:>9}"
        lines.append(f"{result['name']:<42}{figures}  {details}")
    lines.append("machine: " + ", ".join(f"{key}={value}" for key, value in report["machine"].items()))
    return "\n".join(lines)


def counts_add_up(report: dict[str, Any]) -> list[str]:
    """Every measured run must account for every event it was given."""
    problems = []
    for result in report["results"]:
        expected = result["extra"].get("expected", result["extra"].get("deals_won_expected", result["count"]))
        if result["count"] != expected:
            problems.append(f"{result['name']}: {result['count']} of {expected}")
    return problems


def main(count: int, rate: float) -> dict[str, Any]:
    log_dir = REPO / ".local" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(run(Settings(), count, rate, log_dir))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    return report
