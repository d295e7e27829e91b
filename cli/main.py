"""The `dealflow` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer

from cli import deadletters, demo, docs
from cli.erasure import erasure_summary
from cli.event_files import read_event_file
from cli.journey import journey as deal_journey
from cli.journey import line, merged_into
from cli.kafka_io import (
    SeenEvent,
    all_topics,
    follow,
    publish,
    read_all,
    records_for,
    wait_for,
)
from contracts import Topic
from contracts.asyncapi_html import asyncapi_page
from contracts.events import ErasureRequested
from contracts.topics import SERVICES
from services.insights.breakdowns import DIMENSIONS, PERIODS
from shared.settings import Settings

app = typer.Typer(help="Drive and inspect a dealflow pipeline.", no_args_is_help=True)


@app.command(name="publish")
def publish_file(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines of {type, id?, data}")
    ],
) -> None:
    """Publish leads or activities from a JSON Lines file, each validated against its contract.

    Every line that breaks its contract is named (line, field, reason) and left out; the good lines are
    published; the exit code is 1 if any line was left out.
    """
    read = read_event_file(path)
    for warning in read.unknown_fields:
        typer.echo(f"{path}: warning: {warning}", err=True)
    for problem in read.problems:
        typer.echo(f"{path}: {problem}", err=True)
    settings = Settings()
    count = asyncio.run(publish(settings, records_for(settings, read.events))) if read.events else 0
    left_out = len({problem.line for problem in read.problems})
    summary = f"published {count} event{'' if count == 1 else 's'}"
    if left_out:
        summary += f"; {left_out} line{'' if left_out == 1 else 's'} left out (above)"
    typer.echo(summary)
    if left_out:
        raise typer.Exit(1)


@app.command(name="follow")
def follow_events(
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="replay what is already there")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per event")] = False,
) -> None:
    """Print every event of the pipeline as it happens (Ctrl-C to stop)."""
    settings = Settings()

    async def run() -> None:
        async for event in follow(settings, all_topics(settings), from_beginning=from_beginning):
            if as_json:
                typer.echo(json.dumps({"key": event.key, "headers": event.headers, "data": event.data}))
            else:
                typer.echo(f"{event.key:<24}{line(event)}")

    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(run())
        except LookupError as error:
            fail(f"{error} on {settings.kafka_bootstrap_servers}: start the services first")


@app.command(name="journey")
def show_journey(deal_id: Annotated[str, typer.Argument(help="the deal's (or lead's) id")]) -> None:
    """Show one deal's journey across the stage services, from its events on every topic."""
    settings = Settings()
    everything = asyncio.run(read_all(settings, all_topics(settings)))
    events = deal_journey(everything, deal_id)
    if not events:
        typer.echo(f"no events for {deal_id}")
        raise typer.Exit(1)
    typer.echo(deal_id)
    for event in events:
        typer.echo(line(event))
    if (deal := merged_into(everything, deal_id)) is not None and deal != deal_id:
        typer.echo(f"merged into {deal}: its journey goes on there (dealflow journey {deal})")


deadletters_app = typer.Typer(help="Inspect and re-drive dead-lettered records.", no_args_is_help=True)
app.add_typer(deadletters_app, name="deadletters")


def fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


def known_services(services: list[str] | None) -> list[str] | None:
    for service in services or []:
        if service not in SERVICES:
            raise typer.BadParameter(f"unknown service {service!r}: use one of {', '.join(SERVICES)}")
    return services


def known_service(service: str | None) -> str | None:
    known_services(None if service is None else [service])
    return service


ServiceOption = Annotated[
    str | None, typer.Option(help="the service whose dead letter it is", callback=known_service)
]
PartitionOption = Annotated[
    int | None, typer.Option(min=0, help="its partition (needed only when the offset is in several)")
]
OffsetOption = Annotated[int | None, typer.Option(min=0, help="its offset, as `list` shows it")]


def chosen(
    positions: list[str] | None, service: str | None, partition: int | None, offset: int | None
) -> list[deadletters.Position]:
    """The dead letters named as service:partition:offset arguments, or with --service/--offset options."""
    if positions:
        if service is not None or partition is not None or offset is not None:
            raise deadletters.DeadLetterError(
                "name dead letters as service:partition:offset or with --service and --offset, not both"
            )
        return [deadletters.parse_position(text) for text in positions]
    if service is None or offset is None:
        raise deadletters.DeadLetterError(
            "say which dead letter: service:partition:offset (as `list` shows it), or --service and --offset"
        )
    return [deadletters.Position(service, partition, offset)]


