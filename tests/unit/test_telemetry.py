"""Trace lines (DESIGN §6 fields at the top level) and their mapping to OpenTelemetry spans,
without a collector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from storyflow.adapters.telemetry.jsonl import JsonlTracer, parse_line, trace_line
from storyflow.adapters.telemetry.otel import to_spans

TRACE = "0af7651916cd43dd8448eb211c80319c"
PHASE_SPAN = "b7ad6b7169203331"


def _event(kind: str, span: str, payload: dict[str, Any], at: str = "2026-03-01T09:00:05.250000Z"):  # type: ignore[no-untyped-def]
    return {
        "created_at": at,
        "type": kind,
        "trace_id": TRACE,
        "span_id": span,
        "story_id": "FLOW-001",
        "epic": "FLOW",
        "actor": "worker-1",
        "payload": payload,
    }


def test_a_trace_line_has_the_fields_at_the_top_level() -> None:
    line = json.loads(
        trace_line(
            _event(
                "agent_complete",
                "00f067aa0ba902b7",
                {
                    "phase": "review",
                    "run_id": "run-1",
                    "parent_span_id": PHASE_SPAN,
                    "duration_ms": 1250,
                    "tokens": {"input": 10, "output": 5, "cache_read": 0, "cache_write": 0},
                    "story": "not the story field",  # a payload key that collides
                },
            )
        )
    )
    assert list(line)[:6] == ["ts", "type", "trace_id", "span_id", "parent_span_id", "story"]
    assert line["parent_span_id"] == PHASE_SPAN
    assert line["story"] == "FLOW-001"
    assert line["payload_story"] == "not the story field"
    assert line["duration_ms"] == 1250 and line["tokens"]["input"] == 10


def test_reading_skips_a_line_still_being_written(tmp_path: Path) -> None:
    tracer = JsonlTracer(tmp_path)
    tracer.record([_event("transition", "00f067aa0ba902b7", {"from": "a", "to": "b"})])
    with tracer.story_file("FLOW-001").open("a") as handle:
        handle.write('{"ts": "half')
    assert [parse_line(t)["type"] for t in tracer.read("FLOW-001")] == ["transition"]  # type: ignore[index]
    assert list(tracer.read("FLOW-999")) == []
    assert parse_line("[1, 2]") is None and parse_line("{nope") is None


def test_follow_yields_lines_appended_later(tmp_path: Path) -> None:
    tracer = JsonlTracer(tmp_path)
    seen: list[str] = []
    polls = iter(range(100))

    def stop() -> bool:
        step = next(polls)
        if step == 2:  # the file appears after two polls
            tracer.record([_event("transition", "00f067aa0ba902b7", {"to": "b"})])
        return len(seen) >= 1

    for text in tracer.follow("FLOW-001", poll=0, stop=stop):
        seen.append(text)
    assert [json.loads(t)["to"] for t in seen] == ["b"]


def test_lines_map_to_spans() -> None:
    lines = [
        json.loads(trace_line(_event("phase_start", PHASE_SPAN, {"phase": "review"}))),
        json.loads(
            trace_line(
                _event(
                    "agent_complete",
                    "00f067aa0ba902b7",
                    {
                        "phase": "review",
                        "parent_span_id": PHASE_SPAN,
                        "duration_ms": 1250,
                        "tokens": {"input": 10, "output": 5},
                        "model": "claude-sonnet-4",
                    },
                )
            )
        ),
        json.loads(
            trace_line(_event("error", "1111111111111111", {"phase": "review", "error_code": "X"}))
        ),
        {"ts": "2026-03-01T09:00:00Z", "type": "bad", "trace_id": "xyz", "span_id": "1"},
    ]
    spans = to_spans(lines)
    assert [s.name for s in spans] == [
        "phase_start review",
        "agent_complete review",
        "error review",
    ]
    end = 1_772_355_605_250_000_000  # 2026-03-01T09:00:05.25Z in ns
    start, agent, error = spans
    assert start.trace_id == int(TRACE, 16) and start.span_id == int(PHASE_SPAN, 16)
    assert start.start_ns == start.end_ns == end
    assert agent.parent_span_id == int(PHASE_SPAN, 16)
    assert (agent.end_ns - agent.start_ns, agent.end_ns) == (1_250_000_000, end)
    assert agent.attributes == {
        "storyflow.story": "FLOW-001",
        "storyflow.epic": "FLOW",
        "storyflow.actor": "worker-1",
        "storyflow.phase": "review",
        "storyflow.duration_ms": 1250,
        "storyflow.tokens.input": 10,
        "storyflow.tokens.output": 5,
        "storyflow.model": "claude-sonnet-4",
    }
    assert (start.error, agent.error, error.error) == (False, False, True)


def test_export_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    from storyflow.adapters.telemetry import otel
    from storyflow.errors import UsageError

    real_import = builtins.__import__

    def no_otel(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_otel)
    with pytest.raises(UsageError) as error:
        otel.export([], "http://127.0.0.1:1/v1/traces")
    assert error.value.code == "EXTRA_MISSING"
    assert error.value.hint == "pip install 'storyflow[otel]'"


def test_lines_sharing_a_span_id_are_one_span() -> None:
    agent_span = "00f067aa0ba902b7"
    events = [
        _event("phase_start", PHASE_SPAN, {"phase": "review", "run_id": "r1"}, at=_at(0)),
        _event(
            "agent_spawn",
            agent_span,
            {"phase": "review", "parent_span_id": PHASE_SPAN, "model": "m"},
            at=_at(1),
        ),
        _event(
            "agent_complete",
            agent_span,
            {"phase": "review", "parent_span_id": PHASE_SPAN, "duration_ms": 3000},
            at=_at(4),
        ),
        _event(
            "phase_complete",
            PHASE_SPAN,
            {"phase": "review", "run_id": "r1", "verdict": "FAIL", "status": "failed"},
            at=_at(5),
        ),
    ]
    phase, agent = to_spans([json.loads(trace_line(e)) for e in events])
    second = 1_000_000_000
    base = 1_772_355_600_000_000_000  # 2026-03-01T09:00:00Z
    assert (phase.name, phase.start_ns, phase.end_ns) == ("phase review", base, base + 5 * second)
    assert phase.attributes["storyflow.verdict"] == "FAIL"
    assert phase.attributes["storyflow.events"] == "phase_start,phase_complete"
    assert phase.error is True and phase.parent_span_id is None
    assert (agent.name, agent.start_ns, agent.end_ns) == (
        "agent review",
        base + second,
        base + 4 * second,
    )
    assert agent.parent_span_id == int(PHASE_SPAN, 16)
    assert agent.attributes["storyflow.model"] == "m" and agent.error is False


def _at(seconds: int) -> str:
    return f"2026-03-01T09:00:{seconds:02d}.000000Z"


def test_a_failed_tool_call_is_an_error_span_inside_its_agent_span() -> None:
    agent_span = "00f067aa0ba902b7"
    fields = {"phase": "implement", "parent_span_id": agent_span, "tool": "Bash"}
    calls = [
        _event("tool_call", "2222222222222222", {**fields, "ok": True, "duration_ms": 400}),
        _event("tool_call", "3333333333333333", {**fields, "ok": False, "duration_ms": 100}),
    ]
    passed, failed = to_spans([json.loads(trace_line(e)) for e in calls])
    assert passed.name == failed.name == "tool_call implement"
    assert passed.parent_span_id == failed.parent_span_id == int(agent_span, 16)
    assert (passed.end_ns - passed.start_ns, failed.end_ns - failed.start_ns) == (
        400_000_000,
        100_000_000,
    )
    assert (passed.error, failed.error) == (False, True)
    assert failed.attributes["storyflow.tool"] == "Bash"
