"""Rebuilding the read model from the topics: rewind its consumer group to offset 0, then empty its database.

It refuses while any insights process is running (its consumer groups have live members): Kafka refuses
to move a group's offsets under a live member, and a running service would go on writing into the
database being emptied. At its next start the service reads every stage topic from the beginning and,
since its handlers take each event's own time, ends with the same timelines; stall notices it raises
again carry the ids of the first ones, so consumers absorb them. Only what the topics still retain can be
replayed: keep their retention at least as long as the history the reports should cover.

The order is what keeps the read model safe: the database is dropped only once the group is rewound, so
a rebuild that fails (insights running, Kafka unreachable, no topics) changes nothing, and an empty
database is always one that the next start fills again.
"""

from __future__ import annotations

from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from services.insights.service import NAME, definition
from shared.kafka import live_members, rewind_group
from shared.mongo import make_client
from shared.runtime.erasure import ERASED_SUBJECTS
from shared.settings import Settings

HOW_TO_STOP = (
    "Stop every insights replica first: locally `bash deploy/local/services.sh stop insights`; with "
    "Docker `docker compose stop insights`; on Kubernetes pause its autoscaling and scale it to zero "
    "(see README, Operations: Rebuilding the insights read model). Start it again after the rebuild."
)


class RebuildRefused(Exception):
    """The rebuild did not run (or must be run again); the message says why and what to do."""


def consumer_groups(settings: Settings) -> list[str]:
    """The groups an insights process joins: its stage inputs, and its erasure requests (see the runtime)."""
    group = settings.consumer_group(NAME)
    return [group, f"{group}.privacy"]


async def refuse_if_running(settings: Settings, *, after_drop: bool = False) -> None:
    """Raise RebuildRefused when an insights consumer group has live members (or Kafka cannot tell)."""
    state = (
        "its database was dropped while it ran, so the read model may be incomplete: stop it and run the "
        "rebuild again"
        if after_drop
        else "nothing was changed"
    )
    try:
        live = await live_members(settings, consumer_groups(settings))
    except KafkaError as error:
        raise RebuildRefused(
            f"cannot tell whether insights is running ({type(error).__name__}: {error}); {state}"
        ) from error
    if live:
        members = "; ".join(f"{group}: {', '.join(clients)}" for group, clients in live.items())
        raise RebuildRefused(
            f"insights is running: consumer group {', '.join(live)} has live members ({members}); "
            f"{state}. {HOW_TO_STOP}"
        )


async def rebuild(settings: Settings) -> int:
    """Rewind the insights group to offset 0, then drop its read model; returns the partitions rewound.

    Raises RebuildRefused, with the database untouched, while insights is running, when the rewind
    fails, or when there is nothing to replay from.
    """
    await refuse_if_running(settings)
    group = settings.consumer_group(NAME)
    topics = [settings.topic(topic) for topic in definition().input_topics]
    try:
        partitions = await rewind_group(settings, group, topics)
    except KafkaError as error:  # a replica joined since the check, or the broker went away
        raise RebuildRefused(
            f"cannot rewind consumer group {group} ({type(error).__name__}: {error}); the read model "
            f"is untouched. If insights is running: {HOW_TO_STOP}"
        ) from error
    if partitions == 0:
        raise RebuildRefused(
            f"none of the topics insights reads exists in namespace {settings.namespace!r}: there is "
            "nothing to replay, so the read model is kept"
        )
    client = make_client(settings, app_name="dealflow-insights-rebuild")
    try:
        database = client[settings.database_name(NAME)]
        for collection in await database.list_collection_names():
            if collection != ERASED_SUBJECTS:  # who was erased stays erased through the replay
                await database.drop_collection(collection)
    except PyMongoError as error:
        raise RebuildRefused(
            f"consumer group {group} is rewound, but the database could not be dropped "
            f"({type(error).__name__}: {error}); the read model is kept, and a replay into it changes "
            "nothing: run the rebuild again once the database answers"
        ) from error
    finally:
        await client.close()
    # A replica started after the first check would have read into the database just dropped.
    await refuse_if_running(settings, after_drop=True)
    return partitions
