"""Sorting faults into transient and permanent, and retrying the transient ones in place.

Every exception a stage can meet is sorted here, deliberately, once:
- transient: the servers are unreachable, stopping or busy, or another replica wrote the same deal.
  Retried in place with capped backoff, so a partition's order holds; the service is unready meanwhile.
- permanent: anything else, above all what a record itself causes (a value the database refuses, a
  record the broker will not take, a bug a payload triggers). It is dead-lettered, for that record alone.
A transient-looking fault that goes on while both servers answer their health checks is the record's
own and is treated as permanent: a fault that cannot heal is not retried forever.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiokafka.errors import (
    InvalidMessageError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedVersionError,
)
from bson.errors import InvalidDocument
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    OperationFailure,
    WriteError,
)

from shared.mongo import DatabaseInterrupted, interrupted
from shared.store import ConcurrentWrite

BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 10.0

# What the broker refuses about a record or a topic, not about its own state: sending it again is futile.
PERMANENT_KAFKA_ERRORS = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidMessageError,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    UnsupportedVersionError,
)


class PermanentFault(Exception):
    """A fault that retrying will not heal; it carries the dead-letter reason code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def is_transient(fault: BaseException) -> bool:
    if isinstance(fault, OperationFailure) and not isinstance(fault, WriteError | BulkWriteError):
        return interrupted(fault)
    if isinstance(fault, KafkaError):
        return not isinstance(fault, PERMANENT_KAFKA_ERRORS)
    return isinstance(fault, ConnectionFailure | ConcurrentWrite | TimeoutError | DatabaseInterrupted)


def reason_code(fault: BaseException) -> str:
    """The dead-letter code of a permanent fault."""
    if isinstance(fault, PermanentFault):
        return fault.code
    if is_transient(fault):
        return "persistent_fault"
    if isinstance(fault, PERMANENT_KAFKA_ERRORS):
        return "broker_refused_record"
    if isinstance(fault, DocumentTooLarge | InvalidDocument | OverflowError | WriteError | BulkWriteError):
        return "database_refused_record"
    if isinstance(fault, OperationFailure):
        return "database_refused_operation"
    return "processing_error"


def describe(fault: BaseException) -> str:
    return f"{type(fault).__name__}: {fault}"[:2000]


@dataclass
class RetryPolicy:
    """Retries transient faults in place; reports through `on_change` whether the service is healthy."""

    budget_seconds: float
    servers_answer: Callable[[], Awaitable[bool]]
    on_fault: Callable[[], None] = lambda: None
    healthy: bool = True

    async def run(
        self,
        operation: Callable[[], Awaitable[None]],
        *,
        budget_seconds: float | None = None,
        give_up: Callable[[], bool] = lambda: False,
    ) -> None:
        """Run the operation until it succeeds, a permanent fault is raised, or `give_up` says so.

        Past the budget, the servers are asked whether they answer: if they do, the fault is this
        operation's own and is raised as a PermanentFault; if not, it is an outage and retrying goes on,
        however long it lasts (good records are never dropped because a server is down).
        """
        log = structlog.get_logger()
        budget = self.budget_seconds if budget_seconds is None else budget_seconds
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            try:
                await operation()
            except Exception as fault:
                if not is_transient(fault):
                    raise
                attempt += 1
                self.healthy = False
                self.on_fault()
                if give_up():
                    raise
                if time.monotonic() >= deadline and not math.isinf(budget):
                    if await self.servers_answer():
                        log.error(
                            "fault_persists_while_servers_answer", error=describe(fault), attempts=attempt
                        )
                        raise PermanentFault("persistent_fault", describe(fault)) from fault
                    deadline = time.monotonic() + budget
                delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2**attempt) * random.uniform(
                    0.5, 1.0
                )
                log.warning(
                    "transient_fault", error=describe(fault), attempt=attempt, retry_in=round(delay, 2)
                )
                until = time.monotonic() + delay
                while time.monotonic() < until and not give_up():  # noqa: ASYNC110 (a flag, not an Event)
                    await asyncio.sleep(min(0.2, until - time.monotonic()))
            else:
                if not self.healthy:
                    log.info("recovered", attempts=attempt)
                    self.healthy = True
                return
