"""Story priorities: P0 (highest) to P4, the words that mean them, and their order."""

from __future__ import annotations

from storyflow.errors import InvalidInput

PRIORITIES = ("P0", "P1", "P2", "P3", "P4")
PRIORITY_ALIASES = {
    "critical": "P0",
    "highest": "P0",
    "high": "P1",
    "medium": "P2",
    "normal": "P2",
    "low": "P3",
    "lowest": "P4",
}


def parse_priority(text: str) -> str:
    value = str(text).strip()
    upper = value.upper()
    if upper in PRIORITIES:
        return upper
    alias = PRIORITY_ALIASES.get(value.lower())
    if alias:
        return alias
    raise InvalidInput(
        f"invalid priority {text!r}",
        hint="use P0 (highest) to P4, or critical/high/medium/low",
        details={"value": value},
    )
