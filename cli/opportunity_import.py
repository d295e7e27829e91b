"""Reading a CRM export into opportunity.imported events, for `dealflow import opportunities`.

Pure reading and mapping: no Kafka here. A mapping file (YAML, the `Mapping` model below; examples in
imports/mappings/) says which column of the export holds what, and how the export's values translate into
the playbook's: its stages, pipelines, price list products and loss reasons. Each row becomes one
`OpportunityImported`, or is left out with the reason.

How a row is read:
- Values are looked up case-insensitively, surrounding and repeated spaces ignored ("closed won" is
  "Closed Won").
- Dates: ISO 8601 is always accepted, then each of `date_formats` in the order listed (strptime
  formats). The order decides between day and month: with `["%d/%m/%Y", "%m/%d/%Y"]`, 03/04/2025 is
  3 April and 04/25/2025 (no month 25) is 25 April. A time without a zone is in the mapping's `timezone`;
  a date without a time is midnight there, and "some time that day": a close date on the creation day
  counts as the creation time.
- Amounts: `decimal_separator` ("." or ","); the other one, spaces and apostrophes group thousands; a
  currency symbol around the number is ignored. The currency is the row's currency column, else
  `default_currency`.
- Stage history: `stage_entered_columns` names, per playbook stage (and won, lost), the columns holding
  when the deal entered it (HubSpot's "Date entered ..." columns, one per pipeline: the earliest filled
  one counts). The history starts when the deal was created: in the first stage of its pipeline unless a
  column says it entered a stage then. An open deal's history ends with its current stage, entered when
  `columns.stage_entered` says (Salesforce's LastStageChangeDate), else at the latest time the row knows
  (creation, or the last stage date). An export with no stage dates (Salesforce's Opportunity export)
  therefore gives: created in the pipeline's first stage, then in its current stage. A closed deal closed
  when its won/lost column says, else on its close date.
- Owners: `owners` translates the export's owner names (else they are taken as they are); the teams file
  gives team, manager and region, else the playbook's team of that rep. An owner neither knows (someone
  who left) is imported without a team, with a warning.

What a row cannot use is a problem of that row alone, `line N: column: reason`: a warning when the row is
imported without that value, an error when the row is left out (no id, no owner, no usable date, an
unknown stage value, a closed deal without a close date). Nothing valid is dropped for a neighbour.

Identity: the deal id is the source and the source id (`deal_id_for`), the event id a uuid5 of source,
source id and the event's content (`event_id_for`). The same file imported again changes nothing: with
the same --as-of its events are repeats the services drop; with a later one (the default: now) the
stage that holds each deal finds the row unchanged, less its as_of, and lets the deal be.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from contracts.currencies import exponent
from contracts.events import (
    MAX_MINOR_UNITS,
    Company,
    CurrencyCode,
    Identifier,
    ImportedStage,
    Money,
    OpportunityImported,
)
from shared.playbook import PlaybookDocument, error_lines

CLOSED_STAGES = ("won", "lost")
_EVENT_ID_NAMESPACE = uuid.UUID("5b0e7c1a-9d43-4f6e-8a2b-17c3e0f4d921")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
# A little ahead of this clock is still now on another's: the services refuse more (clock_skew_seconds).
AS_OF_SKEW = timedelta(minutes=5)
_TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%X", "%c", "%T", "%R", "%p")


def lookup_key(text: str) -> str:
    return " ".join(text.split()).casefold()


# --- the mapping file ----------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Column = Annotated[str, Field(min_length=1)]


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Columns(Strict):
    """The export's column names, per thing dealflow reads; only id, owner, stage and created are required."""

    id: Column
    owner: Column
    stage: Column
    created: Column = Field(description="when the opportunity was created")
    account: Column | None = Field(default=None, description="the account's name (joins the accounts file)")
    product: Column | None = None
    pipeline: Column | None = Field(
        default=None, description="the value `pipelines` translates (a pipeline, or a deal type)"
    )
    engaged: Column | None = Field(default=None, description="when the buyer first engaged")
    close_date: Column | None = Field(default=None, description="closed deals: when; open ones: expected")
    stage_entered: Column | None = Field(default=None, description="when it entered its current stage")
    amount: Column | None = None
    currency: Column | None = None
    loss_reason: Column | None = None
    lead_source: Column | None = None


class PipelineValues(Strict):
    default: str = Field(description="the pipeline of a row whose value `values` does not name")
    values: dict[str, str] = Field(default={}, description="export value -> playbook pipeline id")


class AccountColumns(Strict):
    """The columns of the accounts file (--accounts)."""

    name: Column
    industry: Column | None = None
    employees: Column | None = None
    country: Column | None = None
    domain: Column | None = None


