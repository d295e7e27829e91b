from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import (
    MAX_INPUT_ITEMS,
    MAX_TEXT_LENGTH,
    Company,
    Contact,
    LeadCaptured,
    LeadMerged,
    LeadRejected,
    ProspectIdentified,
)
from services.prospecting.config import Limits, ProspectingPlaybook, load_playbook
from services.prospecting.domain import (
    Candidate,
    Duplicate,
    KnownLeads,
    Lead,
    assess,
    classify_title,
    company_key,
    country_code,
    normalise,
    on_lead_captured,
    parse_amount,
    route,
    score,
)
from shared.envelope import encode

PLAYBOOK = load_playbook()
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NOBODY = KnownLeads()


def lead(**fields: object) -> LeadCaptured:
    base: dict[str, object] = {
        "lead_id": "lead-1",
        "email": "Jana.Novak@Acme-Robotics.DE",
        "title": "CTO",
        "company_name": "Acme Robotics GmbH",
        "country": "de",
        "employees": 250,
        "industry": "Software",
    }
    return LeadCaptured.model_validate(base | fields)


def test_a_fitting_lead_becomes_a_tier_a_prospect_with_owner_explanation_and_next_step() -> None:
    decision = on_lead_captured(None, lead(), NOW, NOBODY, PLAYBOOK)

    [event] = decision.events
    assert isinstance(event, ProspectIdentified)
    assert (event.fit_score, event.tier) == (90, "A")
    assert [(c.criterion, c.matched, c.points) for c in event.fit_explanation] == [
        ("industry", True, 35),
        ("size", True, 25),
        ("geography", True, 15),
        ("seniority", True, 15),
        ("signals", False, 0),
    ]
    assert event.contact.email == "jana.novak@acme-robotics.de"
    assert (event.contact.seniority, event.contact.function) == ("c_level", "engineering")
    assert (event.company.domain, event.company.country) == ("acme-robotics.de", "DE")
    assert event.owner == "anna.schmidt"
    assert event.next_step.due_at == NOW + timedelta(hours=4)
    assert decision.state.outcome == "prospect"


def test_signals_add_points_for_technology_and_intent() -> None:
    fit = score(
        Company(industry="software", employees=10, country="BR", technologies=["hubspot"]),
        Contact(email="x@y.example"),
        ["Demo_Request"],
        PLAYBOOK.icp,
    )

    assert fit.score == 35 + 10
    assert fit.explanation[-1].matched


def test_an_invalid_lead_is_rejected_with_every_reason_and_field() -> None:
    decision = on_lead_captured(
        None,
        lead(email="nope", company_name=None, country="Atlantis", employees="lots"),
        NOW,
        NOBODY,
        PLAYBOOK,
    )

    [event] = decision.events
    assert isinstance(event, LeadRejected)
    assert {(reason.code, reason.field) for reason in event.reasons} == {
        ("invalid_email", "email"),
        ("missing_company", "company_name"),
        ("invalid_country", "country"),
        ("invalid_employees", "employees"),
    }


@pytest.mark.parametrize(("field", "value"), [("industry", "gambling"), ("country", "KP")])
def test_a_hard_exclusion_scores_zero(field: str, value: str) -> None:
    [event] = on_lead_captured(None, lead(**{field: value}), NOW, NOBODY, PLAYBOOK).events

    assert isinstance(event, LeadRejected)
    assert event.reasons[0].code == "not_a_fit"


def test_a_duplicate_is_merged_into_the_prospect_with_what_it_adds() -> None:
    first = assess(lead(), PLAYBOOK)
    assert isinstance(first, Candidate)
    duplicate = Duplicate(
        prospect_id="lead-0", matched_on="email", prospect_fields=first.snapshot(), merged_leads=["lead-7"]
    )

    decision = on_lead_captured(
        None, lead(phone="+49 30 1234"), NOW, KnownLeads(duplicate=duplicate), PLAYBOOK
    )

    [event] = decision.events
    assert isinstance(event, LeadMerged)
    assert (event.deal_id, event.lead_id, event.matched_on) == ("lead-0", "lead-1", "email")
    assert event.merged_fields == {"contact_phone": "+49 30 1234"}
    assert event.merged_leads == ["lead-7", "lead-1"]
    assert decision.state == Lead(lead_id="lead-1", outcome="merged", deal_id="lead-0")


