"""The insights HTTP API, served by the insights process: the report, one deal's timeline, the page.

Every path here shows deal data (companies, owners, amounts, competitors), so all of them are behind
`shared.http_access`: the Host must be in `DEALFLOW_ALLOWED_HOSTS` and the request must carry the API
token (`Authorization: Bearer <token>`, or the page's session cookie, which `/?token=<token>` sets once).

The report is computed off the event loop the service's consumer runs on: the timelines are read from
the insights database as raw BSON (no decoding on the loop), then decoded, reported and encoded to
JSON in a worker thread. One report is computed at a time, and each answer is kept for
`DEALFLOW_REPORT_CACHE_SECONDS` (5 s) after it was computed: any number of pages polling cost one
computation every few seconds. The read of the timelines is shared for as long (`TimelineSnapshot`):
the page's four requests of one refresh, the breakdowns and the rep views read the collection once, so
their figures agree, and an answer is at most twice that much older than the events applied.

`GET /` is the pipeline page (page.html beside this module: no external assets; it polls
`/api/report?period=all`, the only bottlenecks it draws, and `/api/breakdown?by=owner`, `?by=team` and
`?period=month` for its breakdowns). `GET /reps/<owner>` is a rep's page of next steps (plain HTML, no
script); both take `?token=` to sign a browser in.

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
      "stalled": [CARD, ...],                       # longest without progress first
      "breakdown": BREAKDOWN,                       # by ?by= and ?period= (month, quarter); see below
      "learned_forecast": {                         # services/insights/forecasting.py tells the rules
        "reporting_currency": "EUR", "period": "month",   # the backtest's: ?period=, else month
        "horizon_days": 90, "min_sample": 10,       # playbook: forecast_horizon_days, forecast_min_sample
        "probabilities": [{"pipeline": "new_business", "stage": "proposal", "static": 0.4,
                           "fitted": 0.3125, "won": 5, "closed": 16, "used": "fitted"}, ...],
        "snapshots": [{"period": "2026-06", "at": "2026-07-01T00:00:00Z", "open_deals": 12,
                       "static_minor": 410000, "fitted_minor": 352000, "actual_minor": 300000,
                       "static_error_minor": 110000, "fitted_error_minor": 52000,
                       "static_ape": 0.3667, "fitted_ape": 0.1733,
                       "static_fallbacks": ["new_business/closing"]}, ...],   # oldest first
        "summary": {"periods": 6, "scored": 5, "static_mape": 0.41, "fitted_mape": 0.22, "better": "fitted"}
      }
    }

    BREAKDOWN = {
      "by": "owner" | null, "period": "month" | null, "reporting_currency": "EUR",
      "closed": [{"group": "anna.schmidt", "period": "2026-10",  # "all" without by / period
                  "won": 2, "lost": 1, "win_rate": 0.6667, "won_amount_minor": 460000,
                  "cycle_from_creation": {"deals": 2, "median_days": 40.0, "p90_days": 50.0},
                  "cycle_from_engagement": {"deals": 1, "median_days": 35.0, "p90_days": 35.0},
                  "stages": [{"stage": "qualification", "reached": 3, "went_further": 3,
                              "conversion": 1.0, "stays": 3, "median_days": 4.0, "p90_days": 9.0},
                             ...]}, ...],
      "open_pipeline": [{"group": "anna.schmidt", "deals": 3, "amount_minor": 150000,
                         "stages": [{"stage": "proposal", "deals": 2, "amount_minor": 90000}, ...]}, ...],
      "unconverted_currencies": []
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

`?by=` is one of owner, team, manager, region, product, source, pipeline, industry, country, origin
(imported from which CRM, or live); `?period=month` or `?period=quarter` splits the breakdown's closed
figures by the period of the close (and sets the backtest's periods). `?period=all` or `?period=2026-11`
keeps its old meaning: only that period's bottlenecks (none when the deals have no figures for that month:
`periods` lists those there are); `?bottlenecks=all|YYYY-MM` says the same explicitly, beside a breakdown
period. Without either, every period's bottlenecks. Anything else is answered 400 (`bad_period`,
`bad_dimension`). Rates, ratios and days are rounded (4 and 2 decimals); a figure with nothing to compute
from is null. The breakdown's definitions are in services/insights/breakdowns.py.

`GET /api/breakdown?by=&period=` answers the BREAKDOWN alone, for the page's charts.

`GET /api/reps/<owner>` answers a rep's open deals by what their next step asks now (the wall clock):
`{"owner", "team", "generated_at", "open_deals", "overdue": [CARD], "due_today": [CARD],
"upcoming": [CARD], "without_next_step": [CARD]}` (services/insights/reps.py).

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
from collections.abc import Awaitable, Callable, Collection, Hashable, Iterator, Mapping
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.database import AsyncDatabase
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from contracts.currencies import exponent, to_units
from services.insights import domain, reporting
from services.insights.breakdowns import DIMENSIONS, PERIODS, Breakdown, breakdown
from services.insights.config import InsightsPlaybook, load_playbook
from services.insights.reps import RepView, rep_view
from shared.http_access import ApiAccess, protected
from shared.mongo import Document
from shared.settings import Settings

PAGE_PATH = "/"
REPORT_PATH = "/api/report"
TIMELINE_PATH = "/api/timeline"
BREAKDOWN_PATH = "/api/breakdown"
REP_PAGE_PREFIX = "/reps/"
REP_API_PREFIX = "/api/reps/"
PAGE = Path(__file__).with_name("page.html")
PERIOD = re.compile(rf"^(?:{domain.ALL_TIME}|\d{{4}}-(?:0[1-9]|1[0-2]))$")
REPORTS_KEPT = 8  # answers kept at once: the page's report and its three breakdowns, and a few of the CLI's
REP_PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class ReportQuery(NamedTuple):
    """What one answer of the report cache is for."""

    bottlenecks: str | None = None  # all or YYYY-MM: only that period's bottlenecks
    by: str | None = None
    period: str | None = None  # month or quarter: the breakdown's
    only_breakdown: bool = False


class BadQuery(ValueError):
    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error, self.detail = error, detail


def report_query(params: Mapping[str, str], *, only_breakdown: bool = False) -> ReportQuery:
    """`period` is a breakdown's (month, quarter) or, as before breakdowns, the bottlenecks' (all,
    YYYY-MM); `bottlenecks` names the latter explicitly. Anything else raises BadQuery."""
    bottlenecks, period = params.get("bottlenecks"), params.get("period")
    if period is not None and period not in PERIODS:
        if not PERIOD.match(period):
            raise BadQuery(
                "bad_period",
                f"period is {', '.join(PERIODS)} (a breakdown's), or {domain.ALL_TIME!r} or a month, "
                "YYYY-MM (the bottlenecks')",
            )
        if bottlenecks is not None:
            raise BadQuery("bad_period", "give the bottlenecks' period once: bottlenecks= or period=")
        bottlenecks, period = period, None
    if bottlenecks is not None and not PERIOD.match(bottlenecks):
        raise BadQuery("bad_period", f"bottlenecks is {domain.ALL_TIME!r} or a month, YYYY-MM")
    by = params.get("by")
    if by is not None and by not in DIMENSIONS:
        raise BadQuery("bad_dimension", f"unknown dimension {by!r}: by is one of {', '.join(DIMENSIONS)}")
    return ReportQuery(None if only_breakdown else bottlenecks, by, period, only_breakdown)


class BrowserPages(Collection[str]):
    """The paths a browser opens, where `?token=` signs in: the pipeline page and every rep's page."""

    def __contains__(self, path: object) -> bool:
        return path == PAGE_PATH or (isinstance(path, str) and path.startswith(REP_PAGE_PREFIX))

    def __iter__(self) -> Iterator[str]:
        return iter((PAGE_PATH, REP_PAGE_PREFIX))

    def __len__(self) -> int:
        return 2


