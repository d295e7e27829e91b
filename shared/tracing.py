"""OpenTelemetry tracing carried in Kafka headers (W3C `traceparent`), so one trace shows a deal's journey.

Spans are always created, so trace ids exist and flow from the lead to the deal-won event even when
nothing exports them; an exporter is added only when `DEALFLOW_TRACES_EXPORTER` asks for one. Without
one, a trace that starts here is not sampled: its spans carry ids but record nothing, which costs a
fraction of a recorded span on every event (a trace an upstream system sampled stays sampled). Each
service has its own tracer provider (not the global one), so several services can share a process.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE_HEADERS = ("traceparent", "tracestate")
_propagator = TraceContextTextMapPropagator()


def make_tracer(service: str, exporter: str) -> tuple[Tracer, TracerProvider]:
    span_exporter = _exporter(exporter)
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"dealflow-{service}"}),
        sampler=ParentBased(ALWAYS_ON if span_exporter is not None else ALWAYS_OFF),
    )
    if span_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return provider.get_tracer("dealflow"), provider


def _exporter(name: str) -> SpanExporter | None:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        # Reads the standard OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout).
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return None


def trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in TRACE_HEADERS if headers.get(name)}


def extract(carrier: Mapping[str, str]) -> Context:
    return _propagator.extract(carrier=dict(carrier))


def current_trace_headers(context: Context | None = None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=context)
    return carrier


def trace_id(traceparent: str) -> str:
    """The trace id part of a W3C traceparent (version-traceid-spanid-flags)."""
    return traceparent.split("-")[1]