@deadletters_app.command(name="list")
def list_dead_letters(
    service: Annotated[
        list[str] | None, typer.Option(help="only this service's dead letters", callback=known_services)
    ] = None,
) -> None:
    """List dead letters: position (service:partition:offset), reason, and where they came from."""
    settings = Settings()
    services = service or list(SERVICES)
    letters, missing = asyncio.run(deadletters.dead_letters(settings, services))
    for dead in letters:
        headers = dead.headers
        typer.echo(
            f"{deadletters.position(dead):<28} {headers.get('dlq_error_code', '?'):<26} "
            f"from {headers.get('dlq_source_topic')}[{headers.get('dlq_source_partition')}]"
            f"@{headers.get('dlq_source_offset')}  key={dead.key}  {headers.get('dlq_error', '')[:120]}"
        )
    for name in missing:
        typer.echo(deadletters.missing_topic(settings, name), err=True)
    if len(missing) == len(services) or (service and missing):
        raise typer.Exit(1)
    typer.echo(f"{len(letters)} dead letter(s)")


@deadletters_app.command(name="show")
def show_dead_letter(
    position: Annotated[
        str | None, typer.Argument(help="service:partition:offset, as `list` shows it")
    ] = None,
    service: ServiceOption = None,
    partition: PartitionOption = None,
    offset: OffsetOption = None,
    payload_only: Annotated[
        bool, typer.Option("--payload-only", help="only the payload, to edit and re-drive with --payload")
    ] = False,
) -> None:
    """Show one dead letter: its key, every header (the ce_* ones and the dlq_* reason) and its payload."""
    try:
        [where] = chosen(None if position is None else [position], service, partition, offset)
        dead = asyncio.run(deadletters.find(Settings(), where))
    except deadletters.DeadLetterError as error:
        fail(str(error))
    typer.echo(deadletters.payload_text(dead.value) if payload_only else deadletters.describe(dead))


@deadletters_app.command(name="redrive")
def redrive_dead_letters(
    positions: Annotated[
        list[str] | None, typer.Argument(help="service:partition:offset, as `list` shows them")
    ] = None,
    service: ServiceOption = None,
    partition: PartitionOption = None,
    offset: OffsetOption = None,
    payload: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="send this JSON as the payload instead (one record)"),
    ] = None,
    edit: Annotated[
        bool, typer.Option("--edit", help="edit the payload in $EDITOR first, then send it (one record)")
    ] = False,
    new_id: Annotated[
        bool, typer.Option("--new-id", help="give it a fresh ce_id (by default it keeps its own)")
    ] = False,
    event_type: Annotated[
        str | None,
        typer.Option("--type", help="the event type of an edited payload, when the record has no ce_type"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="with --payload or --edit: validate and show it, send nothing")
    ] = False,
) -> None:
    """Publish dead letters again to the topic they came from: unchanged (after a fix), or one with an
    edited payload, validated against its event's contract before anything is sent."""
    settings = Settings()
    try:
        wanted = chosen(positions, service, partition, offset)
        if payload is None and not edit:
            if event_type is not None or dry_run:
                raise deadletters.DeadLetterError("--type and --dry-run go with --payload or --edit")
            sent = asyncio.run(deadletters.redrive(settings, wanted, new_id=new_id))
            for where, record in zip(wanted, sent, strict=True):
                typer.echo(
                    f"re-drove {where} unchanged to {record.topic} (ce_id {record.headers.get('ce_id')})"
                )
            typer.echo(f"re-drove {len(sent)} record(s)")
            return
        if payload is not None and edit:
            raise deadletters.DeadLetterError("use either --payload or --edit")
        if len(wanted) != 1:
            raise deadletters.DeadLetterError("an edited payload re-drives one dead letter at a time")
        dead = asyncio.run(deadletters.find(settings, wanted[0]))
        text = payload.read_bytes() if payload is not None else edited_in_editor(dead)
        try:
            record = deadletters.edited_record(
                dead, text, max_bytes=settings.max_event_bytes, new_id=new_id, event_type=event_type
            )
        except deadletters.InvalidPayload:
            if edit:
                with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as kept:
                    kept.write(text)
                typer.echo(f"your edit is kept in {kept.name}: fix it and re-drive with --payload", err=True)
            raise
        if dry_run:
            typer.echo(deadletters.describe_record(record))
            typer.echo("dry run: nothing was sent")
            return
        asyncio.run(deadletters.send(settings, [record]))
    except deadletters.DeadLetterError as error:
        fail(str(error))
    kept_id = record.headers["ce_id"] == dead.headers.get("ce_id")
    typer.echo(
        f"re-drove {deadletters.position(dead)} with the edited payload to {record.topic}: "
        f"key {record.key.decode()}, ce_id {record.headers['ce_id']} ({'kept' if kept_id else 'new'})"
    )


