"""The insights HTTP API, served by the insights process: the report, one deal's timeline, the page.

Every path here shows deal data (companies, owners, amounts, competitors), so all of them are behind
`shared.http_access`: the Host must be in `DEALFLOW_ALLOWED_HOSTS` and the request must carry the API
token (`Authorization: Bearer <token>`, or the page's session cookie, which `/?token=<token>` sets once).

The report is computed off the event loop the service's consumer runs on: the timelines are read from
the insights database as raw BSON (no decoding on the loop), then decoded, reported and encoded to
JSON in a worker thread. One report is computed at a time, and each answer is kept for
`DEALFLOW_REPORT_CACHE_SECONDS` (5 s) after it was computed: any number of pages polling cost one
computation every few seconds, and an answer is at most that much older than the events applied.

`GET /` is the pipeline page (page.html beside this module: no external assets; it polls
`/api/report?period=all`, the only bottlenecks it draws).

`GET /api/report` answers (amounts are integers in minor units; times are RFC 3339; days are floats)::

    {
      "generated_at": "2026-11-10T12:00:00Z",
      "reporting_currency": "EUR",
      "deals": 8,                                   # timelines in the read model
      "board": {                                    # every column, in this order, even when empty:
        "qualification": [CARD, ...], "nurture": [], "presentation": [], "proposal": [],   # the
        "negotiation": [], "closing": [], "won": [], "onboarding": [], "live": [], "lost": [],  # playbook's
        "disqualified": []                          # stages (default playbook shown), then the rest
      },
      "stage_labels": {"qualification": "Qualification", "presentation": "Presentation", ...},
      "funnel": [                                   # the playbook's stages in order, then won
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
      "periods": ["all", "2026-11", "2026-10"],     # the periods there are bottlenecks for
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
            "stalled": true, "days_without_progress": 26.12,
            "next_step_overdue": false,              # raised by deal.next_step_overdue, or due by now
            "next_step_missing": false,              # deal.next_step_missing, and none set since
            "cycle": 1}                              # 2 and on: reopened after a loss
    ROW = {"key": "anna.schmidt", "deals": 2, "amount_minor": 155100, "weighted_minor": 100080,
           "by_category": {"best_case": 72000, "commit": 28080},          # reporting currency
           "by_currency": {"EUR": {"amount_minor": 120000, "weighted_minor": 72000}, ...}}

`?period=all` or `?period=2026-11` keeps only that period's bottlenecks (none when the deals have no
figures for that month: `periods` lists those there are); without it, every period's. Any other value
is answered 400. Rates, ratios and days are rounded (4 and 2 decimals); a figure with nothing to compute
from is null.

`GET /api/timeline?deal_id=deal-a` answers one deal's timeline, 404 if there is none::

    {"deal_id": "deal-a", "stage": "negotiation", "card": CARD,
     "stays": [{"stage": "qualification", "entered_at": "...", "left_at": "..." | null}, ...],
     "entries": [{"at": "...", "event": "deal.stage_changed", "detail": "proposal -> negotiation"}, ...]}
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.database import AsyncDatabase
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from services.insights import domain
from services.insights.config import InsightsPlaybook, load_playbook
from shared.http_access import ApiAccess, protected
from shared.mongo import Document
from shared.settings import Settings

PAGE_PATH = "/"
REPORT_PATH = "/api/report"
TIMELINE_PATH = "/api/timeline"
PAGE = Path(__file__).with_name("page.html")
PERIOD = re.compile(rf"^(?:{domain.ALL_TIME}|\d{{4}}-(?:0[1-9]|1[0-2]))$")
REPORTS_KEPT = 4  # periods whose answers are kept at once: the page's, and a few asked by the CLI


# Every timeline field but its event log: the report reads none of it, and it is most of the bytes.
REPORTED_FIELDS = {f"state.{name}": 1 for name in domain.Timeline.model_fields if name != "entries"}
RAW = CodecOptions(document_class=RawBSONDocument)


async def load_raw_timelines(database: AsyncDatabase[Document]) -> list[RawBSONDocument]:
    """The timelines as the database sent them: reading them costs the event loop no decoding."""
    cursor = (
        database["aggregates"].with_options(codec_options=RAW).find({"state": {"$ne": None}}, REPORTED_FIELDS)
    )
    return [document async for document in cursor]


def timelines_of(documents: list[RawBSONDocument]) -> list[domain.Timeline]:
    return [domain.Timeline.model_validate(bson.decode(document.raw)["state"]) for document in documents]


def render_report(
    documents: list[RawBSONDocument], now: datetime, rules: InsightsPlaybook, period: str | None
) -> bytes:
    """The report as JSON bytes: CPU work for a worker thread, not the event loop."""
    report = domain.report(timelines_of(documents), now, rules, period=period)
    return report.__pydantic_serializer__.to_json(report)


class ReportCache:
    """Answers by period, each computed by `compute` at most once per `max_age_seconds`, one at a time.

    An answer is kept for `max_age_seconds` after its computation ended; a request for a stale or
    missing one waits for the single computation under way (or starts it). Only the `kept` most recently
    used periods are kept.
    """

    def __init__(
        self,
        compute: Callable[[str | None], Awaitable[bytes]],
        max_age_seconds: float,
        kept: int = REPORTS_KEPT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._max_age = max_age_seconds
        self._kept = kept
        self._monotonic = monotonic
        self._answers: OrderedDict[str | None, tuple[float, bytes]] = OrderedDict()
        self._computing = asyncio.Lock()
        self.computations = 0

    def _fresh(self, period: str | None) -> bytes | None:
        answer = self._answers.get(period)
        if answer is None or self._monotonic() - answer[0] >= self._max_age:
            return None
        self._answers.move_to_end(period)
        return answer[1]

    async def get(self, period: str | None) -> bytes:
        if (body := self._fresh(period)) is not None:
            return body
        async with self._computing:
            if (body := self._fresh(period)) is not None:  # computed while this request waited
                return body
            body = await self._compute(period)
            self.computations += 1
            self._answers[period] = (self._monotonic(), body)
            self._answers.move_to_end(period)
            while len(self._answers) > self._kept:
                self._answers.popitem(last=False)
            return body


def json_response(content: object, status_code: int = 200) -> Response:
    # pydantic has already turned every value into JSON types; Starlette only encodes.
    return JSONResponse(content, status_code=status_code, headers={"cache-control": "no-store"})


def page_security_policy(html: str) -> str:
    """A Content-Security-Policy that lets only the page's own inline script run, and only ask its origin."""
    [script] = re.findall(r"<script>(.*?)</script>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def app(
    database: AsyncDatabase[Document],
    playbook: InsightsPlaybook | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    settings: Settings | None = None,
) -> ASGIApp:
    """The page and the API, behind the token and the Host check that `settings` configure."""
    settings = settings or Settings()
    rules = playbook or load_playbook()

    async def compute(period: str | None) -> bytes:
        documents = await load_raw_timelines(database)
        return await asyncio.to_thread(render_report, documents, clock(), rules, period)

    reports = ReportCache(compute, settings.report_cache_seconds)

    async def report(request: Request) -> Response:
        period = request.query_params.get("period")
        if period is not None and not PERIOD.match(period):
            return json_response(
                {"error": "bad_period", "detail": f"period is {domain.ALL_TIME!r} or a month, YYYY-MM"}, 400
            )
        body = await reports.get(period)
        return Response(body, media_type="application/json", headers={"cache-control": "no-store"})

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
    page_headers = {"cache-control": "no-store", "content-security-policy": page_security_policy(page_html)}

    async def page(request: Request) -> Response:
        return HTMLResponse(page_html, headers=page_headers)

    served = Starlette(
        routes=[
            Route(PAGE_PATH, page, methods=["GET"]),
            Route(REPORT_PATH, report, methods=["GET"]),
            Route(TIMELINE_PATH, timeline, methods=["GET"]),
        ]
    )
    return protected(served, ApiAccess.from_settings(settings), pages={PAGE_PATH})


def routes(
    database: AsyncDatabase[Document],
    settings: Settings,
    playbook: InsightsPlaybook | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[tuple[str, ASGIApp]]:
    """The insights pages for the stage runtime's `http_routes` hook: one app under each of its paths."""
    served = app(database, playbook, clock, settings)
    return [(PAGE_PATH, served), (REPORT_PATH, served), (TIMELINE_PATH, served)]
