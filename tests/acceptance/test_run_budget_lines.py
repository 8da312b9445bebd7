"""A run off a terminal (CI, a pipe, an agent driving it) says on stderr, as it happens, that a
story's phase crossed its budget's warning or hard limit: one ``storyflow: warning:`` line
per crossing, between the phase lines, once -- not only in the final report. Advisory
records only and says nothing; a hard_gate stop is said by its error line.

The implementation budget (warning 2,000, hard 5,000 here) is spent by the plan and the
implement phases, so a plan can cross it and the implement phase add to it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from storyflow.domain.budgets import Enforcement
from tests.run_support import configure, epic_with, scenario
from tests.support import Result, Workspace

LIMITS = {"implementation": {"estimate": 1000, "warning": 2000, "hard": 5000}}
WARNING = "storyflow: warning: "
GOES_ON = "the run goes on"
AT_WARNING = {
    Enforcement.WARNING: GOES_ON,
    Enforcement.SOFT_GATE: "the story pauses at its hard limit of 5,000",
    Enforcement.HARD_GATE: "the phase is stopped at its hard limit of 5,000",
}


def _usage(tokens: int) -> dict[str, Any]:
    return {"usage": {"input": tokens, "output": 0}}  # the total is exactly ``tokens``


def _setup(ws: Workspace, level: Enforcement, stories: int = 1, **phases: int) -> list[str]:
    scenario(ws, {"phases": {phase: _usage(tokens) for phase, tokens in phases.items()}})
    configure(ws, {"scenario": "scenario.yaml"}, budgets=LIMITS)
    return epic_with(ws.ctx(), stories, enforcement=level)


def _crossed(story: str, phase: str, used: int, limit: str, then: str, level: str) -> str:
    of = 5000 if limit == "hard" else 2000
    return (
        f"{WARNING}{story} {phase}: implementation budget at {used:,} tokens, "
        f"{100 * used // of}% of its {limit} limit of {of:,} (enforcement {level}: {then})"
    )


def _lines(result: Result, story: str) -> list[str]:
    """The story's lines on stderr: its phase lines and its warnings, in order."""
    return [line for line in result.stderr.splitlines() if f"{story} " in line]


def _warnings(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(WARNING)]


def _phase_line(lines: list[str], story: str, phase: str) -> int:
    found = [i for i, line in enumerate(lines) if line.startswith(f"{story} {phase} ")]
    assert len(found) == 1, lines
    return found[0]


@pytest.mark.parametrize(
    "level", [Enforcement.WARNING, Enforcement.SOFT_GATE, Enforcement.HARD_GATE], ids=str
)
def test_a_plan_crossing_the_warning_limit_is_said_once_as_it_happens(
    workspace: Workspace, level: Enforcement
) -> None:
    # plan 2,500 (125% of the warning limit), then implement 1,500 more: 4,000, under 5,000
    stories = _setup(workspace, level, stories=2, plan=2500, implement=1500)
    result = workspace.run("run", "--epic", "FLOW", "--workers", "2", "--json", timeout=120)
    assert result.code == 0, result
    assert result.json["status_counts"] == {"completed": 2}
    assert len(_warnings(result)) == 2, result.stderr  # one per story, none for implement
    for story in stories:
        lines = _lines(result, story)
        expected = _crossed(story, "plan", 2500, "warning", AT_WARNING[level], level.value)
        assert lines.count(expected) == 1, lines
        # said when the plan's tokens were committed: after the elaboration, before the
        # plan's own line (the crossing is its cause), long before the report
        at = lines.index(expected)
        assert _phase_line(lines, story, "elaborate") < at < _phase_line(lines, story, "plan")
    # the report is as it was: the overrun, warned
    overruns = [(o["story_id"], o["state"], o["action"]) for o in result.json["overruns"]]
    assert overruns == [(story, "warning", "warned") for story in stories]
    # the trace's first budget event is the plan's ledger entry that crossed (the budget
    # events after it: the implement phase's entry, its forward edge's check)
    trace = workspace.run("trace", stories[0], "--type", "budget", "--json")
    first = json.loads(trace.stdout.splitlines()[0])
    assert (first["phase"], first["tokens"], first["used"], first["state"]) == (
        "implementation",
        2500,
        2500,
        "warning",
    )


