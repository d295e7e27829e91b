"""The stage runtime: consume, decide, store, publish, for every stage service.

`transition.step` is the pure core; everything else is I/O around it (see each module's docstring).
"""

from shared.runtime.definition import EventHandler, StageDefinition, StageFacts, with_playbook
from shared.runtime.serve import run_stage, serve
from shared.runtime.service import StageService

__all__ = [
    "EventHandler",
    "StageDefinition",
    "StageFacts",
    "StageService",
    "run_stage",
    "serve",
    "with_playbook",
]
