"""Prospecting rules: validate and normalise a lead, score it against the ICP, spot duplicates, route it.

Everything here is pure. What needs the database (is there a prospect with this email already? how many
leads does each rep have this period?) arrives as `KnownLeads`, gathered at the edge in `service.py`.

Deduplication knows deals and accounts: prospecting learns from the stage events which deals closed
(deal.won, deal.lost, lead.disqualified), and the playbook's `deduplication` policy says what a lead that
matches an earlier deal becomes: the same person at an open deal is merged into it, another person at the
account of an open deal joins its buying committee (lead.merged, relation buying_committee), and a lead
that matches only closed deals opens a new deal that refers to the previous one (`previous_deal_id`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import pycountry
from pydantic import BaseModel

from contracts import Event
from contracts.events import (
    MAX_TEXT_LENGTH,
    Company,
    Contact,
    CriterionResult,
    DealLost,
    DealWon,
    FitTier,
    LeadCaptured,
    LeadDisqualified,
    LeadMerged,
    LeadRejected,
    NextStep,
    ProspectIdentified,
    Reason,
)
from services.prospecting.config import IdealCustomerProfile, ProspectingPlaybook, Routing
from shared.domain import Decision
from shared.playbook import Team

EMAIL = re.compile(r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
COUNTRY_ALIASES = {
    "UK": "GB",
    "USA": "US",
    "U.S.": "US",
    "U.S.A.": "US",
    "ENGLAND": "GB",
    "DEUTSCHLAND": "DE",
}
LEGAL_SUFFIXES = frozenset(
    {
        "inc",
        "incorporated",
        "llc",
        "ltd",
        "limited",
        "gmbh",
        "ag",
        "sa",
        "sas",
        "sarl",
        "bv",
        "nv",
        "plc",
        "corp",
        "corporation",
        "co",
        "company",
        "oy",
        "ab",
        "as",
        "spa",
        "srl",
        "kg",
        "pty",
        "group",
    }
)
SENIORITY_KEYWORDS = (  # checked in order: "vice president" is a vp, not a president
    ("vp", ("vice president", "vp ", "vp,", "svp", "evp")),
    ("c_level", ("chief", "ceo", "cto", "cfo", "coo", "cmo", "cio", "ciso", "founder", "owner", "president")),
    ("director", ("director", "head of", "head ")),
    ("manager", ("manager", "lead", "supervisor")),
)
FUNCTION_KEYWORDS = (
    ("sales", ("sales", "account", "business development", "revenue", "bdr", "sdr")),
    ("marketing", ("marketing", "growth", "brand", "cmo")),
    ("finance", ("financ", "cfo", "controller", "accounting")),
    ("it", ("cio", "ciso", "it ", "information", "infrastructure", "security")),
    ("engineering", ("engineer", "cto", "developer", "technology", "technical", "software")),
    ("operations", ("operations", "coo", "supply chain", "logistics")),
    ("product", ("product",)),
    ("people", ("hr", "people", "talent", "recruit")),
    ("executive", ("ceo", "founder", "owner", "president", "managing director")),
)
MatchKind = Literal["email", "domain", "company_name"]


class Lead(BaseModel):
    """What prospecting remembers of a lead: the outcome, so a re-sent lead gets no second answer."""

    lead_id: str
    outcome: Literal["prospect", "merged", "rejected"]
    deal_id: str | None = None
    fit_score: int | None = None
    owner: str | None = None


class Fit(BaseModel):
    score: int
    tier: FitTier
    explanation: list[CriterionResult]


@dataclass(frozen=True)
class Candidate:
    """A valid lead that fits the ICP: it becomes a prospect unless it duplicates one."""

    contact: Contact
    company: Company
    fit: Fit

    @property
    def match_keys(self) -> list[tuple[MatchKind, str]]:
        """What identifies the same person or company, most specific first."""
        keys: list[tuple[MatchKind, str]] = [("email", self.contact.email)]
        if self.company.domain:
            keys.append(("domain", self.company.domain))
        if self.company.name and (name := company_key(self.company.name)):
            keys.append(("company_name", name))
        return keys

    def snapshot(self) -> dict[str, str]:
        """The lead's fields as flat strings, to tell what a later duplicate adds or changes."""
        fields = {f"contact_{k}": v for k, v in self.contact.model_dump(exclude_none=True).items()}
        fields |= {f"company_{k}": v for k, v in self.company.model_dump(exclude_none=True).items()}
        return {name: str(value) for name, value in fields.items() if value not in ([], "")}


