from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import (
    MAX_INPUT_ITEMS,
    MAX_TEXT_LENGTH,
    Company,
    Contact,
    DealLost,
    DealWon,
    LeadCaptured,
    LeadDisqualified,
    LeadMerged,
    LeadRejected,
    ProspectIdentified,
)
from contracts.topics import Topic
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
    on_deal_closed,
    on_lead_captured,
    parse_amount,
    route,
    score,
)
from services.prospecting.service import ProspectingFacts
from services.prospecting.service import definition as prospecting_definition
from shared.domain import Decision
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


# --- deduplication that knows deals and accounts ---------------------------------------------------


def match(matched_on: str = "email", closed: str | None = None) -> Duplicate:
    first = assess(lead(), PLAYBOOK)
    assert isinstance(first, Candidate)
    return Duplicate(
        prospect_id="lead-0",
        matched_on=matched_on,  # type: ignore[arg-type]
        prospect_fields=first.snapshot(),
        merged_leads=[],
        closed=closed,
    )


def with_policy(**policy: str) -> ProspectingPlaybook:
    return PLAYBOOK.model_copy(update={"deduplication": PLAYBOOK.deduplication.model_copy(update=policy)})


COLLEAGUE = {"email": "petr.kral@acme-robotics.de"}


def test_a_colleague_at_the_account_of_an_open_deal_joins_its_buying_committee() -> None:
    decision = on_lead_captured(None, lead(**COLLEAGUE), NOW, KnownLeads(duplicate=match("domain")), PLAYBOOK)

    [event] = decision.events
    assert isinstance(event, LeadMerged)
    assert (event.deal_id, event.relation, event.matched_on) == ("lead-0", "buying_committee", "domain")
    assert event.contact is not None
    assert event.contact.email == "petr.kral@acme-robotics.de"
    assert decision.state == Lead(lead_id="lead-1", outcome="merged", deal_id="lead-0")


def test_the_same_person_at_an_open_deal_is_merged_as_a_duplicate() -> None:
    [event] = on_lead_captured(None, lead(), NOW, KnownLeads(duplicate=match("email")), PLAYBOOK).events

    assert isinstance(event, LeadMerged)
    assert (event.relation, event.contact) == ("duplicate", None)


@pytest.mark.parametrize("closed", ["won", "lost", "disqualified"])
def test_a_lead_matching_only_a_closed_deal_opens_a_new_deal_that_refers_to_it(closed: str) -> None:
    known = KnownLeads(closed=match("email", closed=closed))

    decision = on_lead_captured(None, lead(), NOW, known, PLAYBOOK)

    [event] = decision.events
    assert isinstance(event, ProspectIdentified)
    assert (event.deal_id, event.previous_deal_id) == ("lead-1", "lead-0")
    assert decision.state.outcome == "prospect"


def test_an_open_deal_at_the_account_wins_over_a_closed_deal_of_the_same_person() -> None:
    known = KnownLeads(duplicate=match("domain"), closed=match("email", closed="lost"))

    [event] = on_lead_captured(None, lead(), NOW, known, PLAYBOOK).events

    assert isinstance(event, LeadMerged)
    assert event.relation == "buying_committee"


@pytest.mark.parametrize(
    ("policy", "known", "expected"),
    [
        ({"closed_deal": "merge"}, KnownLeads(closed=match("email", closed="lost")), LeadMerged),
        ({"same_account_open_deal": "new_deal"}, KnownLeads(duplicate=match("domain")), ProspectIdentified),
        ({"same_account_open_deal": "merge"}, KnownLeads(duplicate=match("domain")), LeadMerged),
        ({"same_person_open_deal": "new_deal"}, KnownLeads(duplicate=match("email")), ProspectIdentified),
    ],
)
def test_the_deduplication_policy_is_the_playbooks(
    policy: dict[str, str], known: KnownLeads, expected: type[object]
) -> None:
    [event] = on_lead_captured(None, lead(**COLLEAGUE), NOW, known, with_policy(**policy)).events

    assert isinstance(event, expected)
    if isinstance(event, ProspectIdentified):
        assert event.previous_deal_id == "lead-0"
    if isinstance(event, LeadMerged) and "same_account_open_deal" in policy:
        assert event.relation == "duplicate"


