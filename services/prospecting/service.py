"""Wires the prospecting rules to Kafka and MongoDB, with the lookups they need at the edge."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from contracts import Event
from contracts.events import LeadCaptured, LeadMerged, ProspectIdentified, Reason
from services.prospecting.config import ProspectingPlaybook, load_playbook
from services.prospecting.domain import (
    CLOSING_EVENTS,
    Candidate,
    Duplicate,
    KnownLeads,
    Lead,
    assess,
    closure,
    lead_refused,
    on_deal_closed,
    on_lead_captured,
    routing_period,
)
from shared.mongo import Document
from shared.privacy import anonymise
from shared.runtime import StageDefinition
from shared.store import ConcurrentWrite


class ProspectingFacts:
    """Claims on emails, domains and company names, and each rep's load, in prospecting's database.

    A claim is a document whose `_id` is the match key (`email:jana@acme.de`), so the unique `_id` index
    decides, atomically, which lead becomes the prospect when two replicas race on the same person or
    company: the loser's insert fails, its whole batch is retried, and the retry finds the claim and merges.

    A batch costs a few round trips, not a few per lead: the claims and loads it may touch are read at
    once, each decision sees those before it in memory, and what changed is written in bulk.

    Which deals closed (won, lost, disqualified) is learnt from the stage events and kept in `closed_deals`
    by deal id, so a claim held by a closed deal is told apart from one held by an open deal. A lead's
    claims are taken once its decision is known: a new prospect claims every key it matched (taking over
    those of earlier deals), a merged lead points its free keys at the deal it joined.
    """

    def __init__(self, database: AsyncDatabase[Document], playbook: ProspectingPlaybook) -> None:
        self.claims = database["claims"]
        self.rep_loads = database["rep_loads"]
        self.closed_deals = database["closed_deals"]
        self.playbook = playbook
        self.window = timedelta(days=playbook.deduplication.window_days)
        # Each lead is assessed once per batch, however often prefetch, gather and note ask.
        self._assessed: dict[int, tuple[Event, Candidate | list[Reason]]] = {}
        self._start_batch({}, {}, 0)

    def _start_batch(self, stored_claims: dict[str, Document], loads: dict[str, int], period: int) -> None:
        self._stored = stored_claims  # as read at the start of the batch
        self._claims = dict(stored_claims)  # as the batch's decisions so far left them
        self._claimed: dict[str, Document] = {}  # to write before the batch's state is saved
        self._loads = loads
        self._period = period
        self._load_increments: dict[str, int] = {}
        self._merged_updates: dict[str, list[str]] = {}
        self._closed: dict[str, str] = {}  # deal id: how it closed, as read and as this batch learnt
        self._closures: dict[str, Document] = {}  # to write before the batch's state is saved
        self._matching: tuple[str, datetime, list[str], Duplicate | None] | None = None

    async def prefetch(self, events: Sequence[Event], now: datetime) -> None:
        self._assessed = {}
        keys = {
            f"{kind}:{key}"
            for event in events
            if isinstance(event, LeadCaptured) and isinstance(candidate := self._candidate(event), Candidate)
            for kind, key in candidate.match_keys
        }
        period = routing_period(now, self.playbook.routing)
        load_ids = [f"{period}:{rep.name}" for team in self.playbook.routing.teams for rep in team.reps]
        # One `_id: {$in}` read each, from the `_id` index (FerretDB too: see deploy/local/infra.sh).
        claims = {doc["_id"]: doc for doc in await _by_ids(self.claims, sorted(keys))}
        loads = {doc["_id"].split(":", 1)[1]: doc["count"] for doc in await _by_ids(self.rep_loads, load_ids)}
        deals = {claim["prospect_id"] for claim in claims.values()}
        deals |= {event.partition_key for event in events if closure(event) is not None}
        closed = await _by_ids(self.closed_deals, sorted(deals))
        self._start_batch(claims, loads, period)
        self._closed = {doc["_id"]: doc["closed"] for doc in closed}

    def gather(self, event: Event, now: datetime) -> KnownLeads:
        self._matching = None
        if not isinstance(event, LeadCaptured):
            return KnownLeads()
        candidate = self._candidate(event)
        if not isinstance(candidate, Candidate):
            return KnownLeads()
        free, open_deal, closed_deal = self._matches(event.lead_id, candidate, now)
        self._matching = (event.lead_id, now, free, open_deal or closed_deal)
        return KnownLeads(duplicate=open_deal, closed=closed_deal, rep_loads=dict(self._loads))

    def note(self, event: Event, emitted: Sequence[Event]) -> None:
        if (closed := closure(event)) is not None:
            deal_id = event.partition_key
            self._closed[deal_id] = closed
            self._closures[deal_id] = {"_id": deal_id, "closed": closed}
            return
        for outcome in emitted:
            if isinstance(outcome, ProspectIdentified):
                self._loads[outcome.owner] = self._loads.get(outcome.owner, 0) + 1
                self._load_increments[outcome.owner] = self._load_increments.get(outcome.owner, 0) + 1
                self._claim_all(event)
            if isinstance(outcome, LeadMerged):
                candidate = self._candidate(event)
                assert isinstance(candidate, Candidate)
                key = next(key for kind, key in candidate.match_keys if kind == outcome.matched_on)
                claim_id = f"{outcome.matched_on}:{key}"
                held = {**self._claims[claim_id], "merged_leads": outcome.merged_leads}
                self._claims[claim_id] = held
                self._merged_updates[claim_id] = outcome.merged_leads
                # Point the keys this lead matched nothing on at the deal, so later leads match it there.
                for free in self._matching[2] if self._matching else []:
                    self._take({**held, "_id": free})

    async def commit(self) -> None:
        """Write the batch's claims; if another replica claimed a key first, raise ConcurrentWrite."""
        await asyncio.gather(
            *(
                self.closed_deals.replace_one({"_id": deal_id}, closed, upsert=True)
                for deal_id, closed in self._closures.items()
            )
        )
        new = [claim for claim_id, claim in self._claimed.items() if claim_id not in self._stored]
        if new:
            try:
                await self.claims.insert_many(new, ordered=False)
            except BulkWriteError as error:
                raise ConcurrentWrite(
                    f"a claim was taken meanwhile: {error.details['writeErrors'][:1]}"
                ) from error
        await asyncio.gather(
            *(
                self.claims.replace_one({"_id": claim_id}, claim, upsert=True)
                for claim_id, claim in self._claimed.items()
                if claim_id in self._stored
            )
        )

    async def record(self, now: datetime) -> None:
        """After the batch is published: count each rep's new leads, remember merged leads."""
        await asyncio.gather(
            *(
                self.rep_loads.update_one(
                    {"_id": f"{self._period}:{owner}"}, {"$inc": {"count": count}}, upsert=True
                )
                for owner, count in self._load_increments.items()
            ),
            *(
                self.claims.update_one({"_id": claim_id}, {"$set": {"merged_leads": merged}})
                for claim_id, merged in self._merged_updates.items()
            ),
        )

    async def erase(self, email: str) -> int:
        """Forget the person: drop the claim on their email, anonymise the snapshots that name them."""
        email = email.strip().lower()
        dropped = await self.claims.delete_one({"_id": f"email:{email}"})
        naming = [claim async for claim in self.claims.find({"fields.contact_email": email})]
        for claim in naming:
            await self.claims.replace_one({"_id": claim["_id"]}, anonymise(claim, email))
        return dropped.deleted_count + len(naming)

    def _candidate(self, event: Event) -> Candidate | list[Reason]:
        assert isinstance(event, LeadCaptured)
        known = self._assessed.get(id(event))
        if known is not None and known[0] is event:
            return known[1]
        candidate = assess(event, self.playbook)
        self._assessed[id(event)] = (event, candidate)
        return candidate

    def _matches(
        self, lead_id: str, candidate: Candidate, now: datetime
    ) -> tuple[list[str], Duplicate | None, Duplicate | None]:
        """The lead's keys no recent deal holds, the most specific open deal and closed deal it matches."""
        free: list[str] = []
        open_deal: Duplicate | None = None
        closed_deal: Duplicate | None = None
        for kind, key in candidate.match_keys:
            claim_id = f"{kind}:{key}"
            held = self._claims.get(claim_id)
            if held is None or held["prospect_id"] == lead_id or held["claimed_at"] + self.window < now:
                free.append(claim_id)
                continue
            closed = self._closed.get(held["prospect_id"])
            match = Duplicate(
                prospect_id=held["prospect_id"],
                matched_on=kind,
                prospect_fields=held["fields"],
                merged_leads=list(held.get("merged_leads", [])),
                closed=closed,
            )
            if closed is None and open_deal is None:
                open_deal = match
            if closed is not None and closed_deal is None:
                closed_deal = match
        return free, open_deal, closed_deal

    def _claim_all(self, event: Event) -> None:
        """A new prospect claims every key of its lead, taking over those of earlier (closed) deals."""
        candidate = self._candidate(event)
        assert isinstance(candidate, Candidate)
        assert isinstance(event, LeadCaptured)
        assert self._matching is not None  # gathered for this very lead
        now = self._matching[1]
        fields = candidate.snapshot()
        for kind, key in candidate.match_keys:
            self._take(
                {
                    "_id": f"{kind}:{key}",
                    "prospect_id": event.lead_id,
                    "claimed_at": now,
                    "fields": fields,
                    "merged_leads": [],
                }
            )

    def _take(self, claim: Document) -> None:
        self._claims[claim["_id"]] = claim
        self._claimed[claim["_id"]] = claim


def definition() -> StageDefinition:
    playbook = load_playbook()
    return StageDefinition(
        name="prospecting",
        http_port=8081,
        state_model=Lead,
        handlers={
            LeadCaptured: partial(on_lead_captured, playbook=playbook),
            # Closures, to tell open deals from closed ones: they open no lead and emit nothing.
            **{closing: partial(on_deal_closed, playbook=playbook) for closing in CLOSING_EVENTS},
        },
        # A closure may come for a deal prospecting never opened (an expansion deal): it is handled, not
        # parked, and leaves no state.
        opening_events=frozenset({LeadCaptured, *CLOSING_EVENTS}),
        facts=lambda database: ProspectingFacts(database, playbook),
        business_time=playbook.business_time,
        refusal=lead_refused,
    )


async def _by_ids(collection: AsyncCollection[Document], ids: Sequence[str]) -> list[Document]:
    return [document async for document in collection.find({"_id": {"$in": list(ids)}})] if ids else []
