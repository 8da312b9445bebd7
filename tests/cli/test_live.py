"""The live board (a RunObserver drawn with Rich) and the final run report, rendered to a
plain console."""

from __future__ import annotations

import io

from rich.console import Console

from storyflow.config import DEFAULT_MODELS
from storyflow.entrypoints.cli.live import LiveBoard, render_report, use_live_board
from storyflow.services.agents import ToolCall, Usage
from storyflow.services.run_report import (
    BudgetEvent,
    Overrun,
    PhaseEvent,
    RunRecord,
    RunSummary,
    StoryResult,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _console() -> Console:
    return Console(file=io.StringIO(), width=160, force_terminal=False, color_system=None)


def _text(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def _event(story: str, phase: str, **kw: object) -> PhaseEvent:
    base: dict[str, object] = {
        "story_id": story,
        "epic": "FLOW",
        "title": "t",
        "phase": phase,
        "run_id": f"{story}-{phase}",
        "attempt": 1,
        "worker": "host:1-w0",
        "agent": "scripted",
        "model": "claude-sonnet-4",
    }
    base.update(kw)
    return PhaseEvent(**base)  # type: ignore[arg-type]


def test_the_board_shows_counts_running_phases_totals_and_errors() -> None:
    clock = Clock()
    console = _console()
    board = LiveBoard(
        title="storyflow run FLOW",
        counts={"pending": 2, "uat": 1},
        models=DEFAULT_MODELS,
        console=console,
        clock=clock,
    )
    board.on_phase_start(_event("FLOW-001", "generate"))
    board.on_phase_start(_event("FLOW-003", "gate"))
    clock.now += 75
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000)  # $3 + $1.5 on sonnet
    board.on_phase_end(
        _event(
            "FLOW-003",
            "gate",
            status="succeeded",
            verdict="PASS",
            source="uat",
            target="completed",
            duration_ms=75_000,
            usage=usage,
        )
    )
    board.on_error(
        _event("FLOW-001", "generate", error_code="AGENT_TIMEOUT", message="no answer in 30 s")
    )
    board.on_story_done("FLOW-003", "completed", None)
    console.print(board.render())
    text = _text(console)
    assert "storyflow run FLOW" in text
    assert "1/3 stories at rest" in text and "1m 15s" in text
    assert "pending 2" in text and "completed 1" in text and "uat" not in text.split("\n")[1]
    running = [line for line in text.splitlines() if "FLOW-001" in line and "generate" in line]
    assert running and "1m 15s" in running[0] and "host:1-w0" in running[0]
    assert "FLOW-003" not in text.split("errors")[0].split("phase runs")[0].split("running for")[1]
    assert "phase runs 1" in text and "tokens 1,100,000" in text and "$4.5000" in text
    assert "errors (1):" in text and "AGENT_TIMEOUT: no answer in 30 s" in text


def test_the_board_shows_the_tool_each_running_agent_called_last() -> None:
    console = _console()
    board = LiveBoard(title="run", counts={"pending": 2}, console=console, clock=Clock())
    board.on_phase_start(_event("FLOW-001", "implement"))
    board.on_phase_start(_event("FLOW-002", "review"))
    board.on_tool_call("FLOW-001", "FLOW-001-implement", ToolCall(name="Grep", detail="lease"))
    board.on_tool_call("FLOW-001", "FLOW-001-implement", ToolCall(name="Bash", detail="pytest"))
    board.on_tool_call(
        "FLOW-002", "FLOW-002-review", ToolCall(name="Bash", detail="ruff", reviewer="lint")
    )
    board.on_tool_call("FLOW-009", "gone", ToolCall(name="Edit"))  # a phase that ended: no row
    console.print(board.render())
    rows = {line.split()[0]: line for line in _text(console).splitlines() if "FLOW-" in line}
    assert rows["FLOW-001"].rstrip().endswith("Bash pytest") and "Grep" not in rows["FLOW-001"]
    assert rows["FLOW-002"].rstrip().endswith("lint: Bash ruff")
    assert "FLOW-009" not in rows


def _crossed(story: str, phase: str, **kw: object) -> BudgetEvent:
    base: dict[str, object] = {
        "story_id": story,
        "epic": "FLOW",
        "phase": phase,
        "budget_phase": "implementation",
        "run_id": f"{story}-{phase}",
        "attempt": 1,
        "worker": "w0",
        "enforcement": "warning",
        "used": 2500,
        "warning_limit": 2000,
        "hard_limit": 5000,
        "state": "warning",
        "action": "warn",
    }
    base.update(kw)
    return BudgetEvent(**base)  # type: ignore[arg-type]


def test_the_board_shows_the_budget_limits_phases_crossed() -> None:
    clock = Clock()
    console = Console(file=io.StringIO(), width=240, force_terminal=False, color_system=None)
    board = LiveBoard(title="run", counts={"pending": 2}, console=console, clock=clock)
    board.on_budget(_crossed("FLOW-001", "plan", enforcement="soft_gate"))
    clock.now += 30
    board.on_budget(_crossed("FLOW-002", "implement", used=11000, state="over"))
    console.print(board.render())
    text = _text(console)
    assert "budget limits crossed (2):" in text
    lines = [line.strip() for line in text.splitlines() if " ago " in line]
    assert lines == [
        "30.0s ago  FLOW-001 plan: implementation budget at 2,500 tokens, 125% of its warning "
        "limit of 2,000 (enforcement soft_gate: the story pauses at its hard limit of 5,000)",
        "0ms ago  FLOW-002 implement: implementation budget at 11,000 tokens, 220% of its hard "
        "limit of 5,000 (enforcement warning: the run goes on)",
    ]


def test_the_board_starts_and_stops_a_live_display() -> None:
    console = _console()
    with LiveBoard(title="run", counts={"pending": 1}, console=console) as board:
        board.on_phase_start(_event("FLOW-001", "generate"))
    assert "FLOW-001" in _text(console)  # the last frame stays above the report
    assert not use_live_board(io.StringIO())


def test_the_board_prints_the_workers_warnings_under_its_last_frame() -> None:
    console = _console()
    with LiveBoard(title="run", counts={"pending": 1}, console=console) as board:
        board.on_phase_start(_event("FLOW-001", "generate"))
        board.on_warning("FLOW-001: METRICS.yaml not written: [bad] markup stays as it is")
    text = _text(console)
    last = "storyflow: warning: FLOW-001: METRICS.yaml not written: [bad] markup stays as it is"
    assert text.rstrip().endswith(last)
    assert text.count("METRICS.yaml") == 1  # said once, after the board, not in its frames


def _summary(**kw: object) -> RunSummary:
    def record(phase: str, ms: int, status: str = "succeeded", **extra: object) -> RunRecord:
        data: dict[str, object] = {
            "run_id": f"{phase}-{ms}",
            "story_id": "FLOW-001",
            "phase": phase,
            "attempt": 1,
            "status": status,
            "verdict": None,
            "agent": "scripted",
            "model": "scripted",
            "worker": "w0",
            "error_code": None,
            "duration_ms": ms,
            "tokens": Usage(input_tokens=ms, output_tokens=ms // 2),
            "cost_usd": ms / 1_000_000,
        }
        data.update(extra)
        return RunRecord(**data)  # type: ignore[arg-type]

    runs = (
        record("implement", 4_000),
        record("review", 1_000, verdict="FAIL"),
        record("review", 3_000, verdict="PASS"),
        record("gate", 2_000, verdict="CONCERNS"),
        record("verify", 9_000, status="failed", error_code="AGENT_TIMEOUT"),
    )
    total = Usage()
    for r in runs:
        total = total + r.tokens
    data: dict[str, object] = {
        "epic": "FLOW",
        "started_at": "2026-03-01T09:00:00+00:00",
        "finished_at": "2026-03-01T09:01:00+00:00",
        "wall_ms": 60_000,
        "workers": 4,
        "runs": runs,
        "stories": (
            StoryResult(
                story_id="FLOW-001",
                title="One",
                status="completed",
                reason=None,
                runs=5,
                tokens=total.total,
                cost_usd=0.019,
            ),
            StoryResult(
                story_id="FLOW-002",
                title="Two",
                status="blocked",
                reason="AGENT_TIMEOUT after 2 tries",
                runs=0,
                tokens=0,
                cost_usd=0.0,
            ),
        ),
        "tokens": total,
        "cost_usd": 0.019,
        "phase_ms": {"implement": 4_000, "review": 4_000, "gate": 2_000, "verify": 9_000},
        "gates": {"CONCERNS": 1},
        "reviews": {"FAIL": 1, "PASS": 1},
        "overruns": (
            Overrun(
                story_id="FLOW-001",
                phase="implementation",
                enforcement="warning",
                used=250_000,
                warning_limit=200_000,
                hard_limit=500_000,
                state="warning",
                action="warned",
            ),
        ),
        "takeovers": 1,
    }
    data.update(kw)
    return RunSummary(**data)  # type: ignore[arg-type]


def test_the_report_has_tokens_cost_durations_gates_and_overruns() -> None:
    console = _console()
    render_report(_summary(), console)
    text = _text(console)
    assert "run report for FLOW: 5 phase runs by 4 worker(s) in 1m 00s" in text
    assert "stories: blocked 1  completed 1" in text
    review = next(line for line in text.splitlines() if line.strip().startswith("review"))
    # two runs: mean 2 s, p50 1 s (nearest rank), p90 3 s, max 3 s, 4 s in all, 6,000 tokens
    assert review.split()[:7] == ["review", "2", "2.0s", "1.0s", "3.0s", "3.0s", "4.0s"]
    assert "6,000" in review and "$0.0040" in review
    assert "total" in text and "28,500" in text and "$0.0190" in text
    assert "QA gates: CONCERNS 1 (100% pass); code reviews: FAIL 1, PASS 1 (50% pass)" in text
    assert "failed runs: 1 (AGENT_TIMEOUT 1); lease takeovers: 1" in text
    assert "FLOW-002" in text and "AGENT_TIMEOUT after 2 tries" in text
    assert "budget overruns" in text and "250,000" in text and "warned" in text


def test_an_empty_interrupted_run_still_reports() -> None:
    console = _console()
    render_report(
        _summary(runs=(), stories=(), gates={}, reviews={}, overruns=(), interrupted=True),
        console,
    )
    text = _text(console)
    assert "(interrupted)" in text and "budget overruns: none" in text
    assert "QA gates: none; code reviews: none" in text


def test_the_plain_report_shortens_a_long_note_at_a_word() -> None:
    from storyflow.services.run_report import render_text

    long = "hard_gate: implementation reached 9,000 tokens (hard limit 50,000); the agent stopped"
    story = StoryResult(
        story_id="FLOW-001",
        title="One",
        status="blocked",
        reason=long,
        runs=1,
        tokens=9_000,
        cost_usd=0.01,
    )
    text = render_text(_summary(stories=(story,)))
    (row,) = [line for line in text.splitlines() if "blocked" in line and "FLOW-001" in line]
    assert row.endswith("(hard limit\u2026")  # not "50,00": a figure cut reads as another
