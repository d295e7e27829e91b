"""A generated CRM history in the shape of a HubSpot deals export, for demos and tests:
`dealflow history generate DIR`.

It writes, for the playbook (DEALFLOW_PLAYBOOK, else playbooks/default.yaml), a portal set up like it:
one HubSpot pipeline per playbook pipeline (labelled as the playbook labels it), one HubSpot stage per
playbook stage (its label) plus "Closed Won" and "Closed Lost". Same seed and `until`, same files.

DIR/opportunities.csv, one row per deal:
- Record ID: the deal's id (digits). Deal Name: account and pipeline, for people.
- Pipeline: the pipeline's label. Deal Stage: its stage now (the stage's label, Closed Won or Closed Lost).
- Deal owner: the rep (a playbook rep's name; two owners have left: an inactive rep of the playbook and
  tom.baker, whom only teams.csv knows; they own deals of the first 40% of the period only).
- Associated Company: the account (accounts.csv). Original Source Type: the lead source.
- Create Date: when the deal was created, and when it entered the pipeline's first stage (UTC,
  "YYYY-MM-DD HH:MM"; a few rows write "DD/MM/YYYY HH:MM", day first).
- Date entered "<stage> (<pipeline>)": when the deal entered that stage of its pipeline, one column per
  stage of every pipeline (empty: never entered). A deal moves forward one stage at a time; the column of
  "Closed Won" or "Closed Lost" is when it closed.
- Close Date: a closed deal's closing time (the same as its Closed Won/Lost column); an open deal's
  expected close date (a bare date).
- Amount and Currency: the deal's value in whole units with two decimals (EUR, USD or GBP by the
  account's country); always there on closed deals and on open ones past the first stage, on some open
  ones in the first stage. Primary Product: the price list product it is about (its name).
- First Meeting Date: the first meeting with the buyer (a portal's own property; the mapping reads it as
  the engagement): in the first stage, for every deal that left it and half of the others; else empty.
- Closed Lost Reason: a lost deal's reason (a playbook loss reason, written for people).

Time: every date lies before `until` (00:00 UTC of that day): import it with --as-of at or after that.
Conversion: a deal in a stage moves on with better odds than the playbook's probabilities imply (those
odds, the probability of the stage divided by that of the next, to the power REAL_ODDS_EXPONENT), as a
team whose playbook was written cautiously: its own closed history then says more than the playbook, which
is what fitted probabilities learn. Days in a stage vary around its `stall_days`. Deals whose next step
falls after `until` are still open in their stage.

Messiness, in a few rows (DIR/expected-problems.json lists them: line, column, severity): a row without an
owner, one with a stage value the mapping does not know, one with no date at all (all three left out),
a product that matches no price list product, an amount that is no number, a deal without an account and
an owner nobody knows (imported with a warning). Also a few day-first dates, which import cleanly.

DIR/accounts.csv (Company name, Industry, Number of Employees, Country/Region, Company Domain Name) and
DIR/teams.csv (Owner, Team, Manager, Region) complete it; DIR/mapping.yaml is the import mapping of it all:
  dealflow import opportunities DIR/opportunities.csv --mapping DIR/mapping.yaml \
      --accounts DIR/accounts.csv --teams DIR/teams.csv
"""

from __future__ import annotations

import csv
import json
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from shared.playbook import PlaybookDocument, load_document

