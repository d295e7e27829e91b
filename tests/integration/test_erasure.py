"""An erasure request anonymises a person in every service that holds them, and each service confirms."""

from __future__ import annotations

import json

import pytest

from contracts.events import ErasureRequested, LeadCaptured
from services.prospecting.service import definition as prospecting
from services.qualification.service import definition as qualification
from shared.mongo import make_client, service_database
from shared.privacy import ERASED
from shared.settings import Settings
from tests.integration.helpers import events_when, of_type, running, send

pytestmark = pytest.mark.integration

FORGOTTEN = "Jana.Novak@acme-robotics.de"
KEPT = "li.wei@globex.com"


def lead(lead_id: str, email: str, first_name: str, company: str) -> LeadCaptured:
    return LeadCaptured(
        lead_id=lead_id,
        email=email,
        first_name=first_name,
        last_name="Example",
        phone="+49 30 1234567",
        title="CTO",
        company_name=company,
        country="DE",
        employees=250,
        industry="software",
    )


async def stored_text(settings: Settings, service: str) -> str:
    """Everything a service's database holds, as text, to look for a person in."""
    client = make_client(settings, app_name="test")
    try:
        database = service_database(client, settings, service)
        documents = [
            document
            for name in await database.list_collection_names()
            async for document in database[name].find({})
        ]
        return json.dumps(documents, default=str).lower()
    finally:
        await client.close()


async def test_a_person_is_anonymised_everywhere_and_each_service_confirms(settings: Settings) -> None:
    async with running(prospecting(), settings), running(qualification(), settings):
        await send(
            settings,
            lead("lead-forgotten", FORGOTTEN, "Jana", "Acme Robotics"),
            lead("lead-kept", KEPT, "Li", "Globex"),
        )
        await events_when(
            settings,
            lambda seen: len(of_type(seen, "qualification.next_step_scheduled.v1")) == 2,
        )
        for service in ("prospecting", "qualification"):
            assert FORGOTTEN.lower() in await stored_text(settings, service)

        await send(settings, ErasureRequested(request_id="erasure-1", email=FORGOTTEN, requested_by="dpo"))
        events = await events_when(settings, lambda seen: len(of_type(seen, "personal_data.erased.v1")) == 2)

    confirmations = {
        event.data["service"]: event.data for event in of_type(events, "personal_data.erased.v1")
    }
    assert set(confirmations) == {"prospecting", "qualification"}
    assert all(event["request_id"] == "erasure-1" for event in confirmations.values())
    # prospecting: the lead's state, its email claim and the domain/company claims' snapshots
    assert confirmations["prospecting"]["records_anonymised"] >= 2
    assert confirmations["qualification"]["records_anonymised"] == 1
    for service in ("prospecting", "qualification"):
        held = await stored_text(settings, service)
        assert FORGOTTEN.lower() not in held
        assert "jana" not in held
        assert ERASED.lower() in held
        assert KEPT in held  # nobody else is touched


async def test_an_event_about_an_erased_person_is_not_applied_and_its_dead_letter_holds_nothing(
    settings: Settings,
) -> None:
    async with running(prospecting(), settings):
        await send(settings, ErasureRequested(request_id="erasure-2", email=FORGOTTEN, requested_by="dpo"))
        await events_when(settings, lambda seen: len(of_type(seen, "personal_data.erased.v1")) == 1)
        # A copy from upstream arrives late (or a dead letter from before is redriven).
        await send(
            settings,
            lead("lead-late", FORGOTTEN.upper(), "Jana", "Acme Robotics"),
            lead("lead-other", KEPT, "Li", "Globex"),
        )
        events = await events_when(
            settings,
            lambda seen: (
                any(event.headers.get("dlq_error_code") == "subject_erased" for event in seen)
                and len(of_type(seen, "prospect.identified.v1")) == 1
            ),
        )
        held = await stored_text(settings, "prospecting")
    [dead] = [event for event in events if event.headers.get("dlq_error_code") == "subject_erased"]
    assert dead.key == "lead-late"
    assert dead.value == b"", "the dead letter keeps no personal data"
    assert [event.key for event in of_type(events, "prospect.identified.v1")] == ["lead-other"]
    assert FORGOTTEN.lower() not in held
    assert "jana" not in held
