"""`running`: every raw Kafka client dealflow starts is bounded in its start and always closed."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError, UnknownTopicOrPartitionError

from shared.kafka import running


class Client:
    """Stands in for an aiokafka producer or consumer: `start` as told, `stop` recorded."""

    def __init__(self, start: str) -> None:
        self.behaviour = start
        self.stopped = 0

    async def start(self) -> None:
        if self.behaviour == "hangs":  # as aiokafka does when a bootstrap answer listed no broker
            await asyncio.Event().wait()
        if self.behaviour == "fails":
            raise UnknownTopicOrPartitionError("refused")

    async def stop(self) -> None:
        self.stopped += 1


async def test_a_start_that_hangs_becomes_a_connection_error_and_the_client_is_closed() -> None:
    client = Client("hangs")
    with pytest.raises(KafkaConnectionError, match="did not start within 0s: no usable broker"):
        async with running(client, start_seconds=0.05):  # type: ignore[type-var]
            pytest.fail("the body must not run without a started client")
    assert client.stopped == 1


async def test_a_start_that_fails_keeps_its_error_and_the_client_is_closed() -> None:
    client = Client("fails")
    with pytest.raises(UnknownTopicOrPartitionError):
        async with running(client):  # type: ignore[type-var]
            pytest.fail("the body must not run without a started client")
    assert client.stopped == 1


async def test_a_started_client_is_closed_after_use_even_when_the_use_fails() -> None:
    client = Client("starts")
    stopped_during_use = []

    async def use() -> None:
        async with running(client) as used:  # type: ignore[type-var]
            stopped_during_use.append((used is client, client.stopped))
            raise RuntimeError("use failed")

    with pytest.raises(RuntimeError, match="use failed"):
        await use()
    assert stopped_during_use == [(True, 0)]
    assert client.stopped == 1
