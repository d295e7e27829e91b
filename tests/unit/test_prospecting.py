from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from contracts.events import Company, Contact, LeadCaptured, LeadRejected, ProspectIdentified
from services.prospecting.config import load_playbook
from services.prospecting.domain import Lead, normalise, on_lead_captured, route, score

PLAYBOOK = load_playbook()
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def lead(**fields: object) -> LeadCaptured:
    base: dict[str, object] = {
        "lead_id": "lead-1",
        "email": "Jana.Novak@Acme-Robotics.DE",
        "title": "CTO",
        "company_name": "Acme Robotics",
        "country": "de",
        "employees": 250,
        "industry": "Software",
    }
    return LeadCaptured.model_validate(base | fields)


def test_a_fitting_lead_becomes_a_tier_a_prospect_with_owner_and_next_step() -> None:
    decision = on_lead_captured(None, lead(), NOW, PLAYBOOK)

    [event] = decision.events
    assert isinstance(event, ProspectIdentified)
    assert (event.fit_score, event.tier) == (100, "A")
    assert event.contact.email == "jana.novak@acme-robotics.de"
    assert event.company.domain == "acme-robotics.de"
    assert event.company.country == "DE"
    assert event.owner in {"anna.schmidt", "luc.martin", "sofia.rossi"}
    assert event.next_step.due_at == NOW + timedelta(hours=4)
    assert decision.state.outcome == "prospect"


def test_an_invalid_lead_is_rejected_with_every_reason_and_field() -> None:
    decision = on_lead_captured(None, lead(email="nope", company_name=None, country="Germany"), NOW, PLAYBOOK)

    [event] = decision.events
    assert isinstance(event, LeadRejected)
    assert {(reason.code, reason.field) for reason in event.reasons} == {
        ("invalid_email", "email"),
        ("missing_company", "company_name"),
        ("invalid_country", "country"),
    }


def test_an_excluded_industry_is_not_a_fit() -> None:
    [event] = on_lead_captured(None, lead(industry="gambling"), NOW, PLAYBOOK).events

    assert isinstance(event, LeadRejected)
    assert event.reasons[0].code == "not_a_fit"


def test_a_lead_seen_before_gets_no_second_answer() -> None:
    seen = Lead(lead_id="lead-1", outcome="prospect")

    assert on_lead_captured(seen, lead(), NOW, PLAYBOOK).events == []


def test_free_mail_domains_are_not_company_domains() -> None:
    _, company, _ = normalise(lead(email="jana@gmail.com"), PLAYBOOK.free_mail_domains)

    assert company.domain is None


def test_the_website_wins_over_the_email_domain() -> None:
    _, company, _ = normalise(lead(website="https://www.acme.example/about"), PLAYBOOK.free_mail_domains)

    assert company.domain == "acme.example"


def test_score_adds_the_weights_of_the_criteria_met() -> None:
    company = Company(industry="software", employees=10, country="BR")

    fit = score(company, Contact(email="x@y.example", title="Intern"), PLAYBOOK.icp)

    assert (fit.score, fit.tier) == (40, "C")


def test_routing_follows_the_territory_and_is_stable() -> None:
    emea = route("lead-9", Company(country="FR"), PLAYBOOK.routing)
    elsewhere = route("lead-9", Company(country="BR"), PLAYBOOK.routing)

    assert emea in PLAYBOOK.routing.teams[0].reps
    assert elsewhere in PLAYBOOK.routing.teams[1].reps
    assert route("lead-9", Company(country="FR"), PLAYBOOK.routing) == emea


@given(
    local=st.from_regex(r"[A-Za-z0-9._%+-]{1,20}", fullmatch=True),
    domain=st.from_regex(r"[A-Za-z0-9]{1,10}\.[A-Za-z]{2,5}", fullmatch=True),
    padding=st.sampled_from(["", " ", "  \t"]),
)
def test_normalising_is_idempotent_and_lowercases_emails(local: str, domain: str, padding: str) -> None:
    first, _, _ = normalise(lead(email=f"{padding}{local}@{domain}{padding}"), PLAYBOOK.free_mail_domains)
    again, _, _ = normalise(lead(email=first.email), PLAYBOOK.free_mail_domains)

    assert first.email == first.email.strip().lower()
    assert again == first
