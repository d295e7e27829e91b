"""Deal data over HTTP only with the API token and an allowed Host, on the real servers; probes stay open.

The insights service runs as it does in production (consumer, operations endpoints and its pages under
uvicorn, on a loopback port) over the known timelines; `serving` is its API alone, on a fixed clock, for
the figures of the period filter and the report cache.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from services.insights import api
from services.insights.service import definition
from shared.http_access import SESSION_COOKIE
from shared.mongo import make_client
from shared.runtime import StageService
from shared.settings import Settings
from tests.insights_events import EXPECTED_VELOCITY_OCTOBER, assert_report_figures, known_events
from tests.integration.test_insights_report_cli import API_TOKEN, AUTHORIZED, serving, with_token
from tests.unit.test_insights import timelines_from

pytestmark = pytest.mark.integration

DEAL_DATA = ("/", "/api/report", "/api/report?period=all", "/api/timeline?deal_id=deal-a")
PROBES = ("/healthz", "/readyz", "/metrics", "/asyncapi")
FOREIGN_HOSTS = ("evil.example", "evil.example:8085", "127.0.0.1.evil.example", "localhost.evil.example")


@asynccontextmanager
async def insights_service(settings: Settings) -> AsyncIterator[str]:
    """The insights service process's app, on a free loopback port, over the known timelines."""
    mongo = make_client(settings, app_name="insights-security-test")
    await mongo[settings.database_name("insights")]["aggregates"].insert_many(
        [
            {"_id": t.deal_id, "version": 1, "state": t.model_dump(mode="json")}
            for t in timelines_from(known_events())
        ]
    )
    service = StageService(definition(), settings)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(service.build_app(), lifespan="on", log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(90):
            while not server.started:
                assert not task.done(), "the insights service did not start"
                await asyncio.sleep(0.1)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        listener.close()
        await mongo.close()


async def test_deal_data_needs_the_right_token_and_the_probes_need_none(settings: Settings) -> None:
    settings = with_token(settings)
    async with insights_service(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        anonymous = {path: await client.get(path) for path in DEAL_DATA}
        wrong_tokens = [
            secrets.token_urlsafe(32),  # as long as the right one
            API_TOKEN[:-1],  # one character short
            API_TOKEN + "x",
            "ünïcödé-token-of-some-length",
        ]
        wrong = [
            await client.get(path, headers={"authorization": f"Bearer {token}".encode()})
            for token in wrong_tokens
            for path in DEAL_DATA
        ]
        not_bearer = await client.get("/api/report", headers={"authorization": f"Basic {API_TOKEN}"})
        right = {path: await client.get(path, headers=AUTHORIZED) for path in DEAL_DATA}
        probes = {path: await client.get(path) for path in PROBES}
        probes_from_elsewhere = [
            await client.get(path, headers={"host": host}) for path in PROBES for host in FOREIGN_HOSTS
        ]

    for path, answer in anonymous.items():
        assert answer.status_code == 401, path
        assert answer.json()["error"] == "unauthorized", path
        assert answer.headers["www-authenticate"] == 'Bearer realm="dealflow"'
        assert "deal-a" not in answer.text
    for answer in [*wrong, not_bearer]:
        assert answer.status_code == 401, answer.request.url
        assert "deal-a" not in answer.text

    for path, answer in right.items():
        assert answer.status_code == 200, (path, answer.text)
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
    report = right["/api/report"].json()
    assert report["deals"] == 8
    assert "deal-a" in [card["deal_id"] for cards in report["board"].values() for card in cards]
    assert right["/api/timeline?deal_id=deal-a"].json()["deal_id"] == "deal-a"
    assert "<title>dealflow pipeline</title>" in right["/"].text

    assert probes["/healthz"].json()["alive"] is True
    assert probes["/readyz"].status_code in (200, 503)  # ready or not yet: never a question of a token
    assert "checks" in probes["/readyz"].json()
    assert probes["/metrics"].status_code == 200
    assert "dealflow_ready" in probes["/metrics"].text
    assert probes["/asyncapi"].status_code == 200
    assert all(answer.status_code in (200, 503) for answer in probes_from_elsewhere)


async def test_a_foreign_host_is_refused_even_with_the_token(settings: Settings) -> None:
    async with insights_service(with_token(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        # A page on evil.example whose name resolves to 127.0.0.1 (DNS rebinding) sends its own Host.
        refused = [
            await client.get(path, headers={**AUTHORIZED, "host": host})
            for path in DEAL_DATA
            for host in FOREIGN_HOSTS
        ]
        no_host = await client.get("/api/report", headers={**AUTHORIZED, "host": ""})
        allowed = [
            await client.get("/api/report?period=all", headers={**AUTHORIZED, "host": host})
            for host in ("127.0.0.1", "localhost:8085", "LOCALHOST", "[::1]:8085", "dealflow-insights:8085")
        ]

    for answer in [*refused, no_host]:
        assert answer.status_code == 421, (answer.request.headers["host"], answer.status_code)
        assert answer.json()["error"] == "host_not_allowed"
        assert "deal-a" not in answer.text
    assert [answer.status_code for answer in allowed] == [200] * len(allowed)


async def test_the_page_signs_a_browser_in_once_with_the_token_in_its_url(settings: Settings) -> None:
    async with (
        insights_service(with_token(settings)) as url,
        httpx.AsyncClient(base_url=url, follow_redirects=False) as browser,
    ):
        signing_in = await browser.get("/", params={"token": API_TOKEN, "view": "board"})
        cookie = browser.cookies.get(SESSION_COOKIE)
        page = await browser.get(signing_in.headers["location"])
        report = await browser.get("/api/report?period=all")

        async with httpx.AsyncClient(base_url=url) as stranger:
            wrong = await stranger.get("/", params={"token": "not-the-token-at-all"})
            in_api_url = await stranger.get("/api/report", params={"token": API_TOKEN})
            behind_tls = await stranger.get(
                "/", params={"token": API_TOKEN}, headers={"x-forwarded-proto": "https"}
            )
            forged = await stranger.get("/api/report", headers={"cookie": f"{SESSION_COOKIE}={API_TOKEN}"})

    assert signing_in.status_code == 303
    assert signing_in.headers["location"] == "/?view=board"  # the same page, without the token
    set_cookie = signing_in.headers["set-cookie"]
    assert set_cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in set_cookie
    assert "SameSite=strict" in set_cookie or "SameSite=Strict" in set_cookie
    assert "Path=/" in set_cookie
    assert "Secure" not in set_cookie  # plain http on loopback: a Secure cookie would never be sent back
    assert "Secure" in behind_tls.headers["set-cookie"]  # behind a proxy that ends TLS
    assert cookie is not None
    assert API_TOKEN not in set_cookie  # the cookie holds a value derived from the token
    assert page.status_code == 200
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    assert report.status_code == 200
    assert report.json()["deals"] == 8

    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    assert in_api_url.status_code == 401  # only the page takes the token in its URL, and only to sign in
    assert forged.status_code == 401


async def test_without_a_configured_token_deal_data_is_closed_and_probes_are_open(settings: Settings) -> None:
    async with insights_service(with_token(settings, None)) as url, httpx.AsyncClient(base_url=url) as client:
        closed = [await client.get(path, headers=AUTHORIZED) for path in DEAL_DATA]
        alive = await client.get("/healthz")

    for answer in closed:
        assert answer.status_code == 503, answer.request.url
        assert answer.json()["error"] == "no_api_token"
        assert "DEALFLOW_API_TOKEN" in answer.json()["detail"]
    assert alive.status_code == 200


async def report(client: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    answer = await client.get(f"/api/report{query}", headers=AUTHORIZED)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_the_period_filter_keeps_only_that_periods_bottlenecks(settings: Settings) -> None:
    async with serving(settings) as url, httpx.AsyncClient(base_url=url) as client:
        everything = await report(client)
        october = await report(client, "?period=2026-10")
        all_time = await report(client, "?period=all")
        empty_month = await report(client, "?period=2031-01")
        malformed = [
            await client.get("/api/report", params={"period": bad}, headers=AUTHORIZED)
            for bad in ("October", "2026-13", "2026-1", "all;drop")
        ]

    assert_report_figures(everything)  # without the filter: every period, as before
    assert everything["periods"] == ["all", "2026-11", "2026-10"]
    assert [entry["period"] for entry in october["bottlenecks"]] == ["2026-10"]
    assert october["bottlenecks"][0]["velocity"] == EXPECTED_VELOCITY_OCTOBER
    assert october["periods"] == everything["periods"]
    assert [entry["period"] for entry in all_time["bottlenecks"]] == ["all"]
    assert all_time["bottlenecks"][0] == everything["bottlenecks"][0]
    assert empty_month["bottlenecks"] == []
    for filtered in (october, all_time, empty_month):  # the rest of the report is the same
        assert {key: filtered[key] for key in ("board", "funnel", "forecast", "stalled")} == {
            key: everything[key] for key in ("board", "funnel", "forecast", "stalled")
        }
    assert [answer.status_code for answer in malformed] == [400] * len(malformed)
    assert malformed[0].json()["error"] == "bad_period"


async def test_the_report_is_computed_off_the_event_loop_once_for_many_requests_and_again_later(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    computed_in: list[int] = []
    render = api.render_report

    def recording(*args: Any) -> bytes:
        computed_in.append(threading.get_ident())
        return render(*args)

    monkeypatch.setattr(api, "render_report", recording)
    cache_seconds = 5.0
    settings = settings.model_copy(update={"report_cache_seconds": cache_seconds})
    async with serving(settings) as url, httpx.AsyncClient(base_url=url) as client:
        together = await asyncio.gather(*(report(client, "?period=all") for _ in range(8)))
        once = len(computed_in)
        mongo = make_client(settings, app_name="insights-security-test")
        try:  # the read model changes: one more deal
            [deal_a] = [t for t in timelines_from(known_events()) if t.deal_id == "deal-a"]
            extra = deal_a.model_copy(update={"deal_id": "deal-z"}).model_dump(mode="json")
            await mongo[settings.database_name("insights")]["aggregates"].insert_one(
                {"_id": "deal-z", "version": 1, "state": extra}
            )
        finally:
            await mongo.close()
        cached = await report(client, "?period=all")
        started = time.monotonic()
        while (later := await report(client, "?period=all"))["deals"] == 8:
            assert time.monotonic() - started < cache_seconds + 10, "the report was never computed again"
            await asyncio.sleep(0.2)
        waited = time.monotonic() - started

    assert once == 1, "eight requests at once, one computation"
    assert all(answer == together[0] for answer in together)
    assert computed_in[0] != threading.get_ident(), "computed on the event loop's thread"
    assert cached["deals"] == 8  # within the cache time: the same answer
    assert later["deals"] == 9
    assert waited < cache_seconds + 5
    assert len(computed_in) == 2