class TeamColumns(Strict):
    """The columns of the teams file (--teams): one row per owner."""

    owner: Column
    team: Column | None = None
    manager: Column | None = None
    region: Column | None = None


class StageHistoryColumns(Strict):
    """The columns of a stage history file (--stage-history): one row per stage an opportunity entered,
    as Salesforce's OpportunityHistory has them."""

    id: Column = Field(description="the opportunity's id, as the export's id column has it")
    stage: Column = Field(description="the stage value it entered, read through `stages`")
    at: Column = Field(description="when it entered it")


class Mapping(Strict):
    """How one CRM's export reads as dealflow opportunities (imports/mappings/*.yaml)."""

    source: Identifier = Field(description="the system the export comes from, e.g. salesforce")
    columns: Columns
    default_currency: CurrencyCode
    date_formats: list[str] = Field(
        default=[], description="strptime formats tried in order after ISO 8601; the order settles d/m"
    )
    timezone: str = Field(default="UTC", description="of times written without a zone")
    decimal_separator: Literal[".", ","] = "."
    delimiter: str | None = Field(
        default=None, min_length=1, max_length=1, description="of a CSV file; none: found in its header"
    )
    stages: dict[str, str] = Field(min_length=1, description="export stage value -> stage id, won or lost")
    pipelines: PipelineValues
    stage_entered_columns: dict[str, Annotated[list[Column], BeforeValidator(_listed)]] = Field(
        default={}, description="stage id (or won, lost) -> the column(s) holding when the deal entered it"
    )
    products: dict[str, str] = Field(default={}, description="export product name -> price list product")
    loss_reasons: dict[str, str] = Field(default={}, description="export value -> playbook loss reason")
    owners: dict[str, str] = Field(default={}, description="export owner name -> dealflow owner")
    accounts: AccountColumns | None = None
    teams: TeamColumns | None = None
    stage_history: StageHistoryColumns | None = None

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @field_validator("date_formats")
    @classmethod
    def formats(cls, value: list[str]) -> list[str]:
        for text in value:
            if "%" not in text:
                raise ValueError(f"{text!r} is not a strptime format (e.g. %d/%m/%Y)")
        return value

    @field_validator("stages", "products", "loss_reasons", "owners")
    @classmethod
    def distinct_keys(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for key, target in value.items():
            previous = seen.setdefault(lookup_key(key), target)
            if previous != target:
                raise ValueError(f"{key!r} is listed twice (values match ignoring case and spaces)")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class MappingError(Exception):
    """A mapping file that cannot be used: each line is `path: message`."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def price_list(document: PlaybookDocument) -> dict[str, dict[str, int]]:
    prices = document.proposal.get("price_list", {})
    return prices if isinstance(prices, dict) else {}


def loss_reasons(document: PlaybookDocument) -> list[str]:
    reasons = document.proposal.get("loss_reasons", [])
    return [str(reason) for reason in reasons] if isinstance(reasons, list) else []


def playbook_problems(mapping: Mapping, document: PlaybookDocument) -> list[str]:
    """Where the mapping names stages, pipelines, products or loss reasons the playbook does not have."""
    stage_ids = set(document.stages)
    problems = [
        f"stages.{value}: {target!r} is not a stage of the playbook (nor won or lost)"
        for value, target in mapping.stages.items()
        if target not in stage_ids and target not in CLOSED_STAGES
    ]
    pipelines = sorted(document.pipelines)
    if mapping.pipelines.default not in document.pipelines:
        problems.append(f"pipelines.default: {mapping.pipelines.default!r} is not a pipeline ({pipelines})")
    problems += [
        f"pipelines.values.{value}: {target!r} is not a pipeline of the playbook ({pipelines})"
        for value, target in mapping.pipelines.values.items()
        if target not in document.pipelines
    ]
    problems += [
        f"stage_entered_columns.{stage}: not a stage of the playbook (nor won or lost)"
        for stage in mapping.stage_entered_columns
        if stage not in stage_ids and stage not in CLOSED_STAGES
    ]
    products = price_list(document)
    problems += [
        f"products.{name}: {target!r} is not a product of the price list ({sorted(products)})"
        for name, target in mapping.products.items()
        if target not in products
    ]
    reasons = loss_reasons(document)
    problems += [
        f"loss_reasons.{value}: {target!r} is not a loss reason of the playbook ({reasons})"
        for value, target in mapping.loss_reasons.items()
        if target not in reasons
    ]
    return problems


def load_mapping(path: Path, document: PlaybookDocument) -> Mapping:
    """The mapping at `path`, checked against the playbook; MappingError names every problem."""
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise MappingError([f"{path}: cannot read it ({error.strerror})"]) from error
    except yaml.YAMLError as error:
        raise MappingError([f"(document): not valid YAML ({error})"]) from error
    if not isinstance(content, dict):
        raise MappingError(["(document): a mapping file is a YAML mapping (source:, columns:, stages:, ...)"])
    try:
        mapping = Mapping.model_validate(content)
    except ValidationError as error:
        raise MappingError(error_lines(error)) from error
    if problems := playbook_problems(mapping, document):
        raise MappingError(problems)
    return mapping


# --- values --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    at: datetime
    date_only: bool

    def not_before(self, floor: datetime) -> datetime:
        """Its time, or `floor` when it is a bare date of the floor's day (some time that day)."""
        if self.date_only and self.at < floor < self.at + timedelta(days=1):
            return floor
        return self.at


def parse_moment(text: str, formats: Sequence[str], zone: ZoneInfo) -> Moment:
    """A date or time as the export writes it; ValueError says why it is none."""
    parsed: datetime | None = None
    date_only = False
    try:
        day = date.fromisoformat(text)
        parsed, date_only = datetime(day.year, day.month, day.day), True
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            for pattern in formats:
                try:
                    parsed = datetime.strptime(text, pattern)
                except ValueError:
                    continue
                date_only = not any(directive in pattern for directive in _TIME_DIRECTIVES)
                break
    if parsed is None:
        accepted = ", ".join(["ISO 8601", *formats])
        raise ValueError(f"{text!r} is not a date in a known format ({accepted})")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return Moment(parsed.astimezone(UTC), date_only)


def parse_decimal(text: str, decimal_separator: str) -> Decimal:
    """A non-negative number as the export writes it; ValueError says why it is none."""
    thousands = "," if decimal_separator == "." else "."
    cleaned = text.strip().strip("€$£¥").strip()
    dec, group = re.escape(decimal_separator), f"[{re.escape(thousands)} '\u00a0\u202f]"
    if cleaned.startswith("-"):
        raise ValueError(f"{text!r} is negative")
    if not re.fullmatch(rf"\d{{1,3}}(?:{group}\d{{3}})+(?:{dec}\d+)?|\d+(?:{dec}\d+)?", cleaned):
        raise ValueError(f"{text!r} is not a number (decimal separator {decimal_separator!r})")
    digits = re.sub(group, "", cleaned).replace(decimal_separator, ".")
    try:
        return Decimal(digits)
    except InvalidOperation as error:  # the pattern admits only digits: kept as a guard
        raise ValueError(f"{text!r} is not a number") from error


def parse_money(text: str, currency: str, decimal_separator: str) -> Money:
    units = parse_decimal(text, decimal_separator)
    minor = units.scaleb(exponent(currency))
    if minor != minor.to_integral_value():
        raise ValueError(f"{text!r} has more decimals than {currency} has")
    if minor > MAX_MINOR_UNITS:
        raise ValueError(f"{text!r} is too large")
    return Money(amount_minor=int(minor), currency=currency)


def country_code(text: str) -> str:
    try:
        return str(pycountry.countries.lookup(text.strip()).alpha_2)
    except LookupError as error:
        raise ValueError(f"{text!r} is not a country (a name or an ISO 3166 code)") from error


# --- reading files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """What one row could not use: a warning (imported without it) or an error (the row left out)."""

    line: int
    column: str
    reason: str
    severity: Literal["warning", "error"] = "warning"

    def __str__(self) -> str:
        return (
            f"line {self.line}: {self.column}: {self.reason}"
            if self.column
            else f"line {self.line}: {self.reason}"
        )


@dataclass(frozen=True)
class Rows:
    """The rows of an export file, each with the line it starts on; lines that are no row at all."""

    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]
    problems: list[Problem] = field(default_factory=list)


