"""The operator commands' own logic, without servers: an edited dead letter as it will be re-driven, and
what `dealflow erase` reports."""

from __future__ import annotations

import json

import pytest

from cli.deadletters import DeadLetterError, InvalidPayload, edited_record, original_record
from cli.erasure import erasure_summary
from cli.kafka_io import SeenEvent
from contracts.topics import SERVICES
from shared.envelope import decode

LEAD_TYPE = "io.dealflow.lead.captured.v1"
FIXED = {"lead_id": "lead-fixed", "email": "jana@acme-robotics.de", "employees": 250, "crm_ref": "x-1"}


def dead_letter(value: bytes, **headers: str) -> SeenEvent:
    """A lead dead-lettered by prospecting for a schema violation, under a key that is not its lead id."""
    return SeenEvent(
        topic="dealflow.deadletter.prospecting.v1",
        partition=2,
        offset=7,
        key="wrong-key",
        headers={
            "ce_specversion": "1.0",
            "ce_id": "lead-1-id",
            "ce_source": "/crm",
            "ce_type": LEAD_TYPE,
            "ce_time": "2026-11-10T09:00:00+00:00",
            "ce_subject": "wrong-key",
            "content-type": "application/json",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "dlq_error_code": "schema_violation",
            "dlq_error": "employees: Input should be a valid integer",
            "dlq_source_topic": "dealflow.leads.v1",
            "dlq_source_partition": "1",
            "dlq_source_offset": "42",
            "dlq_service": "prospecting",
            "dlq_time": "2026-11-10T09:00:01+00:00",
        }
        | headers,
        data=None,
        value=value,
    )


BROKEN = dead_letter(b'{"lead_id": "lead-fixed", "email": "jana@acme-robotics.de", "employees": [250]}')


def test_an_edited_payload_goes_to_its_source_topic_keyed_by_its_partition_key_with_its_own_headers() -> None:
    record = edited_record(BROKEN, json.dumps(FIXED).encode(), max_bytes=1_048_576)

    assert record.topic == "dealflow.leads.v1"
    assert record.key == b"lead-fixed"  # the payload's partition key, not the key it was sent with
    assert not [name for name in record.headers if name.startswith("dlq_")]
    expected = {name: value for name, value in BROKEN.headers.items() if not name.startswith("dlq_")}
    assert record.headers == expected | {"ce_subject": "lead-fixed"}  # ce_id, source, time, trace kept
    assert json.loads(record.value) == FIXED  # as edited: a field the model does not know is kept
    # ...and the service will decode it.
    envelope = decode(record.headers, record.value, max_bytes=1_048_576)
    assert (envelope.id, envelope.data.partition_key) == ("lead-1-id", "lead-fixed")


def test_a_fresh_id_only_when_asked_for_and_a_type_can_be_named() -> None:
    renewed = edited_record(BROKEN, json.dumps(FIXED).encode(), max_bytes=1_048_576, new_id=True)
    assert renewed.headers["ce_id"] not in ("", "lead-1-id")

    untyped = dead_letter(BROKEN.value, ce_type="io.dealflow.no_such.v1")
    with pytest.raises(InvalidPayload) as refused:
        edited_record(untyped, json.dumps(FIXED).encode(), max_bytes=1_048_576)
    assert refused.value.problems == [
        "ce_type: 'io.dealflow.no_such.v1' is not a dealflow event type; name one with --type"
    ]
    typed = edited_record(
        untyped, json.dumps(FIXED).encode(), max_bytes=1_048_576, event_type="lead.captured.v1"
    )
    assert typed.headers["ce_type"] == LEAD_TYPE


@pytest.mark.parametrize(
    ("payload", "problems"),
    [
        (
            b'{"lead_id": "lead fixed", "employees": [250]}',
            [
                "lead_id: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._:-]*$'",
                "email: Field required",
                "employees.int: Input should be a valid integer",
                "employees.constrained-str: Input should be a valid string",
            ],
        ),
        (b'{"lead_id": ', ["<payload>: not JSON: Expecting value: line 1 column 13 (char 12)"]),
        (b"[1, 2]", ["<root>: Input should be a valid dictionary or instance of LeadCaptured"]),
    ],
)
def test_an_invalid_edit_is_refused_with_each_field_and_reason(payload: bytes, problems: list[str]) -> None:
    with pytest.raises(InvalidPayload) as refused:
        edited_record(BROKEN, payload, max_bytes=1_048_576)
    assert refused.value.problems == problems
    assert str(refused.value).splitlines()[1:] == problems


def test_an_edit_the_service_would_refuse_for_its_size_is_refused_too() -> None:
    with pytest.raises(InvalidPayload) as refused:
        edited_record(
            BROKEN, json.dumps(FIXED | {"title": "x" * 900, "last_name": "y" * 900}).encode(), max_bytes=1024
        )
    [problem] = refused.value.problems
    assert problem.startswith("oversized_payload: ")


def test_an_unchanged_redrive_is_the_original_record() -> None:
    record = original_record(BROKEN)
    assert (record.topic, record.key, record.value) == ("dealflow.leads.v1", b"wrong-key", BROKEN.value)
    assert record.headers["ce_id"] == "lead-1-id"
    assert not [name for name in record.headers if name.startswith("dlq_")]


def test_a_dead_letter_that_kept_only_its_values_digest_is_not_redriven_unchanged() -> None:
    digest_only = dead_letter(b"", dlq_value_sha256="ab" * 32, dlq_value_bytes="5000000")
    with pytest.raises(DeadLetterError, match="kept only the digest of its 5000000-byte value"):
        original_record(digest_only)
    assert edited_record(digest_only, json.dumps(FIXED).encode(), max_bytes=1_048_576).key == b"lead-fixed"


def test_erase_reports_what_each_service_found_and_never_claims_more() -> None:
    nothing = dict.fromkeys(SERVICES, 0)
    lines, complete = erasure_summary("erasure-1", nothing, SERVICES, timeout=60)
    assert complete
    assert lines[:-1] == [f"{service:<15} 0 records found" for service in SERVICES]
    assert lines[-1] == (
        "erasure-1: all 5 services confirmed, 0 records found: no service held data for this email"
    )
    assert "erased everywhere" not in "\n".join(lines)

    some = nothing | {"prospecting": 3, "qualification": 1}
    lines, complete = erasure_summary("erasure-2", some, SERVICES, timeout=60)
    assert complete
    assert lines[0] == "prospecting     3 record(s) anonymised"
    assert lines[2] == "proposal        0 records found"
    assert lines[-1] == (
        "erasure-2: all 5 services confirmed, 4 record(s) anonymised in prospecting, qualification"
    )

    lines, complete = erasure_summary("erasure-3", {"prospecting": 2}, SERVICES, timeout=8)
    assert not complete
    assert lines[1] == "qualification   no answer"
    assert lines[-1] == (
        "erasure-3: no answer from qualification, proposal, onboarding, insights within 8s; "
        "2 record(s) anonymised by the 1 that answered"
    )
