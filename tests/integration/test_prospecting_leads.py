"""Prospecting on the real broker and database: 1,000 generated leads with known outcomes."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest

from cli.kafka_io import SeenEvent, publish, records_for
from contracts.events import DealLost, LeadCaptured
from services.prospecting.service import definition as prospecting
from shared.settings import Settings
from tests.integration.helpers import by, events_when, fit_lead, of_type, running, send

pytestmark = pytest.mark.integration

INDUSTRIES = ["software", "saas", "fintech", "ecommerce", "logistics"]
COUNTRIES = ["DE", "France", "nl", "GB", "United States", "CA"]


def original(number: int) -> LeadCaptured:
    return LeadCaptured(
        lead_id=f"orig-{number:04d}",
        email=f"buyer{number}@company{number}.example",
        title=random.Random(number).choice(["CTO", "VP Sales", "Head of Operations", "CEO"]),
        company_name=f"Company{number} GmbH",
        country=COUNTRIES[number % len(COUNTRIES)],
        employees=random.Random(number).choice([120, "51-200", "1000+", "2k"]),
        industry=INDUSTRIES[number % len(INDUSTRIES)],
    )


def generated_leads() -> tuple[list[LeadCaptured], list[LeadCaptured], dict[str, str]]:
    """First wave: 600 fits, 100 invalid, 100 non-fits. Second wave: 200 duplicates of the fits.

    Returns both waves and, for each duplicate, the prospect it must be merged into.
    """
    fits = [original(number) for number in range(600)]
    invalid = [
        LeadCaptured(lead_id=f"invalid-{n:04d}", email=f"broken{n}.example", company_name=f"Invalid{n}")
        if n % 2
        else LeadCaptured(lead_id=f"invalid-{n:04d}", email=f"someone{n}@gmail.com", country="Narnia")
        for n in range(100)
    ]
    non_fits = [
        LeadCaptured(
            lead_id=f"nofit-{n:04d}",
            email=f"ops{n}@casino{n}.example",
            company_name=f"Casino{n}",
            industry="gambling",
        )
        for n in range(100)
    ]
    duplicates, merged_into = [], {}
    for n in range(200):
        source = fits[n * 3]
        number = n * 3
        if n % 4 == 0:  # the same person, written differently
            lead = source.model_copy(
                update={"lead_id": f"dup-{n:04d}", "email": f"  BUYER{number}@Company{number}.EXAMPLE "}
            )
        elif n % 4 == 1:  # a colleague at the same company domain
            lead = source.model_copy(
                update={"lead_id": f"dup-{n:04d}", "email": f"colleague@company{number}.example"}
            )
        elif n % 4 == 2:  # the same company by name, from a free-mail address
            lead = source.model_copy(
                update={
                    "lead_id": f"dup-{n:04d}",
                    "email": f"someone{n}@gmail.com",
                    "company_name": f"company{number}, gmbh",
                }
            )
        else:  # the same company through its website
            lead = source.model_copy(
                update={
                    "lead_id": f"dup-{n:04d}",
                    "email": f"x{n}@gmail.com",
                    "company_name": None,
                    "website": f"https://www.company{number}.example/contact",
                }
            )
        duplicates.append(lead)
        merged_into[lead.lead_id] = source.lead_id
    first_wave = fits + invalid + non_fits
    random.Random(1).shuffle(first_wave)
    return first_wave, duplicates, merged_into


def outcomes(events: list[SeenEvent]) -> Counter[str]:
    return Counter(
        event.type for event in events if event.headers.get("ce_source") == "/dealflow/prospecting"
    )


async def test_a_thousand_leads_give_exactly_the_expected_prospects_merges_and_rejections(
    settings: Settings,
) -> None:
    first_wave, duplicates, merged_into = generated_leads()
    async with running(prospecting(), settings):
        await publish(settings, records_for(settings, ((lead, None) for lead in first_wave)))
        await events_when(settings, lambda seen: sum(outcomes(seen).values()) == 800, timeout=120)
        await publish(settings, records_for(settings, ((lead, None) for lead in duplicates)))
        events = await events_when(settings, lambda seen: sum(outcomes(seen).values()) == 1000, timeout=120)
        # The same file again, as new events: every lead is known, nothing is emitted.
        await publish(settings, records_for(settings, ((lead, None) for lead in first_wave + duplicates)))
        await asyncio.sleep(1)
        again = await events_when(
            settings, lambda seen: len(of_type(seen, "lead.captured.v1")) == 2000, timeout=120
        )
        await asyncio.sleep(3)
        again = await events_when(settings, lambda seen: True)

    prospects = of_type(events, "prospect.identified.v1")
    assert sorted(event.key for event in prospects) == [f"orig-{n:04d}" for n in range(600)]
    rejected = of_type(events, "lead.rejected.v1")
    assert sorted(event.key for event in rejected) == sorted(
        [f"invalid-{n:04d}" for n in range(100)] + [f"nofit-{n:04d}" for n in range(100)]
    )
    assert {e.data["reasons"][0]["code"] for e in rejected if e.key.startswith("nofit")} == {"not_a_fit"}  # type: ignore[index]
    merged = {event.data["lead_id"]: event.data for event in of_type(events, "lead.merged.v1") if event.data}
    assert {lead_id: data["deal_id"] for lead_id, data in merged.items()} == merged_into
    assert Counter(data["matched_on"] for data in merged.values()) == {
        "email": 50,
        "domain": 100,
        "company_name": 50,
    }
    assert outcomes(again) == outcomes(events)


async def test_two_replicas_racing_on_the_same_person_make_one_prospect(settings: Settings) -> None:
    same_person = [
        LeadCaptured(
            lead_id=f"race-{n:03d}",
            email="jana@acme-robotics.de",
            title="CTO",
            company_name="Acme Robotics",
            country="DE",
            employees=300,
            industry="software",
        )
        for n in range(60)
    ]
    async with AsyncExitStack() as replicas:
        for _ in range(2):
            await replicas.enter_async_context(running(prospecting(), settings))
        await publish(settings, records_for(settings, ((lead, None) for lead in same_person)))
        events = await events_when(settings, lambda seen: sum(outcomes(seen).values()) == 60, timeout=120)

    [prospect] = of_type(events, "prospect.identified.v1")
    merges = of_type(events, "lead.merged.v1")
    assert len(merges) == 59
    assert {event.data["deal_id"] for event in merges if event.data} == {prospect.key}


async def test_a_returning_lead_opens_a_new_deal_once_its_deal_closed_and_a_colleague_joins_it(
    settings: Settings,
) -> None:
    first = fit_lead("back-1")
    lost = DealLost(
        deal_id="back-1", stage="proposal", reason_code="price", lost_at=datetime.now(UTC) - timedelta(days=1)
    )
    expansion_lost = DealLost(
        deal_id="never-prospected-x1", stage="closing", reason_code="budget", lost_at=datetime.now(UTC)
    )
    async with running(prospecting(), settings):
        await send(settings, first)
        await events_when(settings, lambda seen: len(of_type(seen, "prospect.identified.v1")) == 1)
        await send(settings, lost, expansion_lost)
        await asyncio.sleep(2)  # the closures are consumed (they emit nothing)
        await send(settings, fit_lead("back-2"))
        await events_when(settings, lambda seen: len(of_type(seen, "prospect.identified.v1")) == 2)
        await send(settings, fit_lead("back-3").model_copy(update={"email": "petr@acme-robotics.de"}))
        events = await events_when(settings, lambda seen: len(of_type(seen, "lead.merged.v1")) == 1)

    again = by(events, "back-2", "prospect.identified.v1")[0].data
    assert again is not None
    assert again["previous_deal_id"] == "back-1"
    [joined] = of_type(events, "lead.merged.v1")
    assert joined.data is not None
    assert (joined.data["deal_id"], joined.data["relation"]) == ("back-2", "buying_committee")
    assert joined.data["contact"]["email"] == "petr@acme-robotics.de"
    assert not [event for event in events if "dlq_error_code" in event.headers]