class FileError(Exception):
    """A file that cannot be read as an export at all."""


def read_rows(path: Path, delimiter: str | None = None) -> Rows:
    """A CSV file (by its extension, else JSON Lines: .jsonl, .ndjson, .json) as text cells by column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise FileError(f"{path}: cannot read it ({error.strerror})") from error
    except UnicodeDecodeError as error:
        raise FileError(f"{path}: not UTF-8 text (export it as UTF-8)") from error
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        if text.lstrip().startswith("["):
            raise FileError(f"{path}: a JSON array: write one JSON object per line (JSON Lines)")
        return _json_lines(text)
    return _csv_rows(text, delimiter, path)


def _csv_rows(text: str, delimiter: str | None, path: Path) -> Rows:
    header = text.split("\n", 1)[0]
    if not header.strip():
        raise FileError(f"{path}: empty, or no header line")
    chosen = delimiter or max(",;\t", key=header.count)
    reader = csv.reader(text.splitlines(keepends=True), delimiter=chosen)
    columns = [name.strip() for name in next(reader)]
    rows: list[tuple[int, dict[str, str]]] = []
    problems: list[Problem] = []
    start = reader.line_num + 1
    for cells in reader:
        if any(cell.strip() for cell in cells):
            if len(cells) > len(columns):
                problems.append(
                    Problem(start, "", f"{len(cells)} cells, the header has {len(columns)}", "error")
                )
            else:
                rows.append((start, dict(zip(columns, (cell.strip() for cell in cells), strict=False))))
        start = reader.line_num + 1
    return Rows(columns, rows, problems)


def _json_lines(text: str) -> Rows:
    rows: list[tuple[int, dict[str, str]]] = []
    problems: list[Problem] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as error:
            problems.append(Problem(number, "", f"not valid JSON ({error})", "error"))
            continue
        if not isinstance(item, dict):
            problems.append(Problem(number, "", "not a JSON object of column -> value", "error"))
            continue
        cells = {str(key): _cell(value) for key, value in item.items()}
        columns.update(dict.fromkeys(cells))
        rows.append((number, cells))
    return Rows(list(columns), rows, problems)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


@dataclass(frozen=True)
class TeamInfo:
    team: str | None
    manager: str | None
    region: str | None


@dataclass
class SideFile:
    """An accounts or teams file: its entries by lookup key, and what was wrong in its lines."""

    companies: dict[str, Company] = field(default_factory=dict)
    teams: dict[str, TeamInfo] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def _required_columns(path: Path, rows: Rows, wanted: dict[str, str | None]) -> None:
    missing = [f"{name} ({role})" for role, name in wanted.items() if name and name not in rows.columns]
    if missing:
        raise FileError(f"{path}: no column {', '.join(missing)} in its header ({', '.join(rows.columns)})")


def read_accounts(path: Path, columns: AccountColumns) -> SideFile:
    rows = read_rows(path)
    _required_columns(path, rows, columns.model_dump())
    read = SideFile(problems=list(rows.problems))
    for line, row in rows.rows:
        name = row.get(columns.name, "")
        if not name:
            read.problems.append(Problem(line, columns.name, "empty: the line names no account", "error"))
            continue
        values: dict[str, Any] = {"name": name}
        if columns.industry and row.get(columns.industry):
            values["industry"] = row[columns.industry]
        if columns.domain and row.get(columns.domain):
            values["domain"] = row[columns.domain].lower().removeprefix("https://").removeprefix("http://")
        if columns.employees and (employees := row.get(columns.employees)):
            try:
                count = parse_decimal(employees, ".")
                if count != count.to_integral_value():
                    raise ValueError(f"{employees!r} is not a whole number")
                values["employees"] = int(count)
            except ValueError as error:
                read.problems.append(Problem(line, columns.employees, f"{error}: left out"))
        if columns.country and (country := row.get(columns.country)):
            try:
                values["country"] = country_code(country)
            except ValueError as error:
                read.problems.append(Problem(line, columns.country, f"{error}: left out"))
        read.companies[lookup_key(name)] = Company(**values)
    return read


def read_teams(path: Path, columns: TeamColumns, document: PlaybookDocument) -> SideFile:
    rows = read_rows(path)
    _required_columns(path, rows, columns.model_dump())
    read = SideFile(problems=list(rows.problems))
    playbook_teams = {lookup_key(team.name): team.name for team in document.teams}
    for line, row in rows.rows:
        owner = row.get(columns.owner, "")
        if not owner:
            read.problems.append(Problem(line, columns.owner, "empty: the line names no owner", "error"))
            continue
        team = (row.get(columns.team) or None) if columns.team else None
        if team is not None:
            team = playbook_teams.get(lookup_key(team), team)
        read.teams[lookup_key(owner)] = TeamInfo(
            team=team,
            manager=(row.get(columns.manager) or None) if columns.manager else None,
            region=(row.get(columns.region) or None) if columns.region else None,
        )
    return read


@dataclass
class StageHistoryFile:
    """A stage history file: per opportunity id, when it first entered each stage (stage id, or won or
    lost), with the column to name in a problem; and what was wrong in its lines."""

    column: str
    entered: dict[str, dict[str, Moment]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def read_stage_history(path: Path, mapping: Mapping) -> StageHistoryFile:
    if mapping.stage_history is None:
        raise FileError(f"the mapping has no stage_history: section to read {path} with")
    columns = mapping.stage_history
    rows = read_rows(path, mapping.delimiter)
    _required_columns(path, rows, columns.model_dump())
    stages = {lookup_key(value): stage for value, stage in mapping.stages.items()}
    read = StageHistoryFile(column=f"{path.name}:{columns.at}", problems=list(rows.problems))
    for line, row in rows.rows:
        source_id, value, text = (row.get(name, "") for name in (columns.id, columns.stage, columns.at))
        stage = stages.get(lookup_key(value))
        if not source_id or stage is None:
            reason = (
                "empty: the line names no opportunity"
                if not source_id
                else f"{value!r} is no stage the mapping knows: left out"
            )
            read.problems.append(Problem(line, columns.id if not source_id else columns.stage, reason))
            continue
        try:
            moment = parse_moment(text, mapping.date_formats, mapping.zone)
        except ValueError as error:
            read.problems.append(Problem(line, columns.at, f"{error}: left out"))
            continue
        known = read.entered.setdefault(source_id, {})
        if stage not in known or moment.at < known[stage].at:
            known[stage] = moment
    return read


# --- rows into events ----------------------------------------------------------------------------


def deal_id_for(source: str, source_id: str) -> str:
    """The deal an imported row becomes: readable when the source id is a plain identifier."""
    if _SAFE_ID.match(source_id) and len(source) + len(source_id) < 120:
        return f"{source}-{source_id}"
    return f"{source}-x{hashlib.sha256(source_id.encode()).hexdigest()[:32]}"


def event_id_for(event: OpportunityImported) -> str:
    """The same row read from the same export, known up to the same moment, gives the same id: the
    services drop it as a repeat. Imported again later (another as_of), it is a new event that the stage
    finds unchanged (shared.imported.import_digest) and lets be."""
    content = event.model_dump(mode="json")
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{event.source}\n{event.source_id}\n{canonical}"))


@dataclass(frozen=True)
class Reference:
    """What each row is read against."""

    mapping: Mapping
    document: PlaybookDocument
    as_of: datetime
    accounts: SideFile | None = None
    teams: SideFile | None = None
    stage_history: StageHistoryFile | None = None

    def lookups(self) -> _Lookups:
        return _Lookups.of(self)


def reference_for(
    mapping: Mapping,
    document: PlaybookDocument,
    as_of: datetime,
    *,
    accounts: Path | None = None,
    teams: Path | None = None,
    stage_history: Path | None = None,
) -> Reference:
    """What the rows are read against, its side files read (FileError: one the mapping cannot read)."""
    for path, section, name in ((accounts, mapping.accounts, "accounts"), (teams, mapping.teams, "teams")):
        if path is not None and section is None:
            raise FileError(f"the mapping has no {name}: section to read {path} with")
    return Reference(
        mapping,
        document,
        as_of,
        accounts=None
        if accounts is None or mapping.accounts is None
        else read_accounts(accounts, mapping.accounts),
        teams=None if teams is None or mapping.teams is None else read_teams(teams, mapping.teams, document),
        stage_history=None if stage_history is None else read_stage_history(stage_history, mapping),
    )


@dataclass(frozen=True)
class _Lookups:
    stages: dict[str, str]
    pipelines: dict[str, str]
    products: dict[str, str]
    loss_reasons: dict[str, str]
    owners: dict[str, str]
    rep_teams: dict[str, TeamInfo]

    @classmethod
    def of(cls, reference: Reference) -> _Lookups:
        mapping, document = reference.mapping, reference.document

        def keyed(pairs: dict[str, str]) -> dict[str, str]:
            return {lookup_key(key): value for key, value in pairs.items()}

        return cls(
            stages=keyed(mapping.stages),
            pipelines=keyed(mapping.pipelines.values),
            products=keyed({product: product for product in price_list(document)} | mapping.products),
            loss_reasons=keyed({reason: reason for reason in loss_reasons(document)} | mapping.loss_reasons),
            owners=keyed(mapping.owners),
            rep_teams={
                lookup_key(rep.name): TeamInfo(
                    team.name, getattr(team, "manager", None), getattr(team, "region", None)
                )
                for team in document.teams
                for rep in team.reps
            },
        )


class _LeftOut(Exception):
    pass


@dataclass(frozen=True)
class MappedRow:
    line: int
    event: OpportunityImported
    event_id: str


class _Row:
    def __init__(self, line: int, cells: dict[str, str], reference: Reference, lookups: _Lookups) -> None:
        self.line, self.cells, self.reference, self.lookups = line, cells, reference, lookups
        self.mapping = reference.mapping
        self.problems: list[Problem] = []

    def value(self, role: str) -> tuple[str, str | None]:
        column: str | None = getattr(self.mapping.columns, role)
        if column is None:
            return "", None
        return column, self.cells.get(column) or None

    def warn(self, column: str, reason: str) -> None:
        self.problems.append(Problem(self.line, column, reason, "warning"))

    def fail(self, column: str, reason: str) -> _LeftOut:
        self.problems.append(Problem(self.line, column, reason, "error"))
        return _LeftOut()

    def moment(self, column: str, text: str) -> Moment | None:
        try:
            return parse_moment(text, self.mapping.date_formats, self.mapping.zone)
        except ValueError as error:
            self.warn(column, f"{error}: not used")
            return None

    def event(self) -> OpportunityImported:
        column, source_id = self.value("id")
        if source_id is None:
            raise self.fail(column, "empty: a row needs the opportunity's id")
        owner = self.owner()
        pipeline = self.pipeline()
        stage = self.stage(pipeline)
        entered = self.stage_dates(pipeline, source_id)
        created_at = self.created_at(entered)
        closed_at = self.closed_at(stage, created_at, entered)
        history = self.history(pipeline, stage, created_at, closed_at, entered)
        amount = self.amount(stage)
        team = self.team(owner)
        values: dict[str, Any] = {
            "deal_id": deal_id_for(self.mapping.source, source_id),
            "source": self.mapping.source,
            "source_id": source_id,
            "owner": owner,
            "team": team.team,
            "manager": team.manager,
            "region": team.region,
            "company": self.company(),
            "product": self.product(),
            "lead_source": self.value("lead_source")[1],
            "pipeline": pipeline,
            "stage": stage,
            "stage_history": history,
            "created_at": created_at,
            "engaged_at": self.engaged_at(),
            "closed_at": closed_at,
            "expected_close_date": None if closed_at else self.expected_close_date(),
            "amount": amount,
            "loss_reason": self.loss_reason() if stage == "lost" else None,
            "as_of": self.reference.as_of,
        }
        try:
            return OpportunityImported(**values)
        except ValidationError as error:
            for detail in error.errors(include_url=False):
                self.problems.append(
                    Problem(self.line, ".".join(str(part) for part in detail["loc"]), detail["msg"], "error")
                )
            raise _LeftOut() from error

    def owner(self) -> str:
        column, owner = self.value("owner")
        if owner is None:
            raise self.fail(column, "empty: a row needs its owner")
        return self.lookups.owners.get(lookup_key(owner), owner)

    def team(self, owner: str) -> TeamInfo:
        key = lookup_key(owner)
        listed = self.reference.teams.teams.get(key) if self.reference.teams else None
        playbook = self.lookups.rep_teams.get(key)
        if listed is not None:
            if playbook is None or listed.team not in (None, playbook.team):
                return listed
            return TeamInfo(
                playbook.team, listed.manager or playbook.manager, listed.region or playbook.region
            )
        if playbook is None:
            where = "the playbook's teams nor in the teams file" if self.reference.teams else "the playbook"
            self.warn(self.value("owner")[0], f"{owner!r} is not in {where}: imported without a team")
            return TeamInfo(None, None, None)
        return playbook

    def pipeline(self) -> str:
        column, value = self.value("pipeline")
        default = self.mapping.pipelines.default
        if value is None:
            return default
        pipeline = self.lookups.pipelines.get(lookup_key(value))
        if pipeline is None:
            self.warn(column, f"{value!r} is not under pipelines.values: taken as {default}")
            return default
        return pipeline

    def stage(self, pipeline: str) -> str:
        column, value = self.value("stage")
        if value is None:
            raise self.fail(column, "empty: a row needs its stage")
        stage = self.lookups.stages.get(lookup_key(value))
        if stage is None:
            raise self.fail(column, f"{value!r} is no stage the mapping knows (add it under stages:)")
        if stage not in CLOSED_STAGES and stage not in self.reference.document.pipelines[pipeline].stages:
            raise self.fail(column, f"{value!r} is stage {stage}, which pipeline {pipeline} does not have")
        return stage

    def stage_dates(self, pipeline: str, source_id: str) -> dict[str, tuple[str, Moment]]:
        """stage (or won, lost) -> the column and time of its earliest filled 'entered' column, or of
        the stage history file's earliest line for it."""
        stages = (*self.reference.document.pipelines[pipeline].stages, *CLOSED_STAGES)
        found: dict[str, tuple[str, Moment]] = {}
        history = self.reference.stage_history
        if history is not None:
            for stage, logged in history.entered.get(source_id, {}).items():
                if stage in stages:
                    found[stage] = (history.column, logged)
        for stage, columns in self.mapping.stage_entered_columns.items():
            for column in columns:
                text = self.cells.get(column)
                if not text:
                    continue
                if stage not in stages:
                    self.warn(column, f"pipeline {pipeline} has no stage {stage}: not used")
                    continue
                moment = self.moment(column, text)
                if moment is not None and (stage not in found or moment.at < found[stage][1].at):
                    found[stage] = (column, moment)
        return found

    def created_at(self, entered: dict[str, tuple[str, Moment]]) -> datetime:
        column, text = self.value("created")
        moment = self.moment(column, text) if text else None
        if moment is None:
            if not entered:
                raise self.fail(column, "no usable date: neither a creation date nor a stage date")
            earliest_column, earliest = min(entered.values(), key=lambda item: item[1].at)
            if text is None:
                self.warn(column, f"empty: taken as the earliest stage date ({earliest_column})")
            moment = earliest
        if moment.at > self.reference.as_of:
            raise self.fail(column, f"after the import's as_of ({self.reference.as_of.isoformat()})")
        return moment.at

    def closed_at(
        self, stage: str, created_at: datetime, entered: dict[str, tuple[str, Moment]]
    ) -> datetime | None:
        if stage not in CLOSED_STAGES:
            return None
        # a won/lost stage column has the time; a close date is often a bare date
        moment: Moment | None
        if stage in entered:
            column, moment = entered[stage]
        else:
            column, text = self.value("close_date")
            moment = self.moment(column, text) if text is not None else None
        if moment is None:
            raise self.fail(column or "close date", f"a {stage} deal needs when it closed: none usable")
        closed_at = moment.not_before(created_at)
        if closed_at < created_at:
            raise self.fail(column, f"{stage} before it was created ({created_at.isoformat()})")
        if closed_at > self.reference.as_of:
            raise self.fail(column, f"after the import's as_of ({self.reference.as_of.isoformat()})")
        return closed_at

    def history(
        self,
        pipeline: str,
        stage: str,
        created_at: datetime,
        closed_at: datetime | None,
        entered: dict[str, tuple[str, Moment]],
    ) -> list[ImportedStage]:
        order = self.reference.document.pipelines[pipeline].stages
        end = min(closed_at or self.reference.as_of, self.reference.as_of)
        times: dict[str, datetime] = {}
        for name, (column, moment) in entered.items():
            if name in CLOSED_STAGES:
                continue
            at = moment.not_before(created_at)
            if at < created_at:
                self.warn(column, "before the creation date: taken as the creation date")
                at = created_at
            if at > end:
                self.warn(column, f"after it {'closed' if closed_at else 'was imported (as_of)'}: not used")
                continue
            times[name] = at
        if stage not in CLOSED_STAGES and stage not in times:
            column, text = self.value("stage_entered")
            reported = self.moment(column, text) if text else None
            if reported is not None and created_at <= reported.not_before(created_at) <= end:
                times[stage] = reported.not_before(created_at)
            elif reported is not None:
                self.warn(column, "outside the deal's life (creation to as_of): not used")
        if stage not in CLOSED_STAGES and stage not in times:
            times[stage] = max(times.values(), default=created_at)
        if order[0] not in times and (not times or min(times.values()) > created_at):
            times[order[0]] = created_at
        if stage not in CLOSED_STAGES:
            current = (times[stage], order.index(stage))
            for name in [name for name in times if (times[name], order.index(name)) > current]:
                self.warn(
                    entered[name][0] if name in entered else name,
                    f"entered after its current stage {stage}: not used",
                )
                del times[name]
        ranked = sorted(times.items(), key=lambda item: (item[1], order.index(item[0])))
        return [ImportedStage(stage=name, entered_at=at) for name, at in ranked]

    def engaged_at(self) -> datetime | None:
        column, text = self.value("engaged")
        moment = self.moment(column, text) if text else None
        if moment is None:
            return None
        if moment.at > self.reference.as_of:
            self.warn(column, f"after the import's as_of ({self.reference.as_of.isoformat()}): not used")
            return None
        return moment.at

    def expected_close_date(self) -> date | None:
        column, text = self.value("close_date")
        moment = self.moment(column, text) if text else None
        return None if moment is None else moment.at.astimezone(self.mapping.zone).date()

    def amount(self, stage: str) -> Money | None:
        column, text = self.value("amount")
        currency_column, code = self.value("currency")
        currency = (code or self.mapping.default_currency).upper()
        if text is None:
            if stage == "won":
                self.warn(column or "amount", "a won deal without an amount: not in won amounts")
            return None
        if not re.fullmatch(r"[A-Z]{3}", currency):
            self.warn(currency_column, f"{code!r} is not an ISO 4217 code: imported without an amount")
            return None
        try:
            return parse_money(text, currency, self.mapping.decimal_separator)
        except ValueError as error:
            self.warn(column, f"{error}: imported without an amount")
            return None

    def product(self) -> str | None:
        column, name = self.value("product")
        if name is None:
            return None
        product = self.lookups.products.get(lookup_key(name))
        if product is None:
            self.warn(column, f"{name!r} matches no product of the price list: imported without a product")
        return product

    def loss_reason(self) -> str | None:
        column, text = self.value("loss_reason")
        if text is None:
            return None
        reason = self.lookups.loss_reasons.get(lookup_key(text))
        if reason is None:
            self.warn(column, f"{text!r} is not a loss reason of the playbook: recorded as other")
            return "other"
        return reason

    def company(self) -> Company:
        column, name = self.value("account")
        if name is None:
            if column:
                self.warn(column, "empty: imported without a company")
            return Company()
        if self.reference.accounts is None:
            return Company(name=name)
        company = self.reference.accounts.companies.get(lookup_key(name))
        if company is None:
            self.warn(column, f"{name!r} is not in the accounts file: only its name is known")
            return Company(name=name)
        return company


