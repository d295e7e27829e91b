"""Kafka plumbing every service shares: the broker factory and topic creation."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from faststream.kafka import KafkaBroker
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.settings import Settings

# Dead letters keep the original bytes, so their topic must accept a record as large as any input.
RECORD_OVERHEAD_BYTES = 64 * 1024


SASL_MECHANISMS: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


def kafka_security(settings: Settings) -> BaseSecurity | None:
    """How to authenticate to and encrypt traffic with the brokers, from KAFKA_SECURITY_PROTOCOL and co."""
    protocol = settings.kafka_security_protocol
    context = ssl.create_default_context() if protocol.endswith("SSL") else None
    if not protocol.startswith("SASL"):
        return None if context is None else BaseSecurity(ssl_context=context)
    if settings.kafka_sasl_username is None or settings.kafka_sasl_password is None:
        raise ValueError(
            f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )
    mechanism = SASL_MECHANISMS[settings.kafka_sasl_mechanism]
    return mechanism(
        settings.kafka_sasl_username,
        settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=context is not None,
    )


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """The same security as keyword arguments for aiokafka's own clients (admin, producers, consumers)."""
    return parse_security(kafka_security(settings))


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
        security=kafka_security(settings),
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
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="dealflow-admin",
        **kafka_client_options(settings),
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
