"""Finding and anonymising a person's data in stored documents, for erasure requests (GDPR art. 17).

Stage states differ, but every one of them holds people as a contact: a mapping with an `email`
(or, in flattened snapshots, `contact_email`). Anonymising works on that shape, so a new stage or a new
field is covered without code of its own. Pure functions; the runtime does the I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
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
            if key in EMAIL_KEYS and isinstance(item, str) and "@" in item:  # not "" nor ERASED either
                yield item
            else:
                yield from emails_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from emails_in(item)


def subject_keys(value: Any) -> list[str]:
    return sorted({subject_key(email) for email in emails_in(value)})


# `"email": "..."` or `"contact_email": "..."` as JSON writes it, not inside another string (whose quotes
# would be escaped).
_EMAIL_MEMBER = re.compile(rb'(?<!\\)"(?:email|contact_email)"\s*:\s*("(?:[^"\\]|\\.)*")')


def emails_in_json(text: bytes) -> Iterator[str]:
    """`emails_in` of a JSON document's text, without decoding all of it.

    A record that cannot hold an email (no `@`) costs one scan; one with an escape sequence other than
    `\\"` (an `@` could hide as `\\u0040`) or that is not JSON is decoded and walked like a stored state.
    """
    if b"@" not in text and b"\\u" not in text:
        return
    if b"\\u" in text:
        yield from _emails_in_any(text)
        return
    for match in _EMAIL_MEMBER.finditer(text):
        try:
            email = json.loads(match.group(1))
        except ValueError:  # not JSON after all (a dead letter may hold any bytes): decode it whole
            yield from _emails_in_any(text)
            return
        if isinstance(email, str) and "@" in email:
            yield email


def _emails_in_any(text: bytes) -> Iterator[str]:
    try:
        yield from emails_in(json.loads(text))
    except ValueError:
        return


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
