"""Human-readable lines for events, and a deal's journey across the stages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cli.kafka_io import SeenEvent


def _money(amount: dict[str, object] | None) -> str:
    if not amount:
        return "?"
    minor = int(str(amount.get("amount_minor", 0)))
    return f"{minor / 100:,.2f} {amount.get('currency', '')}"


def _history(data: dict[str, Any]) -> str:
    return " (history: before the import, pages nobody)" if data.get("from_history") else ""


def summary(event: SeenEvent) -> str:
    data = event.data or {}
    match event.type:
        case "lead.captured.v1":
            return f"{data.get('email')} at {data.get('company_name') or data.get('website') or '?'}"
        case "prospect.identified.v1":
            fit = ", ".join(
                f"{item.get('criterion')} {item.get('points')}"
                for item in data.get("fit_explanation", [])
                if isinstance(item, dict)
            )
            return (
                f"fit {data.get('fit_score')} (tier {data.get('tier')}{': ' + fit if fit else ''}),"
                f" owner {data.get('owner')}"
            )
        case "lead.merged.v1":
            committee = data.get("relation") == "buying_committee"
            joins = "joins the buying committee of" if committee else "merged into"
            return f"{data.get('lead_id')} {joins} {event.key} (same {data.get('matched_on')})"
        case "lead.rejected.v1":
            return ", ".join(str(reason.get("code")) for reason in data.get("reasons", []))
        case "qualification.next_step_scheduled.v1":
            step = data.get("next_step", {})
            due = str(step.get("due_at"))[:16]
            return f"next: {step.get('action')} by {due} ({data.get('touches_done')} touches done)"
        case "qualification.sla_breached.v1":
            return f"{data.get('sla')} (was due {str(data.get('due_at'))[:16]}){_history(data)}"
        case "lead.nurtured.v1":
            return f"{data.get('reason')}, reopens {data.get('reopen_on')}"
        case "activity.touch_logged.v1":
            return f"{data.get('channel')}: {data.get('outcome')}"
        case "lead.qualified.v1":
            return f"{data.get('framework')} met, estimated {_money(data.get('amount'))}"
        case "lead.disqualified.v1":
            return str(data.get("reason_code"))
        case "deal.stage_changed.v1":
            return f"{data.get('previous_stage') or '-'} -> {data.get('stage')} (p={data.get('probability')})"
        case "deal.won.v1":
            return f"{_money(data.get('amount'))}, {len(data.get('lines', []))} quote lines"
        case "deal.lost.v1":
            competitor = data.get("competitor")
            return f"{data.get('reason_code')}" + (f" to {competitor}" if competitor else "")
        case "onboarding.started.v1":
            return f"{len(data.get('plan', []))} tasks: " + ", ".join(
                str(t.get("task")) for t in data.get("plan", [])
            )
        case "upsell.identified.v1":
            return f"offer {data.get('product')} as {data.get('expansion_deal_id')}: {data.get('reason')}"
        case "deal.expansion_opened.v1":
            return f"expansion of {data.get('original_deal_id')}: {data.get('product')}"
        case "onboarding.at_risk.v1":
            return f"{data.get('task')} overdue ({data.get('owner_role')})"
        case "quote.issued.v1":
            quote = data.get("quote", {})
            return f"v{quote.get('version')} {data.get('status')}, total {_money(quote.get('total'))}"
        case "onboarding.completed.v1":
            return f"time to value {int(str(data.get('time_to_value_seconds', 0))) // 86400} days"
        case "activity.rejected.v1":
            reason = data.get("reason", {})
            activity = str(data.get("activity_type", "")).removeprefix("io.dealflow.activity.")
            return f"{activity} refused: {reason.get('code')} ({reason.get('message')})"
        case "activity.discovery_call_logged.v1":
            met = [name for name, value in data.get("answers", {}).items() if value is True]
            return f"{data.get('framework', 'BANT')}: {', '.join(met) or 'nothing'} confirmed"
        case "activity.demo_held.v1":
            return f"attendees: {', '.join(data.get('attendees', [])) or '-'}"
        case "activity.proposal_sent.v1":
            if data.get("quote_version") is not None:
                return f"quote v{data.get('quote_version')} sent"
            return f"{len(data.get('lines', []))} quote lines in {data.get('currency')}, prepared and sent"
        case "activity.quote_prepared.v1":
            return f"{len(data.get('lines', []))} quote lines in {data.get('currency')}"
        case "deal.imported.v1" | "opportunity.imported.v1":
            known = len(data.get("stage_history", []))
            where = f"{data.get('stage')} in {data.get('pipeline')}"
            return (
                f"{data.get('source')} {data.get('source_id')}: {where}, owner {data.get('owner')},"
                f" {known} stage{'' if known == 1 else 's'} known"
            )
        case "deal.next_step_overdue.v1":
            step = data.get("next_step", {})
            return f"{step.get('action')} was due {str(data.get('due_at'))[:16]}{_history(data)}"
        case "deal.stalled.v1":
            days = data.get("days_without_progress")
            return f"{days} days without progress in {data.get('stage')}{_history(data)}"
        case "deadline.reached.v1":
            return str(data.get("deadline_id", "")).split("/")[0]
        case "activity.payment_received.v1":
            return _money(data.get("amount"))
        case "activity.deal_lost_reported.v1" | "activity.onboarding_task_completed.v1":
            return str(data.get("reason_code") or data.get("task"))
        case _:
            return ""


def line(event: SeenEvent) -> str:
    source = event.headers.get("ce_source", "").removeprefix("/dealflow/")
    what = summary(event)
    if "dlq_error_code" in event.headers:  # a dead letter keeps its record's headers: say what it is
        service = event.headers.get("dlq_service", "?")
        what = f"DEAD-LETTERED by {service}: {event.headers['dlq_error_code']}"
    # Business time: a deal's events happen days or weeks apart.
    return f"  {event.time[:16].replace('T', ' '):<16} {source:<14} {event.type:<40} {what}"


def journey(events: Iterable[SeenEvent], deal_id: str) -> list[SeenEvent]:
    """The deal's events, its expansion deals' openings and, for a lead merged into another deal, the
    merge (keyed by that deal), in order: time, then the stage's sequence. A record sent again with the
    same id (a demo told twice, an import repeated: the services drop the copies) is shown once."""
    ordered = sorted(
        (
            e
            for e in events
            if e.key == deal_id
            or (e.data or {}).get("original_deal_id") == deal_id
            or (e.type == "lead.merged.v1" and (e.data or {}).get("lead_id") == deal_id)
        ),
        key=lambda e: (e.time, e.headers.get("ce_sequence", ""), e.topic, e.offset),
    )
    seen: set[tuple[str, str]] = set()
    shown = []
    for event in ordered:
        event_id = event.headers.get("ce_id")
        if event_id is None or (event.topic, event_id) not in seen:
            shown.append(event)
        if event_id is not None:
            seen.add((event.topic, event_id))
    return shown


def merged_into(events: Iterable[SeenEvent], lead_id: str) -> str | None:
    """The deal a lead was merged into, if it was."""
    return next(
        (e.key for e in events if e.type == "lead.merged.v1" and (e.data or {}).get("lead_id") == lead_id),
        None,
    )
