"""Topic names. They describe the data they carry; a deployment prefixes them with its namespace."""

from enum import StrEnum


class Topic(StrEnum):
    LEADS = "leads.v1"
    ACTIVITIES = "activities.v1"
    IMPORTS = "imports.v1"
    PROSPECTS = "prospects.v1"
    QUALIFICATIONS = "qualifications.v1"
    DEALS = "deals.v1"
    DEALS_WON = "deals.won.v1"
    ONBOARDINGS = "onboardings.v1"
    ACTIVITIES_REJECTED = "activities.rejected.v1"
    DEADLINES = "deadlines.v1"
    INSIGHTS = "insights.v1"
    PRIVACY = "privacy.v1"


def dead_letter_topic(service: str) -> str:
    return f"deadletter.{service}.v1"


# The four stages a deal goes through; the fault suite and the benchmark drive exactly these.
STAGE_SERVICES = ("prospecting", "qualification", "proposal", "onboarding")

# Every service process on the shared runtime: the stages plus the insights read model. Each has its own
# dead-letter topic (their names are part of the contract for ops) and confirms every erasure request.
SERVICES = (*STAGE_SERVICES, "insights")
