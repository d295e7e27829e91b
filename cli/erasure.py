"""What `dealflow erase` tells the operator: each service's answer as it was, and no more than that."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def service_answer(count: int | None) -> str:
    if count is None:
        return "no answer"
    if count == 0:
        return "0 records found"
    return f"{count} record(s) anonymised"


def erasure_summary(
    request_id: str, confirmed: Mapping[str, int], services: Sequence[str], *, timeout: float
) -> tuple[list[str], bool]:
    """One line per service and a last line on the whole request; True when every service confirmed."""
    lines = [f"{service:<15} {service_answer(confirmed.get(service))}" for service in services]
    missing = [service for service in services if service not in confirmed]
    total = sum(confirmed.get(service, 0) for service in services)
    held = [service for service in services if confirmed.get(service, 0) > 0]
    if missing:
        lines.append(
            f"{request_id}: no answer from {', '.join(missing)} within {timeout:g}s; "
            f"{total} record(s) anonymised by the {len(services) - len(missing)} that answered"
        )
    elif total == 0:
        lines.append(
            f"{request_id}: all {len(services)} services confirmed, 0 records found: "
            "no service held data for this email"
        )
    else:
        lines.append(
            f"{request_id}: all {len(services)} services confirmed, {total} record(s) anonymised "
            f"in {', '.join(held)}"
        )
    return lines, not missing
