"""A database that is stopping answers with errors that look like bad queries; they must be retried."""

from __future__ import annotations

import pytest
from pymongo.errors import OperationFailure

from services.onboarding.service import definition as onboarding
from shared.mongo import interrupted
from shared.settings import Settings
from shared.stage import StageService

CANCELLED = OperationFailure("[collection.go:94 sqlite.(*collection).Query] context canceled", code=1)
BAD_QUERY = OperationFailure("unknown operator: $nope", code=2)


@pytest.mark.parametrize(
    ("failure", "transient"),
    [
        (CANCELLED, True),
        (OperationFailure("interrupted at shutdown", code=11600), True),
        (OperationFailure("not primary", code=10107), True),
        (OperationFailure("retry me", code=8000, details={"errorLabels": ["RetryableWriteError"]}), True),
        (BAD_QUERY, False),
        (OperationFailure("some other internal error", code=1), False),
    ],
)
def test_interrupted_operations_are_told_from_bad_ones(failure: OperationFailure, transient: bool) -> None:
    assert interrupted(failure) is transient


async def test_an_interrupted_operation_is_retried_and_a_bad_one_is_not() -> None:
    service = StageService(onboarding(), Settings(retry_budget_seconds=30))
    calls: list[str] = []

    async def cancelled_twice() -> None:
        calls.append("cancelled")
        if len(calls) <= 2:
            raise CANCELLED

    await service._with_retries(cancelled_twice)
    assert calls == ["cancelled"] * 3

    async def bad() -> None:
        calls.append("bad")
        raise BAD_QUERY

    with pytest.raises(OperationFailure):
        await service._with_retries(bad)
    assert calls.count("bad") == 1
