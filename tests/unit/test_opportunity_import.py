"""`dealflow import opportunities`' reading: the mapping file, dates and numbers, every row's problems with
its line and column, the stage history it makes, and ids that stay the same from one import to the next."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from cli.opportunity_import import (
    ImportRead,
    Mapping,
    MappingError,
    Reference,
    deal_id_for,
    load_mapping,
    parse_moment,
    parse_money,
    read_accounts,
    read_opportunities,
    read_rows,
    read_stage_history,
    read_teams,
)
from contracts.events import OpportunityImported
from shared.imported import import_digest
from shared.playbook import PlaybookDocument, load_document

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "imports" / "mappings"
SAMPLES = ROOT / "imports" / "samples"
AS_OF = datetime(2026, 11, 30, tzinfo=UTC)
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


@pytest.fixture(scope="module")
def document() -> PlaybookDocument:
    return load_document()


def write_csv(path: Path, header: list[str], *rows: list[str]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def mapping_file(tmp_path: Path, content: dict[str, Any]) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


MINIMAL: dict[str, Any] = {
    "source": "crm",
    "columns": {
        "id": "Id",
        "owner": "Owner",
        "stage": "Stage",
        "created": "Created",
        "pipeline": "Pipeline",
        "close_date": "Close",
        "stage_entered": "Entered",
        "amount": "Amount",
        "currency": "Currency",
        "account": "Account",
        "product": "Product",
        "loss_reason": "Reason",
    },
    "default_currency": "EUR",
    "date_formats": ["%d/%m/%Y", "%m/%d/%Y"],
    "stages": {
        "Early": "qualification",
        "Demo": "presentation",
        "Quote": "proposal",
        "Won": "won",
        "Lost": "lost",
    },
    "pipelines": {"default": "new_business", "values": {"Upsell": "expansion"}},
    "stage_entered_columns": {"proposal": "Quoted", "won": "Won at"},
    "products": {"Platform": "dealflow-platform"},
    "loss_reasons": {"Too dear": "price"},
}
HEADER = ["Id", "Owner", "Stage", "Created", "Pipeline", "Close", "Entered", "Amount", "Currency", "Account",
          "Product", "Reason", "Quoted", "Won at"]  # fmt: skip


def read_minimal(tmp_path: Path, document: PlaybookDocument, *rows: list[str], **changes: Any) -> ImportRead:
    mapping = load_mapping(mapping_file(tmp_path, MINIMAL | changes), document)
    export = write_csv(tmp_path / "export.csv", HEADER, *rows)
    return read_opportunities(read_rows(export), Reference(mapping, document, AS_OF))


def row(**cells: str) -> list[str]:
    values = {
        "Id": "1",
        "Owner": "anna.schmidt",
        "Stage": "Early",
        "Created": "2026-03-02T09:00:00Z",
        "Account": "Acme",
    }
    values |= cells
    return [values.get(column, "") for column in HEADER]


def problems(read: ImportRead) -> list[tuple[int, str, str]]:
    return [(problem.line, problem.column, problem.severity) for problem in read.problems]


# --- the mapping file ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["salesforce", "hubspot"])
def test_the_shipped_mappings_fit_the_default_playbook(name: str, document: PlaybookDocument) -> None:
    mapping = load_mapping(MAPPINGS / f"{name}.yaml", document)
    assert mapping.source == name
    assert set(mapping.stages.values()) >= {"won", "lost", *document.stages}


def test_a_mapping_that_breaks_the_model_names_every_error_with_its_path(
    tmp_path: Path, document: PlaybookDocument
) -> None:
    broken = {
        "source": "two words",
        "columns": {"id": "Id", "owner": "Owner"},
        "default_currency": "euro",
        "stages": {"Won": "won", "won ": "lost"},
        "pipelines": {"default": "new_business"},
        "timezone": "Mars/Olympus",
        "date_formats": ["dd/mm/yyyy"],
        "colour": "blue",
    }
    with pytest.raises(MappingError) as raised:
        load_mapping(mapping_file(tmp_path, broken), document)
    lines = raised.value.lines
    assert "columns.stage: Field required" in lines
    assert "columns.created: Field required" in lines
    assert "default_currency: String should match pattern '^[A-Z]{3}$'" in lines
    assert "colour: Extra inputs are not permitted" in lines
    assert any(line.startswith("source: String should match pattern") for line in lines)
    assert any(line.startswith("timezone: Value error, unknown time zone 'Mars/Olympus'") for line in lines)
    assert any(line.startswith("date_formats: Value error, 'dd/mm/yyyy' is not a strptime") for line in lines)
    assert any(line.startswith("stages: Value error, 'won ' is listed twice") for line in lines)


def test_a_mapping_is_checked_against_the_playbook(tmp_path: Path, document: PlaybookDocument) -> None:
    content = MINIMAL | {
        "stages": {"Early": "discovery", "Won": "won"},
        "pipelines": {"default": "enterprise", "values": {"Upsell": "expansion", "Old": "legacy"}},
        "stage_entered_columns": {"demo": "Demo at"},
        "products": {"Platform": "platform-xl"},
        "loss_reasons": {"Too dear": "too_dear"},
    }
    with pytest.raises(MappingError) as raised:
        load_mapping(mapping_file(tmp_path, content), document)
    assert [line.split(":")[0] for line in raised.value.lines] == [
        "stages.Early",
        "pipelines.default",
        "pipelines.values.Old",
        "stage_entered_columns.demo",
        "products.Platform",
        "loss_reasons.Too dear",
    ]


def test_a_bad_mapping_exits_2_with_path_and_message(tmp_path: Path) -> None:
    export = write_csv(tmp_path / "export.csv", HEADER, row())
    mapping = mapping_file(tmp_path, MINIMAL | {"stages": {"Early": "discovery"}})
    result = CliRunner().invoke(
        app, ["import", "opportunities", str(export), "--mapping", str(mapping), "--dry-run"]
    )
    assert result.exit_code == 2
    assert f"{mapping}: stages.Early: 'discovery' is not a stage of the playbook" in result.stderr


def test_an_export_without_the_mapped_columns_exits_2(tmp_path: Path) -> None:
    export = write_csv(tmp_path / "export.csv", ["Record ID", "Deal Stage"], ["1", "Early"])
    mapping = mapping_file(tmp_path, MINIMAL)
    result = CliRunner().invoke(
        app, ["import", "opportunities", str(export), "--mapping", str(mapping), "--dry-run"]
    )
    assert result.exit_code == 2
    assert "no column Id (columns.id), Owner (columns.owner)" in result.stderr


# --- dates and numbers ---------------------------------------------------------------------------


def test_iso_dates_are_always_read_and_the_list_order_decides_day_and_month() -> None:
    utc, berlin = ZoneInfo("UTC"), ZoneInfo("Europe/Berlin")
    formats = ["%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y %H:%M"]
    assert parse_moment("2026-04-03", formats, utc).at == datetime(2026, 4, 3, tzinfo=UTC)
    assert parse_moment("2026-04-03", formats, utc).date_only
    assert parse_moment("2026-04-03T10:15:00.000+0000", formats, utc).at == datetime(
        2026, 4, 3, 10, 15, tzinfo=UTC
    )
    assert parse_moment("03/04/2026", formats, utc).at.date() == date(2026, 4, 3)  # day first: listed first
    assert parse_moment("04/25/2026", formats, utc).at.date() == date(2026, 4, 25)  # no month 25: month first
    assert parse_moment("03/04/2026", ["%m/%d/%Y", "%d/%m/%Y"], utc).at.date() == date(2026, 3, 4)
    # a time without a zone is in the mapping's time zone
    local = parse_moment("03.04.2026 10:00", formats, berlin)
    assert local.at == datetime(2026, 4, 3, 8, 0, tzinfo=UTC)
    assert not local.date_only
    with pytest.raises(ValueError, match=r"'3rd April' is not a date in a known format \(ISO 8601, %d/%m/%Y"):
        parse_moment("3rd April", formats, utc)


def test_amounts_are_exact_minor_units_in_the_file_s_number_format() -> None:
    assert parse_money("12,500.00", "EUR", ".").amount_minor == 1_250_000
    assert parse_money("€ 1,200", "EUR", ".").amount_minor == 120_000
    assert parse_money("12.500,50", "EUR", ",").amount_minor == 1_250_050
    assert parse_money("1 250 000", "JPY", ",").amount_minor == 1_250_000
    assert parse_money("48000", "GBP", ".").amount_minor == 4_800_000
    for text, reason in [
        ("12,5OO", "is not a number"),
        ("12,50", "is not a number"),  # a decimal comma in a file with a decimal point
        ("-500", "is negative"),
        ("10.005", "has more decimals than EUR has"),
        ("12k", "is not a number"),
        ("", "is not a number"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_money(text, "EUR", ".")


# --- rows ----------------------------------------------------------------------------------------


def test_each_row_names_what_it_cannot_use_and_good_rows_are_kept(
    tmp_path: Path, document: PlaybookDocument
) -> None:
    read = read_minimal(
        tmp_path,
        document,
        row(Id="ok", Stage="Quote", Amount="9,000.00", Product="Platform"),  # line 2
        row(Id="", Stage="Quote"),  # 3: no id
        row(Id="no-owner", Owner=""),  # 4
        row(Id="no-date", Created=""),  # 5: no creation date, no stage date
        row(Id="on-hold", Stage="On Hold"),  # 6
        row(Id="bad-amount", Stage="Quote", Amount="lots"),  # 7: imported without an amount
        row(Id="odd-product", Product="Platform Legacy", Account="Acme"),  # 8
        row(Id="left", Owner="someone.gone", Account=""),  # 9: no team, no company
        row(Id="won-undated", Stage="Won"),  # 10: a won deal needs its closing time
        row(Id="lost", Stage="Lost", Close="15/04/2026", Reason="Too dear", Amount="100"),  # 11
        row(Id="lost-why", Stage="Lost", Close="04/28/2026", Reason="Legal"),  # 12
        row(Id="wrong-pipeline", Pipeline="Upsell", Stage="Demo"),  # 13: expansion has no presentation
        row(Id="odd-date", Created="yesterday"),  # 14
        row(Id="ok", Stage="Early"),  # 15: the id of line 2 again
        row(Id="future", Created="2027-01-01"),  # 16
        row(Id="odd-currency", Stage="Quote", Amount="100", Currency="$$"),  # 17
    )
    assert problems(read) == [
        (3, "Id", "error"),
        (4, "Owner", "error"),
        (5, "Created", "error"),
        (6, "Stage", "error"),
        (7, "Amount", "warning"),
        (8, "Product", "warning"),
        (9, "Owner", "warning"),
        (9, "Account", "warning"),
        (10, "Close", "error"),
        (12, "Reason", "warning"),
        (13, "Stage", "error"),
        (14, "Created", "warning"),
        (14, "Created", "error"),
        (15, "Id", "error"),
        (16, "Created", "error"),
        (17, "Currency", "warning"),
    ]
    assert (
        str(read.problems[3])
        == "line 6: Stage: 'On Hold' is no stage the mapping knows (add it under stages:)"
    )
    assert "'lots' is not a number" in str(read.problems[4])
    assert str(read.problems[-3]) == "line 15: Id: the same id as line 2"
    imported = {mapped.event.source_id: mapped.event for mapped in read.mapped}
    assert sorted(imported) == ["bad-amount", "left", "lost", "lost-why", "odd-currency", "odd-product", "ok"]
    assert imported["ok"].amount is not None
    assert imported["ok"].amount.amount_minor == 900_000
    assert imported["ok"].product == "dealflow-platform"
    assert imported["bad-amount"].amount is None
    assert imported["odd-product"].product is None
    assert imported["odd-product"].company.name == "Acme"
    assert imported["left"].team is None
    assert imported["left"].company.name is None
    assert imported["lost"].closed_at == datetime(2026, 4, 15, tzinfo=UTC)
    assert imported["lost"].loss_reason == "price"
    assert imported["lost-why"].closed_at == datetime(2026, 4, 28, tzinfo=UTC)
    assert imported["lost-why"].loss_reason == "other"
    assert imported["ok"].team == "emea"
    assert read.left_out == {3, 4, 5, 6, 10, 13, 14, 15, 16}
    assert read.with_warnings == {7, 8, 9, 12, 17}
    assert read.summary(dry_run=True) == (
        "read 16 rows: would publish 7 deals (0 won, 2 lost, 5 open); 14 rows with problems: "
        "5 imported with warnings, 9 left out (above); dry run: nothing was sent"
    )


def test_the_stage_history_without_stage_dates_is_creation_then_the_current_stage(
    tmp_path: Path, document: PlaybookDocument
) -> None:
    read = read_minimal(
        tmp_path,
        document,
        row(Id="a", Stage="Quote", Entered="2026-04-01T10:00:00Z"),
        row(Id="b", Stage="Quote"),  # no date for its current stage: created in it, as far as is known
        row(Id="c", Stage="Early"),
        row(Id="d", Stage="Lost", Close="2026-03-20"),
        row(Id="e", Stage="Quote", Entered="2026-02-01"),  # before its creation: not used
    )
    history = {
        mapped.event.source_id: [(entry.stage, entry.entered_at) for entry in mapped.event.stage_history]
        for mapped in read.mapped
    }
    created = datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert history == {
        "a": [("qualification", created), ("proposal", datetime(2026, 4, 1, 10, tzinfo=UTC))],
        "b": [("proposal", created)],
        "c": [("qualification", created)],
        "d": [("qualification", created)],
        "e": [("proposal", created)],
    }
    assert problems(read) == [(6, "Entered", "warning")]


def test_stage_date_columns_give_the_history_and_the_closing_time(
    tmp_path: Path, document: PlaybookDocument
) -> None:
    read = read_minimal(
        tmp_path,
        document,
        row(
            Id="won",
            Stage="Won",
            Quoted="2026-03-10 12:00",
            Close="2026-05-01",
            Amount="10",
            **{"Won at": "2026-04-02 16:00"},
        ),
        row(Id="same-day", Stage="Won", Created="2026-03-02T09:00:00Z", Close="2026-03-02", Amount="10"),
        row(Id="before", Stage="Won", Close="2026-03-01", Amount="10"),
        row(Id="back", Stage="Early", Quoted="2026-03-05 12:00"),  # moved back to its first stage
    )
    events = {mapped.event.source_id: mapped.event for mapped in read.mapped}
    won = events["won"]
    assert won.closed_at == datetime(2026, 4, 2, 16, tzinfo=UTC)  # the won column, not the close date
    assert [entry.stage for entry in won.stage_history] == ["qualification", "proposal"]
    # a bare close date is some time that day: on the creation day it is not before the creation
    assert events["same-day"].closed_at == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert [entry.stage for entry in events["back"].stage_history] == ["qualification"]
    assert problems(read) == [(4, "Close", "error"), (5, "Quoted", "warning")]


def test_json_lines_read_as_the_csv_does(tmp_path: Path, document: PlaybookDocument) -> None:
    mapping = load_mapping(mapping_file(tmp_path, MINIMAL), document)
    cells = [
        {
            "Id": "1",
            "Owner": "anna.schmidt",
            "Stage": "Quote",
            "Created": "2026-03-02T09:00:00Z",
            "Amount": 9000,
            "Account": "Acme",
        },
        {
            "Id": "2",
            "Owner": "luc.martin",
            "Stage": "Lost",
            "Created": "2026-03-02",
            "Close": "2026-03-09",
            "Account": "Acme",
        },
    ]
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(json.dumps(item) for item in cells) + "\nnot json\n[1]\n")
    read = read_opportunities(read_rows(export), Reference(mapping, document, AS_OF))
    assert [mapped.event.source_id for mapped in read.mapped] == ["1", "2"]
    assert read.mapped[0].event.amount is not None
    assert read.mapped[0].event.amount.amount_minor == 900_000
    assert problems(read) == [(3, "", "error"), (4, "", "error")]
    assert read.rows == 4


# --- ids -----------------------------------------------------------------------------------------


def test_deal_ids_are_a_stable_identifier_of_source_and_source_id() -> None:
    assert deal_id_for("salesforce", "0068d00000Q1x01AAJ") == "salesforce-0068d00000Q1x01AAJ"
    odd = deal_id_for("crm", "Deal #12 / Müller")
    assert odd == deal_id_for("crm", "Deal #12 / Müller") != deal_id_for("crm", "Deal #12 / Muller")
    assert IDENTIFIER.match(odd)
    assert len(odd) <= 128
    assert IDENTIFIER.match(deal_id_for("crm", "x" * 500))


def test_the_same_file_imported_again_gives_the_same_events(
    tmp_path: Path, document: PlaybookDocument
) -> None:
    mapping = load_mapping(MAPPINGS / "hubspot.yaml", document)
    rows = read_rows(SAMPLES / "hubspot-deals.csv")
    first = read_opportunities(rows, Reference(mapping, document, AS_OF))
    repeated = read_opportunities(rows, Reference(mapping, document, AS_OF))
    assert [m.event_id for m in first.mapped] == [m.event_id for m in repeated.mapped]
    assert [m.event for m in first.mapped] == [m.event for m in repeated.mapped]
    assert len({mapped.event_id for mapped in first.mapped}) == len(first.mapped)
    # known up to a later moment: other events, whose rows are the same but for as_of
    later = read_opportunities(rows, Reference(mapping, document, datetime(2027, 2, 1, tzinfo=UTC)))
    assert {mapped.event.as_of for mapped in later.mapped} == {datetime(2027, 2, 1, tzinfo=UTC)}
    assert not {m.event_id for m in first.mapped} & {m.event_id for m in later.mapped}
    assert [import_digest(m.event) for m in first.mapped] == [import_digest(m.event) for m in later.mapped]
    # a changed row is another event
    changed = read_minimal(tmp_path, document, row(Amount="100"))
    again = read_minimal(tmp_path, document, row(Amount="100"))
    other = read_minimal(tmp_path, document, row(Amount="200"))
    assert changed.mapped[0].event_id == again.mapped[0].event_id != other.mapped[0].event_id
    assert changed.mapped[0].event.deal_id == other.mapped[0].event.deal_id == "crm-1"


# --- the samples ---------------------------------------------------------------------------------


def sample(name: str, document: PlaybookDocument) -> tuple[ImportRead, Mapping]:
    mapping = load_mapping(MAPPINGS / f"{name}.yaml", document)
    assert mapping.accounts is not None
    assert mapping.teams is not None
    accounts = read_accounts(SAMPLES / "accounts.csv", mapping.accounts)
    teams = read_teams(SAMPLES / "teams.csv", mapping.teams, document)
    export = SAMPLES / ("salesforce-opportunities.csv" if name == "salesforce" else "hubspot-deals.csv")
    read = read_opportunities(read_rows(export), Reference(mapping, document, AS_OF, accounts, teams))
    return read, mapping


def test_the_salesforce_sample_imports_with_its_expected_problems(document: PlaybookDocument) -> None:
    read, _ = sample("salesforce", document)
    assert problems(read) == [
        (5, "Amount", "warning"),
        (7, "Loss_Reason__c", "warning"),
        (8, "Primary_Product__c", "warning"),
        (9, "Amount", "warning"),  # won without an amount
        (12, "CurrencyIsoCode", "warning"),
        (13, "Account.Name", "warning"),
        (14, "Owner.Name", "error"),
        (15, "StageName", "error"),
        (16, "Owner.Name", "warning"),  # an owner nobody knows
        (17, "CreatedDate", "error"),
    ]
    events = {mapped.line: mapped.event for mapped in read.mapped}
    assert len(events) == 17
    assert read.count("won") == 5
    assert read.count("lost") == 4
    nordwind = events[2]
    assert (nordwind.owner, nordwind.team, nordwind.manager, nordwind.region) == (
        "anna.schmidt",
        "emea",
        "claire.dubois",
        "DACH",
    )
    assert nordwind.company.country == "DE"
    assert nordwind.company.industry == "logistics"
    assert nordwind.amount is not None
    assert nordwind.amount.amount_minor == 4_800_000
    assert events[3].owner == "tom.baker"
    assert events[3].team == "emea"
    assert events[5].pipeline == "expansion"
    assert events[5].closed_at == datetime(2026, 4, 15, tzinfo=UTC)
    assert events[8].expected_close_date == date(2026, 7, 28)  # month first: no month 28
    assert [entry.stage for entry in events[6].stage_history] == ["qualification", "negotiation"]


def test_salesforce_s_opportunity_history_gives_every_stage_its_date(document: PlaybookDocument) -> None:
    mapping = load_mapping(MAPPINGS / "salesforce.yaml", document)
    history = read_stage_history(SAMPLES / "salesforce-opportunity-history.csv", mapping)
    assert [(p.line, p.column, p.severity) for p in history.problems] == [
        (15, "StageName", "warning"),  # 'Parked': no stage the mapping knows
        (17, "CreatedDate", "warning"),  # not a date
    ]
    assert mapping.accounts is not None
    assert mapping.teams is not None
    reference = Reference(
        mapping,
        document,
        AS_OF,
        read_accounts(SAMPLES / "accounts.csv", mapping.accounts),
        read_teams(SAMPLES / "teams.csv", mapping.teams, document),
        stage_history=history,
    )
    read = read_opportunities(read_rows(SAMPLES / "salesforce-opportunities.csv"), reference)
    events = {mapped.line: mapped.event for mapped in read.mapped}
    won = events[2]  # Prospecting, Needs Analysis, Proposal/Price Quote, Negotiation/Review, Closed Won
    assert [(entry.stage, entry.entered_at) for entry in won.stage_history] == [
        ("qualification", datetime(2026, 3, 2, 8, 15, tzinfo=UTC)),
        ("presentation", datetime(2026, 3, 9, 10, 0, tzinfo=UTC)),
        ("proposal", datetime(2026, 3, 23, 14, 30, tzinfo=UTC)),
        ("negotiation", datetime(2026, 4, 6, 9, 0, tzinfo=UTC)),
    ]
    assert won.closed_at == datetime(2026, 4, 20, 15, 30, tzinfo=UTC)
    open_deal = events[6]
    assert [entry.stage for entry in open_deal.stage_history] == [
        "qualification",
        "presentation",
        "proposal",
        "negotiation",
    ]
    # the deals the history file does not name keep what the export alone says
    without = {mapped.line: mapped.event for mapped in sample("salesforce", document)[0].mapped}
    assert set(without) == set(events)
    unnamed = [line for line, event in events.items() if event.source_id not in history.entered]
    assert len(unnamed) == 13
    assert all(events[line].stage_history == without[line].stage_history for line in unnamed)


def test_the_hubspot_sample_imports_with_its_expected_problems(document: PlaybookDocument) -> None:
    read, _ = sample("hubspot", document)
    assert problems(read) == [
        (5, "Amount", "warning"),
        (7, "Closed Lost Reason", "warning"),
        (8, "Primary Product", "warning"),
        (13, "Associated Company", "warning"),
        (14, "Deal owner", "error"),
        (15, "Deal Stage", "error"),
        (16, "Deal owner", "warning"),
        (17, "Create Date", "error"),
        (20, "Deal Stage", "error"),
    ]
    events = {mapped.line: mapped.event for mapped in read.mapped}
    won = events[2]
    assert [entry.stage for entry in won.stage_history] == [
        "qualification",
        "presentation",
        "proposal",
        "negotiation",
        "closing",
    ]
    # the portal writes Berlin time
    assert won.stage_history[0].entered_at == datetime(2026, 3, 2, 8, 15, tzinfo=UTC)
    assert won.closed_at == datetime(2026, 5, 4, 14, 30, tzinfo=UTC)
    assert events[6].created_at == datetime(2026, 10, 2, 12, tzinfo=UTC)  # 02/10/2026 14:00, day first
    assert events[18].pipeline == "renewal"
    assert events[18].stage_history[-1].stage == "negotiation"
    assert all(
        event.stage_history[-1].stage == event.stage
        for event in events.values()
        if event.stage not in ("won", "lost")
    )


def test_the_command_reports_every_row_and_exits_1_when_rows_were_left_out() -> None:
    result = CliRunner().invoke(
        app,
        [
            "import", "opportunities", str(SAMPLES / "salesforce-opportunities.csv"),
            "--mapping", str(MAPPINGS / "salesforce.yaml"),
            "--accounts", str(SAMPLES / "accounts.csv"), "--teams", str(SAMPLES / "teams.csv"),
            "--as-of", "2026-11-30T00:00:00Z", "--dry-run",
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.stdout == (
        "read 20 rows: would publish 17 deals (5 won, 4 lost, 8 open); 10 rows with problems: "
        "7 imported with warnings, 3 left out (above); dry run: nothing was sent\n"
    )
    stderr = result.stderr.splitlines()
    assert f"{SAMPLES / 'accounts.csv'}: warning: line 7: Employees: 'about 80' is not a number" in stderr[0]
    export = SAMPLES / "salesforce-opportunities.csv"
    assert f"{export}: error: line 14: Owner.Name: empty: a row needs its owner" in stderr
    assert len(stderr) == 12


def test_every_imported_event_is_a_valid_contract_event(document: PlaybookDocument) -> None:
    for name in ("salesforce", "hubspot"):
        read, _ = sample(name, document)
        for mapped in read.mapped:
            payload = mapped.event.model_dump(mode="json")
            assert OpportunityImported.model_validate(payload) == mapped.event
            assert mapped.event.partition_key == mapped.event.deal_id


def test_an_as_of_still_to_come_is_refused(tmp_path: Path) -> None:
    export = write_csv(tmp_path / "export.csv", HEADER, row())
    mapping = mapping_file(tmp_path, MINIMAL)
    arguments = ["import", "opportunities", str(export), "--mapping", str(mapping), "--dry-run"]
    result = CliRunner().invoke(app, [*arguments, "--as-of", "2999-01-01T00:00:00Z"])
    assert result.exit_code == 2
    message = " ".join(result.stderr.replace("│", " ").split())  # as rich's error box wraps it
    assert "Invalid value for --as-of: the history cannot be known up to a moment still to come" in message
    assert CliRunner().invoke(app, [*arguments, "--as-of", "2026-11-30"]).exit_code == 0
