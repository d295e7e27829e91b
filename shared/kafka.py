"""Kafka plumbing every service shares: the broker factory and topic creation."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from faststream.kafka import KafkaBroker

from shared.settings import Settings

# Dead letters keep the original bytes, so their topic must accept a record as large as any input.
RECORD_OVERHEAD_BYTES = 64 * 1024


def make_broker(settings: Settings, *, client_id: str, logger: logging.Logger | None = None) -> KafkaBroker:
    """A broker whose producer waits for every in-sync replica and never writes a record twice."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_request_size=settings.max_event_bytes * 4 + RECORD_OVERHEAD_BYTES,
        linger_ms=2,
        logger=logger,
    )


async def ensure_topics(
    settings: Settings, names: Iterable[str], *, large_records: Iterable[str] = ()
) -> None:
    """Create the topics that do not exist yet, all with the configured partition count.

    Topics a service consumes together must have the same partition count: the range assignor then
    gives partition N of each of them to the same consumer, the single writer of the deals keyed there.
    """
    wanted = set(names) | set(large_records)
    large = set(large_records)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, client_id="dealflow-admin"
    )
    await admin.start()
    try:
        missing = wanted - set(await admin.list_topics())
        if not missing:
            return
        topics = [
            NewTopic(
                name=name,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=(
                    {"max.message.bytes": str(settings.max_event_bytes * 4 + RECORD_OVERHEAD_BYTES)}
                    if name in large
                    else {}
                ),
            )
            for name in sorted(missing)
        ]
        response = await admin.create_topics(topics)
        for name, error_code, *_ in response.topic_errors:
            # Another replica may have created the topic first; that is fine.
            if error_code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(error_code)(f"cannot create topic {name}")
    finally:
        await admin.close()