def edited_in_editor(dead: SeenEvent) -> bytes:
    """The dead letter's payload as the operator saved it in $VISUAL or $EDITOR."""
    edited = click.edit(deadletters.payload_text(dead.value) + "\n", extension=".json", require_save=True)
    if edited is None:
        raise deadletters.DeadLetterError("the payload was not saved: nothing was sent")
    return edited.encode()


@app.command(name="erase")
def erase_person(
    email: Annotated[str, typer.Argument(help="the person's email address")],
    request_id: Annotated[str | None, typer.Option(help="your reference for the request")] = None,
    requested_by: Annotated[str | None, typer.Option(help="who filed it, for the audit trail")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for every service's confirmation")] = 60.0,
) -> None:
    """Ask every service to anonymise a person's data (right to erasure), and wait until each confirms."""
    settings = Settings()
    request = ErasureRequested(
        request_id=request_id or f"erasure-{uuid.uuid4().hex[:12]}", email=email, requested_by=requested_by
    )
    asyncio.run(publish(settings, records_for(settings, [(request, request.request_id)])))

    def confirmations(events: list[SeenEvent]) -> dict[str, int]:
        return {
            event.data["service"]: event.data["records_anonymised"]
            for event in events
            if event.type == "personal_data.erased.v1"
            and event.data is not None
            and event.data["request_id"] == request.request_id
        }

    events = asyncio.run(
        wait_for(
            settings,
            [settings.topic(Topic.PRIVACY)],
            lambda seen: set(confirmations(seen)) >= set(SERVICES),
            timeout=timeout,
        )
    )
    lines, complete = erasure_summary(request.request_id, confirmations(events), SERVICES, timeout=timeout)
    typer.echo("\n".join(lines))
    if not complete:
        raise typer.Exit(1)


@app.command(name="bench")
def run_bench(
    count: Annotated[int, typer.Option(help="events per stage run and for the baselines")] = 20_000,
    rate: Annotated[
        float, typer.Option(help="leads per second offered in the steady end-to-end run")
    ] = 200.0,
) -> None:
    """Measure each stage and the pipeline against plain Kafka and database baselines (bench/results.json)."""
    from cli import bench

    report = bench.main(count, rate)
    typer.echo(bench.table(report))
    problems = bench.counts_add_up(report)
    if problems:
        typer.echo("counts do not add up: " + "; ".join(problems), err=True)
        raise typer.Exit(1)


def known_dimension(by: str | None) -> str | None:
    if by is not None and by not in DIMENSIONS:
        raise typer.BadParameter(f"unknown dimension {by!r}: use one of {', '.join(DIMENSIONS)}")
    return by


def known_report_period(period: str) -> str:
    import re

    if period not in PERIODS and not re.fullmatch(r"all|\d{4}-(0[1-9]|1[0-2])", period):
        raise typer.BadParameter(
            f"unknown period {period!r}: use month or quarter (a breakdown), or all or YYYY-MM (bottlenecks)"
        )
    return period


def known_breakdown_period(period: str) -> str:
    if period not in PERIODS:
        raise typer.BadParameter(f"unknown period {period!r}: use one of {', '.join(PERIODS)}")
    return period


UrlOption = Annotated[str, typer.Option(help="the insights service")]
JsonOption = Annotated[bool, typer.Option("--json", help="the figures as the service answers them")]


def insights_answer(
    read: Callable[[str], dict[str, Any]], url: str, what: str = "the report"
) -> dict[str, Any]:
    """What `read` (given the API token) gets from the insights service; a clear error if it cannot."""
    import httpx

    from cli import report

    try:
        return read(report.api_token(Settings()))
    except report.NoToken as error:
        fail(str(error))
    except report.BadRequest as error:
        typer.echo(f"the insights service refused: {error}", err=True)
        raise typer.Exit(2) from error
    except httpx.HTTPError as error:
        fail(f"cannot read {what} from {url}: {error}")


@app.command(name="report")
def show_report(
    url: UrlOption = "http://127.0.0.1:8085",
    period: Annotated[
        str,
        typer.Option(
            help="month or quarter: the breakdown by the period of close; all or YYYY-MM: the bottlenecks "
            "of all time or of one month",
            callback=known_report_period,
        ),
    ] = "all",
    by: Annotated[
        str | None,
        typer.Option(
            help=f"break the closed figures and the open pipeline down by: {', '.join(DIMENSIONS)}",
            callback=known_dimension,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the report as /api/report answers it")] = False,
) -> None:
    """Print the funnel, forecast, bottlenecks and stalled deals from the insights service; with --by or
    --period month|quarter, the breakdown instead: win rate, won amount, cycle, and the open pipeline.

    It sends the API token of DEALFLOW_API_TOKEN or DEALFLOW_API_TOKEN_FILE, else the one `make run`
    generated (.local/api-token).
    """
    from rich.console import Console

    from cli import report

    figures = insights_answer(lambda token: report.fetch_report(url, token, period, by=by), url)
    if as_json:
        typer.echo(json.dumps(figures, indent=2, ensure_ascii=False))
        return
    if by is not None or period in PERIODS:
        report.print_tables(report.breakdown_tables(figures), Console())
        return
    try:
        report.print_report(figures, period, Console())
    except KeyError as error:
        typer.echo(error.args[0], err=True)
        raise typer.Exit(1) from error


@app.command(name="forecast")
def show_forecast(
    url: UrlOption = "http://127.0.0.1:8085",
    period: Annotated[
        str, typer.Option(help="the backtest's periods: month or quarter", callback=known_breakdown_period)
    ] = "month",
    as_json: JsonOption = False,
) -> None:
    """The stage probabilities fitted from the closed deals next to the playbook's, and the backtest:
    at each period end, what each forecast said against what those deals then won."""
    from rich.console import Console

    from cli import report

    figures = insights_answer(lambda token: report.fetch_report(url, token, period), url)
    learned = figures["learned_forecast"]
    if as_json:
        typer.echo(json.dumps(learned, indent=2, ensure_ascii=False))
        return
    report.print_tables([report.probability_table(learned), report.backtest_table(learned)], Console())


@app.command(name="next")
def show_next_steps(
    owner: Annotated[str, typer.Option(help="the rep, as the deals name their owner")],
    url: UrlOption = "http://127.0.0.1:8085",
    as_json: JsonOption = False,
) -> None:
    """A rep's open deals: next steps overdue, due today and upcoming, and the deals without one (the
    wall clock decides what is due)."""
    from rich.console import Console

    from cli import report

    view = insights_answer(lambda token: report.fetch_rep_view(url, token, owner), url, "the rep's view")
    if as_json:
        typer.echo(json.dumps(view, indent=2, ensure_ascii=False))
        return
    typer.echo(f"{view['owner']} (team {view['team']}): {view['open_deals']} open deals")
    report.print_tables(report.rep_tables(view), Console())


insights_app = typer.Typer(help="The insights read model.", no_args_is_help=True)
app.add_typer(insights_app, name="insights")


@insights_app.command(name="rebuild")
def rebuild_insights() -> None:
    """Rewind the insights consumer group to offset 0 and empty its read model: its next start replays
    every topic. Refuses while insights is running: stop it first."""
    from services.insights.rebuild import RebuildRefused, rebuild

    settings = Settings()
    try:
        partitions = asyncio.run(rebuild(settings))
    except RebuildRefused as refusal:
        fail(f"not rebuilt: {refusal}")
    typer.echo(
        f"consumer group {settings.consumer_group('insights')} rewound to offset 0 on {partitions} "
        f"partitions, then database {settings.database_name('insights')} dropped; start insights to replay"
    )


playbook_app = typer.Typer(help="The playbook: the company's sales process as data.", no_args_is_help=True)
app.add_typer(playbook_app, name="playbook")


@playbook_app.command(name="check")
def check_playbook(
    path: Annotated[Path, typer.Argument(dir_okay=False, help="a playbook document (YAML)")],
) -> None:
    """Validate a playbook document as the services will: every error with its path, exit 1 if any."""
    from cli.playbook import check
    from shared.playbook import load_document

    errors = check(path)
    for error in errors:
        typer.echo(error)
    if errors:
        typer.echo(f"{path}: {len(errors)} error{'s' if len(errors) != 1 else ''}", err=True)
        raise typer.Exit(1)
    document = load_document(path)
    pipelines = ", ".join(
        f"{name} ({' -> '.join(pipeline.stages)})" for name, pipeline in document.pipelines.items()
    )
    typer.echo(f"ok: {path}: {len(document.stages)} stages, pipelines {pipelines}")


@app.command(name="docs")
def show_docs(
    port: Annotated[int, typer.Option(help="port to serve the page on, on 127.0.0.1")] = 8090,
    output: Annotated[
        Path | None, typer.Option(dir_okay=False, help="write the page to this file instead of serving it")
    ] = None,
) -> None:
    """The AsyncAPI document of every topic and event as an HTML page: served, or written to a file."""
    if output is not None:
        output.write_text(asyncapi_page())
        typer.echo(f"wrote {output}")
        return
    with contextlib.suppress(KeyboardInterrupt):
        docs.serve(
            port, lambda address: typer.echo(f"serving {address} and {address}asyncapi.yaml (Ctrl-C to stop)")
        )


@app.command(name="demo")
def run_demo(
    timeout: Annotated[float, typer.Option(help="seconds to wait for every outcome")] = 120.0,
) -> None:
    """Import a year of generated CRM history (.local/history), then publish the sample leads and
    activities, wait for each outcome and print every deal's journey."""
    outcome = asyncio.run(demo.run_demo(Settings(), timeout=timeout, history_dir=demo.HISTORY_DIR))
    typer.echo(demo.report(outcome))
    if not outcome.all_reached:
        typer.echo("\nsome deals did not reach their expected outcome in time", err=True)
        raise typer.Exit(1)


# --- history brought from another CRM: `dealflow import opportunities`, `dealflow history generate` ----

import_app = typer.Typer(help="Bring history from another CRM.", no_args_is_help=True)
app.add_typer(import_app, name="import")


def moment_option(text: str | None) -> Any:
    """An ISO 8601 time; one without a zone is UTC."""
    from datetime import UTC, datetime

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time, e.g. 2026-06-30T00:00:00Z") from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@contextlib.contextmanager
def stderr_progress() -> Any:
    """A progress display on stderr while it is a terminal; None otherwise (logs, pipes, tests)."""
    import sys

    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        yield progress


def progress_step(progress: Any, description: str, total: int) -> Callable[[], None]:
    if progress is None:
        return lambda: None
    task = progress.add_task(description, total=total)
    return lambda: progress.advance(task)


async def publish_with_progress(settings: Settings, records: list[Any], advance: Callable[[], None]) -> int:
    """As kafka_io.publish, advancing the progress display as Kafka acknowledges each record."""
    from cli.kafka_io import make_producer, prepare_topics, send
    from shared.kafka import running

    await prepare_topics(settings, {record.topic for record in records})
    async with running(make_producer(settings)) as producer:
        for acknowledged in asyncio.as_completed(await send(producer, records)):
            await acknowledged
            advance()
    return len(records)


@import_app.command(name="opportunities")
def import_opportunities(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="the export: CSV, or JSON Lines (.jsonl)")
    ],
    mapping: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="how the export reads (see imports/mappings/)"),
    ],
    accounts: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="CSV: account -> industry, employees, country"),
    ] = None,
    teams: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="CSV: owner -> team, manager, region")
    ] = None,
    stage_history: Annotated[
        Path | None,
        typer.Option(
            "--stage-history",
            exists=True,
            dir_okay=False,
            help="CSV: a row per stage an opportunity entered (Salesforce OpportunityHistory)",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="the ISO time the history is known up to (default: now)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="read and report every row, publish nothing")
    ] = False,
) -> None:
    """Publish the opportunities of a CRM export (Salesforce, HubSpot, ...) with their history, read
    through a mapping file; each becomes a deal of the stage service that owns its stage.

    Every row names what it could not use (line, column, reason): imported without that value (a
    warning), or left out (an error). Importing the same file again publishes the same event ids. Exit
    code 1 if a row was left out, 2 if the mapping or a file cannot be used at all.
    """
    from pydantic import ValidationError

    from cli import opportunity_import as importing
    from shared.playbook import error_lines, load_document

    now = importing.default_as_of()
    known_up_to = moment_option(as_of) or now
    if known_up_to > now + importing.AS_OF_SKEW:
        raise typer.BadParameter(
            "the history cannot be known up to a moment still to come", param_hint="--as-of"
        )
    try:
        document = load_document()
        chosen = importing.load_mapping(mapping, document)
    except ValidationError as error:
        for text in error_lines(error):
            typer.echo(f"playbook: {text}", err=True)
        raise typer.Exit(2) from error
    except importing.MappingError as error:
        for text in error.lines:
            typer.echo(f"{mapping}: {text}", err=True)
        raise typer.Exit(2) from error
    try:
        reference = importing.reference_for(
            chosen, document, known_up_to, accounts=accounts, teams=teams, stage_history=stage_history
        )
        rows = importing.read_rows(file, chosen.delimiter)
    except importing.FileError as error:
        typer.echo(f"{mapping}: {error}" if str(error).startswith("the mapping") else str(error), err=True)
        raise typer.Exit(2) from error
    if missing := importing.required_columns_missing(chosen, rows.columns):
        typer.echo(
            f"{file}: no column {', '.join(missing)} in its header: is it the export {mapping} describes?",
            err=True,
        )
        raise typer.Exit(2)
    for path, side in (
        (accounts, reference.accounts),
        (teams, reference.teams),
        (stage_history, reference.stage_history),
    ):
        for problem in [] if side is None else side.problems:
            typer.echo(f"{path}: {problem.severity}: {problem}", err=True)
    with stderr_progress() as progress:
        read = importing.read_opportunities(
            rows, reference, on_row=progress_step(progress, "reading", len(rows.rows))
        )
        for note in read.notes:
            typer.echo(f"{file}: note: {note}", err=True)
        for problem in read.problems:
            typer.echo(f"{file}: {problem.severity}: {problem}", err=True)
        if read.mapped and not dry_run:
            settings = Settings()
            records = records_for(settings, importing.iter_events(read))
            if progress is None:
                asyncio.run(publish(settings, records))
            else:
                advance = progress_step(progress, "publishing", len(records))
                asyncio.run(publish_with_progress(settings, records, advance))
    typer.echo(read.summary(dry_run=dry_run))
    if read.left_out:
        raise typer.Exit(1)