def test_the_worker_says_it_too(workspace: Workspace) -> None:
    (story,) = _setup(workspace, Enforcement.WARNING, plan=2500)
    result = workspace.run("worker", "--epic", "FLOW", "--until-idle")
    assert result.code == 0, result
    expected = _crossed(story, "plan", 2500, "warning", GOES_ON, "warning")
    assert _warnings(result) == [expected]
    assert result.stdout.startswith("run report for FLOW:")
    assert "budget overruns:" in result.stdout and "warned" in result.stdout


def test_storyflow_run_id_says_it_in_the_run_that_crossed(workspace: Workspace) -> None:
    (story,) = _setup(workspace, Enforcement.WARNING, plan=2500, implement=1500)
    expected = _crossed(story, "plan", 2500, "warning", GOES_ON, "warning")
    said = []
    for phase in ("generate", "elaborate", "plan", "implement", "review"):
        result = workspace.run("run", story, "--json")
        assert result.code == 0 and result.json["phase"] == phase, result
        said.append(result.stderr.count(expected))
        # the services' budget figures are not said again beside the line
        assert len(_warnings(result)) == said[-1], result.stderr
    assert said == [0, 0, 1, 0, 0]


def test_advisory_and_a_run_under_its_limits_say_nothing(workspace: Workspace) -> None:
    scenario(
        workspace,
        {"rules": [{"stories": ["FLOW-001"], "phase": "plan", **_usage(9000)}]},
    )
    configure(workspace, {"scenario": "scenario.yaml"}, budgets=LIMITS)
    ctx = workspace.ctx()
    (advisory,) = epic_with(ctx, 1, enforcement=Enforcement.ADVISORY)
    # the default usage: 1,300 tokens a phase, 2,600 for plan and implement, under the hard
    # limit of a warning story whose limits are scaled by 2
    under = epic_with(ctx, 1, prefix="FLOX", enforcement=Enforcement.WARNING)[0]
    assert workspace.run("story", "update", under, "--budget-multiplier", "2").code == 0
    for epic in ("FLOW", "FLOX"):
        result = workspace.run("run", "--epic", epic)
        assert result.code == 0, result
        assert WARNING not in result.stderr, result.stderr
        assert "warning" not in result.stderr.lower(), result.stderr
    overruns = workspace.run("budget", "show", "FLOW", "--json").json["overruns"]
    assert [(o["story"], o["state"]) for o in overruns] == [(advisory, "over")]
    assert workspace.run("budget", "show", "FLOX", "--json").json["overruns"] == []


@pytest.mark.parametrize(
    "level", [Enforcement.WARNING, Enforcement.SOFT_GATE, Enforcement.HARD_GATE], ids=str
)
def test_crossing_both_limits_one_after_the_other(workspace: Workspace, level: Enforcement) -> None:
    # plan 2,500 crosses the warning limit; implement 8,500 more (11,000) the hard one
    (story,) = _setup(workspace, level, plan=2500, implement=8500)
    result = workspace.run("run", "--epic", "FLOW", "--json")
    assert result.code == 0, result
    lines = _lines(result, story)
    warned = _crossed(story, "plan", 2500, "warning", AT_WARNING[level], level.value)
    assert _warnings(result)[0] == warned
    assert _phase_line(lines, story, "elaborate") < lines.index(warned)
    assert lines.index(warned) < _phase_line(lines, story, "plan")
    overrun = [(o["state"], o["action"]) for o in result.json["overruns"]]
    if level is Enforcement.HARD_GATE:
        # the stop is said by its error line (with the figures), not a second warning
        assert len(_warnings(result)) == 1, result.stderr
        assert any("failed: BUDGET_HARD_LIMIT: hard_gate:" in line for line in lines), lines
        assert overrun == [("over", "stopped")]
        return
    then = GOES_ON
    if level is Enforcement.SOFT_GATE:
        then = "the story pauses until story move --confirm-budget confirms the overrun"
    over = _crossed(story, "implement", 11000, "hard", then, level.value)
    assert _warnings(result) == [warned, over]
    assert lines.index(over) < _phase_line(lines, story, "implement")
    if level is Enforcement.SOFT_GATE:
        assert lines[-1] == f"{story} in-progress: paused: budget confirmation needed"
        assert overrun == [("over", "paused for confirmation")]
        # the confirmation and the rest of the story cross nothing more: no line
        moved = workspace.run(
            "story", "move", story, "ready-for-code-review", "--confirm-budget", "--reason", "ok"
        )
        assert moved.code == 0, moved
        rest = workspace.run("run", "--epic", "FLOW", "--json")
        assert rest.json["status_counts"] == {"completed": 1}, rest
        assert _warnings(rest) == [], rest.stderr
    else:
        assert result.json["status_counts"] == {"completed": 1}
        assert overrun == [("over", "warned")]


