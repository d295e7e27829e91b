"""Rebuilding the read model from the topics: empty its database and rewind its consumer group to offset 0.

Run it while no insights process is running (Kafka refuses to move a group's offsets under a live
member). At its next start the service reads every stage topic from the beginning and, since its
handlers take each event's own time, ends with the same timelines; stall notices it raises again carry
the ids of the first ones, so consumers absorb them. Only what the topics still retain can be replayed:
keep their retention at least as long as the history the reports should cover.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from services.insights.service import NAME, definition
from shared.kafka import client_options, existing_partitions
from shared.mongo import make_client
from shared.settings import Settings


async def rebuild(settings: Settings) -> int:
    """Drop the insights database and rewind its group; return the number of partitions rewound."""
    client = make_client(settings, app_name="dealflow-insights-rebuild")
    try:
        await client.drop_database(settings.database_name(NAME))
    finally:
        await client.close()
    partitions = await existing_partitions(settings, [settings.topic(t) for t in definition().input_topics])
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=settings.consumer_group(NAME),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
        await consumer.commit(dict(beginnings))
    finally:
        await consumer.stop()
    return len(partitions)