def merged_into(
    prospect_fields: dict[str, str],
    merged_leads: list[str],
    new_lead: LeadCaptured,
    playbook: ProspectingPlaybook,
) -> LeadMerged:
    duplicate = Duplicate(
        prospect_id="lead-0", matched_on="email", prospect_fields=prospect_fields, merged_leads=merged_leads
    )
    [event] = on_lead_captured(None, new_lead, NOW, KnownLeads(duplicate=duplicate), playbook).events
    assert isinstance(event, LeadMerged)
    return event


def test_a_lead_merged_lists_the_most_recent_merged_leads_up_to_the_limit() -> None:
    first = assess(lead(), PLAYBOOK)
    assert isinstance(first, Candidate)
    playbook = PLAYBOOK.model_copy(update={"limits": Limits(merged_leads=3)})
    before = [f"lead-{n}" for n in range(10, 15)]

    event = merged_into(first.snapshot(), before, lead(), playbook)

    assert event.merged_leads == ["lead-13", "lead-14", "lead-1"]
    assert PLAYBOOK.limits.merged_leads == 100
    assert (
        ProspectingPlaybook.model_validate(PLAYBOOK.model_dump(exclude={"limits"})).limits == PLAYBOOK.limits
    )


def test_a_prospect_merged_into_again_and_again_emits_a_record_of_bounded_size() -> None:
    first = assess(lead(), PLAYBOOK)
    assert isinstance(first, Candidate)
    many = [f"lead-{n:06d}-{'x' * 100}" for n in range(5_000)]  # each lead id near its longest

    event = merged_into(first.snapshot(), many, lead(), PLAYBOOK)
    record = encode(event, topic="t", source="/test")

    assert len(event.merged_leads) == PLAYBOOK.limits.merged_leads
    assert event.merged_leads[-2:] == [many[-1], "lead-1"]
    assert len(record.value) < 64 * 1024


def test_a_merged_field_too_long_for_an_event_is_cut_to_the_contracts_text_limit() -> None:
    # Up to 100 technologies of up to 1000 characters each: written out, far more than one field holds.
    technologies = [f"{n:03d}-{'t' * 900}" for n in range(MAX_INPUT_ITEMS)]
    first = assess(lead(), PLAYBOOK)
    assert isinstance(first, Candidate)

    event = merged_into(first.snapshot(), [], lead(technologies=technologies), PLAYBOOK)

    value = event.merged_fields["company_technologies"]
    assert len(value) == MAX_TEXT_LENGTH
    assert value.startswith("['000-ttt")
    assert value.endswith("…")


def test_a_lead_seen_before_gets_no_second_answer() -> None:
    seen = Lead(lead_id="lead-1", outcome="prospect")

    assert on_lead_captured(seen, lead(), NOW, NOBODY, PLAYBOOK).events == []


def test_match_keys_identify_person_domain_and_company() -> None:
    candidate = assess(lead(website="https://www.acme.example/about"), PLAYBOOK)

    assert isinstance(candidate, Candidate)
    assert candidate.match_keys == [
        ("email", "jana.novak@acme-robotics.de"),
        ("domain", "acme.example"),
        ("company_name", "acme robotics"),
    ]


def test_free_mail_domains_are_not_company_domains() -> None:
    _, company, _ = normalise(lead(email="jana@gmail.com"), PLAYBOOK.free_mail_domains)

    assert company.domain is None


