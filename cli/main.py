"""The `dealflow` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path
from typing import Annotated

import typer

from cli import deadletters, demo, docs
from cli.journey import journey as deal_journey
from cli.journey import line
from cli.kafka_io import (
    SeenEvent,
    all_topics,
    events_from_file,
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
    """Publish leads or activities from a JSON Lines file, each validated against its contract."""
    settings = Settings()
    count = asyncio.run(publish(settings, records_for(settings, events_from_file(path))))
    typer.echo(f"published {count} events")


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
        asyncio.run(run())


@app.command(name="journey")
def show_journey(deal_id: Annotated[str, typer.Argument(help="the deal's (or lead's) id")]) -> None:
    """Show one deal's journey across the stage services, from its events on every topic."""
    settings = Settings()
    events = deal_journey(asyncio.run(read_all(settings, all_topics(settings))), deal_id)
    if not events:
        typer.echo(f"no events for {deal_id}")
        raise typer.Exit(1)
    typer.echo(deal_id)
    for event in events:
        typer.echo(line(event))


deadletters_app = typer.Typer(help="Inspect and re-drive dead-lettered records.", no_args_is_help=True)
app.add_typer(deadletters_app, name="deadletters")


@deadletters_app.command(name="list")
def list_dead_letters(
    service: Annotated[list[str] | None, typer.Option(help="only this service's dead letters")] = None,
) -> None:
    """List dead letters: position (service:partition:offset), reason, and where they came from."""
    settings = Settings()
    letters = asyncio.run(deadletters.dead_letters(settings, service or SERVICES))
    for dead in letters:
        headers = dead.headers
        typer.echo(
            f"{deadletters.position(dead):<28} {headers.get('dlq_error_code', '?'):<26} "
            f"from {headers.get('dlq_source_topic')}[{headers.get('dlq_source_partition')}]"
            f"@{headers.get('dlq_source_offset')}  key={dead.key}  {headers.get('dlq_error', '')[:120]}"
        )
    typer.echo(f"{len(letters)} dead letter(s)")


@deadletters_app.command(name="redrive")
def redrive_dead_letters(
    positions: Annotated[list[str], typer.Argument(help="service:partition:offset, as `list` shows them")],
) -> None:
    """Publish chosen dead letters again, unchanged, to the topic they came from (after a fix)."""
    try:
        done = asyncio.run(deadletters.redrive(Settings(), positions))
    except KeyError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from error
    typer.echo(f"re-drove {len(done)} record(s): {', '.join(done)}")


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
    confirmed = confirmations(events)
    for service in SERVICES:
        answer = f"{confirmed[service]} record(s) anonymised" if service in confirmed else "no answer yet"
        typer.echo(f"{service:<15} {answer}")
    if not set(confirmed) >= set(SERVICES):
        raise typer.Exit(1)
    typer.echo(f"{request.request_id}: erased everywhere")


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
) -> None:
    """Print the funnel, forecast, bottlenecks and stalled deals from the insights service."""
    import httpx
    from rich.console import Console

    from cli import report

    try:
        figures = report.fetch_report(url)
    except httpx.HTTPError as error:
        typer.echo(f"cannot read the report from {url}: {error}", err=True)
        raise typer.Exit(1) from error
    try:
        report.print_report(figures, period, Console())
    except KeyError as error:
        typer.echo(error.args[0], err=True)
        raise typer.Exit(1) from error


insights_app = typer.Typer(help="The insights read model.", no_args_is_help=True)
app.add_typer(insights_app, name="insights")


@insights_app.command(name="rebuild")
def rebuild_insights() -> None:
    """Empty the insights read model and rewind its consumer group: its next start replays every topic.

    Stop the insights service first.
    """
    from services.insights.rebuild import rebuild

    partitions = asyncio.run(rebuild(Settings()))
    typer.echo(
        f"insights database dropped, {partitions} partitions rewound to offset 0; start insights to replay"
    )


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
