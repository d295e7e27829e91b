"""Prospecting rules: validate and normalise a lead, score it against the ICP, route it to an owner."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from pydantic import BaseModel

from contracts.events import (
    Company,
    Contact,
    FitTier,
    LeadCaptured,
    LeadRejected,
    NextStep,
    ProspectIdentified,
    Reason,
)
from services.prospecting.config import IdealCustomerProfile, ProspectingPlaybook, Routing
from shared.domain import Decision

EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")


class Lead(BaseModel):
    """What prospecting remembers of a lead: the outcome, so a re-sent lead gets no second answer."""

    lead_id: str
    outcome: str
    deal_id: str | None = None
    fit_score: int | None = None
    owner: str | None = None


class FitScore(BaseModel):
    score: int
    tier: FitTier


def on_lead_captured(
    state: Lead | None, lead: LeadCaptured, now: datetime, playbook: ProspectingPlaybook
) -> Decision[Lead]:
    if state is not None:
        return Decision(state)
    contact, company, problems = normalise(lead, playbook.free_mail_domains)
    if problems:
        return _rejected(lead.lead_id, problems)
    fit = score(company, contact, playbook.icp)
    if fit.score < playbook.icp.fit_threshold:
        return _rejected(
            lead.lead_id,
            [
                Reason(
                    code="not_a_fit", message=f"fit score {fit.score} is below {playbook.icp.fit_threshold}"
                )
            ],
        )
    owner = route(lead.lead_id, company, playbook.routing)
    prospect = ProspectIdentified(
        deal_id=lead.lead_id,
        lead_id=lead.lead_id,
        contact=contact,
        company=company,
        source=lead.source,
        marketing_consent=lead.marketing_consent,
        fit_score=fit.score,
        tier=fit.tier,
        owner=owner,
        next_step=NextStep(
            action="first_touch",
            due_at=now + timedelta(hours=playbook.routing.first_touch_hours[fit.tier.value]),
        ),
    )
    return Decision(
        Lead(
            lead_id=lead.lead_id, outcome="prospect", deal_id=lead.lead_id, fit_score=fit.score, owner=owner
        ),
        [prospect],
    )


def _rejected(lead_id: str, reasons: list[Reason]) -> Decision[Lead]:
    return Decision(
        Lead(lead_id=lead_id, outcome="rejected"), [LeadRejected(lead_id=lead_id, reasons=reasons)]
    )


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
    domain = _website_domain(lead.website) or (
        email_domain if email_domain not in free_mail_domains else None
    )
    company_name = (lead.company_name or "").strip() or None
    if company_name is None and domain is None:
        problems.append(
            Reason(
                code="missing_company", field="company_name", message="no company name and no company domain"
            )
        )
    country = (lead.country or "").strip().upper() or None
    if country is not None and not COUNTRY_CODE.match(country):
        problems.append(
            Reason(
                code="invalid_country", field="country", message=f"{lead.country!r} is not an ISO 3166 code"
            )
        )
    contact = Contact(
        email=email,
        first_name=_clean(lead.first_name),
        last_name=_clean(lead.last_name),
        title=_clean(lead.title),
        phone=_clean(lead.phone),
    )
    company = Company(
        name=company_name,
        domain=domain,
        country=country,
        employees=lead.employees,
        industry=(lead.industry or "").strip().lower() or None,
    )
    return contact, company, problems


def score(company: Company, contact: Contact, icp: IdealCustomerProfile) -> FitScore:
    if company.industry in icp.industry.excluded:
        return FitScore(score=0, tier=FitTier.C)
    points = 0
    if company.industry in icp.industry.target:
        points += icp.industry.weight
    if (
        company.employees is not None
        and icp.size.min_employees <= company.employees <= icp.size.max_employees
    ):
        points += icp.size.weight
    if company.country in icp.geography.countries:
        points += icp.geography.weight
    title = (contact.title or "").lower()
    if any(keyword in title for keyword in icp.seniority.title_keywords):
        points += icp.seniority.weight
    tier = FitTier.A if points >= icp.tier_a_from else FitTier.B if points >= icp.tier_b_from else FitTier.C
    return FitScore(score=points, tier=tier)


def route(lead_id: str, company: Company, routing: Routing) -> str:
    """The territory's team, then a stable spread over its reps."""
    team = next(
        (team for team in routing.teams if company.country in team.countries),
        next((team for team in routing.teams if not team.countries), routing.teams[0]),
    )
    slot = int.from_bytes(hashlib.sha256(lead_id.encode()).digest()[:4], "big") % len(team.reps)
    return team.reps[slot]


def _website_domain(website: str | None) -> str | None:
    if not website or not website.strip():
        return None
    text = website.strip().lower()
    host = urlsplit(text if "//" in text else f"//{text}").hostname
    return host.removeprefix("www.") if host else None


def _clean(text: str | None) -> str | None:
    return (text or "").strip() or None
