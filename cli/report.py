"""`dealflow report`: the insights service's funnel, forecast and bottlenecks as terminal tables.

It reads `GET /api/report?period=...` (shape documented in services/insights/api.py), with the API token
as a bearer token, and only formats it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

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


BREAKDOWN_PERIODS = ("month", "quarter")


class BadRequest(Exception):
    """The service refused the question (HTTP 400): the message is its explanation."""


def _get(url: str, path: str, token: str, params: dict[str, str], timeout: float) -> dict[str, Any]:
    response = httpx.get(
        f"{url.rstrip('/')}{path}",
        params=params,
        headers={"authorization": f"Bearer {token}"},
        timeout=timeout,
    )
    if response.status_code == httpx.codes.BAD_REQUEST:
        raise BadRequest(response.json().get("detail", response.text))
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def fetch_report(
    url: str, token: str, period: str | None = None, timeout: float = 30.0, by: str | None = None
) -> dict[str, Any]:
    """The report, with only `period`'s bottlenecks when one is given (all or YYYY-MM), or its breakdown
    by `by` and by `period` (month or quarter)."""
    params = {name: value for name, value in (("period", period), ("by", by)) if value is not None}
    return _get(url, "/api/report", token, params, timeout)


def fetch_rep_view(url: str, token: str, owner: str, timeout: float = 30.0) -> dict[str, Any]:
    """The rep's open deals by what their next step asks today (GET /api/reps/<owner>)."""
    return _get(url, f"/api/reps/{quote(owner, safe='')}", token, {}, timeout)


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
    print_tables(tables, console)


# --- breakdowns, the forecast that learns, a rep's next steps ----------------------------------------


def breakdown_tables(report: dict[str, Any]) -> list[Table]:
    figures = report["breakdown"]
    currency = figures["reporting_currency"]
    group = figures["by"] or "all deals"
    closed = Table(
        title=f"Closed deals by {group}" + (f" and {figures['period']} of close" if figures["period"] else "")
    )
    columns = (
        group,
        "period",
        "won",
        "lost",
        "win rate",
        f"won ({currency})",
        "cycle median",
        "cycle p90",
        "from engaged median",
        "from engaged p90",
    )
    for index, column in enumerate(columns):
        closed.add_column(column, justify="left" if index < 2 else "right")
    for row in figures["closed"]:
        created, engaged = row["cycle_from_creation"], row["cycle_from_engagement"]
        closed.add_row(
            row["group"],
            row["period"],
            str(row["won"]),
            str(row["lost"]),
            percent(row["win_rate"]),
            money(row["won_amount_minor"], currency),
            days(created["median_days"]),
            days(created["p90_days"]),
            days(engaged["median_days"]),
            days(engaged["p90_days"]),
        )
    opened = Table(title=f"Open pipeline by {group} ({currency})")
    for index, column in enumerate((group, "stage", "deals", "amount")):
        opened.add_column(column, justify="left" if index < 2 else "right")
    for entry in figures["open_pipeline"]:
        for stage in entry["stages"]:
            opened.add_row(
                entry["group"], stage["stage"], str(stage["deals"]), money(stage["amount_minor"], currency)
            )
        opened.add_row(entry["group"], "total", str(entry["deals"]), money(entry["amount_minor"], currency))
    return [closed, opened]


def probability_table(learned: dict[str, Any]) -> Table:
    table = Table(
        title="Stage probabilities: the playbook's, and fitted from closed deals "
        f"(fitted used from {learned['min_sample']} closed deals on)"
    )
    for index, column in enumerate(("pipeline", "stage", "playbook", "fitted", "won", "closed", "used")):
        table.add_column(column, justify="left" if index < 2 or column == "used" else "right")
    for row in learned["probabilities"]:
        table.add_row(
            row["pipeline"],
            row["stage"],
            percent(row["static"]),
            percent(row["fitted"]),
            str(row["won"]),
            str(row["closed"]),
            row["used"],
        )
    return table


def backtest_table(learned: dict[str, Any]) -> Table:
    currency = learned["reporting_currency"]
    summary = learned["summary"]
    table = Table(
        title=f"Backtest: the forecast at each {learned['period']} end vs what its deals won within "
        f"{learned['horizon_days']} days ({currency})",
        caption=(
            f"mean absolute percentage error over {summary['scored']} of {summary['periods']} periods: "
            f"playbook {percent(summary['static_mape'])}, fitted {percent(summary['fitted_mape'])}; "
            "static: stages whose fitted probability had too few closed deals yet (--json lists them)"
        ),
    )
    columns = ("period", "open", "playbook", "fitted", "won", "playbook error", "fitted error", "static")
    for column in columns:
        table.add_column(column, justify="left" if column == "period" else "right")
    for row in learned["snapshots"]:
        table.add_row(
            row["period"],
            str(row["open_deals"]),
            money(row["static_minor"], currency),
            money(row["fitted_minor"], currency),
            money(row["actual_minor"], currency),
            percent(row["static_ape"]),
            percent(row["fitted_ape"]),
            str(len(row["static_fallbacks"])) if row["static_fallbacks"] else "-",
        )
    return table


REP_SECTIONS = (
    ("overdue", "Overdue"),
    ("due_today", "Due today"),
    ("upcoming", "Upcoming"),
    ("without_next_step", "No next step"),
)


def rep_tables(view: dict[str, Any]) -> list[Table]:
    tables = []
    for field, title in REP_SECTIONS:
        table = Table(title=f"{title} ({len(view[field])})")
        for column in ("deal", "company", "stage", "next step", "due", "days in stage"):
            table.add_column(column, justify="right" if column == "days in stage" else "left")
        for card in view[field]:
            step = card["next_step"]
            table.add_row(
                card["deal_id"],
                card["company"] or "-",
                card["stage"],
                "-" if step is None else step["action"],
                "-" if step is None else step["due_at"][:16].replace("T", " "),
                days(card["days_in_stage"]),
            )
        tables.append(table)
    return tables


def print_tables(tables: list[Table], console: Console) -> None:
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
