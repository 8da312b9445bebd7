"""The event vocabulary (domain/events.py) is every type the engine writes: storyflow trace
--type refuses any other, so a type written but missing from the table could not be asked for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from storyflow.domain.events import EVENT_TYPES, parse_event_type
from storyflow.errors import InvalidInput

SRC = Path(__file__).resolve().parents[2] / "src" / "storyflow"


def _strings(node: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def written_types() -> set[str]:
    """The literal types of every ``store.insert_event(type=...)`` and run ``event(ctx, TYPE,
    ...)`` call in the package."""
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "insert_event":
                types = [k.value for k in node.keywords if k.arg == "type"]
                assert types, f"{path}:{node.lineno}: insert_event without type="
                found |= _strings(types[0])
            elif isinstance(func, ast.Name) and func.id == "event" and len(node.args) > 1:
                found |= _strings(node.args[1])
    return found


def test_every_written_event_type_is_in_the_vocabulary() -> None:
    written = written_types()
    assert "phase_start" in written and "transition" in written  # the scan sees both forms
    assert written == set(EVENT_TYPES)


def test_an_unknown_event_type_is_invalid_input_naming_the_types() -> None:
    assert parse_event_type(" transition ") == "transition"
    with pytest.raises(InvalidInput) as raised:
        parse_event_type("bogus")
    assert raised.value.code == "INVALID_INPUT"
    assert raised.value.hint is not None and "phase_start" in raised.value.hint