class PathPrefix(str):
    """A route path the runtime's exact-path router matches as a prefix: `/reps/` serves `/reps/<owner>`.

    The router compares `scope["path"] == path`; Python asks a subclass's `__eq__` first.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith(str(self))

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return str.__hash__(self)


# Every timeline field but its event log: the report reads none of it, and it is most of the bytes.
REPORTED_FIELDS = {f"state.{name}": 1 for name in domain.Timeline.model_fields if name != "entries"}
RAW = CodecOptions(document_class=RawBSONDocument)


async def load_raw_timelines(database: AsyncDatabase[Document]) -> list[RawBSONDocument]:
    """The timelines as the database sent them: reading them costs the event loop no decoding."""
    cursor = (
        database["aggregates"].with_options(codec_options=RAW).find({"state": {"$ne": None}}, REPORTED_FIELDS)
    )
    return [document async for document in cursor]


class TimelineSnapshot:
    """The timelines as read at most `max_age_seconds` ago, one read at a time.

    Reading the whole collection is the report's largest cost on FerretDB (about 1.4 ms a document, where
    computing a report from them takes a tenth of that), and a page asks four answers at once.
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[list[RawBSONDocument]]],
        max_age_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._max_age = max_age_seconds
        self._monotonic = monotonic
        self._read: tuple[float, list[RawBSONDocument]] | None = None
        self._reading = asyncio.Lock()
        self.reads = 0

    async def get(self) -> list[RawBSONDocument]:
        async with self._reading:
            if self._read is None or self._monotonic() - self._read[0] >= self._max_age:
                documents = await self._load()
                self.reads += 1
                self._read = (self._monotonic(), documents)
            return self._read[1]


