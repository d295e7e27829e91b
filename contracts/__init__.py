"""The public contract of dealflow: topics, event types and their payload schemas.

Every service and every integrator relies on these names; changes within a version are additive only.
"""

from contracts.events import EVENT_TYPES, Event, event_model
from contracts.topics import Topic, dead_letter_topic

__all__ = ["EVENT_TYPES", "Event", "Topic", "dead_letter_topic", "event_model"]
