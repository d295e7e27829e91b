"""The insights read model on the real broker and database: the report of a known event set, stalls raised
once across two replicas, and the same figures again after a rebuild by replay from offset zero."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from cli.kafka_io import publish
from services.insights.api import app
from services.insights.rebuild import rebuild
from services.insights.service import definition
from shared.envelope import encode
from shared.mongo import make_client
from shared.runtime import StageService
from shared.settings import Settings
from tests.insights_events import EXPECTED_STALLED, NOW, assert_report_figures, known_events
from tests.integration.helpers import Clock, events_when, of_type
from tests.integration.test_insights_report_cli import AUTHORIZED, with_token

pytestmark = pytest.mark.integration


async def eventually(check: Callable[[], Awaitable[None]], timeout: float = 60) -> None:
    """Run `check` until it stops failing; after the timeout its failure is the test's."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await check()
            return
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)


async def report_from_api(settings: Settings, clock: Clock) -> dict[str, Any]:
    mongo = make_client(settings, app_name="insights-test")
    try:
        served = app(mongo[settings.database_name("insights")], clock=clock, settings=with_token(settings))
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://insights", headers=AUTHORIZED
        ) as client:
            response = await client.get("/api/report")
        assert response.status_code == 200
        report: dict[str, Any] = response.json()
        return report
    finally:
        await mongo.close()


def stalled_deals(events: list[Any]) -> dict[str, set[str]]:
    """Each stalled deal's distinct deal.stalled ids (consumers deduplicate by ce_id)."""
    ids: dict[str, set[str]] = {}
    for event in of_type(events, "deal.stalled.v1"):
        ids.setdefault(event.key, set()).add(event.id)
    return ids


async def test_the_read_model_gives_the_known_figures_live_and_again_after_a_replay_from_offset_zero(
    settings: Settings,
) -> None:
    settings, clock = settings.model_copy(update={"timer_tick_seconds": 0.2}), Clock(NOW)
    records = [
        encode(event, topic=settings.topic(event.TOPIC), source="/test", time=published_at)
        for event, published_at in known_events()
    ]

    async def figures_match() -> None:
        assert_report_figures(await report_from_api(settings, clock))

    # Two replicas share the partitions and both look for due stalls: each stall is still raised once.
    async with (
        StageService(definition(), settings, clock=clock).build_app(),
        StageService(definition(), settings, clock=clock).build_app(),
    ):
        await publish(settings, records)
        await eventually(figures_match)
        live = await events_when(settings, lambda seen: sorted(stalled_deals(seen)) == EXPECTED_STALLED)
        await asyncio.sleep(1.5)  # a few more timer ticks: nothing new may be raised
        live = await events_when(settings, lambda seen: True)
    raised = stalled_deals(live)
    assert sorted(raised) == EXPECTED_STALLED
    assert all(len(ids) == 1 for ids in raised.values()), raised

    assert await rebuild(settings) > 0
    assert (await report_from_api(settings, clock))["deals"] == 0  # the read model is empty

    async with StageService(definition(), settings, clock=clock).build_app():
        await eventually(figures_match)
        await asyncio.sleep(1.5)
        replayed = await events_when(settings, lambda seen: True)
    # The replay re-applies the deadlines too; a stall raised again carries its first id.
    assert stalled_deals(replayed) == raised