def test_a_phase_jumping_both_limits_at_once_is_one_line(workspace: Workspace) -> None:
    # plan 1,000, then implement 9,000: 10,000 at once, past the warning and the hard limit
    (story,) = _setup(workspace, Enforcement.WARNING, plan=1000, implement=9000)
    result = workspace.run("run", "--epic", "FLOW")
    assert result.code == 0, result
    assert _warnings(result) == [_crossed(story, "implement", 10000, "hard", GOES_ON, "warning")]


def test_a_failed_attempt_that_crossed_says_so_and_its_retry_does_not(
    workspace: Workspace,
) -> None:
    # the plan's first attempt spends 2,100 tokens and writes a plan that does not validate;
    # its retry and the implement phase (the default 1,300 each) take it to 4,700
    rule = {"phase": "plan", "attempt": 1, "fail": "malformed", **_usage(2100)}
    scenario(workspace, {"rules": [rule]})
    configure(workspace, {"scenario": "scenario.yaml"}, budgets=LIMITS)
    (story,) = epic_with(workspace.ctx(), 1, enforcement=Enforcement.WARNING)
    result = workspace.run("run", "--epic", "FLOW")
    assert result.code == 0, result
    lines = _lines(result, story)
    expected = _crossed(story, "plan", 2100, "warning", GOES_ON, "warning")
    assert _warnings(result) == [expected]
    failed = [i for i, line in enumerate(lines) if "attempt 1 failed: MALFORMED_OUTPUT" in line]
    # said with the failed attempt that spent the tokens, before its failure line
    assert len(failed) == 1 and lines.index(expected) == failed[0] - 1, lines
    assert any(line.startswith(f"{story} plan      succeeded") for line in lines), lines


@pytest.mark.parametrize("command", ["run", "worker"])
def test_a_workers_other_warnings_are_said_as_they_happen(
    workspace: Workspace, command: str
) -> None:
    """What a phase run warns of that is not a budget figure -- here METRICS.yaml, which a
    folder in its place keeps from being written at completion -- reaches stderr from the
    workers of run --epic and worker too (they used to drop every warning); the budget
    figures the services warn of are not repeated there: the crossing line says them."""
    (story,) = _setup(workspace, Enforcement.WARNING, plan=2500)
    shown = workspace.run("story", "show", story, "--json")
    (workspace.root / shown.json["path"]).parent.joinpath("METRICS.yaml").mkdir()
    argv = ("run", "--epic", "FLOW") if command == "run" else ("worker", "--until-idle")
    result = workspace.run(*argv, "--json", timeout=120)
    assert result.code == 0, result
    assert result.json["status_counts"] == {"completed": 1}
    metrics = [w for w in _warnings(result) if "METRICS.yaml" in w]
    assert len(metrics) == 1 and metrics[0].startswith(f"{WARNING}{story}: METRICS.yaml not"), (
        result.stderr
    )
    crossed = _crossed(story, "plan", 2500, "warning", GOES_ON, "warning")
    assert sorted(_warnings(result)) == sorted([crossed, metrics[0]]), result.stderr
