"""Structured JSON logs, one line per event, with the service name bound to every line.

Personal data never reaches a log line in clear: every line, ours or a library's, passes through
`mask_personal_data` just before it is rendered.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping

import phonenumbers
import structlog

from shared.privacy import EMAIL_KEYS, PERSONAL_KEYS

EMAIL = re.compile(r"(?<![\w.%+-])([\w.%+-])[\w.%+-]*@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})")
# A value logged under one of these keys is personal whatever it looks like (a name has no pattern).
# The fields erasure treats as a person's, and the names logs may give a whole name.
PERSONAL_FIELDS = EMAIL_KEYS | PERSONAL_KEYS | {"full_name", "contact_name"}
# Phone numbers in international form (+49 30 1234567) are found in any country; national forms
# (030 1234567, (415) 555-0100) are recognised for these countries, those of the sample playbooks.
NATIONAL_PHONE_REGIONS = ("US", "GB", "DE", "FR")
MASK = "***"
# The shortest phone number worth masking; fewer digits than this and the phone matchers are skipped.
PHONE_MIN_DIGITS = 7
# Runs of digits and the separators phone numbers are written with: only these go to the (slower)
# phone number matcher, which then decides whether they are a phone number.
PHONE_CANDIDATE = re.compile(r"[+(]?\d[\d ().\-/]{5,}\d")
# Written by the logging chain itself, never personal, and looked at on every line.
TRUSTED_KEYS = frozenset({"timestamp", "level", "logger", "service"})


def mask_email(match: re.Match[str]) -> str:
    """`jana.novak@acme.de` becomes `j***@acme.de`: the company stays readable, the person does not."""
    return f"{match[1]}{MASK}@{match[2]}"


def mask_phone(number: str) -> str:
    """Only the last two digits stay, so a support call can still be matched with its log lines."""
    digits = re.sub(r"\D", "", number)
    return f"{MASK}{digits[-2:]}"


def mask_text(text: str) -> str:
    """The text with every email address and phone number in it masked."""
    return PHONE_CANDIDATE.sub(_mask_phones, EMAIL.sub(mask_email, text))


def _mask_phones(candidate: re.Match[str]) -> str:
    text = candidate[0]
    if sum(character.isdigit() for character in text) < PHONE_MIN_DIGITS:
        return text
    found = {
        (number.start, number.end)
        for region, leniency in (
            (None, phonenumbers.Leniency.POSSIBLE),
            *((region, phonenumbers.Leniency.VALID) for region in NATIONAL_PHONE_REGIONS),
        )
        for number in phonenumbers.PhoneNumberMatcher(text, region, leniency=leniency)
    }
    # Where matches overlap, the longest wins; replacing from the end keeps the other offsets valid.
    kept: list[tuple[int, int]] = []
    for start, end in sorted(found, key=lambda span: (span[0], -span[1])):
        if not kept or start >= kept[-1][1]:
            kept.append((start, end))
    for start, end in reversed(kept):
        text = text[:start] + mask_phone(text[start:end]) + text[end:]
    return text


def _masked(value: object, *, personal: bool = False) -> object:
    if isinstance(value, str):
        if personal:
            return EMAIL.sub(mask_email, value) if EMAIL.fullmatch(value) else MASK
        return mask_text(value)
    if isinstance(value, bool | int | float) or value is None:
        return MASK if personal and value is not None else value
    if isinstance(value, Mapping):
        return {
            key: _masked(item, personal=personal or key in PERSONAL_FIELDS) for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item, personal=personal) for item in value]
    # Anything else would be rendered by its repr, which may hold personal data too.
    return _masked(repr(value), personal=personal)


def mask_personal_data(
    logger: object, method_name: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Mask emails and phone numbers anywhere in a log line, and any value logged under a personal key."""
    return {
        key: value if key in TRUSTED_KEYS else _masked(value, personal=key in PERSONAL_FIELDS)
        for key, value in event_dict.items()
    }


class _CoordinatorNotFoundYet(logging.Filter):
    """Every consumer asks for its group coordinator before the broker has one ready (for seconds after
    a start, or a new group); aiokafka retries and logs each try at ERROR. A retriable answer is INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if str(record.msg).startswith("Group Coordinator Request failed") and getattr(
            error, "retriable", False
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger().isEnabledFor(logging.INFO) and logging.getLogger(
                "aiokafka"
            ).isEnabledFor(logging.INFO)
        return True


def configure_logging(service: str, level: str = "INFO") -> structlog.stdlib.BoundLogger:
    """Route structlog and the standard library (aiokafka, FastStream, PyMongo) through one JSON renderer."""
    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                # Last before rendering, so it also sees the formatted traceback and library messages.
                mask_personal_data,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every transient connection error at ERROR; our retry loop reports those itself.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    if not any(isinstance(f, _CoordinatorNotFoundYet) for f in coordinator.filters):
        coordinator.addFilter(_CoordinatorNotFoundYet())
    structlog.contextvars.bind_contextvars(service=service)
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(service)
    return logger
