"""Where the real servers are: named by the environment, started by `make test`, or in containers.

Integration and end-to-end tests never fall back to fakes: without a server they fail, saying how to
start one.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cli.namespaces import delete_namespace
from shared.settings import Settings
from tests.ports import listening

# Shared expected-figure checks get pytest's detailed assertion messages too.
pytest.register_assert_rewrite("tests.insights_events")

LOCAL_KAFKA = "127.0.0.1:9092"
LOCAL_MONGODB = "mongodb://127.0.0.1:27017/"


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap_servers: str
    mongodb_uri: str


def _docker_reachable() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongodb = os.environ.get("MONGODB_URI")
    if kafka is None and mongodb is None and not (listening(9092) and listening(27017)):
        if _docker_reachable():
            yield from _containers()
            return
        pytest.fail(
            "no Kafka and MongoDB to test against: run `make infra-up` (or `make test`, which starts them), "
            "or set KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI"
        )
    yield Servers(kafka or LOCAL_KAFKA, mongodb or LOCAL_MONGODB)  # noqa: PT022 (one branch tears down)


def _containers() -> Iterator[Servers]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    with KafkaContainer().with_kraft() as kafka, MongoDbContainer("mongo:7") as mongodb:
        yield Servers(kafka.get_bootstrap_server(), mongodb.get_connection_url())


@pytest.fixture
def settings(servers: Servers) -> Iterator[Settings]:
    """Settings with a namespace of its own, so each test has fresh topics, groups and databases.

    They are deleted afterwards: a day of test runs would otherwise leave the broker thousands of
    partitions to keep in memory.
    """
    settings = Settings(
        kafka_bootstrap_servers=servers.kafka_bootstrap_servers,
        mongodb_uri=servers.mongodb_uri,
        namespace=f"t{uuid.uuid4().hex[:12]}",
        partitions=3,
        retry_budget_seconds=30,
    )
    yield settings
    # Its own thread and event loop: the tests' loop belongs to pytest-asyncio.
    cleanup = threading.Thread(target=asyncio.run, args=(delete_namespace(settings),))
    cleanup.start()
    cleanup.join(timeout=60)
