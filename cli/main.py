"""The `dealflow` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, NoReturn

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


@app.command(name="report")
def show_report(
    url: Annotated[str, typer.Option(help="the insights service")] = "http://127.0.0.1:8085",
    period: Annotated[str, typer.Option(help="bottlenecks of one month (YYYY-MM) or of all time")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="the report as /api/report answers it")] = False,
) -> None:
    """Print the funnel, forecast, bottlenecks and stalled deals from the insights service.

    It sends the API token of DEALFLOW_API_TOKEN or DEALFLOW_API_TOKEN_FILE, else the one `make run`
    generated (.local/api-token).
    """
    import httpx
    from rich.console import Console

    from cli import report

    try:
        figures = report.fetch_report(url, report.api_token(Settings()), period)
    except report.NoToken as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from error
    except httpx.HTTPError as error:
        typer.echo(f"cannot read the report from {url}: {error}", err=True)
        raise typer.Exit(1) from error
    if as_json:
        typer.echo(json.dumps(figures, indent=2, ensure_ascii=False))
        return
    try:
        report.print_report(figures, period, Console())
    except KeyError as error:
        typer.echo(error.args[0], err=True)
        raise typer.Exit(1) from error


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
    """Publish the sample leads and activities, wait for each outcome and print every deal's journey."""
    outcome = asyncio.run(demo.run_demo(Settings(), timeout=timeout))
    typer.echo(demo.report(outcome))
    if not outcome.all_reached:
        typer.echo("\nsome deals did not reach their expected outcome in time", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
