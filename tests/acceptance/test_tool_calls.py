"""The tools an agent calls become ``tool_call`` trace events (DESIGN §6): read from a
headless coding agent's stream-json (a call, and the result that answers it) and from the
scripted agent's scenario, each a child span of the agent's, shown and filtered by
``storyflow trace``."""

from __future__ import annotations

import json
from typing import Any

from tests.acceptance._helpers import error_body, ok
from tests.run_support import configure, epic_with, fake_command, scenario
from tests.support import Workspace


def _trace(ws: Workspace, story: str, *args: str) -> list[dict[str, Any]]:
    result = ok(ws.run("trace", story, "--json", *args))
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_command_agents_tool_calls_are_traced_under_its_span(workspace: Workspace) -> None:
    configure(
        workspace,
        {
            "default_agent": "fake",
            "agents": {"fake": {"type": "command", "command": fake_command("tools", "0.4")}},
            "reviewers": {"names": ["lint", "security"]},
        },
    )
    (story,) = epic_with(workspace.ctx(), 1)
    ok(workspace.run("run", "--epic", "FLOW", "--json"))
    assert ok(workspace.run("story", "show", story, "--json")).json["status"] == "completed"

    lines = _trace(workspace, story)
    calls = _trace(workspace, story, "--type", "tool_call")
    assert calls == [line for line in lines if line["type"] == "tool_call"]
    spawns = {line["run_id"]: line for line in lines if line["type"] == "agent_spawn"}
    completes = {line["run_id"]: line for line in lines if line["type"] == "agent_complete"}
    for call in calls:  # a child of the agent span of its run, in the run's trace
        spawn = spawns[call["run_id"]]
        assert call["parent_span_id"] == spawn["span_id"] != call["span_id"]
        assert call["trace_id"] == spawn["trace_id"]
        assert spawn["ts"] <= call["ts"] <= completes[call["run_id"]]["ts"]

    implement = [c for c in calls if c["phase"] == "implement"]
    assert [(c["tool"], c["detail"], c["ok"]) for c in implement] == [
        ("Bash", "pytest -q", True),
        ("Edit", "src/feature.py", False),
    ]
    assert implement[0]["duration_ms"] >= 250  # the 0.4 s between the call and its result
    assert completes[implement[0]["run_id"]]["tool_calls"] == 2
    review = sorted((c["reviewer"], c["detail"]) for c in calls if c["phase"] == "review")
    assert review == [("lint", "lint check src/"), ("security", "security check src/")]
    # every phase the agent ran called its tools: generate, elaborate, plan, verify, gate
    assert {c["phase"] for c in calls} == {
        "generate",
        "elaborate",
        "plan",
        "implement",
        "review",
        "verify",
        "gate",
    }

    table = ok(workspace.run("trace", story, "--type", "tool_call")).stdout
    edit = next(row for row in table.splitlines() if " implement " in row and "Edit" in row)
    assert "tool_call" in edit and "Edit FAILED" in edit and edit.endswith("src/feature.py")
    assert "reviewer=security" in table


def test_the_tools_of_a_failed_attempt_are_traced_under_its_phase(workspace: Workspace) -> None:
    configure(
        workspace,
        {
            "default_agent": "fake",
            "agents": {
                "fake": {"type": "command", "command": fake_command("toolhang"), "timeout": 1.5}
            },
            "phase_agents": {"generate": "scripted"},
            "retries": {"AGENT_TIMEOUT": {"retries": 0}},
            "circuit_breaker": 1,
        },
    )
    (story,) = epic_with(workspace.ctx(), 1)
    ok(workspace.run("run", story, "--json"))  # generate
    failed = workspace.run("run", story, "--json")
    error_body(failed, 1, "AGENT_TIMEOUT")
    lines = _trace(workspace, story)
    (call,) = [line for line in lines if line["type"] == "tool_call"]
    (error,) = [line for line in lines if line["type"] == "error"]
    assert error["error_code"] == "AGENT_TIMEOUT"
    # no agent span (it never completed): the call sits in the phase's, beside the error
    assert (call["tool"], call["detail"], call["phase"]) == ("Bash", "npm install", "elaborate")
    assert "ok" not in call  # no result came back
    assert call["parent_span_id"] == error["span_id"] and call["run_id"] == error["run_id"]


def test_a_scenarios_tools_are_traced_and_a_bad_one_is_refused(workspace: Workspace) -> None:
    scenario(
        workspace,
        {
            "defaults": {"delay": 0.2},
            "phases": {
                "implement": {
                    "tools": ["Read: docs/plan.md", {"name": "Bash", "detail": "make", "ok": False}]
                }
            },
            # the first attempt's proof does not validate: its calls are kept all the same
            "rules": [{"phase": "implement", "attempt": 1, "fail": "malformed"}],
        },
    )
    configure(workspace, {"scenario": "scenario.yaml", "reviewers": {"names": []}})
    (story,) = epic_with(workspace.ctx(), 1)
    ok(workspace.run("run", "--epic", "FLOW", "--json"))
    lines = [line for line in _trace(workspace, story) if line.get("phase") == "implement"]
    calls = [line for line in lines if line["type"] == "tool_call"]
    assert [(c["attempt"], c["tool"], c["detail"], c["ok"]) for c in calls] == [
        (1, "Read", "docs/plan.md", True),
        (1, "Bash", "make", False),
        (2, "Read", "docs/plan.md", True),
        (2, "Bash", "make", False),
    ]
    assert calls[0]["ts"] < calls[1]["ts"]  # one after the other over the agent's work
    (error,) = [line for line in lines if line["type"] == "error"]
    assert error["error_code"] == "MALFORMED_OUTPUT"
    assert calls[0]["parent_span_id"] == error["span_id"]
    spawn = next(line for line in lines if line["type"] == "agent_spawn" and line["attempt"] == 2)
    assert calls[2]["parent_span_id"] == spawn["span_id"]

    scenario(workspace, {"phases": {"implement": {"tools": [{"name": "Bash", "ok": "maybe"}]}}})
    result = workspace.run("run", story, "--json")
    error = error_body(result, 7, "CONFIG_INVALID")
    assert "tools[0]" in error["message"]
