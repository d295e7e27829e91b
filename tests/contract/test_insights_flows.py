"""The insights service is declared in the contract's flows like the stages (it is not a stage itself)."""

from contracts.events import DeadlineReached, DealStalled, ErasureRequested, PersonalDataErased
from contracts.flows import party
from services.insights.service import definition


def test_insights_receives_exactly_what_it_handles() -> None:
    assert set(party("insights").receives) == set(definition().handlers) | {ErasureRequested}


def test_insights_sends_stalls_its_own_deadlines_and_erasure_confirmations() -> None:
    assert set(party("insights").sends) == {DealStalled, DeadlineReached, PersonalDataErased}
