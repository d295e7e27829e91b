"""The `dealflow` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer

from cli import demo
from cli.journey import journey as deal_journey
from cli.journey import line
from cli.kafka_io import all_topics, events_from_file, follow, publish, read_all, records_for
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
