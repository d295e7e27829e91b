"""What ops see of a running stage: health, readiness, metrics and traces, on the real servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from cli.kafka_io import publish
from contracts import Topic
from services.prospecting.service import definition as prospecting
from shared.envelope import KafkaRecord, encode
from shared.runtime import StageService, serve
from shared.settings import Settings
from shared.tracing import trace_id
from tests.integration.helpers import events_when, fit_lead, of_type, send

pytestmark = pytest.mark.integration

LEAD = fit_lead("lead-traced")
UPSTREAM_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def http_client(service: StageService) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://stage")


async def poll(
    client: httpx.AsyncClient, path: str, done: Callable[[httpx.Response], bool]
) -> httpx.Response:
    async with asyncio.timeout(30):
        while not done(response := await client.get(path)):  # noqa: ASYNC110 (polling a server)
            await asyncio.sleep(0.2)
    return response


def sample(metrics: str, name: str, **labels: str) -> float:
    """A sample's value from a Prometheus text exposition, 0 when it is absent."""
    for family in text_string_to_metric_families(metrics):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


async def test_endpoints_report_health_readiness_and_what_was_processed(settings: Settings) -> None:
    service = StageService(prospecting(), settings)
    async with service.build_app(), http_client(service) as client:
        alive = await client.get("/healthz")
        assert (alive.status_code, alive.json()["alive"]) == (200, True)
        docs = await client.get("/asyncapi")
        assert docs.status_code == 200
        assert "dealflow.deals.won.v1" in docs.text or "deals.won.v1" in docs.text
        checks = (await poll(client, "/readyz", lambda answer: answer.status_code == 200)).json()["checks"]
        assert checks["kafka"] is True
        assert checks["database"] is True
        assert checks["partitions_assigned"] == settings.partitions * len(prospecting().input_topics)

        await send(settings, LEAD)
        bad = KafkaRecord(topic=settings.topic(Topic.LEADS), key=b"x", value=b"{", headers={})
        await publish(settings, [bad])
        await events_when(settings, lambda seen: len(of_type(seen, "prospect.identified.v1")) == 1)
        dead_lettered = "dealflow_events_dead_lettered_total"
        unknown = {"service": "prospecting", "type": "unknown", "reason": "missing_cloudevents_attribute"}
        answer = await poll(
            client, "/metrics", lambda answer: sample(answer.text, dead_lettered, **unknown) > 0
        )
        metrics = answer.text

    labels = {"service": "prospecting"}
    assert sample(metrics, dead_lettered, **unknown) == 1
    assert sample(metrics, "dealflow_events_consumed_total", **labels, type=LEAD.TYPE) == 1
    assert sample(metrics, "dealflow_events_consumed_total", **labels, type="unknown") == 1
    prospect = "io.dealflow.prospect.identified.v1"
    assert sample(metrics, "dealflow_events_produced_total", **labels, type=prospect) == 1
    assert sample(metrics, "dealflow_handler_duration_seconds_count", **labels, type=LEAD.TYPE) == 1
    assert sample(metrics, "dealflow_outbox_backlog", **labels) == 0
    lag = [line for line in metrics.splitlines() if line.startswith("dealflow_consumer_lag{")]
    assert len(lag) == settings.partitions * len(prospecting().input_topics)


async def test_readiness_fails_with_the_reason_when_the_database_is_unreachable(settings: Settings) -> None:
    unreachable = settings.model_copy(update={"mongodb_uri": SecretStr("mongodb://127.0.0.1:9/")})
    service = StageService(prospecting(), unreachable)
    service.build_app()  # not started: it would wait for the database
    async with http_client(service) as client:
        response = await client.get("/readyz")
        alive = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] is False
    assert response.json()["checks"]["started"] is False
    assert alive.status_code == 200


async def stranded(producer: AIOKafkaProducer) -> None:
    await asyncio.Event().wait()  # as aiokafka waits for a producer id once stranded without brokers


async def refused(producer: AIOKafkaProducer) -> None:
    raise KafkaConnectionError("refused")


@pytest.mark.parametrize(
    ("producer_start", "logged"), [(stranded, "startup_stalled"), (refused, "broker_start_failed")]
)
async def test_a_service_whose_producer_does_not_start_stops_instead_of_serving_without_it(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    producer_start: Callable[[AIOKafkaProducer], Awaitable[None]],
    logged: str,
) -> None:
    monkeypatch.setattr(AIOKafkaProducer, "start", producer_start)
    impatient = settings.model_copy(update={"http_port": 0, "startup_timeout_seconds": 1.0})
    service = StageService(prospecting(), impatient)

    # FastStream starts the broker after the app reports itself started: without the service's own
    # checks uvicorn would go on serving HTTP with no consumer, and this would time out.
    started = await asyncio.wait_for(serve(service), timeout=30)

    assert started is False
    assert service.started is False
    assert f'"event": "{logged}"' in capsys.readouterr().out


async def test_the_upstream_trace_continues_through_the_stage(settings: Settings) -> None:
    lead = encode(LEAD, topic=settings.topic(Topic.LEADS), source="/test")
    traced = KafkaRecord(
        lead.topic, lead.key, lead.value, lead.headers | {"traceparent": UPSTREAM_TRACEPARENT}
    )
    service = StageService(prospecting(), settings)
    async with service.build_app():
        await publish(settings, [traced])
        events = await events_when(settings, lambda seen: len(of_type(seen, "prospect.identified.v1")) == 1)

    [prospect] = of_type(events, "prospect.identified.v1")
    child = prospect.headers["traceparent"]
    assert trace_id(child) == trace_id(UPSTREAM_TRACEPARENT)
    assert child != UPSTREAM_TRACEPARENT  # a span of its own, child of the upstream one
