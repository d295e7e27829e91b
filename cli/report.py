"""`dealflow report`: the insights service's funnel, forecast and bottlenecks as terminal tables.

It reads `GET /api/report?period=...` (shape documented in services/insights/api.py), with the API token
as a bearer token, and only formats it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from contracts.currencies import exponent, to_units
from shared.settings import Settings

CATEGORIES = ("pipeline", "best_case", "commit", "closed")
# Where `make run` (deploy/local/services.sh) keeps the token it generated for the local stack.
LOCAL_STATE = Path(__file__).resolve().parent.parent / ".local"
LOCAL_TOKEN_FILE = "api-token"


class NoToken(Exception):
    """No API token to send: the message says where one comes from."""


def api_token(settings: Settings) -> str:
    """DEALFLOW_API_TOKEN or DEALFLOW_API_TOKEN_FILE; else the token `make run` wrote for the local stack."""
    token = settings.api_token_value()
    if token is not None:
        return token
    local = Path(os.environ.get("DEALFLOW_STATE_DIR", LOCAL_STATE)) / LOCAL_TOKEN_FILE
    if local.is_file() and (token := local.read_text().strip()):
        return token
    raise NoToken(
        f"no API token: set DEALFLOW_API_TOKEN or DEALFLOW_API_TOKEN_FILE (`make run` writes one to {local})"
    )


def fetch_report(url: str, token: str, period: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """The report, with only `period`'s bottlenecks when one is given."""
    response = httpx.get(
        f"{url.rstrip('/')}/api/report",
        params={} if period is None else {"period": period},
        headers={"authorization": f"Bearer {token}"},
        timeout=timeout,
    )
    response.raise_for_status()
    report: dict[str, Any] = response.json()
    return report


def money(minor: int | None, currency: str) -> str:
    """An amount in the currency's minor units, written with its decimals (JPY none, EUR two)."""
    if minor is None:
        return "-"
    places = exponent(currency)
    return f"{to_units(minor, currency):,.{places}f}"


def percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def days(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def funnel_table(report: dict[str, Any]) -> Table:
    table = Table(title="Funnel")
    for column in ("stage", "reached", "now in stage", "to next stage"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for step in report["funnel"]:
        table.add_row(
            step["stage"],
            str(step["reached"]),
            str(step["now_in_stage"]),
            percent(step["conversion_to_next"]),
        )
    return table


def forecast_table(report: dict[str, Any], group: str, title: str) -> Table:
    forecast = report["forecast"]
    currency = forecast["reporting_currency"]
    table = Table(title=f"{title} ({currency})")
    table.add_column(group.removeprefix("by_"))
    for column in ("deals", "amount", "weighted", *CATEGORIES):
        table.add_column(column.replace("_", " "), justify="right")
    for row in [*forecast[group], forecast["total"]]:
        table.add_row(
            row["key"],
            str(row["deals"]),
            money(row["amount_minor"], currency),
            money(row["weighted_minor"], currency),
            *(money(row["by_category"].get(category), currency) for category in CATEGORIES),
        )
    return table


def currency_table(report: dict[str, Any]) -> Table:
    forecast = report["forecast"]
    table = Table(title="Forecast in each deal's currency")
    table.add_column("currency")
    table.add_column("amount", justify="right")
    table.add_column("weighted", justify="right")
    for currency, amounts in forecast["total"]["by_currency"].items():
        converted = "" if currency not in forecast["unconverted_currencies"] else " (no rate)"
        table.add_row(
            currency + converted,
            money(amounts["amount_minor"], currency),
            money(amounts["weighted_minor"], currency),
        )
    return table


def bottleneck_tables(report: dict[str, Any], period: str) -> list[Table]:
    chosen = next((entry for entry in report["bottlenecks"] if entry["period"] == period), None)
    if chosen is None:
        known = ", ".join(report.get("periods") or [entry["period"] for entry in report["bottlenecks"]])
        raise KeyError(f"no figures for period {period!r}; there are: {known}")
    conversion = Table(title=f"Conversion ({period})")
    for column in ("from", "to", "entered", "converted", "rate"):
        conversion.add_column(
            column, justify="right" if column in ("entered", "converted", "rate") else "left"
        )
    for step in chosen["conversion"]:
        conversion.add_row(
            step["from_stage"],
            step["to_stage"],
            str(step["entered"]),
            str(step["converted"]),
            percent(step["rate"]),
        )
    time_in_stage = Table(title=f"Time in stage, days ({period})")
    for column in ("stage", "stays", "median", "p90"):
        time_in_stage.add_column(column, justify="left" if column == "stage" else "right")
    for stage in chosen["time_in_stage"]:
        time_in_stage.add_row(
            stage["stage"], str(stage["stays"]), days(stage["median_days"]), days(stage["p90_days"])
        )
    velocity = chosen["velocity"]
    pace = Table(title=f"Pipeline velocity ({period}, {report['reporting_currency']})")
    for column in ("open deals", "won", "lost", "win rate", "average won", "cycle days", "per day"):
        pace.add_column(column, justify="right")
    pace.add_row(
        str(velocity["open_deals"]),
        str(velocity["won"]),
        str(velocity["lost"]),
        percent(velocity["win_rate"]),
        money(velocity["average_won_minor"], report["reporting_currency"]),
        days(velocity["average_cycle_days"]),
        money(velocity["per_day_minor"], report["reporting_currency"]),
    )
    reasons = Table(title=f"Top reasons ({period})")
    for column in ("lost because", "deals", "disqualified because", "deals"):
        reasons.add_column(column, justify="right" if column == "deals" else "left")
    lost, disqualified = chosen["loss_reasons"], chosen["disqualification_reasons"]
    for index in range(max(len(lost), len(disqualified))):
        left = lost[index] if index < len(lost) else None
        right = disqualified[index] if index < len(disqualified) else None
        reasons.add_row(
            left["reason"] if left else "",
            str(left["deals"]) if left else "",
            right["reason"] if right else "",
            str(right["deals"]) if right else "",
        )
    return [conversion, time_in_stage, pace, reasons]


def stalled_table(report: dict[str, Any]) -> Table:
    table = Table(title="Stalled deals")
    for column in ("deal", "owner", "stage", "days without progress", "next step"):
        table.add_column(column, justify="right" if column.startswith("days") else "left")
    for card in report["stalled"]:
        step = card["next_step"]
        table.add_row(
            card["deal_id"],
            card["owner"] or "-",
            card["stage"],
            days(card["days_without_progress"]),
            "-" if step is None else f"{step['action']} (due {step['due_at'][:10]})",
        )
    return table


def print_report(report: dict[str, Any], period: str, console: Console) -> None:
    tables = [
        funnel_table(report),
        forecast_table(report, "by_month", "Forecast by close month"),
        forecast_table(report, "by_owner", "Forecast by owner"),
        forecast_table(report, "by_team", "Forecast by team"),
        currency_table(report),
        *bottleneck_tables(report, period),
        stalled_table(report),
    ]
    # As wide as the widest table needs, whatever the terminal (or a pipe's 80 columns): figures and
    # names are never cut. Rich never prints wider than its console, so the console is widened.
    wide = console.options.update(width=10_000)
    needed = max(Measurement.get(console, wide, table).maximum for table in tables)
    terminal = console.width
    console.width = max(needed, terminal)
    try:
        for table in tables:
            console.print(table, crop=False)
    finally:
        console.width = terminal