def test_a_closure_opens_no_lead_and_emits_nothing() -> None:
    lost = DealLost(deal_id="lead-0", stage="proposal", reason_code="price", lost_at=NOW)

    assert on_deal_closed(None, lost, NOW, NOBODY, PLAYBOOK) == Decision(None)  # type: ignore[arg-type]
    prospect = Lead(lead_id="lead-0", outcome="prospect", deal_id="lead-0")
    assert on_deal_closed(prospect, lost, NOW, NOBODY, PLAYBOOK) == Decision(prospect)


def test_prospecting_consumes_the_closures_and_handles_them_without_parking() -> None:
    stage = prospecting_definition()

    assert {Topic.DEALS, Topic.DEALS_WON, Topic.QUALIFICATIONS} <= set(stage.input_topics)
    assert {DealWon, DealLost, LeadDisqualified} <= stage.opening_events


class Edge:
    """The prospecting facts on in-memory claims: what the database would have read."""

    def __init__(self, claims: dict[str, dict[str, object]], closed: dict[str, str]) -> None:
        self.facts = ProspectingFacts({"claims": None, "rep_loads": None, "closed_deals": None}, PLAYBOOK)  # type: ignore[arg-type]
        self.facts._start_batch(claims, {}, 0)
        self.facts._closed = dict(closed)

    def decide(self, captured: LeadCaptured) -> list[object]:
        known = self.facts.gather(captured, NOW)
        decision = on_lead_captured(None, captured, NOW, known, PLAYBOOK)
        self.facts.note(captured, decision.events)
        return list(decision.events)


def claim(key: str, prospect_id: str = "lead-0") -> dict[str, object]:
    return {"_id": key, "prospect_id": prospect_id, "claimed_at": NOW, "fields": {}, "merged_leads": []}


def test_the_edge_tells_a_closed_deal_from_an_open_one_and_the_new_deal_takes_its_claims() -> None:
    claims = {key: claim(key) for key in ("email:jana.novak@acme-robotics.de", "domain:acme-robotics.de")}
    edge = Edge(claims, closed={})
    lost = DealLost(deal_id="lead-0", stage="proposal", reason_code="price", lost_at=NOW)
    edge.facts.note(lost, [])

    [event] = edge.decide(lead())

    assert isinstance(event, ProspectIdentified)
    assert event.previous_deal_id == "lead-0"
    assert edge.facts._claimed["domain:acme-robotics.de"]["prospect_id"] == "lead-1"
    assert edge.facts._closures == {"lead-0": {"_id": "lead-0", "closed": "lost"}}
    # A colleague next: the new deal is open, they join it.
    [joined] = edge.decide(lead(lead_id="lead-2", **COLLEAGUE))
    assert isinstance(joined, LeadMerged)
    assert (joined.deal_id, joined.relation) == ("lead-1", "buying_committee")
    assert edge.facts._claimed["email:petr.kral@acme-robotics.de"]["prospect_id"] == "lead-1"


def test_the_edge_ignores_closures_when_gathering() -> None:
    edge = Edge({}, closed={})
    lost = DealLost(deal_id="x-1", stage="closing", reason_code="budget", lost_at=NOW)

    assert edge.facts.gather(lost, NOW) == KnownLeads()


def test_a_lead_nobody_has_room_for_waits_in_its_teams_queue_which_qualification_watches() -> None:
    from services.qualification import domain as qualification
    from services.qualification.config import load_playbook as qualification_playbook

    everyone_full = {rep.name: rep.capacity for team in PLAYBOOK.routing.teams for rep in team.reps}
    [prospect] = on_lead_captured(None, lead(), NOW, KnownLeads(rep_loads=everyone_full), PLAYBOOK).events

    assert isinstance(prospect, ProspectIdentified)
    assert prospect.owner == "unassigned:emea"
    # The lead's owner is the queue qualification keeps a claim deadline for (its unassigned SLA).
    rules = qualification_playbook()
    opened = qualification.on_prospect_identified(None, prospect, NOW, rules).state
    kinds = {deadline.kind for deadline in qualification.deadlines(opened, rules)}
    assert qualification.UNASSIGNED_UNCLAIMED in kinds