@dataclass
class ImportRead:
    """What an export read through its mapping gives: the events, and every row's problems."""

    rows: int = 0
    mapped: list[MappedRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def left_out(self) -> set[int]:
        return {problem.line for problem in self.problems if problem.severity == "error"}

    @property
    def with_warnings(self) -> set[int]:
        return {problem.line for problem in self.problems if problem.severity == "warning"} - self.left_out

    def count(self, closed: str | None) -> int:
        if closed is None:
            return sum(1 for row in self.mapped if row.event.stage not in CLOSED_STAGES)
        return sum(1 for row in self.mapped if row.event.stage == closed)

    def summary(self, *, dry_run: bool) -> str:
        deals = len(self.mapped)
        verb = "would publish" if dry_run else "published"
        text = (
            f"read {self.rows} row{'' if self.rows == 1 else 's'}: {verb} {deals} deal"
            f"{'' if deals == 1 else 's'} ({self.count('won')} won, {self.count('lost')} lost, "
            f"{self.count(None)} open)"
        )
        warned, left_out = len(self.with_warnings), len(self.left_out)
        if warned or left_out:
            text += (
                f"; {warned + left_out} row{'' if warned + left_out == 1 else 's'} with problems: "
                f"{warned} imported with warnings, {left_out} left out (above)"
            )
        return text + ("; dry run: nothing was sent" if dry_run else "")


def read_opportunities(
    rows: Rows,
    reference: Reference,
    on_row: Callable[[], None] | None = None,
) -> ImportRead:
    """Every row of the export mapped: an event for each row it supports, the problems of each."""
    read = ImportRead(
        rows=len(rows.rows) + len({p.line for p in rows.problems}), problems=list(rows.problems)
    )
    lookups = reference.lookups()
    read.notes = _unread_columns(reference.mapping, rows.columns)
    seen: dict[str, int] = {}
    for line, cells in rows.rows:
        row = _Row(line, cells, reference, lookups)
        try:
            event = row.event()
        except _LeftOut:
            event = None
        if event is not None and event.deal_id in seen:
            row.problems.append(
                Problem(
                    line, reference.mapping.columns.id, f"the same id as line {seen[event.deal_id]}", "error"
                )
            )
            event = None
        read.problems.extend(row.problems)
        if event is not None:
            seen[event.deal_id] = line
            read.mapped.append(MappedRow(line, event, event_id_for(event)))
        if on_row is not None:
            on_row()
    read.problems.sort(key=lambda problem: problem.line)
    return read


def required_columns_missing(mapping: Mapping, columns: Sequence[str]) -> list[str]:
    wanted = mapping.columns
    return [
        f"{name} (columns.{role})"
        for role, name in (
            ("id", wanted.id),
            ("owner", wanted.owner),
            ("stage", wanted.stage),
            ("created", wanted.created),
        )
        if name not in columns
    ]


def _unread_columns(mapping: Mapping, columns: Sequence[str]) -> list[str]:
    """The optional columns the mapping names that the file does not have: read as empty."""
    named = [
        (f"columns.{role}", name)
        for role, name in mapping.columns.model_dump().items()
        if name and role not in ("id", "owner", "stage", "created")
    ] + [
        (f"stage_entered_columns.{stage}", name)
        for stage, names in mapping.stage_entered_columns.items()
        for name in names
    ]
    missing = [f"{name} ({where})" for where, name in named if name not in columns]
    return [f"not in the file, read as empty: {', '.join(missing)}"] if missing else []


def default_as_of() -> datetime:
    return datetime.now(UTC)


def iter_events(read: ImportRead) -> Iterator[tuple[OpportunityImported, str]]:
    for row in read.mapped:
        yield row.event, row.event_id
