"""A database that is stopping answers with errors that look like bad queries; they must be retried."""

from __future__ import annotations

import pytest
from pymongo.errors import OperationFailure

from shared.mongo import interrupted

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
