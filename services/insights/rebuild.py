"""Rebuilding the read model from the topics: empty its database and rewind its consumer group to offset 0.

Run it while no insights process is running (Kafka refuses to move a group's offsets under a live
member). At its next start the service reads every stage topic from the beginning and, since its
handlers take each event's own time, ends with the same timelines; stall notices it raises again carry
the ids of the first ones, so consumers absorb them. Only what the topics still retain can be replayed:
keep their retention at least as long as the history the reports should cover.
"""

from __future__ import annotations

from services.insights.service import NAME, definition
from shared.kafka import rewind_group
from shared.mongo import make_client
from shared.settings import Settings


async def rebuild(settings: Settings) -> int:
    """Drop the insights database and rewind its group; return the number of partitions rewound."""
    client = make_client(settings, app_name="dealflow-insights-rebuild")
    try:
        await client.drop_database(settings.database_name(NAME))
    finally:
        await client.close()
    topics = [settings.topic(topic) for topic in definition().input_topics]
    return await rewind_group(settings, settings.consumer_group(NAME), topics)
