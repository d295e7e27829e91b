"""Wires the prospecting rules to Kafka and MongoDB, with the lookups they need at the edge."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from contracts import Event
from contracts.events import LeadCaptured, LeadMerged, ProspectIdentified
from services.prospecting.config import ProspectingPlaybook, load_playbook
from services.prospecting.domain import (
    Candidate,
    Duplicate,
    KnownLeads,
    Lead,
    assess,
    on_lead_captured,
    routing_period,
    team_for,
)
from shared.mongo import Document
from shared.privacy import anonymise
from shared.stage import StageDefinition


class ProspectingFacts:
    """Claims on emails, domains and company names, and each rep's load, in prospecting's database.

    A claim is a document whose `_id` is the match key (`email:jana@acme.de`), so the unique `_id` index
    decides, atomically, which lead becomes the prospect when two replicas race on the same person or
    company: the other one finds the claim and merges.
    """

    def __init__(self, database: AsyncDatabase[Document], playbook: ProspectingPlaybook) -> None:
        self.claims = database["claims"]
        self.rep_loads = database["rep_loads"]
        self.playbook = playbook
        self.window = timedelta(days=playbook.deduplication.window_days)

    async def gather(self, event: Event, now: datetime) -> KnownLeads:
        assert isinstance(event, LeadCaptured)
        candidate = assess(event, self.playbook)
        if not isinstance(candidate, Candidate):
            return KnownLeads()
        duplicate = await self._claim(event.lead_id, candidate, now)
        if duplicate is not None:
            return KnownLeads(duplicate=duplicate)
        return KnownLeads(rep_loads=await self._loads(candidate, now))

    async def record(self, event: Event, emitted: Sequence[Event], now: datetime) -> None:
        period = routing_period(now, self.playbook.routing)
        for outcome in emitted:
            if isinstance(outcome, ProspectIdentified):
                await self.rep_loads.update_one(
                    {"_id": f"{period}:{outcome.owner}"}, {"$inc": {"count": 1}}, upsert=True
                )
            if isinstance(outcome, LeadMerged):
                key = next(key for kind, key in self._keys(event) if kind == outcome.matched_on)
                await self.claims.update_one(
                    {"_id": f"{outcome.matched_on}:{key}"}, {"$set": {"merged_leads": outcome.merged_leads}}
                )

    async def erase(self, email: str) -> int:
        """Forget the person: drop the claim on their email, anonymise the snapshots that name them."""
        email = email.strip().lower()
        dropped = await self.claims.delete_one({"_id": f"email:{email}"})
        naming = [claim async for claim in self.claims.find({"fields.contact_email": email})]
        for claim in naming:
            await self.claims.replace_one({"_id": claim["_id"]}, anonymise(claim, email))
        return dropped.deleted_count + len(naming)

    def _keys(self, event: Event) -> list[tuple[str, str]]:
        assert isinstance(event, LeadCaptured)
        candidate = assess(event, self.playbook)
        return list(candidate.match_keys) if isinstance(candidate, Candidate) else []

    async def _claim(self, lead_id: str, candidate: Candidate, now: datetime) -> Duplicate | None:
        """Claim every match key for this lead, or find the recent prospect that holds one already."""
        fields = candidate.snapshot()
        mine: list[str] = []
        for kind, key in candidate.match_keys:
            claim_id = f"{kind}:{key}"
            claim: Document = {
                "_id": f"{kind}:{key}",
                "prospect_id": lead_id,
                "claimed_at": now,
                "fields": fields,
                "merged_leads": [],
            }
            try:
                await self.claims.insert_one(claim)
                mine.append(claim_id)
                continue
            except DuplicateKeyError:
                held = await self.claims.find_one({"_id": claim_id})
            if held is None or held["prospect_id"] == lead_id or held["claimed_at"] + self.window < now:
                await self.claims.replace_one({"_id": claim_id}, claim, upsert=True)
                mine.append(claim_id)
                continue
            # Point the keys this lead just claimed at the prospect, so later leads merge there too.
            for claimed in mine:
                await self.claims.replace_one({"_id": claimed}, {**held, "_id": claimed})
            return Duplicate(
                prospect_id=held["prospect_id"],
                matched_on=kind,
                prospect_fields=held["fields"],
                merged_leads=list(held.get("merged_leads", [])),
            )
        return None

    async def _loads(self, candidate: Candidate, now: datetime) -> dict[str, int]:
        period = routing_period(now, self.playbook.routing)
        reps = [rep.name for rep in team_for(candidate.company, self.playbook.routing).reps]
        cursor = self.rep_loads.find({"_id": {"$in": [f"{period}:{rep}" for rep in reps]}})
        return {document["_id"].split(":", 1)[1]: document["count"] async for document in cursor}


def definition() -> StageDefinition:
    playbook = load_playbook()
    return StageDefinition(
        name="prospecting",
        http_port=8081,
        state_model=Lead,
        handlers={LeadCaptured: partial(on_lead_captured, playbook=playbook)},
        opening_events=frozenset({LeadCaptured}),
        facts=lambda database: ProspectingFacts(database, playbook),
    )