def timelines_of(documents: list[RawBSONDocument]) -> list[domain.Timeline]:
    return [domain.Timeline.model_validate(bson.decode(document.raw)["state"]) for document in documents]


def render_report(
    documents: list[RawBSONDocument], now: datetime, rules: InsightsPlaybook, query: ReportQuery
) -> bytes:
    """The report (or only its breakdown) as JSON bytes: CPU work for a worker thread, not the event loop."""
    timelines = timelines_of(documents)
    answer: Breakdown | reporting.Report
    if query.only_breakdown:
        answer = breakdown(timelines, rules, query.by, query.period)
    else:
        answer = reporting.report(timelines, now, rules, query.bottlenecks, query.by, query.period)
    return answer.__pydantic_serializer__.to_json(answer)


class ReportCache:
    """Answers by period, each computed by `compute` at most once per `max_age_seconds`, one at a time.

    An answer is kept for `max_age_seconds` after its computation ended; a request for a stale or
    missing one waits for the single computation under way (or starts it). Only the `kept` most recently
    used periods are kept.
    """

    def __init__(
        self,
        compute: Callable[[Any], Awaitable[bytes]],
        max_age_seconds: float,
        kept: int = REPORTS_KEPT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._max_age = max_age_seconds
        self._kept = kept
        self._monotonic = monotonic
        self._answers: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self._computing = asyncio.Lock()
        self.computations = 0

    def _fresh(self, period: Hashable) -> bytes | None:
        answer = self._answers.get(period)
        if answer is None or self._monotonic() - answer[0] >= self._max_age:
            return None
        self._answers.move_to_end(period)
        return answer[1]

    async def get(self, period: Hashable) -> bytes:
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

    snapshot = TimelineSnapshot(lambda: load_raw_timelines(database), settings.report_cache_seconds)

    async def compute(query: ReportQuery) -> bytes:
        documents = await snapshot.get()
        return await asyncio.to_thread(render_report, documents, clock(), rules, query)

    reports = ReportCache(compute, settings.report_cache_seconds)

    async def answer(request: Request, *, only_breakdown: bool) -> Response:
        try:
            query = report_query(request.query_params, only_breakdown=only_breakdown)
        except BadQuery as error:
            return json_response({"error": error.error, "detail": error.detail}, 400)
        body = await reports.get(query)
        return Response(body, media_type="application/json", headers={"cache-control": "no-store"})

    async def report(request: Request) -> Response:
        return await answer(request, only_breakdown=False)

    async def breakdown_only(request: Request) -> Response:
        return await answer(request, only_breakdown=True)

    async def view_of(owner: str) -> RepView:
        documents = await snapshot.get()
        return await asyncio.to_thread(lambda: rep_view(timelines_of(documents), owner, clock(), rules))

    def owner_in(request: Request, prefix: str) -> str | None:
        owner = unquote(request.url.path.removeprefix(prefix))
        return owner if owner and "/" not in owner else None

    async def rep_api(request: Request) -> Response:
        owner = owner_in(request, REP_API_PREFIX)
        if owner is None:
            return json_response({"error": "name the rep: /api/reps/<owner>"}, 404)
        return json_response((await view_of(owner)).model_dump(mode="json"))

    async def rep_page(request: Request) -> Response:
        owner = owner_in(request, REP_PAGE_PREFIX)
        if owner is None:
            return HTMLResponse("<p>name the rep: /reps/&lt;owner&gt;</p>", status_code=404)
        return HTMLResponse(
            rep_page_html(await view_of(owner), rules.reporting_currency),
            headers={"cache-control": "no-store", "content-security-policy": REP_PAGE_POLICY},
        )

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
            Route(BREAKDOWN_PATH, breakdown_only, methods=["GET"]),
            Route(REP_API_PREFIX + "{owner:path}", rep_api, methods=["GET"]),
            Route(REP_PAGE_PREFIX + "{owner:path}", rep_page, methods=["GET"]),
        ]
    )
    return protected(served, ApiAccess.from_settings(settings), pages=BrowserPages())


