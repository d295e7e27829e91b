"""Erasure (GDPR art. 17): a person's data anonymised wherever this stage keeps it, then confirmed.

Covered: every aggregate's state, the events parked for it and the events waiting in its outbox, the
stage's facts, and events that arrive later about an erased person (a redrive of a dead letter, a late
copy from upstream), which are anonymised before they are applied. Not covered: records already in Kafka
topics, dead-letter topics included, which only their retention removes (see README, Security).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime

import structlog
from pymongo.asynchronous.collection import AsyncCollection

from contracts.events import ErasureRequested, PersonalDataErased
from shared.envelope import Envelope, KafkaRecord, derived_event_id, encode
from shared.mongo import Document
from shared.privacy import anonymise, subject_key
from shared.runtime.cache import AggregateCache
from shared.runtime.definition import StageFacts
from shared.store import Aggregate, AggregateStore

# Who was erased (hashes of their emails): kept through a read model's rebuild, so a replay of events from
# before the erasure does not bring the person back.
ERASED_SUBJECTS = "erased_subjects"


def anonymised(aggregate: Aggregate, email: str) -> Aggregate:
    """The aggregate with every trace of the person gone: state, parked events, pending events."""
    return replace(
        aggregate,
        version=aggregate.version + 1,
        state=anonymise(aggregate.state, email),
        parked=tuple(
            replace(parked, value=_anonymised_json(parked.value, email)) for parked in aggregate.parked
        ),
        outbox=tuple(
            replace(record, value=_anonymised_json(record.value.decode(), email).encode())
            for record in aggregate.outbox
        ),
    )


def _anonymised_json(text: str, email: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return str(anonymise(text, email))
    return json.dumps(anonymise(value, email), separators=(",", ":"))


class Erasure:
    def __init__(
        self,
        *,
        service: str,
        source: str,
        store: AggregateStore,
        erased: AsyncCollection[Document],
        facts: StageFacts | None,
        cache: AggregateCache,
        publish: Callable[[Sequence[KafkaRecord]], Awaitable[None]],
        topic: Callable[[str], str],
        clock: Callable[[], datetime],
    ) -> None:
        self.service, self.source = service, source
        self.store, self.erased, self.facts, self.cache = store, erased, facts, cache
        self.publish, self.topic, self.clock = publish, topic, clock
        self.log = structlog.get_logger()
        self._erased_keys: set[str] = set()
        self._erased_count: int | None = None

    async def erase(self, envelope: Envelope) -> None:
        """Anonymise every aggregate and fact holding the person's data, then confirm.

        The person is remembered (by a hash of their email) first, so an event about them that arrives
        meanwhile or later is anonymised too. Each write is conditional on the version read, so a deal
        its consumer changed meanwhile is a ConcurrentWrite: the whole erasure is retried; it is idempotent.
        """
        request = envelope.data
        assert isinstance(request, ErasureRequested)
        key = subject_key(request.email)
        now = self.clock()
        await self.erased.update_one({"_id": key}, {"$setOnInsert": {"erased_at": now}}, upsert=True)
        holding = [aggregate async for aggregate in self.store.with_subject(key)]
        for aggregate in holding:
            self.cache.pop(aggregate.id)
            await self.store.save_all([(aggregate, anonymised(aggregate, request.email))])
        facts = 0 if self.facts is None else await self.facts.erase(request.email)
        confirmation = PersonalDataErased(
            request_id=request.request_id,
            service=self.service,
            records_anonymised=len(holding) + facts,
            erased_at=now,
        )
        await self.publish(
            [
                encode(
                    confirmation,
                    topic=self.topic(confirmation.TOPIC),
                    source=self.source,
                    event_id=derived_event_id(envelope.id, self.service),
                    time=now,
                )
            ]
        )
        self.log.info("personal_data_erased", request_id=request.request_id, records=len(holding) + facts)

    async def erased_among(self, emails: Iterable[str]) -> set[str]:
        """Those of these emails whose person was erased.

        Who was erased is read whole, and only when the count of erasures changed: erasures are few, and
        a batch then costs one count, not a lookup per email.
        """
        emails = {email.strip().lower() for email in emails}
        if not emails:
            return set()
        count = await self.erased.estimated_document_count()
        if count != self._erased_count:
            self._erased_keys = {document["_id"] async for document in self.erased.find({}, {"_id": 1})}
            self._erased_count = count
        return {email for email in emails if subject_key(email) in self._erased_keys}
