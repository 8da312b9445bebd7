"""The run report's budget overruns are this run's: the phases over a limit whose tokens its
runs logged, with what the run did (warned, paused, confirmed, stopped) -- not every story's
standing overruns under the epic's enforcement of today."""

from __future__ import annotations

from typing import Any

from storyflow.domain.budgets import Enforcement
from tests.run_support import configure, epic_with, scenario
from tests.support import Workspace

LIMITS = {"implementation": {"estimate": 1000, "warning": 2000, "hard": 5000}}


def _overruns(result: Any) -> list[tuple[str, str, str, str]]:
    assert result.code == 0, result
    return [
        (o["story_id"], o["phase"], o["enforcement"], o["action"]) for o in result.json["overruns"]
    ]


def test_the_report_lists_what_this_run_did_about_its_overruns(workspace: Workspace) -> None:
    scenario(workspace, {"phases": {"implement": {"usage": {"input": 3000}}}})
    configure(workspace, {"scenario": "scenario.yaml"}, budgets=LIMITS)
    (story,) = epic_with(workspace.ctx(), 1, enforcement=Enforcement.WARNING)
    first = workspace.run("run", "--epic", "FLOW", "--json")
    assert _overruns(first) == [(story, "implementation", "warning", "warned")]
    # nothing left to do: no run, no overrun of this run (it was the first run's)
    again = workspace.run("run", "--epic", "FLOW", "--json")
    assert again.json["runs"] == [] and _overruns(again) == []
    # the enforcement changed since: still none, and the first run's report stays true
    assert workspace.run("epic", "update", "FLOW", "--enforcement", "hard_gate").code == 0
    assert _overruns(workspace.run("run", "--epic", "FLOW", "--json")) == []


def test_a_soft_gate_pause_then_its_confirmation(workspace: Workspace) -> None:
    scenario(workspace, {"phases": {"implement": {"usage": {"input": 9000}}}})
    configure(workspace, {"scenario": "scenario.yaml"}, budgets=LIMITS)
    (story,) = epic_with(workspace.ctx(), 1, enforcement=Enforcement.SOFT_GATE)
    paused = workspace.run("run", "--epic", "FLOW", "--json")
    assert _overruns(paused) == [(story, "implementation", "soft_gate", "paused for confirmation")]
    confirmed = workspace.run(
        "story", "move", story, "ready-for-code-review", "--confirm-budget", "--reason", "ok"
    )
    assert confirmed.code == 0, confirmed
    # the rest of the story's phases log no implementation tokens: not this run's overrun
    rest = workspace.run("run", "--epic", "FLOW", "--json")
    assert rest.json["status_counts"] == {"completed": 1} and _overruns(rest) == []


def test_a_hard_gate_stop(workspace: Workspace) -> None:
    scenario(workspace, {"phases": {"implement": {"usage": {"input": 9000}}}})
    configure(workspace, {"scenario": "scenario.yaml"}, budgets=LIMITS)
    (story,) = epic_with(workspace.ctx(), 1, enforcement=Enforcement.HARD_GATE)
    stopped = workspace.run("run", "--epic", "FLOW", "--json")
    assert _overruns(stopped) == [(story, "implementation", "hard_gate", "stopped")]
