"""The fields a person may edit in a story file, read and normalised to plain JSON values
(the form sync compares, remembers as the last sync's base, and applies through story
update), with errors that name the file, the line and the key."""

from __future__ import annotations

import re
from typing import Any

from storyflow.domain.budgets import parse_enforcement
from storyflow.domain.model import MAX_PHASE, clean_title, parse_story_id
from storyflow.domain.priorities import parse_priority
from storyflow.domain.statuses import parse_status
from storyflow.errors import InvalidInput, StoryflowError

# The fields a person may edit in a story file (file key -> Story attribute); the engine
# applies them through story update (and status through story move).
EDITABLE = {
    "title": "title",
    "status": "status",
    "priority": "priority",
    "phase": "phase",
    "depends_on": "depends_on",
    "requires": "requires",
    "breaking_change": "breaking_change",
    "graph_integration": "graph_integration",
    "token_budget_multiplier": "token_budget_multiplier",
    "token_budget_enforcement": "enforcement",
}
FIELDS = tuple(EDITABLE.values())


def line_of(text: str, key: str) -> int | None:
    """The line of the first ``key:`` at the start of a line (1-based), for messages."""
    match = re.search(rf"^{re.escape(key)}\s*:", text, re.M)
    return None if match is None else text.count("\n", 0, match.start()) + 1


def _bad(
    source: str, text: str, key: str, problem: str, code: str = "INVALID_INPUT"
) -> InvalidInput:
    line = line_of(text, key)
    where = f"{source}:{line}" if line else source
    return InvalidInput(
        f"{where}: {key}: {problem}",
        code=code,
        hint=f"fix {key} in {source}",
        details={"file": source, "line": line, "key": key},
    )


def _ids(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        parse_story_id(str(item))
        out.append(str(item).strip())
    return sorted(set(out))


def _flag(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _number(value: Any) -> float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    if not 0 < value <= 100:
        raise ValueError("must be above 0 and at most 100")
    return float(value)


def _phase(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PHASE:
        raise ValueError(f"must be a whole number from 0 to {MAX_PHASE}")
    return value


def _title(value: Any) -> str:
    return clean_title(str(value if value is not None else ""))


def _requirements(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return sorted({str(v).strip() for v in items if str(v).strip()})


_PARSERS: dict[str, Any] = {
    "title": _title,
    "status": lambda v: parse_status(str(v))[0].value,
    "priority": lambda v: parse_priority(str(v if v is not None else "P2")),
    "phase": _phase,
    "depends_on": _ids,
    "requires": _requirements,
    "breaking_change": _flag,
    "graph_integration": _flag,
    "token_budget_multiplier": _number,
    "token_budget_enforcement": lambda v: None if v is None else parse_enforcement(str(v)).value,
}


def editable_fields(meta: dict[str, Any], text: str, source: str) -> dict[str, Any]:
    """The editable fields, normalised to JSON values (the form compared and remembered)."""
    fields: dict[str, Any] = {}
    if "status" not in meta:
        raise _bad(source, text, "status", "missing", "INVALID_STATUS")
    for key, attr in EDITABLE.items():
        try:
            fields[attr] = _PARSERS[key](meta.get(key))
        except StoryflowError as exc:
            raise _bad(source, text, key, exc.message, exc.code) from None
        except (ValueError, TypeError) as exc:
            raise _bad(source, text, key, str(exc)) from None
    return fields


def story_fields(story: Any) -> dict[str, Any]:
    """The same fields from the database's Story."""
    return {
        "title": story.title,
        "status": story.status.value,
        "priority": story.priority,
        "phase": story.phase,
        "depends_on": sorted(story.depends_on),
        "requires": sorted(story.requires),
        "breaking_change": story.breaking_change,
        "graph_integration": story.graph_integration,
        "token_budget_multiplier": float(story.token_budget_multiplier),
        "enforcement": story.enforcement.value if story.enforcement else None,
    }
