"""The event vocabulary: every type of event row (and JSONL trace line) the engine writes.

DESIGN §6 names the run's events (phase_start … checkpoint, artifact, transition, budget,
lock); the others record the changes the remaining commands make. ``storyflow trace --type``
refuses a type outside this table (a typo would otherwise match nothing, silently), and a
unit test checks that every type the services write is here.
"""

from __future__ import annotations

from storyflow.errors import InvalidInput

EVENT_TYPES: dict[str, str] = {
    # a phase run
    "phase_start": "a phase run began",
    "agent_spawn": "the run's agent was started",
    "tool_call": "a tool the run's agent called (its name, what it acted on, the outcome)",
    "agent_complete": "the run's agent finished",
    "phase_complete": "a phase run ended (outcome, verdict, tokens, duration)",
    "checkpoint": "a phase run paused (awaiting an approval or a budget confirmation)",
    "error": "a phase run failed (error code, message, hint)",
    "lock": "a lease taken over from an expired holder",
    # a story's evidence and status
    "artifact": "an artifact version stored",
    "approval": "an elaboration approved",
    "transition": "a status change",
    "tokens": "token usage logged, within budget",
    "budget": "token usage past a budget limit, or a budget confirmation",
    "requirement": "a requirement marked met or unmet",
    # stories and epics
    "story_created": "a story created",
    "story_updated": "a story's fields changed",
    "story_split": "a story split into new stories",
    "epic_created": "an epic created",
    "epic_updated": "an epic's settings changed",
    # storyflow sync
    "sync": "a sync that changed something",
    "epic_rebuilt": "an epic and its stories rebuilt from the files",
    "log_appended": "Agent Log rows another clone (or a person) appended, taken in by "
    "sync as they were written: moves, artifacts, approvals, tokens",
    "story_rebuilt": "a story whose Agent Log was edited or diverged, rebuilt from its folder "
    "by sync --prefer files (counts, and the database's log rows the file lacked)",
    "sync_conflict_resolved": "a sync conflict resolved by --prefer",
}


def parse_event_type(text: str) -> str:
    """``text`` as an event type, or an invalid-input error listing the types."""
    value = text.strip()
    if value not in EVENT_TYPES:
        raise InvalidInput(
            f"unknown event type {text!r}",
            code="INVALID_INPUT",
            hint="an event type is one of: " + ", ".join(EVENT_TYPES),
            details={"value": text, "allowed": list(EVENT_TYPES)},
        )
    return value
