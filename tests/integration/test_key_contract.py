"""The key contract on the real broker: a record's key is its event's partition key, and it sits in the
partition Kafka's default partitioner (murmur2) gives that key. kcat (librdkafka) is the non-Python
producer: with its own default partitioner (CRC32) most keys land elsewhere and are refused; with
`-X topic.partitioner=murmur2_random` they are applied."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import zlib

import pytest

from contracts import Topic
from contracts.events import LeadCaptured
from services.prospecting.service import definition as prospecting
from shared.envelope import KafkaRecord, encode
from shared.kafka import partition_of
from shared.settings import Settings
from tests.integration.helpers import events_when, of_type, running

pytestmark = pytest.mark.integration


def lead(lead_id: str) -> LeadCaptured:
    return LeadCaptured(
        lead_id=lead_id,
        email=f"cto@{lead_id}.example",
        title="CTO",
        company_name=f"Acme {lead_id}",
        country="DE",
        employees=250,
        industry="software",
    )


def lead_ids(partitions: int, *, crc32_agrees: bool, count: int) -> list[str]:
    """Lead ids on which librdkafka's CRC32 partitioner and murmur2 agree (or do not)."""
    found = []
    for number in range(1000):
        lead_id = f"lead-kc-{number}"
        same = zlib.crc32(lead_id.encode()) % partitions == partition_of(lead_id, partitions)
        if same is crc32_agrees:
            found.append(lead_id)
        if len(found) == count:
            return found
    raise AssertionError("no such ids")


async def kcat_produce(settings: Settings, record: KafkaRecord, key: str, *options: str) -> None:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat, "kcat is needed for the non-Python producer (make test installs it)"
    headers = [argument for name, value in record.headers.items() for argument in ("-H", f"{name}={value}")]
    command = [
        kcat,
        "-P",
        "-b",
        settings.kafka_bootstrap_servers,
        "-t",
        record.topic,
        "-k",
        key,
        *headers,
        *options,
    ]
    await asyncio.to_thread(
        subprocess.run, command, input=record.value, check=True, timeout=60, capture_output=True
    )


async def test_records_keyed_or_partitioned_against_the_contract_are_refused_and_the_rest_applied(
    settings: Settings,
) -> None:
    wrongly_placed = lead_ids(settings.partitions, crc32_agrees=False, count=2)
    murmur2 = lead_ids(settings.partitions, crc32_agrees=False, count=4)[2:]

    def record(lead_id: str) -> KafkaRecord:
        return encode(
            lead(lead_id), topic=settings.topic(Topic.LEADS), source="/kcat", event_id=f"e-{lead_id}"
        )

    async with running(prospecting(), settings):
        for lead_id in wrongly_placed:
            await kcat_produce(settings, record(lead_id), lead_id)  # librdkafka's default: consistent_random
        for lead_id in murmur2:
            await kcat_produce(settings, record(lead_id), lead_id, "-X", "topic.partitioner=murmur2_random")
        await kcat_produce(settings, record("lead-kc-other-key"), "not-the-lead-id")
        events = await events_when(
            settings,
            lambda seen: (
                len(of_type(seen, "prospect.identified.v1")) == len(murmur2)
                and sum("dlq_error_code" in event.headers for event in seen) == len(wrongly_placed) + 1
            ),
        )
    assert sorted(event.key for event in of_type(events, "prospect.identified.v1")) == sorted(murmur2)
    refused = {
        event.key: event.headers["dlq_error_code"] for event in events if "dlq_error_code" in event.headers
    }
    assert refused == {
        **{lead_id: "wrong_partition" for lead_id in wrongly_placed},
        "not-the-lead-id": "key_mismatch",
    }
