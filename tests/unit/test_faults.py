"""Every fault a stage meets is sorted, deliberately, into transient (retried in place) or permanent
(dead-lettered for that record alone); a transient-looking one that persists while the servers answer is
the record's own."""

from __future__ import annotations

import itertools

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from bson.errors import InvalidDocument
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DocumentTooLarge,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteError,
)

from shared.envelope import PoisonMessage
from shared.runtime.faults import PermanentFault, RetryPolicy, is_transient, reason_code
from shared.store import ConcurrentWrite

CANCELLED = OperationFailure("[collection.go:94 sqlite.(*collection).Query] context canceled", code=1)


@pytest.mark.parametrize(
    ("fault", "transient", "code"),
    [
        (AutoReconnect("connection reset"), True, "persistent_fault"),
        (NetworkTimeout("timed out"), True, "persistent_fault"),
        (ServerSelectionTimeoutError("no servers"), True, "persistent_fault"),
        (CANCELLED, True, "persistent_fault"),
        (OperationFailure("interrupted at shutdown", code=11600), True, "persistent_fault"),
        (ConcurrentWrite("stale"), True, "persistent_fault"),
        (TimeoutError(), True, "persistent_fault"),
        (KafkaConnectionError(), True, "persistent_fault"),
        (KafkaTimeoutError(), True, "persistent_fault"),
        (NotLeaderForPartitionError(), True, "persistent_fault"),
        (MessageSizeTooLargeError(), False, "broker_refused_record"),
        (RecordTooLargeError(), False, "broker_refused_record"),
        (TopicAuthorizationFailedError(), False, "broker_refused_record"),
        (DocumentTooLarge("16 MB"), False, "database_refused_record"),
        (InvalidDocument("key '$x' must not start with '$'"), False, "database_refused_record"),
        (OverflowError("MongoDB can only handle up to 8-byte ints"), False, "database_refused_record"),
        (WriteError("bad key", code=2), False, "database_refused_record"),
        (BulkWriteError({"writeErrors": [{"code": 2}]}), False, "database_refused_record"),
        (OperationFailure("unknown operator: $nope", code=2), False, "database_refused_operation"),
        (OperationFailure("some other internal error", code=1), False, "database_refused_operation"),
        (RecursionError(), False, "processing_error"),
        (ValueError("bug"), False, "processing_error"),
        (KeyError("bug"), False, "processing_error"),
        (PermanentFault("id_conflict", "x"), False, "id_conflict"),
        (PoisonMessage("invalid_json", "x"), False, "processing_error"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_each_fault_class_is_sorted(fault: BaseException, transient: bool, code: str) -> None:
    assert is_transient(fault) is transient
    assert reason_code(fault) == code


def policy(servers_answer: bool, budget: float = 0.0) -> RetryPolicy:
    async def answer() -> bool:
        return servers_answer

    return RetryPolicy(budget_seconds=budget, servers_answer=answer)


async def test_an_interrupted_operation_is_retried_in_place_and_a_bad_one_is_not() -> None:
    calls: list[str] = []
    healthy_while_retrying: list[bool] = []
    retry = policy(servers_answer=False, budget=30)

    async def cancelled_twice() -> None:
        calls.append("cancelled")
        healthy_while_retrying.append(retry.healthy)
        if len(calls) <= 2:
            raise CANCELLED

    await retry.run(cancelled_twice)
    assert calls == ["cancelled"] * 3
    assert healthy_while_retrying == [True, False, False], "unready (/readyz 503) while it is retried"
    assert retry.healthy

    async def bad() -> None:
        calls.append("bad")
        raise OperationFailure("unknown operator: $nope", code=2)

    with pytest.raises(OperationFailure):
        await retry.run(bad)
    assert calls.count("bad") == 1


async def test_a_transient_fault_that_persists_while_the_servers_answer_is_permanent() -> None:
    attempts = itertools.count()

    async def always_stale() -> None:
        next(attempts)
        raise ConcurrentWrite("the same deal, every time")

    with pytest.raises(PermanentFault) as raised:
        await policy(servers_answer=True).run(always_stale)
    assert raised.value.code == "persistent_fault"
    assert next(attempts) == 1, "asked the servers right after the (empty) budget, not retried for ever"


async def test_during_an_outage_retrying_goes_on_past_the_budget() -> None:
    failures = iter(range(3))

    async def down_three_times() -> None:
        if next(failures, None) is not None:
            raise AutoReconnect("down")

    retry = policy(servers_answer=False)
    await retry.run(down_three_times)
    assert retry.healthy