@dataclass(frozen=True)
class Duplicate:
    prospect_id: str
    matched_on: MatchKind
    prospect_fields: dict[str, str]
    merged_leads: list[str]
    closed: str | None = None  # won, lost or disqualified: how the deal closed; None while it is open

    @property
    def same_person(self) -> bool:
        return self.matched_on == "email"


@dataclass(frozen=True)
class KnownLeads:
    """Facts from the database: the open deal this lead matches (most specific match first), the closed
    deal it matches, and each rep's leads this period."""

    duplicate: Duplicate | None = None
    closed: Duplicate | None = None
    rep_loads: dict[str, int] = field(default_factory=dict)


ClosingEvent = DealWon | DealLost | LeadDisqualified
CLOSING_EVENTS: tuple[type[Event], ...] = (DealWon, DealLost, LeadDisqualified)


def closure(event: Event) -> str | None:
    """How a stage event closes its deal, for deduplication: won, lost, disqualified; None if it does not."""
    return {DealWon: "won", DealLost: "lost", LeadDisqualified: "disqualified"}.get(type(event))


def on_deal_closed(
    state: Lead | None, closed: ClosingEvent, now: datetime, known: KnownLeads, playbook: ProspectingPlaybook
) -> Decision[Any]:
    """A deal closed downstream: the edge remembers it for deduplication; no lead opens, nothing is emitted
    (the state stays as it is, None for a deal prospecting did not open, such as an expansion deal)."""
    return Decision(state)


def on_lead_captured(
    state: Lead | None, lead: LeadCaptured, now: datetime, known: KnownLeads, playbook: ProspectingPlaybook
) -> Decision[Lead]:
    if state is not None:
        return Decision(state)
    assessment = assess(lead, playbook)
    if not isinstance(assessment, Candidate):
        return Decision(
            Lead(lead_id=lead.lead_id, outcome="rejected"),
            [LeadRejected(lead_id=lead.lead_id, reasons=assessment)],
        )
    policy = playbook.deduplication
    previous: str | None = None
    if (open_deal := known.duplicate) is not None:
        chosen = policy.same_person_open_deal if open_deal.same_person else policy.same_account_open_deal
        if chosen != "new_deal":
            return _merged(
                lead.lead_id, assessment, open_deal, playbook.limits.merged_leads, chosen == "join"
            )
        previous = open_deal.prospect_id
    elif (closed_deal := known.closed) is not None:
        if policy.closed_deal == "merge":
            return _merged(lead.lead_id, assessment, closed_deal, playbook.limits.merged_leads, False)
        previous = closed_deal.prospect_id
    owner = route(assessment.company, playbook.routing, known.rep_loads)
    prospect = ProspectIdentified(
        deal_id=lead.lead_id,
        lead_id=lead.lead_id,
        contact=assessment.contact,
        company=assessment.company,
        source=lead.source.strip().lower() or "unknown",
        marketing_consent=lead.marketing_consent,
        fit_score=assessment.fit.score,
        tier=assessment.fit.tier,
        fit_explanation=assessment.fit.explanation,
        owner=owner,
        next_step=NextStep(
            action="first_touch",
            due_at=now + timedelta(hours=playbook.routing.first_touch_hours[assessment.fit.tier.value]),
        ),
        previous_deal_id=previous,
    )
    outcome = Lead(
        lead_id=lead.lead_id,
        outcome="prospect",
        deal_id=lead.lead_id,
        fit_score=assessment.fit.score,
        owner=owner,
    )
    return Decision(outcome, [prospect])


def lead_refused(lead: Event, reason: Reason) -> LeadRejected:
    """A lead the runtime refuses before its rules run (its `captured_at` is implausible): lead.rejected."""
    return LeadRejected(lead_id=lead.partition_key, reasons=[reason])


