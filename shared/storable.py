"""What a document database can store: checked before a value gets near one. Pure."""

from __future__ import annotations

import math
from typing import Any

# The deepest nesting and widest integer a stored document may hold (BSON integers are 64-bit).
MAX_DEPTH = 40
INT64 = (-(2**63), 2**63 - 1)


def storable_problem(value: Any) -> str | None:
    """Why the database could not store this JSON-like value (or None): BSON has 64-bit integers, and
    document keys may hold no dots, no leading dollar and no NUL."""
    found = _problem(value, 0)
    if found is None:
        return None
    path, reason = found
    return f"{'.'.join(reversed(path)) or '<root>'}: {reason}"


def _problem(item: Any, depth: int) -> tuple[list[str], str] | None:
    # The path is built only for the value at fault: this runs on every stored state.
    if depth > MAX_DEPTH:
        return [], f"nested deeper than {MAX_DEPTH}"
    kind = type(item)
    if kind is dict:
        for key, child in item.items():
            if type(key) is not str or "." in key or key.startswith("$") or "\x00" in key:
                return [], f"{str(key)[:60]!r} cannot be a document key"
            if type(child) in _SCALARS:
                continue
            found = _problem(child, depth + 1)
            if found is not None:
                found[0].append(key)
                return found
    elif kind is list or kind is tuple:
        for index, child in enumerate(item):
            found = _problem(child, depth + 1)
            if found is not None:
                found[0].append(f"[{index}]")
                return found
    elif kind is int and not INT64[0] <= item <= INT64[1]:
        return [], "integer beyond 64 bits"
    elif kind is float and not math.isfinite(item):
        return [], "not a finite number"
    return None


_SCALARS = frozenset({str, bool, type(None)})