def routes(
    database: AsyncDatabase[Document],
    settings: Settings,
    playbook: InsightsPlaybook | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[tuple[str, ASGIApp]]:
    """The insights pages for the stage runtime's `http_routes` hook: one app under each of its paths."""
    served = app(database, playbook, clock, settings)
    return [
        (PAGE_PATH, served),
        (REPORT_PATH, served),
        (TIMELINE_PATH, served),
        (BREAKDOWN_PATH, served),
        (PathPrefix(REP_API_PREFIX), served),
        (PathPrefix(REP_PAGE_PREFIX), served),
    ]


REP_SECTIONS = (
    ("overdue", "Overdue"),
    ("due_today", "Due today"),
    ("upcoming", "Upcoming"),
    ("without_next_step", "No next step"),
)


def _utc_minute(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _money(minor: int | None, currency: str | None) -> str:
    if minor is None or currency is None:
        return "no amount"
    places = exponent(currency)
    return f"{to_units(minor, currency):,.{places}f} {currency}"


def rep_page_html(view: RepView, reporting_currency: str) -> str:
    """The rep's open deals as a page of its own: plain HTML, every value escaped, no script."""
    sections = []
    for field, title in REP_SECTIONS:
        cards: list[domain.Card] = getattr(view, field)
        rows = "".join(
            f'<tr data-deal-id="{escape(c.deal_id)}"><td>{escape(c.company or c.deal_id)}</td>'
            f"<td>{escape(c.deal_id)}</td><td>{escape(c.stage)}</td>"
            f'<td class="number">{escape(_money(c.amount_minor, c.currency))}</td>'
            f"<td>{escape(c.next_step.action if c.next_step else '-')}</td>"
            f"<td>{escape(_utc_minute(c.next_step.due_at) if c.next_step else '-')}</td>"
            f'<td class="number">{c.days_in_stage:.1f}</td></tr>'
            for c in cards
        )
        empty = '<tr><td colspan="7" class="none">none</td></tr>'
        sections.append(
            f'<section id="{field}"><h2>{title} <span class="count">{len(cards)}</span></h2><table>'
            '<thead><tr><th>company</th><th>deal</th><th>stage</th><th class="number">amount</th>'
            '<th>next step</th><th>due</th><th class="number">days in stage</th></tr></thead>'
            f"<tbody>{rows or empty}</tbody></table></section>"
        )
    owner = escape(view.owner)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{owner}: next steps</title><style>{REP_PAGE_STYLE}</style></head><body>"
        f"<header><h1>{owner}</h1><span>team {escape(view.team)}</span>"
        f"<span>{view.open_deals} open deals</span>"
        f"<span>as of {escape(_utc_minute(view.generated_at))}</span>"
        f'<a href="{escape(PAGE_PATH)}">pipeline</a></header><main>{"".join(sections)}</main></body></html>'
    )


REP_PAGE_STYLE = (
    "body{margin:0;font:14px/1.4 system-ui,sans-serif;color:#1d2330;background:#f7f8fa}"
    "header{display:flex;gap:1.5rem;align-items:baseline;padding:1rem 1.5rem;background:#fff;"
    "border-bottom:1px solid #e4e7ec}h1{font-size:1.2rem;margin:0}main{padding:1rem 1.5rem;display:grid;"
    "gap:1rem}section{background:#fff;border:1px solid #e4e7ec;border-radius:8px;padding:1rem}"
    "h2{font-size:1rem;margin:0 0 .5rem}table{border-collapse:collapse;width:100%}th,td{text-align:left;"
    "padding:.3rem .5rem;border-bottom:1px solid #e4e7ec}.number{text-align:right}.none{color:#667085}"
    "#overdue h2{color:#dc2626}"
)


def rep_path(owner: str) -> str:
    return REP_PAGE_PREFIX + quote(owner, safe="")
