"""Finding and anonymising a person's data in stored documents, for erasure requests (GDPR art. 17).

Stage states differ, but every one of them holds people as a contact: a mapping with an `email`
(or, in flattened snapshots, `contact_email`). Anonymising works on that shape, so a new stage or a new
field is covered without code of its own. Pure functions; the runtime does the I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

ERASED = "[erased]"
EMAIL_KEYS = frozenset({"email", "contact_email"})
# What identifies a person next to their email; company facts (size, industry) are not personal data.
PERSONAL_KEYS = frozenset(
    {"first_name", "last_name", "phone", "contact_first_name", "contact_last_name", "contact_phone"}
)


def subject_key(email: str) -> str:
    """A stable, non-reversible index key for a person, so stored documents can be found by email
    without keeping an index of emails in clear."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def emails_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in EMAIL_KEYS and isinstance(item, str) and item not in ("", ERASED):
                yield item
            else:
                yield from emails_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from emails_in(item)


def subject_keys(value: Any) -> list[str]:
    return sorted({subject_key(email) for email in emails_in(value)})


def anonymise(value: Any, email: str) -> Any:
    """The value with every trace of the person whose email this is replaced by `ERASED`.

    A mapping holding their email loses its personal fields too; any text mentioning the email (a
    rejection reason, a raw parked record) has it replaced.
    """
    wanted = email.strip().lower()
    if isinstance(value, dict):
        holds_person = any(
            key in EMAIL_KEYS and isinstance(item, str) and item.strip().lower() == wanted
            for key, item in value.items()
        )
        return {
            key: (
                (ERASED if key in EMAIL_KEYS else None)
                if holds_person and (key in EMAIL_KEYS or key in PERSONAL_KEYS)
                else anonymise(item, email)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [anonymise(item, email) for item in value]
    if isinstance(value, str) and wanted and wanted in value.lower():
        return _replace_ignoring_case(value, wanted, ERASED)
    return value


def _replace_ignoring_case(text: str, needle: str, replacement: str) -> str:
    lowered, parts, start = text.lower(), [], 0
    while (found := lowered.find(needle, start)) >= 0:
        parts.append(text[start:found] + replacement)
        start = found + len(needle)
    return "".join(parts) + text[start:]
