"""The database answers the store's `_id` lookups from the `_id` index, not by scanning the collection.

The store reads one aggregate by `_id`, a batch of cache misses by `_id: {$in: [...]}`, and writes
conditionally on `{_id, version}`. Scanning instead costs time linear in the collection: on FerretDB
1.24 unpatched, a 50-id `$in` takes about 0.2 s at 2,000 documents and 2 s at 20,000. Results stay
right either way, so only the server's explain shows it. On FerretDB that is its `filterPushdown`
flag (the SQLite backend's plan must also search the index); the patches `deploy/local/infra.sh`
applies to FerretDB's source are what make it true for the last three filters below. On MongoDB, the
winning plan must use the `_id` index.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Document, make_client
from shared.settings import Settings

pytestmark = pytest.mark.integration

COLLECTION = "aggregates"
IDS = [f"deal-{number:04d}" for number in range(200)]

# Documents with an odd number have version 3. Each filter, with the ids it matches.
FILTERS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "_id": ({"_id": IDS[7]}, [IDS[7]]),
    "_id and version": ({"_id": IDS[8], "version": 3}, []),
    "_id $in": ({"_id": {"$in": [*IDS[:50], "deal-missing"]}}, IDS[:50]),
    "_id $in and version": ({"_id": {"$in": IDS[100:150]}, "version": 3}, IDS[101:150:2]),
}

# The stages by which MongoDB's plans read by `_id` alone: IDHACK before 8.0, EXPRESS_* since.
ID_LOOKUP_STAGES = {"IDHACK", "EXPRESS_IXSCAN", "EXPRESS_CLUSTERED_IXSCAN"}


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    client = make_client(settings, app_name="dealflow-pushdown-test")
    try:
        database = client[settings.database_name("pushdown")]
        await database[COLLECTION].insert_many(
            [
                {"_id": aggregate_id, "version": 3 if number % 2 else 2, "state": "x" * 500}
                for number, aggregate_id in enumerate(IDS)
            ]
        )
        yield database
    finally:
        await client.close()


async def _is_ferretdb(database: AsyncDatabase[Document]) -> bool:
    return "ferretdbVersion" in await database.command("buildInfo")


def _stages(plan: Any) -> list[dict[str, Any]]:
    """Every stage of a plan tree (inputStage, inputStages, queryPlan, ...), root first."""
    if isinstance(plan, list):
        return [stage for item in plan for stage in _stages(item)]
    if not isinstance(plan, dict):
        return []
    own = [plan] if "stage" in plan else []
    return own + [stage for value in plan.values() for stage in _stages(value)]


@pytest.mark.parametrize("name", FILTERS)
async def test_an_id_filter_is_answered_from_the_id_index(
    database: AsyncDatabase[Document], name: str
) -> None:
    query, expected = FILTERS[name]
    explained = await database.command(
        "explain", {"find": COLLECTION, "filter": query}, verbosity="queryPlanner"
    )
    planner = explained["queryPlanner"]

    if await _is_ferretdb(database):
        assert explained["filterPushdown"] is True, f"FerretDB does not push {query} down: {planner}"
        steps = planner.get("Plan")
        if isinstance(steps, list) and all("detail=" in str(step) for step in steps):  # the SQLite backend
            assert any("USING INDEX" in step for step in steps), f"SQLite scans for {query}: {steps}"
    else:
        stages = _stages(planner["winningPlan"])
        names = {stage["stage"] for stage in stages}
        assert "COLLSCAN" not in names, f"MongoDB scans for {query}: {planner['winningPlan']}"
        assert names & ID_LOOKUP_STAGES or any(
            stage["stage"] == "IXSCAN" and stage.get("indexName") == "_id_" for stage in stages
        ), f"MongoDB does not use the _id index for {query}: {planner['winningPlan']}"

    # Pushed down or not, the answer is the same: the handler still applies the whole filter.
    found = [document["_id"] async for document in database[COLLECTION].find(query, {"_id": 1})]
    assert sorted(found) == expected