SOURCE = "hubspot"
TIME_FORMAT = "%Y-%m-%d %H:%M"
DAY_FIRST_FORMAT = "%d/%m/%Y %H:%M"
WON_LABEL, LOST_LABEL = "Closed Won", "Closed Lost"
# The team converts better than its playbook assumes: each stage's odds of moving on, to this power
# (0.5 -> 0.66): about one deal in four is won where the playbook's probabilities say one in ten.
REAL_ODDS_EXPONENT = 0.6
LEFT_SHARE = 0.4  # owners who left own deals of this first share of the period only
ONE_WHO_LEFT = "tom.baker"  # an owner only teams.csv knows: no longer in the playbook
STRANGER = "peter.novak"  # an owner nobody knows: imported without a team, with a warning
SOURCES = ("Organic Search", "Paid Search", "Referrals", "Offline Sources", "Direct Traffic", "Paid Social")
INDUSTRIES_BESIDES_ICP = ("manufacturing", "healthcare", "retail", "media")
COUNTRIES_ELSEWHERE = ("US", "CA", "BR", "MX", "AU")
EURO_COUNTRIES = frozenset({"DE", "FR", "NL", "ES", "IT", "AT", "BE", "IE", "PT", "FI"})
MANAGERS = ("claire.dubois", "dana.whitfield", "kenji.sato", "amara.okafor")
NAME_PARTS = (
    (
        "Nord",
        "Blue",
        "Kanal",
        "Fjord",
        "Maple",
        "Cobalt",
        "Solar",
        "Quarry",
        "Lumen",
        "Atlas",
        "Pampas",
        "Iron",
        "Vela",
        "Orbit",
        "Cedar",
        "Helix",
        "Delta",
        "Granite",
        "Silver",
        "Amber",
    ),
    ("wind", "path", "stone", "works", "line", "bridge", "field", "point", "gate", "wave", "port", "leaf"),
    ("GmbH", "Ltd", "SA", "BV", "SpA", "AB", "SL", "Inc", "Corp", "LLC"),
)
HEADER = [
    "Record ID", "Deal Name", "Pipeline", "Deal Stage", "Amount", "Currency", "Close Date", "Create Date",
    "Deal owner", "Associated Company", "Deal Type", "Original Source Type", "Closed Lost Reason",
    "Primary Product", "First Meeting Date",
]  # fmt: skip


@dataclass(frozen=True)
class Injected:
    """A problem put into a row on purpose, as the import reports it."""

    line: int
    column: str
    severity: str


@dataclass(frozen=True)
class Generated:
    opportunities: Path
    accounts: Path
    teams: Path
    mapping: Path
    expected_problems: Path
    deals: int
    first_day: date
    until: date
    injected: tuple[Injected, ...] = field(default=())


@dataclass(frozen=True)
class Account:
    name: str
    industry: str
    employees: int
    country: str
    domain: str


@dataclass
class Deal:
    record_id: str
    pipeline: str
    account: Account
    owner: str
    created: datetime
    entered: list[tuple[str, datetime]]
    outcome: str | None  # won, lost, or None while open
    closed: datetime | None
    expected_close: date
    product: str
    amount_minor: int | None
    currency: str
    loss_reason: str | None
    lead_source: str
    engaged: datetime | None = None  # the first meeting with the buyer, when there was one


