import json

import pytest
from pydantic import ValidationError

from contracts.events import MAX_INPUT_ITEMS, MAX_INPUT_TEXT_LENGTH, LeadCaptured
from shared.envelope import PoisonMessage, decode, derived_event_id, encode

LEAD = LeadCaptured(lead_id="lead-1", email="a@b.example")


def test_an_encoded_event_decodes_to_the_same_event() -> None:
    record = encode(LEAD, topic="t", source="/test", event_id="e-1")

    envelope = decode(record.headers, record.value, max_bytes=10_000)

    assert envelope.data == LEAD
    assert (envelope.id, envelope.source, envelope.type) == ("e-1", "/test", "io.dealflow.lead.captured.v1")
    assert record.key == b"lead-1"
    assert record.headers["content-type"] == "application/json"
    assert record.headers["ce_subject"] == "lead-1"


def test_derived_ids_are_stable_and_distinct() -> None:
    assert derived_event_id("cause", 0) == derived_event_id("cause", 0)
    assert derived_event_id("cause", 0) != derived_event_id("cause", 1)
    assert derived_event_id("cause", 0) != derived_event_id("other", 0)


def _headers(**overrides: str) -> dict[str, str]:
    headers = encode(LEAD, topic="t", source="/test").headers
    headers.update(overrides)
    return {name: value for name, value in headers.items() if value != "<drop>"}


@pytest.mark.parametrize(
    ("headers", "value", "code"),
    [
        (_headers(), b'{"lead_id": "x", "email": ', "invalid_json"),
        (_headers(), b"\xff\xfe\x00garbage", "invalid_encoding"),
        (_headers(), json.dumps({"lead_id": "x"}).encode(), "schema_violation"),
        (_headers(), json.dumps({"lead_id": 5, "email": []}).encode(), "schema_violation"),
        (_headers(ce_type="io.dealflow.nothing.v9"), b"{}", "unknown_event_type"),
        (_headers(ce_id="<drop>"), b"{}", "missing_cloudevents_attribute"),
        (_headers(**{"content-type": "text/plain"}), b"{}", "unsupported_content_type"),
        (_headers(ce_specversion="0.3"), b"{}", "unsupported_specversion"),
        (_headers(), b"{" + b" " * 220_000 + b"}", "oversized_payload"),
        (_headers(), None, "empty_value"),
        # What escaped the decoder before: each raised something other than PoisonMessage.
        (_headers(), b"[" * 100_000, "too_deeply_nested"),
        (
            _headers(),
            b'{"lead_id": "x", "email": "a@b.example", "ignored": ' + b"7" * 5000 + b"}",
            "invalid_json",
        ),
        (_headers(), '{"lead_id": "x", "email": "a@b.example"}'.encode("utf-16"), "invalid_encoding"),
        (_headers(), '{"lead_id": "x", "email": "a@b.example"}'.encode("utf-32"), "invalid_encoding"),
        (_headers(), '\ufeff{"lead_id": "x", "email": "a@b.example"}'.encode(), "invalid_encoding"),
        (_headers(), b'{"lead_id": "x", "email": "a@b.example", "employees": NaN}', "invalid_json"),
        (
            _headers(),
            b'{"lead_id": "x", "email": "a@b.example", "employees": 1' + b"0" * 30 + b"}",
            "unstorable_value",
        ),
        (_headers(ce_id="x" * 300), b"{}", "invalid_id"),
        (_headers(ce_id="bad\nid"), b"{}", "invalid_id"),
    ],
)
def test_bad_records_are_poison_with_a_reason(
    headers: dict[str, str], value: bytes | None, code: str
) -> None:
    with pytest.raises(PoisonMessage) as caught:
        decode(headers, value, max_bytes=200_000)

    assert caught.value.code == code
    assert caught.value.detail


def _activity_headers(activity_type: str) -> dict[str, str]:
    return _headers(ce_type=f"io.dealflow.{activity_type}", ce_subject="deal-1")


DEAL = {"deal_id": "deal-1", "occurred_at": "2026-01-05T10:00:00+00:00"}
LONG_NAME = "Jana" + "x" * MAX_INPUT_TEXT_LENGTH


@pytest.mark.parametrize(
    ("headers", "data", "field"),
    [
        (_headers(), {"lead_id": "lead-1", "email": "a@b.example", "last_name": LONG_NAME}, "last_name"),
        (
            _headers(),
            {"lead_id": "lead-1", "email": "a@b.example", "technologies": ["crm"] * (MAX_INPUT_ITEMS + 1)},
            "technologies",
        ),
        (
            _activity_headers("activity.discovery_call_logged.v1"),
            {**DEAL, "needs": {"pains": ["slow"] * (MAX_INPUT_ITEMS + 1)}},
            "needs.pains",
        ),
        (
            _activity_headers("activity.discovery_call_logged.v1"),
            {**DEAL, "answers": {f"criterion_{n}": True for n in range(MAX_INPUT_ITEMS + 1)}},
            "answers",
        ),
        (
            _activity_headers("activity.quote_prepared.v1"),
            {**DEAL, "currency": "EUR", "lines": [{"product": "p", "quantity": 1}] * (MAX_INPUT_ITEMS + 1)},
            "lines",
        ),
        (
            _activity_headers("activity.objection_raised.v1"),
            {**DEAL, "objection_id": "o-1", "category": "price", "notes": LONG_NAME},
            "notes",
        ),
        (
            _activity_headers("activity.payment_received.v1"),
            {**DEAL, "amount": {"amount_minor": 10**16, "currency": "EUR"}},
            "amount.amount_minor",
        ),
    ],
)
def test_oversized_fields_are_schema_violations_that_name_the_field_but_not_the_value(
    headers: dict[str, str], data: dict[str, object], field: str
) -> None:
    value = json.dumps(data).encode()

    with pytest.raises(PoisonMessage) as caught:
        decode(headers, value, max_bytes=len(value))

    assert caught.value.code == "schema_violation"
    assert caught.value.detail.startswith(f"{field}: ")
    assert "Jana" not in caught.value.detail


def test_a_lead_at_every_limit_is_accepted() -> None:
    lead = {
        "lead_id": "lead-1",
        "email": "a@b.example",
        "last_name": "x" * MAX_INPUT_TEXT_LENGTH,
        "technologies": ["crm"] * MAX_INPUT_ITEMS,
    }

    envelope = decode(_headers(), json.dumps(lead).encode(), max_bytes=100_000)

    assert isinstance(envelope.data, LeadCaptured)
    assert len(envelope.data.technologies) == MAX_INPUT_ITEMS


def test_a_validation_error_never_repeats_the_value_it_refused() -> None:
    # Such errors end up in logs and dead-letter headers; the value may be personal data.
    with pytest.raises(ValidationError) as caught:
        LeadCaptured(lead_id="lead-1", email="jana@acme.example", last_name=LONG_NAME)

    assert "last_name" in str(caught.value)
    assert "Jana" not in str(caught.value)
