"""Deleting a namespace: its topics and databases, and those of namespaces derived from it by a suffix."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import client_options, running
from shared.mongo import make_client
from shared.settings import Settings


async def delete_namespace(settings: Settings) -> None:
    """For throw-away namespaces (tests, benchmarks): a broker keeps every partition in memory."""
    async with running(AIOKafkaAdminClient(**client_options(settings))) as admin:
        topics = [topic for topic in await admin.list_topics() if topic.startswith(settings.namespace)]
        if topics:
            await admin.delete_topics(topics)
    client = make_client(settings, app_name="dealflow-cleanup")
    try:
        for name in await client.list_database_names():
            if name.startswith(settings.namespace):
                await client.drop_database(name)
    finally:
        await client.close()
