import json

import pytest

from contracts.events import LeadCaptured
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
        (_headers(), b"\xff\xfe\x00garbage", "invalid_json"),
        (_headers(), json.dumps({"lead_id": "x"}).encode(), "schema_violation"),
        (_headers(), json.dumps({"lead_id": 5, "email": []}).encode(), "schema_violation"),
        (_headers(ce_type="io.dealflow.nothing.v9"), b"{}", "unknown_event_type"),
        (_headers(ce_id="<drop>"), b"{}", "missing_cloudevents_attribute"),
        (_headers(**{"content-type": "text/plain"}), b"{}", "unsupported_content_type"),
        (_headers(ce_specversion="0.3"), b"{}", "unsupported_specversion"),
        (_headers(), b"{" + b" " * 20_000 + b"}", "oversized_payload"),
        (_headers(), None, "empty_value"),
    ],
)
def test_bad_records_are_poison_with_a_reason(
    headers: dict[str, str], value: bytes | None, code: str
) -> None:
    with pytest.raises(PoisonMessage) as caught:
        decode(headers, value, max_bytes=10_000)

    assert caught.value.code == code
    assert caught.value.detail
