"""Kafka plumbing every service shares: connection security, the broker factory and topic creation.

Every Kafka client dealflow creates, FastStream's broker or a raw aiokafka producer, consumer or admin
client, connects with `kafka_security` (through `make_broker` or `client_options`), so TLS and SASL
settings apply to all of them alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from faststream.kafka import KafkaBroker
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.settings import KafkaSaslMechanism, Settings

SASL_SECURITY: dict[KafkaSaslMechanism, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "SCRAM-SHA-512": SASLScram512,
    "SCRAM-SHA-256": SASLScram256,
    "PLAIN": SASLPlaintext,
}

# Longer than aiokafka's own request timeout (40 s), so its failover to another broker runs first;
# a start that takes longer is stranded (see `running`).
CLIENT_START_SECONDS = 60.0

Client = TypeVar("Client", AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient)

# Dead letters keep the original bytes, so their topic must accept a record as large as any input.
RECORD_OVERHEAD_BYTES = 64 * 1024


def kafka_security(settings: Settings) -> BaseSecurity | None:
    """The TLS and SASL settings as FastStream's security object; None for a plaintext connection.

    Built once here so the broker and the raw aiokafka clients (see `client_options`) cannot disagree.
    """
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if protocol in ("SSL", "SASL_SSL"):
        key_password = settings.kafka_ssl_key_password
        ssl_context = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            password=None if key_password is None else key_password.get_secret_value(),
        )
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    username, password = settings.kafka_sasl_username, settings.kafka_sasl_password
    if username is None or password is None:  # the settings refuse this already; mypy cannot know
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs a SASL user name and password")
    return SASL_SECURITY[settings.kafka_sasl_mechanism](
        username,
        password.get_secret_value(),
        ssl_context=ssl_context,
        use_ssl=ssl_context is not None,
    )


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments that connect an aiokafka producer, consumer or admin client to the brokers.

    FastStream's own mapping turns the security object into aiokafka's `security_protocol`,
    `sasl_mechanism`, `sasl_plain_username`, `sasl_plain_password` and `ssl_context`, exactly as the
    broker gets them.
    """
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        **parse_security(kafka_security(settings)),
    }


def make_broker(settings: Settings, *, client_id: str, logger: logging.Logger | None = None) -> KafkaBroker:
    """A broker whose producer waits for every in-sync replica and never writes a record twice."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=kafka_security(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_request_size=settings.max_event_bytes * 4 + RECORD_OVERHEAD_BYTES,
        linger_ms=2,
        logger=logger,
    )


@asynccontextmanager
async def running(client: Client, *, start_seconds: float = CLIENT_START_SECONDS) -> AsyncIterator[Client]:
    """Start an aiokafka client, use it, and always close it; a start that hangs raises KafkaConnectionError.

    aiokafka can strand a client that starts while the broker shuts down: the broker answers the
    bootstrap request with no brokers and then closes, the client never asks the bootstrap servers
    again, and an idempotent producer waits for a producer id forever. Bounding the start turns that
    into an ordinary connection error, which callers already retry with a fresh client.
    """
    try:
        await asyncio.wait_for(client.start(), start_seconds)
    except BaseException as failure:
        await _close(client)
        if isinstance(failure, TimeoutError):
            raise KafkaConnectionError(
                f"a Kafka client did not start within {start_seconds:.0f}s: no usable broker"
                " (or a topic it waits for does not exist)"
            ) from None
        raise
    try:
        yield client
    finally:
        await _close(client)


async def _close(client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient) -> None:
    await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())


def partition_of(key: str, partitions: int) -> int:
    """The partition of a key under Kafka's default partitioner (murmur2, as the Java client has it)."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(key.encode(), every, every))


async def ensure_topics(
    settings: Settings, names: Iterable[str], *, large_records: Iterable[str] = ()
) -> None:
    """Create the topics that do not exist yet, all with the configured partition count.

    Topics a service consumes together must have the same partition count: the range assignor then
    gives partition N of each of them to the same consumer, the single writer of the deals keyed there.
    """
    wanted = set(names) | set(large_records)
    large = set(large_records)
    async with running(AIOKafkaAdminClient(**client_options(settings), client_id="dealflow-admin")) as admin:
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


async def existing_partitions(settings: Settings, topics: Iterable[str]) -> list[TopicPartition]:
    """The partitions of those topics that exist, in the order asked; asking creates nothing.

    It asks for the metadata of every topic, never of named ones: aiokafka's metadata requests always
    allow auto-creation, so on a broker with `auto.create.topics.enable` (the default) naming a topic
    that does not exist creates it, with the broker's default partition count.
    """
    order = {name: index for index, name in enumerate(dict.fromkeys(topics))}
    async with running(AIOKafkaAdminClient(**client_options(settings))) as admin:
        described = await admin.describe_topics()  # no names: every topic, none created
    return sorted(
        (
            TopicPartition(topic["topic"], partition["partition"])
            for topic in described
            if topic["error_code"] == 0 and topic["topic"] in order
            for partition in topic["partitions"]
        ),
        key=lambda tp: (order[tp.topic], tp.partition),
    )


async def live_members(settings: Settings, groups: Iterable[str]) -> dict[str, list[str]]:
    """Each consumer group's live members (`client id@host`); groups without any are left out.

    Describing a group creates nothing; one that never existed is simply `Dead`, with no members.
    """
    members: dict[str, list[str]] = {}
    async with running(AIOKafkaAdminClient(**client_options(settings))) as admin:
        for group in groups:
            # One group per request: aiokafka 0.14 cannot decode an answer about several live groups.
            for description in await _describe_group(admin, group):
                if description["error_code"] != 0:
                    raise for_code(description["error_code"])(f"cannot describe consumer group {group}")
                if description["members"]:
                    members[group] = [
                        f"{member['client_id']}@{member['client_host'].lstrip('/')}"
                        for member in description["members"]
                    ]
    return members


async def _describe_group(admin: AIOKafkaAdminClient, group: str) -> list[dict[str, Any]]:
    for attempt in range(20):
        try:
            [response] = await admin.describe_consumer_groups([group])
            described: list[dict[str, Any]] = response.to_object()["groups"]
            return described
        except KafkaError as error:  # the group's coordinator may still be loading
            if not error.retriable or attempt == 19:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def group_progress(
    settings: Settings, group: str, topics: Iterable[str]
) -> dict[TopicPartition, tuple[int, int]]:
    """For each partition of the topics: the group's committed offset (0 if none) and the end offset."""
    partitions = await existing_partitions(settings, topics)
    async with running(AIOKafkaAdminClient(**client_options(settings))) as admin:
        committed = await admin.list_consumer_group_offsets(group)
    async with running(AIOKafkaConsumer(**client_options(settings))) as consumer:
        ends = await consumer.end_offsets(partitions)
    return {tp: (committed[tp].offset if tp in committed else 0, end) for tp, end in ends.items()}


async def rewind_group(settings: Settings, group: str, topics: Iterable[str]) -> int:
    """Move a stopped consumer group's offsets back to the start of the topics; returns partitions moved.

    Kafka refuses this while the group has live members, so stop its consumers first.
    """
    partitions = await existing_partitions(settings, topics)
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=group, enable_auto_commit=False)
    async with running(consumer):
        consumer.assign(partitions)
        await consumer.commit(dict(await consumer.beginning_offsets(partitions)))
    return len(partitions)
