"""Consume dealflow's deal-won events: what a billing or provisioning integration starts from.

    pip install aiokafka
    python contracts/examples/deal_won_consumer.py --bootstrap 127.0.0.1:9092 --group billing

Uses only aiokafka and the published contract (no dealflow code): CloudEvents attributes are in the
`ce_*` headers, the JSON value is the event's data (contracts/schemas/deal.won.v1.json), the key is the
deal id. Offsets are committed after each event is handled, so a crash means redelivery: deduplicate by
`ce_source` + `ce_id` (kept here in memory; keep it in your own database).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiokafka import AIOKafkaConsumer


def handle(headers: dict[str, str], deal: dict) -> None:  # type: ignore[type-arg]
    amount = deal["amount"]
    print(
        f"won {deal['deal_id']}: {deal['customer'].get('name')} pays "
        f"{amount['amount_minor'] / 100:.2f} {amount['currency']} "
        f"({len(deal['lines'])} lines, owner {deal['owner']}, event {headers['ce_id']})",
        flush=True,
    )


async def consume(bootstrap: str, topic: str, group: str, limit: int | None) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
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
