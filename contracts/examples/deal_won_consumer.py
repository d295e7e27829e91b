"""Consume dealflow's deal-won events: what a billing or provisioning integration starts from.

    pip install aiokafka
    python contracts/examples/deal_won_consumer.py --bootstrap 127.0.0.1:9092 --group billing

A secured cluster is reached with the same variables as dealflow's own services: KAFKA_SECURITY_PROTOCOL
(SASL_SSL, ...), KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE.

Uses only aiokafka and the published contract (no dealflow code): CloudEvents attributes are in the
`ce_*` headers, the JSON value is the event's data (contracts/schemas/deal.won.v1.json), the key is the
deal id. Offsets are committed after each event is handled, so a crash means redelivery: deduplicate by
`ce_source` + `ce_id` (kept here in memory; keep it in your own database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.helpers import create_ssl_context


def handle(headers: dict[str, str], deal: dict) -> None:  # type: ignore[type-arg]
    amount = deal["amount"]
    print(
        f"won {deal['deal_id']}: {deal['customer'].get('name')} pays "
        f"{amount['amount_minor'] / 100:.2f} {amount['currency']} "
        f"({len(deal['lines'])} lines, owner {deal['owner']}, event {headers['ce_id']})",
        flush=True,
    )


def security_from_environment() -> dict[str, Any]:
    """aiokafka's TLS and SASL options from the environment; none for a plaintext cluster."""
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=os.environ.get("KAFKA_SSL_CAFILE"))
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = os.environ.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        options["sasl_plain_username"] = os.environ["KAFKA_SASL_USERNAME"]
        options["sasl_plain_password"] = os.environ["KAFKA_SASL_PASSWORD"]
    return options


async def consume(bootstrap: str, topic: str, group: str, limit: int | None) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        **security_from_environment(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen: set[tuple[str, str]] = set()
    try:
        async for record in consumer:
            headers = {name: value.decode() for name, value in record.headers}
            if headers.get("ce_type") != "io.dealflow.deal.won.v1":
                continue
            event_key = (headers["ce_source"], headers["ce_id"])
            if event_key not in seen:
                seen.add(event_key)
                handle(headers, json.loads(record.value))
            await consumer.commit()
            if limit is not None and len(seen) >= limit:
                return
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="dealflow.deals.won.v1")
    parser.add_argument("--group", default="billing")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many deals")
    arguments = parser.parse_args()
    asyncio.run(consume(arguments.bootstrap, arguments.topic, arguments.group, arguments.limit))


if __name__ == "__main__":
    main()