def _merged(
    lead_id: str, candidate: Candidate, duplicate: Duplicate, max_merged: int, joins: bool
) -> Decision[Lead]:
    """The lead merged into the prospect: what it adds or changes, and the most recent leads merged; a
    colleague who `joins` the deal's buying committee is named as its contact.

    What the event carries is bounded, so it fits a record however often the prospect is matched: at most
    `max_merged` leads (the oldest are left out), each field's value within the contract's text limit.
    """
    fields = candidate.snapshot()
    merged = LeadMerged(
        deal_id=duplicate.prospect_id,
        lead_id=lead_id,
        matched_on=duplicate.matched_on,
        merged_fields={
            k: _within_text_limit(v) for k, v in fields.items() if duplicate.prospect_fields.get(k) != v
        },
        merged_leads=[*duplicate.merged_leads, lead_id][-max_merged:],
        relation="buying_committee" if joins else "duplicate",
        contact=candidate.contact if joins else None,
    )
    return Decision(Lead(lead_id=lead_id, outcome="merged", deal_id=duplicate.prospect_id), [merged])


def _within_text_limit(value: str) -> str:
    # A list such as the technologies, written out, may outgrow what one event field may hold.
    return value if len(value) <= MAX_TEXT_LENGTH else value[: MAX_TEXT_LENGTH - 1] + "…"


def assess(lead: LeadCaptured, playbook: ProspectingPlaybook) -> Candidate | list[Reason]:
    """Normalise and score a lead: a candidate prospect, or the reasons it is rejected."""
    contact, company, problems = normalise(lead, playbook.free_mail_domains)
    if problems:
        return problems
    fit = score(company, contact, lead.intent_signals, playbook.icp)
    if fit.score < playbook.icp.fit_threshold:
        return [
            Reason(code="not_a_fit", message=f"fit score {fit.score} is below {playbook.icp.fit_threshold}")
        ]
    return Candidate(contact=contact, company=company, fit=fit)


def normalise(lead: LeadCaptured, free_mail_domains: frozenset[str]) -> tuple[Contact, Company, list[Reason]]:
    problems: list[Reason] = []
    email = lead.email.strip().lower()
    email_domain: str | None = None
    if EMAIL.match(email):
        email_domain = email.rpartition("@")[2]
    else:
        problems.append(
            Reason(code="invalid_email", field="email", message=f"{lead.email!r} is not an email address")
        )
    domain = website_domain(lead.website) or (email_domain if email_domain not in free_mail_domains else None)
    company_name = _clean(lead.company_name)
    if company_name is None and domain is None:
        problems.append(
            Reason(
                code="missing_company", field="company_name", message="no company name and no company domain"
            )
        )
    country = country_code(lead.country)
    if lead.country and country is None:
        problems.append(
            Reason(
                code="invalid_country", field="country", message=f"{lead.country!r} is not a known country"
            )
        )
    employees = _amount(lead.employees, "employees", "invalid_employees", "a count or band", problems)
    revenue = _amount(lead.annual_revenue, "annual_revenue", "invalid_revenue", "an amount or band", problems)
    seniority, function = classify_title(lead.title)
    contact = Contact(
        email=email,
        first_name=_clean(lead.first_name),
        last_name=_clean(lead.last_name),
        title=_clean(lead.title),
        phone=_clean(lead.phone),
        seniority=seniority,
        function=function,
    )
    company = Company(
        name=company_name,
        domain=domain,
        country=country,
        employees=employees,
        industry=(_clean(lead.industry) or "").lower() or None,
        annual_revenue=revenue,
        technologies=sorted({t.strip().lower() for t in lead.technologies if t.strip()}),
    )
    return contact, company, problems


def score(company: Company, contact: Contact, intent_signals: list[str], icp: IdealCustomerProfile) -> Fit:
    excluded = [
        CriterionResult(criterion=name, matched=False, points=0, detail=f"{value} is excluded")
        for name, value, exclusions in (
            ("industry", company.industry, icp.industry.excluded),
            ("geography", company.country, icp.geography.excluded),
        )
        if value in exclusions
    ]
    if excluded:
        return Fit(score=0, tier=FitTier.C, explanation=excluded)
    size_ok = (
        company.employees is not None
        and icp.size.min_employees <= company.employees <= icp.size.max_employees
    )
    technologies = sorted(set(company.technologies) & icp.signals.technologies)
    intents = sorted({signal.strip().lower() for signal in intent_signals} & icp.signals.intent)
    signal_share = (0.5 if technologies else 0.0) + (0.5 if intents else 0.0)
    results = [
        _criterion(
            "industry", company.industry in icp.industry.target, icp.industry.weight, company.industry
        ),
        _criterion("size", size_ok, icp.size.weight, f"{company.employees} employees"),
        _criterion(
            "geography", company.country in icp.geography.countries, icp.geography.weight, company.country
        ),
        _criterion(
            "seniority", contact.seniority in icp.seniority.levels, icp.seniority.weight, contact.seniority
        ),
        CriterionResult(
            criterion="signals",
            matched=signal_share > 0,
            points=round(icp.signals.weight * signal_share),
            detail=f"technologies {technologies or '-'}, intent {intents or '-'}",
        ),
    ]
    points = sum(result.points for result in results)
    tier = FitTier.A if points >= icp.tier_a_from else FitTier.B if points >= icp.tier_b_from else FitTier.C
    return Fit(score=points, tier=tier, explanation=results)


