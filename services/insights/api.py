"""The insights HTTP API, served by the insights process: reports computed at request time.

Each request loads the timelines from the insights database and calls the pure report functions of
`services.insights.domain`; nothing is cached, so an answer includes every event applied so far.

`GET /` is the pipeline page (page.html beside this module: no external assets; it polls the report).

`GET /api/report` answers (amounts are integers in minor units; times are RFC 3339; days are floats)::

    {
      "generated_at": "2026-11-10T12:00:00Z",
      "reporting_currency": "EUR",
      "deals": 8,                                   # timelines in the read model
      "board": {                                    # every column, in this order, even when empty
        "qualification": [CARD, ...], "nurture": [], "presentation": [], "proposal": [],
        "negotiation": [], "closing": [], "won": [], "onboarding": [], "live": [], "lost": [],
        "disqualified": []
      },
      "funnel": [                                   # qualification, presentation, ..., closing, won
        {"stage": "qualification", "reached": 8, "now_in_stage": 1, "conversion_to_next": 0.75}, ...
      ],
      "forecast": {
        "reporting_currency": "EUR",
        "total": ROW,                               # key "total"
        "by_category": [ROW, ...],                  # keys pipeline, best_case, commit, closed
        "by_owner": [ROW, ...], "by_team": [ROW, ...],
        "by_month": [ROW, ...],                     # keys YYYY-MM (expected close; month won) or unscheduled
        "unconverted_currencies": ["CHF"]           # no rate: left out of converted figures
      },
      "bottlenecks": [                              # "all" first, then each month, newest first
        {
          "period": "all",                          # or "2026-11"
          "conversion": [{"from_stage": "qualification", "to_stage": "presentation",
                          "entered": 7, "converted": 5, "rate": 0.7143}, ...],
          "time_in_stage": [{"stage": "qualification", "stays": 7, "median_days": 4.0,
                             "p90_days": 10.0}, ...],   # stays that ended in the period
          "velocity": {"open_deals": 4, "won": 1, "lost": 2, "win_rate": 0.3333,
                       "average_won_minor": 230000, "average_cycle_days": 20.0,
                       "per_day_minor": 15333},     # open x win rate x average won / cycle days
          "loss_reasons": [{"reason": "price", "deals": 1}, ...],
          "disqualification_reasons": [{"reason": "bant_budget_not_met", "deals": 1}, ...]
        }, ...
      ],
      "stalled": [CARD, ...]                        # longest without progress first
    }

    CARD = {"deal_id": "deal-a", "company": "Acme", "owner": "anna.schmidt", "team": "emea",
            "stage": "negotiation", "amount_minor": 120000, "currency": "EUR",
            "in_stage_since": "...", "days_in_stage": 26.12,
            "next_step": {"action": "touch_2", "due_at": "..."} | null,
            "stalled": true, "days_without_progress": 26.12}
    ROW = {"key": "anna.schmidt", "deals": 2, "amount_minor": 155100, "weighted_minor": 100080,
           "by_category": {"best_case": 72000, "commit": 28080},          # reporting currency
           "by_currency": {"EUR": {"amount_minor": 120000, "weighted_minor": 72000}, ...}}

Rates, ratios and days are rounded (4 and 2 decimals); a figure with nothing to compute from is null.

`GET /api/timeline?deal_id=deal-a` answers one deal's timeline, 404 if there is none::

    {"deal_id": "deal-a", "stage": "negotiation", "card": CARD,
     "stays": [{"stage": "qualification", "entered_at": "...", "left_at": "..." | null}, ...],
     "entries": [{"at": "...", "event": "deal.stage_changed", "detail": "proposal -> negotiation"}, ...]}
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pymongo.asynchronous.database import AsyncDatabase
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from services.insights import domain
from services.insights.config import InsightsPlaybook, load_playbook
from shared.mongo import Document

PAGE_PATH = "/"
REPORT_PATH = "/api/report"
TIMELINE_PATH = "/api/timeline"
PAGE = Path(__file__).with_name("page.html")


# Every timeline field but its event log: the report reads none of it, and it is most of the bytes.
REPORTED_FIELDS = {f"state.{name}": 1 for name in domain.Timeline.model_fields if name != "entries"}


async def load_timelines(database: AsyncDatabase[Document]) -> list[domain.Timeline]:
    cursor = database["aggregates"].find({"state": {"$ne": None}}, REPORTED_FIELDS)
    return [domain.Timeline.model_validate(document["state"]) async for document in cursor]


def json_response(content: object, status_code: int = 200) -> Response:
    # pydantic has already turned every value into JSON types; Starlette only encodes.
    return JSONResponse(content, status_code=status_code, headers={"cache-control": "no-store"})


def app(
    database: AsyncDatabase[Document],
    playbook: InsightsPlaybook | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Starlette:
    rules = playbook or load_playbook()

    async def report(request: Request) -> Response:
        timelines = await load_timelines(database)
        return json_response(domain.report(timelines, clock(), rules).model_dump(mode="json"))

    async def timeline(request: Request) -> Response:
        deal_id = request.query_params.get("deal_id", "")
        document = await database["aggregates"].find_one({"_id": deal_id}, {"state": 1})
        if document is None or document.get("state") is None:
            return json_response({"error": f"no timeline for deal {deal_id!r}"}, status_code=404)
        found = domain.Timeline.model_validate(document["state"])
        card = domain.card(found, clock(), rules)
        return json_response(
            {
                "deal_id": found.deal_id,
                "stage": domain.current_stage(found),
                "card": None if card is None else card.model_dump(mode="json"),
                "stays": [stay.model_dump(mode="json") for stay in domain.stays(found)],
                "entries": [entry.model_dump(mode="json") for entry in found.entries],
            }
        )

    page_html = PAGE.read_text()

    async def page(request: Request) -> Response:
        return HTMLResponse(page_html, headers={"cache-control": "no-store"})

    return Starlette(
        routes=[
            Route(PAGE_PATH, page, methods=["GET"]),
            Route(REPORT_PATH, report, methods=["GET"]),
            Route(TIMELINE_PATH, timeline, methods=["GET"]),
        ]
    )


def routes(
    database: AsyncDatabase[Document],
    playbook: InsightsPlaybook | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[tuple[str, ASGIApp]]:
    """The insights pages for the stage runtime's `http_routes` hook: one app under each of its paths."""
    served = app(database, playbook, clock)
    return [(PAGE_PATH, served), (REPORT_PATH, served), (TIMELINE_PATH, served)]