def generate_history(
    directory: Path,
    seed: int = 7,
    until: date | None = None,
    months: int = 12,
    deals: int = 600,
    document: PlaybookDocument | None = None,
) -> Generated:
    """Write DIR/opportunities.csv, accounts.csv, teams.csv, mapping.yaml and expected-problems.json."""
    document = document or load_document()
    until = until or datetime.now(UTC).date()
    rng = random.Random(f"{seed}/{until.isoformat()}/{months}/{deals}")
    end = datetime(until.year, until.month, until.day, tzinfo=UTC)
    first_day = _months_before(until, months)
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    accounts = _accounts(rng, document, max(12, deals // 4))
    made = sorted(
        (_deal(rng, document, accounts, start, end, index) for index in range(deals)),
        key=lambda deal: deal.created,
    )
    rows = [_row(document, deal) for deal in made]
    day_first = rng.sample(range(len(rows)), k=min(len(rows), max(1, len(rows) // 40)))
    for index in day_first:
        rows[index]["Create Date"] = made[index].created.strftime(DAY_FIRST_FORMAT)
    injected = _inject(rng, rows, made, document)
    directory.mkdir(parents=True, exist_ok=True)
    generated = Generated(
        opportunities=directory / "opportunities.csv",
        accounts=directory / "accounts.csv",
        teams=directory / "teams.csv",
        mapping=directory / "mapping.yaml",
        expected_problems=directory / "expected-problems.json",
        deals=len(rows),
        first_day=first_day,
        until=until,
        injected=injected,
    )
    _write_csv(generated.opportunities, [*HEADER, *_entered_columns(document)], rows)
    _write_csv(
        generated.accounts,
        ["Company name", "Industry", "Number of Employees", "Country/Region", "Company Domain Name"],
        [
            {
                "Company name": account.name,
                "Industry": account.industry,
                "Number of Employees": str(account.employees),
                "Country/Region": account.country,
                "Company Domain Name": account.domain,
            }
            for account in accounts
        ],
    )
    _write_csv(generated.teams, ["Owner", "Team", "Manager", "Region"], _teams(document))
    generated.mapping.write_text(
        "# The import mapping of this generated HubSpot export (dealflow history generate).\n"
        + yaml.safe_dump(mapping_for(document), sort_keys=False, allow_unicode=True, width=110)
    )
    generated.expected_problems.write_text(
        json.dumps([problem.__dict__ for problem in injected], indent=2) + "\n"
    )
    return generated


# --- the portal: labels and columns --------------------------------------------------------------


def stage_label(document: PlaybookDocument, stage: str) -> str:
    return document.stages[stage].label


def pipeline_label(document: PlaybookDocument, pipeline: str) -> str:
    return document.pipelines[pipeline].label


def entered_column(stage_text: str, pipeline_text: str) -> str:
    return f'Date entered "{stage_text} ({pipeline_text})"'


def _entered_columns(document: PlaybookDocument) -> list[str]:
    return [
        entered_column(label, pipeline_label(document, name))
        for name, pipeline in document.pipelines.items()
        for label in [*(stage_label(document, stage) for stage in pipeline.stages), WON_LABEL, LOST_LABEL]
    ]


def product_label(product: str) -> str:
    return product.replace("-", " ").replace("_", " ").title()


def reason_label(reason: str) -> str:
    return reason.replace("_", " ").capitalize()


def mapping_for(document: PlaybookDocument) -> dict[str, Any]:
    """The import mapping (cli.opportunity_import.Mapping) of the export this module writes."""
    entered: dict[str, list[str]] = {}
    for name, pipeline in document.pipelines.items():
        for stage in pipeline.stages:
            entered.setdefault(stage, []).append(
                entered_column(stage_label(document, stage), pipeline_label(document, name))
            )
        for closed, label in (("won", WON_LABEL), ("lost", LOST_LABEL)):
            entered.setdefault(closed, []).append(entered_column(label, pipeline_label(document, name)))
    prices = document.proposal.get("price_list", {})
    reasons = document.proposal.get("loss_reasons", [])
    return {
        "source": SOURCE,
        "columns": {
            "id": "Record ID",
            "owner": "Deal owner",
            "account": "Associated Company",
            "stage": "Deal Stage",
            "pipeline": "Pipeline",
            "created": "Create Date",
            "close_date": "Close Date",
            "amount": "Amount",
            "currency": "Currency",
            "lead_source": "Original Source Type",
            "loss_reason": "Closed Lost Reason",
            "product": "Primary Product",
            "engaged": "First Meeting Date",
        },
        "default_currency": "EUR",
        "timezone": "UTC",
        "date_formats": [DAY_FIRST_FORMAT, "%d/%m/%Y"],
        "decimal_separator": ".",
        "stages": {stage.label: name for name, stage in document.stages.items()}
        | {WON_LABEL: "won", LOST_LABEL: "lost"},
        "pipelines": {
            "default": document.pipeline_for.default,
            "values": {pipeline.label: name for name, pipeline in document.pipelines.items()},
        },
        "stage_entered_columns": entered,
        "products": {product_label(product): product for product in prices},
        "loss_reasons": {reason_label(reason): reason for reason in reasons},
        "accounts": {
            "name": "Company name",
            "industry": "Industry",
            "employees": "Number of Employees",
            "country": "Country/Region",
            "domain": "Company Domain Name",
        },
        "teams": {"owner": "Owner", "team": "Team", "manager": "Manager", "region": "Region"},
    }


# --- the deals -----------------------------------------------------------------------------------


def _months_before(day: date, months: int) -> date:
    month = day.month - 1 - months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, 28))


def _accounts(rng: random.Random, document: PlaybookDocument, count: int) -> list[Account]:
    icp = document.prospecting.get("icp", {}).get("industry", {}).get("target", [])
    industries = [*icp, *INDUSTRIES_BESIDES_ICP]
    countries = _countries(document)
    names: set[str] = set()
    accounts: list[Account] = []
    while len(accounts) < count:
        first, second, form = (rng.choice(part) for part in NAME_PARTS)
        name = f"{first}{second} {form}"
        if name in names:
            name = f"{first}{second} {rng.choice(('Group', 'Holding', 'Systems', 'Labs'))} {form}"
            if name in names:
                continue
        names.add(name)
        accounts.append(
            Account(
                name=name,
                industry=rng.choice(industries),
                employees=int(math.exp(rng.uniform(math.log(20), math.log(8000)))),
                country=rng.choice(countries),
                domain=f"{first}{second}".lower() + ".example",
            )
        )
    return accounts


def _countries(document: PlaybookDocument) -> list[str]:
    territories = sorted({country for team in document.teams for country in team.countries})
    return territories + [country for country in COUNTRIES_ELSEWHERE if country not in territories]


def _team_for(document: PlaybookDocument, country: str) -> str:
    for team in document.teams:
        if country in team.countries:
            return team.name
    catch_all = [team.name for team in document.teams if not team.countries]
    return catch_all[0] if catch_all else document.teams[0].name


def _owner(rng: random.Random, document: PlaybookDocument, team_name: str, early: bool) -> str:
    team = next(team for team in document.teams if team.name == team_name)
    reps = [rep.name for rep in team.reps if rep.active or early]
    if early and team is document.teams[0]:
        reps.append(ONE_WHO_LEFT)
    return rng.choice(reps or [rep.name for rep in team.reps])


def _currency(country: str, prices: dict[str, int]) -> str:
    wanted = "GBP" if country == "GB" else "EUR" if country in EURO_COUNTRIES or country == "SE" else "USD"
    return wanted if wanted in prices else sorted(prices)[0]


def _conversion(document: PlaybookDocument, stages: tuple[str, ...], index: int) -> float:
    """The odds of moving on from stage `index`: those the playbook's probabilities imply (its probability
    over the next one's; won: 1), bettered by the team's REAL_ODDS_EXPONENT."""
    here = document.stages[stages[index]].probability
    following = document.stages[stages[index + 1]].probability if index + 1 < len(stages) else 1.0
    implied = min(0.95, max(0.05, here / following if following else 0.5))
    return float(implied**REAL_ODDS_EXPONENT)


def _deal(
    rng: random.Random,
    document: PlaybookDocument,
    accounts: list[Account],
    start: datetime,
    end: datetime,
    index: int,
) -> Deal:
    names = list(document.pipelines)
    default = document.pipeline_for.default
    pipeline = rng.choices(names, weights=[3 if name == default else 1 for name in names])[0]
    stages = document.pipelines[pipeline].stages
    account = rng.choice(accounts)
    span = (end - start).total_seconds()
    created = start + timedelta(seconds=rng.uniform(0, span * 0.995))
    created = created.replace(hour=rng.randint(8, 17), minute=rng.randint(0, 59), second=0, microsecond=0)
    if created >= end:
        created = end - timedelta(hours=12)
    early = created < start + timedelta(seconds=span * LEFT_SHARE)
    owner = _owner(rng, document, _team_for(document, account.country), early)
    entered: list[tuple[str, datetime]] = [(stages[0], created)]
    outcome: str | None = None
    closed: datetime | None = None
    at = created
    position = 0
    typical_days = 0.0
    while True:
        median = document.stages[stages[position]].stall_days or 10
        typical_days += median
        at = at + timedelta(days=rng.lognormvariate(math.log(median), 0.55))
        at = at.replace(second=0, microsecond=0)
        if at >= end:
            break
        if rng.random() >= _conversion(document, stages, position):
            outcome, closed = "lost", at
            break
        if position + 1 == len(stages):
            outcome, closed = "won", at
            break
        position += 1
        entered.append((stages[position], at))
    prices = document.proposal.get("price_list", {})
    product = rng.choice(sorted(prices))
    currency = _currency(account.country, prices[product])
    unit = prices[product][currency]
    target = rng.lognormvariate(math.log(3_000_000 if pipeline == default else 1_500_000), 0.6)
    amount = max(1, round(target / unit)) * unit
    if outcome is None and position == 0 and rng.random() < 0.6:
        amount_minor: int | None = None
    else:
        amount_minor = amount
    late = stages[len(stages) // 2 :]
    reasons = document.proposal.get("loss_reasons", ["other"])
    early_reasons = [r for r in reasons if r in ("no_budget", "no_decision", "timing", "went_silent")]
    loss_reason = None
    if outcome == "lost":
        pool = reasons if stages[position] in late or not early_reasons else early_reasons
        loss_reason = rng.choice(pool)
    expected = (created + timedelta(days=typical_days + rng.uniform(10, 60))).date()
    # The first meeting falls in the first stage: always for a deal that left it, for half the others.
    first_stay_end = entered[1][1] if len(entered) > 1 else (closed or end)
    engaged = None
    if len(entered) > 1 or rng.random() < 0.5:
        engaged = created + (first_stay_end - created) * rng.uniform(0.3, 0.9)
        engaged = engaged.replace(second=0, microsecond=0)
    return Deal(
        record_id=str(19_000_000_000 + index * 97 + rng.randrange(97)),
        pipeline=pipeline,
        account=account,
        owner=owner,
        created=created,
        entered=entered,
        outcome=outcome,
        closed=closed,
        expected_close=expected,
        product=product,
        amount_minor=amount_minor,
        currency=currency,
        loss_reason=loss_reason,
        lead_source=rng.choice(SOURCES),
        engaged=engaged,
    )


def _row(document: PlaybookDocument, deal: Deal) -> dict[str, str]:
    pipeline_text = pipeline_label(document, deal.pipeline)
    stage_text = (
        WON_LABEL
        if deal.outcome == "won"
        else LOST_LABEL
        if deal.outcome == "lost"
        else stage_label(document, deal.entered[-1][0])
    )
    row = {
        "Record ID": deal.record_id,
        "Deal Name": f"{deal.account.name} - {pipeline_text}",
        "Pipeline": pipeline_text,
        "Deal Stage": stage_text,
        "Amount": "" if deal.amount_minor is None else f"{deal.amount_minor / 100:.2f}",
        "Currency": deal.currency,
        "Close Date": deal.closed.strftime(TIME_FORMAT) if deal.closed else deal.expected_close.isoformat(),
        "Create Date": deal.created.strftime(TIME_FORMAT),
        "Deal owner": deal.owner,
        "Associated Company": deal.account.name,
        "Deal Type": "New Business"
        if deal.pipeline == document.pipeline_for.default
        else "Existing Business",
        "Original Source Type": deal.lead_source,
        "Closed Lost Reason": reason_label(deal.loss_reason) if deal.loss_reason else "",
        "Primary Product": product_label(deal.product),
        "First Meeting Date": deal.engaged.strftime(TIME_FORMAT) if deal.engaged else "",
    }
    for stage, at in deal.entered:
        row[entered_column(stage_label(document, stage), pipeline_text)] = at.strftime(TIME_FORMAT)
    if deal.closed is not None:
        label = WON_LABEL if deal.outcome == "won" else LOST_LABEL
        row[entered_column(label, pipeline_text)] = deal.closed.strftime(TIME_FORMAT)
    return row


def _inject(
    rng: random.Random, rows: list[dict[str, str]], deals: list[Deal], document: PlaybookDocument
) -> tuple[Injected, ...]:
    """Spoil a few rows the way real exports are spoilt; what the import will say about each."""
    if len(rows) < 20:
        return ()
    with_amount = [i for i, deal in enumerate(deals) if deal.amount_minor is not None]
    chosen: set[int] = set()

    def pick(candidates: list[int]) -> int:
        index = rng.choice([i for i in candidates if i not in chosen])
        chosen.add(index)
        return index

    everyone = list(range(len(rows)))
    injected: list[Injected] = []

    def note(index: int, column: str, severity: str) -> None:
        injected.append(Injected(index + 2, column, severity))

    index = pick(everyone)
    rows[index]["Deal owner"] = ""
    note(index, "Deal owner", "error")
    index = pick(everyone)
    rows[index]["Deal Stage"] = "On Hold"
    note(index, "Deal Stage", "error")
    index = pick(everyone)
    for column in list(rows[index]):
        if column == "Create Date" or column.startswith("Date entered"):
            rows[index][column] = ""
    note(index, "Create Date", "error")
    index = pick(everyone)
    rows[index]["Primary Product"] = "Legacy Bundle"
    note(index, "Primary Product", "warning")
    index = pick(with_amount)
    rows[index]["Amount"] = rows[index]["Amount"].split(".")[0][:-3] + "k"
    note(index, "Amount", "warning")
    index = pick(everyone)
    rows[index]["Associated Company"] = ""
    note(index, "Associated Company", "warning")
    index = pick(everyone)
    rows[index]["Deal owner"] = STRANGER
    note(index, "Deal owner", "warning")
    return tuple(sorted(injected, key=lambda problem: problem.line))


def _teams(document: PlaybookDocument) -> list[dict[str, str]]:
    rows = []
    for position, team in enumerate(document.teams):
        manager = getattr(team, "manager", None) or MANAGERS[position % len(MANAGERS)]
        region = getattr(team, "region", None) or team.name.upper()
        names = [rep.name for rep in team.reps] + ([ONE_WHO_LEFT] if position == 0 else [])
        rows += [{"Owner": name, "Team": team.name, "Manager": manager, "Region": region} for name in names]
    return rows


def _write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)
