"""What a document database can store: checked before a value gets near one. Pure."""

from __future__ import annotations

import math
from typing import Any

# The deepest nesting and widest integer a stored document may hold (BSON integers are 64-bit).
MAX_DEPTH = 40
INT64 = (-(2**63), 2**63 - 1)


def storable_problem(value: Any, path: str = "") -> str | None:
    """Why the database could not store this JSON-like value (or None): BSON has 64-bit integers, and
    document keys may hold no dots, no leading dollar and no NUL."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"{where or '<root>'}: nested deeper than {MAX_DEPTH}"
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not INT64[0] <= item <= INT64[1]:
            return f"{where or '<root>'}: integer beyond 64 bits"
        if isinstance(item, float) and not math.isfinite(item):
            return f"{where or '<root>'}: not a finite number"
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str) or "." in key or key.startswith("$") or "\x00" in key:
                    return f"{where or '<root>'}: {str(key)[:60]!r} cannot be a document key"
                stack.append((child, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{index}]", depth + 1) for index, child in enumerate(item))
    return None
