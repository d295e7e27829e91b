"""`dealflow insights rebuild` on the real servers: refused while insights runs, with the read model intact;
with insights stopped it rewinds first and drops only then, so a failed rewind keeps the read model, and
the next start replays the same timelines."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.errors import KafkaConnectionError
from click.testing import Result
from typer.testing import CliRunner

from cli.kafka_io import publish
from cli.main import app as cli
from services.insights.service import definition as insights
from shared.envelope import encode
from shared.kafka import group_progress
from shared.mongo import make_client, service_database
from shared.settings import Settings
from tests.insights_events import known_events
from tests.integration.helpers import running

pytestmark = pytest.mark.integration

DEALS = {f"deal-{letter}" for letter in "abcdefgh"}


async def dealflow(settings: Settings, *args: str) -> Result:
    return await asyncio.to_thread(
        CliRunner().invoke, cli, list(args), env=settings.environment() | {"COLUMNS": "300"}
    )


async def timelines(settings: Settings) -> set[str]:
    """The deals the read model holds a timeline for."""
    client = make_client(settings, app_name="rebuild-test")
    try:
        aggregates = service_database(client, settings, "insights")["aggregates"]
        return {document["_id"] async for document in aggregates.find({"state": {"$ne": None}}, {"_id": 1})}
    finally:
        await client.close()


async def until_timelines(settings: Settings, expected: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (held := await timelines(settings)) != expected:
        assert time.monotonic() < deadline, f"the read model holds {sorted(held)}"
        await asyncio.sleep(0.5)


async def publish_known_events(settings: Settings) -> None:
    await publish(
        settings,
        [
            encode(event, topic=settings.topic(event.TOPIC), source="/test", time=published_at)
            for event, published_at in known_events()
        ],
    )


async def test_rebuild_refuses_while_insights_runs_and_leaves_the_read_model_intact(
    settings: Settings,
) -> None:
    async with running(insights(), settings):
        await publish_known_events(settings)
        await until_timelines(settings, DEALS)

        refused = await dealflow(settings, "insights", "rebuild")

        assert refused.exit_code == 1, refused.output
        assert refused.exception is None or isinstance(refused.exception, SystemExit)  # no traceback
        assert f"consumer group {settings.consumer_group('insights')}" in refused.output
        assert "has live members" in refused.output
        assert "bash deploy/local/services.sh stop insights" in refused.output
        assert await timelines(settings) == DEALS


async def test_rebuild_with_insights_stopped_rewinds_then_drops_and_the_next_start_replays(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(insights(), settings):
        await publish_known_events(settings)
        await until_timelines(settings, DEALS)

    # A rewind that fails (here: the broker goes away) leaves the read model as it was.
    async def broker_gone(*args: object) -> int:
        raise KafkaConnectionError("the broker went away")

    with monkeypatch.context() as patched:
        patched.setattr("services.insights.rebuild.rewind_group", broker_gone)
        failed = await dealflow(settings, "insights", "rebuild")
    assert failed.exit_code == 1, failed.output
    assert "the read model is untouched" in failed.output
    assert await timelines(settings) == DEALS

    rebuilt = await dealflow(settings, "insights", "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert f"consumer group {settings.consumer_group('insights')} rewound to offset 0" in rebuilt.output
    assert await timelines(settings) == set()
    topics = [settings.topic(topic) for topic in insights().input_topics]
    progress = await group_progress(settings, settings.consumer_group("insights"), topics)
    assert {committed for committed, _ in progress.values()} == {0}

    async with running(insights(), settings):
        await until_timelines(settings, DEALS)
