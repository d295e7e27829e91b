"""`dealflow journey`'s lines: what a rep reads about each event of a deal."""

from __future__ import annotations

from typing import Any

from cli.journey import journey, merged_into, summary
from cli.kafka_io import SeenEvent


def seen(event_type: str, key: str, data: dict[str, Any], time: str = "2026-11-02T10:00") -> SeenEvent:
    headers = {"ce_type": f"io.dealflow.{event_type}", "ce_time": time}
    return SeenEvent(topic="t", partition=0, offset=0, key=key, headers=headers, data=data)


def test_a_merged_leads_journey_shows_the_merge_and_names_the_deal_it_goes_on_in() -> None:
    events = [
        seen("lead.captured.v1", "lead-2", {"email": "b@acme.example", "company_name": "Acme"}),
        seen("prospect.identified.v1", "lead-1", {"fit_score": 80}),
        seen("lead.merged.v1", "lead-1", {"lead_id": "lead-2", "matched_on": "domain"}, "2026-11-02T11:00"),
    ]
    shown = journey(events, "lead-2")
    assert [event.type for event in shown] == ["lead.captured.v1", "lead.merged.v1"]
    assert summary(shown[1]) == "lead-2 merged into lead-1 (same domain)"
    assert merged_into(events, "lead-2") == "lead-1"
    assert merged_into(events, "lead-1") is None


def test_a_colleague_joining_is_told_apart_from_a_duplicate() -> None:
    joined = seen(
        "lead.merged.v1",
        "lead-1",
        {"lead_id": "lead-3", "matched_on": "domain", "relation": "buying_committee"},
    )
    assert summary(joined) == "lead-3 joins the buying committee of lead-1 (same domain)"


def test_the_fit_explanation_is_shown_with_the_score() -> None:
    prospect = seen(
        "prospect.identified.v1",
        "lead-1",
        {
            "fit_score": 75,
            "tier": "B",
            "owner": "anna.schmidt",
            "fit_explanation": [
                {"criterion": "industry", "matched": True, "points": 35, "detail": "software"},
                {"criterion": "size", "matched": False, "points": 0, "detail": "12 employees"},
            ],
        },
    )
    assert summary(prospect) == "fit 75 (tier B: industry 35, size 0), owner anna.schmidt"


def test_a_proposal_sent_by_version_says_so_rather_than_0_lines_in_none() -> None:
    assert summary(seen("activity.proposal_sent.v1", "d", {"quote_version": 2})) == "quote v2 sent"
    lines = {"lines": [{"product": "seat"}], "currency": "EUR"}
    assert summary(seen("activity.proposal_sent.v1", "d", lines)) == "1 quote lines in EUR, prepared and sent"


def test_a_record_sent_again_with_its_id_is_shown_once() -> None:
    lead = seen("lead.captured.v1", "lead-1", {"email": "a@b.example", "company_name": "B"})
    lead.headers["ce_id"] = "lead-1-captured"
    told_again = SeenEvent(
        topic="t", partition=0, offset=7, key="lead-1", headers=lead.headers, data=lead.data
    )
    other = seen("lead.captured.v1", "lead-1", {"email": "a@b.example"}, time="2026-11-02T11:00")
    other.headers["ce_id"] = "another-id"
    assert journey([lead, told_again, other], "lead-1") == [lead, other]


def test_an_imported_deal_says_where_it_came_from_and_where_it_stands() -> None:
    imported = seen(
        "deal.imported.v1",
        "hubspot-1",
        {
            "source": "hubspot",
            "source_id": "1",
            "stage": "negotiation",
            "pipeline": "new_business",
            "owner": "anna.schmidt",
            "stage_history": [{"stage": "qualification"}, {"stage": "negotiation"}],
        },
    )
    assert summary(imported) == "hubspot 1: negotiation in new_business, owner anna.schmidt, 2 stages known"
