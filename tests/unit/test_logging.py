"""Personal data never reaches a rendered log line in clear, from dealflow's own logs or a library's."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aiokafka.errors import CoordinatorNotAvailableError, GroupAuthorizationFailedError

from shared.logging import configure_logging, mask_text


def rendered_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_emails_and_phone_numbers_are_masked_anywhere_in_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    log = configure_logging("test")

    log.warning(
        "dead_lettered",
        detail="schema_violation: jana.novak@acme-robotics.de, call +49 30 1234567",
        contacts=[{"reach": "(415) 555-0100"}, "ole.berg@example.com"],
    )

    [line] = rendered_lines(capsys)
    assert line["detail"] == "schema_violation: j***@acme-robotics.de, call ***67"
    assert line["contacts"] == [{"reach": "***00"}, "o***@example.com"]
    assert "jana.novak" not in json.dumps(line)


def test_ids_offsets_and_times_are_left_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    log = configure_logging("test")
    values = {
        "deal_id": "lead-acme-001",
        "event_id": "8f9d3a64-1f5e-4c3b-9d0e-3d6a2b7c5e11",
        "sequence": "0000000003.0001",
        "detail": "1048577 bytes exceeds the limit of 1048576",
        "due_at": "2026-11-29T00:42:53.123456+00:00",
        "offset": 123456789,
    }

    log.info("duplicate_absorbed", **values)

    [line] = rendered_lines(capsys)
    assert {key: line[key] for key in values} == values
    assert line["service"] == "test"


def test_names_logged_under_a_personal_key_are_hidden(capsys: pytest.CaptureFixture[str]) -> None:
    log = configure_logging("test")

    log.info("contact_seen", contact={"first_name": "Jana", "last_name": "Novak", "email": "jana@acme.de"})

    [line] = rendered_lines(capsys)
    assert line["contact"] == {"first_name": "***", "last_name": "***", "email": "j***@acme.de"}


def test_every_key_erasure_treats_as_personal_is_hidden_in_logs(capsys: pytest.CaptureFixture[str]) -> None:
    log = configure_logging("test")

    log.info("lead_seen", contact_first_name="Jana", contact_last_name="Novak", contact_phone="555-0100")

    [line] = rendered_lines(capsys)
    assert (line["contact_first_name"], line["contact_last_name"], line["contact_phone"]) == ("***",) * 3


def test_library_messages_and_tracebacks_are_masked_too(capsys: pytest.CaptureFixture[str]) -> None:
    log = configure_logging("test")

    logging.getLogger("aiokafka").warning("cannot deliver to %s", "jana@acme.de")
    try:
        raise KeyError("+44 20 7946 0958")
    except KeyError:
        log.exception("processing_failed")

    library, ours = rendered_lines(capsys)
    assert library["event"] == "cannot deliver to j***@acme.de"
    assert library["logger"] == "aiokafka"
    assert "KeyError: '***58'" in ours["exception"]
    assert "7946" not in ours["exception"]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("tel 030 1234567", "tel ***67"),
        ("+33 1 23 45 67 89.", "***89."),
        ("a@b.co,+4930123456", "a***@b.co,***56"),
        ("fit score 45 is below 50", "fit score 45 is below 50"),
        ("amount 1700000 EUR", "amount 1700000 EUR"),
    ],
)
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def test_a_group_coordinator_not_found_yet_is_no_error_but_other_coordinator_errors_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("test")
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    coordinator.error("Group Coordinator Request failed: %s", CoordinatorNotAvailableError())
    coordinator.error("Group Coordinator Request failed: %s", GroupAuthorizationFailedError("g"))
    [line] = rendered_lines(capsys)
    assert line["level"] == "error"
    assert "GroupAuthorizationFailed" in line["event"]