history_app = typer.Typer(help="Generated CRM history, for demos and tests.", no_args_is_help=True)
app.add_typer(history_app, name="history")


@history_app.command(name="generate")
def generate_history_files(
    directory: Annotated[Path, typer.Argument(file_okay=False, help="where to write the export")],
    seed: Annotated[int, typer.Option(help="the same seed and --until write the same files")] = 7,
    months: Annotated[int, typer.Option(min=1, max=120, help="how far back the history goes")] = 12,
    deals: Annotated[int, typer.Option(min=1, max=100_000, help="how many deals")] = 600,
    until: Annotated[
        str | None,
        typer.Option(help="the history ends at the start of this day, YYYY-MM-DD (default: today)"),
    ] = None,
) -> None:
    """Write a generated HubSpot deals export for the playbook (with accounts, teams and its mapping),
    with the messiness of real exports in a few rows; `dealflow import opportunities` reads it."""
    from datetime import date

    from cli.history import generate_history

    try:
        last_day = date.fromisoformat(until) if until else None
    except ValueError as error:
        raise typer.BadParameter(f"{until!r} is not a date (YYYY-MM-DD)", param_hint="--until") from error
    generated = generate_history(directory, seed, last_day, months, deals)
    for path in (generated.opportunities, generated.accounts, generated.teams, generated.mapping):
        typer.echo(f"wrote {path}")
    typer.echo(
        f"{generated.deals} deals from {generated.first_day} until {generated.until} (exclusive), "
        f"{len(generated.injected)} rows spoilt on purpose ({generated.expected_problems}); import with\n"
        f"  dealflow import opportunities {generated.opportunities} --mapping {generated.mapping} "
        f"--accounts {generated.accounts} --teams {generated.teams}"
    )


if __name__ == "__main__":
    app()