@pytest.mark.parametrize(
    ("text", "code"),
    [("de", "DE"), ("Germany", "DE"), ("DEU", "DE"), ("United Kingdom", "GB"), ("UK", "GB"), ("usa", "US")],
)
def test_countries_become_iso_codes(text: str, code: str) -> None:
    assert country_code(text) == code


@pytest.mark.parametrize(
    ("value", "amount"),
    [
        (250, 250),
        ("250", 250),
        ("51-200", 125),
        ("1,000+", 1000),
        ("5k", 5000),
        ("$10M", 10_000_000),
        ("1k-5k", 3000),
        ("€2.5m", 2_500_000),
        ("lots", None),
        ("200-50", None),
    ],
)
def test_counts_and_bands_become_numbers(value: int | str, amount: int | None) -> None:
    assert parse_amount(value) == amount


@pytest.mark.parametrize(
    ("title", "seniority", "function"),
    [
        ("VP Sales", "vp", "sales"),
        ("Vice President, Marketing", "vp", "marketing"),
        ("Chief Financial Officer", "c_level", "finance"),
        ("Head of Operations", "director", "operations"),
        ("Account Manager", "manager", "sales"),
        ("Analyst", "individual", None),
    ],
)
def test_titles_give_seniority_and_function(title: str, seniority: str, function: str | None) -> None:
    assert classify_title(title) == (seniority, function)


def test_company_names_match_without_legal_form_and_punctuation() -> None:
    assert company_key("ACME Robotics, GmbH") == company_key("acme robotics") == "acme robotics"


def test_routing_goes_round_the_territory_team_in_turn() -> None:
    loads: dict[str, int] = {}
    owners = []
    for _ in range(6):
        owner = route(Company(country="FR"), PLAYBOOK.routing, loads)
        loads[owner] = loads.get(owner, 0) + 1
        owners.append(owner)

    assert owners == ["anna.schmidt", "luc.martin", "sofia.rossi"] * 2
    assert route(Company(country="BR"), PLAYBOOK.routing, {}) == "jordan.lee"


def test_routing_skips_inactive_reps_and_reps_at_capacity() -> None:
    routing = ProspectingPlaybook.model_validate(
        PLAYBOOK.model_dump()
        | {
            "routing": PLAYBOOK.routing.model_dump()
            | {
                "teams": [
                    {
                        "name": "emea",
                        "countries": ["FR"],
                        "reps": [
                            {"name": "full", "capacity": 2},
                            {"name": "away", "active": False},
                            {"name": "free", "capacity": 2},
                        ],
                    },
                ]
            }
        }
    ).routing

    assert route(Company(country="FR"), routing, {"full": 2}) == "free"
    assert route(Company(country="FR"), routing, {"full": 2, "free": 2}) == "unassigned:emea"


def test_a_playbook_whose_weights_do_not_add_up_is_refused() -> None:
    data = PLAYBOOK.model_dump()
    data["icp"]["industry"]["weight"] = 50

    with pytest.raises(ValueError, match="add up to 100"):
        ProspectingPlaybook.model_validate(data)


@given(
    local=st.from_regex(r"[A-Za-z0-9._%+-]{1,20}", fullmatch=True),
    domain=st.from_regex(r"[A-Za-z0-9]{1,10}\.[A-Za-z]{2,5}", fullmatch=True),
    padding=st.sampled_from(["", " ", "  \t"]),
    employees=st.one_of(st.integers(0, 10**6), st.integers(0, 10**5).map(str)),
)
def test_normalising_is_idempotent(local: str, domain: str, padding: str, employees: int | str) -> None:
    first, company, _ = normalise(
        lead(email=f"{padding}{local}@{domain}{padding}", employees=employees), PLAYBOOK.free_mail_domains
    )
    again, company_again, _ = normalise(
        lead(email=first.email, employees=company.employees, country=company.country),
        PLAYBOOK.free_mail_domains,
    )

    assert first.email == first.email.strip().lower()
    assert (again, company_again) == (first, company)