def _criterion(name: str, matched: bool, weight: int, value: object) -> CriterionResult:
    return CriterionResult(
        criterion=name, matched=matched, points=weight if matched else 0, detail=str(value)
    )


def route(company: Company, routing: Routing, rep_loads: dict[str, int]) -> str:
    """The territory's team, then its active rep with the fewest leads this period who has room.

    Ties go to the earliest rep in the team's list, so with equal loads leads go round the team in turn.
    When every rep is inactive or full, the lead waits in the team's queue: `unassigned:<team>`.
    """
    team = team_for(company, routing)
    available = [rep for rep in team.reps if rep.active and rep_loads.get(rep.name, 0) < rep.capacity]
    if not available:
        return f"unassigned:{team.name}"
    order = {rep.name: index for index, rep in enumerate(available)}
    return min(available, key=lambda rep: (rep_loads.get(rep.name, 0), order[rep.name])).name


def routing_period(now: datetime, routing: Routing) -> int:
    return int(now.timestamp() // (routing.period_days * 86400))


def team_for(company: Company, routing: Routing) -> Team:
    """The team whose territory has the company's country, else the team with no territory."""
    return next(
        (team for team in routing.teams if company.country in team.countries),
        next((team for team in routing.teams if not team.countries), routing.teams[0]),
    )


def classify_title(title: str | None) -> tuple[str | None, str | None]:
    if not title or not title.strip():
        return None, None
    text = f" {title.strip().lower()} "
    seniority = next(
        (level for level, words in SENIORITY_KEYWORDS if any(w in text for w in words)), "individual"
    )
    function = next((name for name, words in FUNCTION_KEYWORDS if any(w in text for w in words)), None)
    return seniority, function


def country_code(text: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 code from a code (alpha-2 or -3), a name, or a common alias."""
    if not text or not text.strip():
        return None
    value = text.strip()
    if value.upper() in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[value.upper()]
    try:
        return str(pycountry.countries.lookup(value).alpha_2)
    except LookupError:
        return None


_AMOUNT = re.compile(r"^[$€£]?\s*(\d+(?:[.,]\d+)?)\s*([kmb])?$")


def parse_amount(value: int | str | None) -> int | None:
    """A count or amount from a number, `5k`, `$10M`, a band `51-200` (its middle) or `1000+` (its floor)."""
    if value is None or isinstance(value, int):
        return value
    text = value.strip().lower().replace(",", "").replace(" ", "")
    if text.endswith("+"):
        return parse_amount(text[:-1])
    if "-" in text:
        low, _, high = text.partition("-")
        bounds = parse_amount(low), parse_amount(high)
        if bounds[0] is None or bounds[1] is None or bounds[0] > bounds[1]:
            return None
        return (bounds[0] + bounds[1]) // 2
    match = _AMOUNT.match(text)
    if not match:
        return None
    number, unit = match.groups()
    return round(float(number) * {"k": 10**3, "m": 10**6, "b": 10**9}.get(unit or "", 1))


def website_domain(website: str | None) -> str | None:
    if not website or not website.strip():
        return None
    text = website.strip().lower()
    host = urlsplit(text if "//" in text else f"//{text}").hostname
    return host.removeprefix("www.") if host and "." in host else None


def company_key(name: str) -> str:
    """A company name reduced to what identifies it: `Acme Robotics GmbH` and `acme robotics` match."""
    words = re.sub(r"[^a-z0-9 ]+", " ", name.lower()).split()
    return " ".join(word for word in words if word not in LEGAL_SUFFIXES)


def _amount(
    value: int | str | None, field: str, code: str, expected: str, problems: list[Reason]
) -> int | None:
    amount = parse_amount(value)
    if value not in (None, "") and amount is None:
        problems.append(Reason(code=code, field=field, message=f"{value!r} is not {expected}"))
    return amount


def _clean(text: str | None) -> str | None:
    return (text or "").strip() or None
