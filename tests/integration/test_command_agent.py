"""The command agent with small fake agents (tests/fakes/fake_agent.py): a real process per
phase, its JSON usage parsed, its artifacts collected -- and every failure of the contract."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

import pytest

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.budgets import Enforcement
from storyflow.domain.statuses import Status
from storyflow.services.agents import ToolCall
from storyflow.services.run_report import NullObserver
from storyflow.services.workers import run_story
from tests.run_support import (
    FAKES,
    configure,
    drive,
    env,
    epic_with,
    fake_command,
    ledger_rows,
    runs_of,
    scenario,
)
from tests.support import Workspace, elaboration

FAKE_PYTHON = sys.executable
NO_RETRIES = {
    code: {"retries": 0} for code in ("AGENT_TIMEOUT", "MALFORMED_OUTPUT", "EXTERNAL_SERVICE_DOWN")
}


def command_agent(command: list[str], timeout: float = 20) -> dict[str, Any]:
    return {"type": "command", "command": command, "timeout": timeout}


def test_a_command_agent_drives_a_story_to_completed(workspace: Workspace) -> None:
    configure(
        workspace,
        {
            "default_agent": "fake",
            "agents": {"fake": command_agent(fake_command("ok"))},
            "reviewers": {"names": ["lint", "security"]},
        },
    )
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    assert drive(ctx, env(ctx), story) is Status.COMPLETED
    rows = runs_of(ctx, story)
    assert [r["phase"] for r in rows] == [
        "generate",
        "elaborate",
        "plan",
        "implement",
        "review",
        "verify",
        "gate",
    ]
    ledger = ctx.store.ledger(story)
    implement = next(e for e in ledger if e.run_id == rows[3]["id"])
    assert (implement.input_tokens, implement.output_tokens) == (1200, 300)
    assert (implement.cache_read_tokens, implement.cache_write_tokens) == (5000, 700)
    assert implement.cost_usd == pytest.approx(0.0123)
    review = next(e for e in ledger if e.run_id == rows[4]["id"])
    assert review.input_tokens == 2400  # two reviewers
    prompt = workspace.root / ".storyflow" / "runs" / rows[0]["id"] / "prompt.md"
    assert story in prompt.read_text(encoding="utf-8")


def test_a_command_whose_first_argument_is_an_interpreter_flag_runs(workspace: Workspace) -> None:
    """The launcher that ties an agent to its worker passes the whole command on: a CLI
    started as ``python -u script MODE`` (or ``claude -p ...``) runs as written, its first
    argument not taken for the program."""
    command = [FAKE_PYTHON, "-u", str(FAKES / "fake_agent.py"), "ok"]
    configure(workspace, {"agents": {"fake": command_agent(command)}, "default_agent": "fake"})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    assert drive(ctx, env(ctx), story) is Status.COMPLETED


@pytest.mark.parametrize("mode", ["gemini", "codex"])
def test_other_clis_usage_reaches_the_ledger(workspace: Workspace, mode: str) -> None:
    """Gemini CLI and Codex print their usage in shapes of their own: the ledger gets the
    tokens they report (cached ones as cache reads, counted once), not a silent zero."""
    configure(
        workspace,
        {
            "agents": {"cli": command_agent(fake_command(mode))},
            "phase_agents": {"elaborate": "cli"},
        },
    )
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    run_env = env(ctx)
    run_story(ctx, run_env, story)  # generate
    assert run_story(ctx, run_env, story).status == "succeeded"  # elaborate
    (entry,) = [e for e in ctx.store.ledger(story) if e.phase.value == "elaboration"]
    assert (entry.input_tokens, entry.cache_read_tokens) == (1000, 2000)
    assert entry.output_tokens == 250  # gemini: 200 candidates + 50 thoughts


def test_usage_that_is_not_a_finite_count_fails_the_run(workspace: Workspace) -> None:
    """Python's json reads NaN and Infinity: an agent that prints them (or 1e300) as its
    usage or cost must not crash the run, nor put them in the ledger (every sum would become
    NaN or inf), nor pass for zero (a hard_gate would let it through): the run fails with
    MALFORMED_OUTPUT naming them, and the well-formed counts it did report are logged."""
    configure(
        workspace,
        {
            "agents": {"fake": command_agent(fake_command("nonfinite"))},
            "phase_agents": {"elaborate": "fake"},
            "retries": NO_RETRIES,
        },
    )
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    run_env = env(ctx)
    run_story(ctx, run_env, story)  # generate
    outcome = run_story(ctx, run_env, story)  # elaborate
    assert outcome is not None and outcome.error_code == "MALFORMED_OUTPUT", outcome
    message = outcome.message or ""
    assert "usage.input_tokens=inf" in message and "usage.output_tokens=nan" in message
    assert "total_cost_usd=inf" in message
    (entry,) = [e for e in ctx.store.ledger(story) if e.phase.value == "elaboration"]
    assert (entry.input_tokens, entry.output_tokens, entry.cache_read_tokens) == (0, 0, 0)
    assert entry.cache_write_tokens == 700
    assert entry.cost_usd is None or math.isfinite(entry.cost_usd)
    shown = workspace.cli("budget", "show", story, "--json")
    assert shown.code == 0, shown
    assert "NaN" not in shown.stdout and "Infinity" not in shown.stdout


@pytest.mark.parametrize(
    ("command", "code", "words"),
    [
        (fake_command("sleep", "30"), "AGENT_TIMEOUT", "timeout"),
        (fake_command("garbage"), "MALFORMED_OUTPUT", "no JSON result"),
        (fake_command("exit1"), "EXTERNAL_SERVICE_DOWN", "API Error: 529 overloaded"),
        # a program named through a placeholder is known only per run (the run refuses one
        # it can name before it starts: tests/acceptance/test_agent_processes.py)
        (["{story_dir}/missing-agent", "-p"], "AGENT_SPAWN_FAILED", "No such file"),
        (["{story_dir}/agent.txt"], "AGENT_SPAWN_FAILED", "not executable"),
        # executable, but no program: exec itself fails, in the launcher
        (["{story_dir}/agent.bin"], "AGENT_SPAWN_FAILED", "Exec format error"),
        (fake_command("error"), "EXTERNAL_SERVICE_DOWN", "rate limited"),
        (fake_command("noartifact"), "MALFORMED_OUTPUT", "wrote no elaboration"),
    ],
    ids=[
        "timeout",
        "garbage",
        "exit-1",
        "cannot-start",
        "not-executable",
        "exec-format",
        "is-error",
        "no-file",
    ],
)
def test_every_failure_type_through_the_command_adapter(
    workspace: Workspace, command: list[str], code: str, words: str
) -> None:
    configure(
        workspace,
        {
            "phase_agents": {"elaborate": "fake"},
            "agents": {"fake": command_agent(command, timeout=1)},
            "retries": NO_RETRIES,
        },
    )
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    run_env = env(ctx)
    run_story(ctx, run_env, story)  # generate, scripted
    folder = ctx.files.story_file(ctx.epic("FLOW"), ctx.story(story)).parent
    (folder / "agent.txt").write_text((FAKES / "not-executable.txt").read_text())
    (folder / "agent.bin").write_bytes(b"\x00\x01 not a program\n")
    (folder / "agent.bin").chmod(0o755)
    began = time.monotonic()
    outcome = run_story(ctx, run_env, story)
    assert time.monotonic() - began < 10  # a timed-out agent's group is killed, not awaited
    assert (outcome.phase, outcome.status, outcome.error_code) == ("elaborate", "blocked", code)
    assert words in (outcome.message or "")
    assert "\x1b" not in (outcome.message or "")  # its colours are not part of the message
    shown = ctx.story(story)
    assert shown.status is Status.BLOCKED and code in (shown.blocked_reason or "")
    row = runs_of(ctx, story)[-1]
    assert (row["status"], row["error_code"]) == ("failed", code)


def test_hard_gate_kills_a_streaming_command_agent(workspace: Workspace) -> None:
    configure(
        workspace,
        {
            "phase_agents": {"implement": "streamer"},
            "agents": {"streamer": command_agent(fake_command("stream", "0.05"), timeout=30)},
        },
        budgets={"implementation": {"estimate": 1000, "warning": 50000, "hard": 100000}},
    )
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1, enforcement=Enforcement.HARD_GATE)
    run_env = env(ctx)
    for _ in range(3):
        run_story(ctx, run_env, story)
    assert ctx.story(story).status is Status.IN_PROGRESS
    began = time.monotonic()
    outcome = run_story(ctx, run_env, story)
    assert time.monotonic() - began < 20
    assert (outcome.status, outcome.error_code) == ("blocked", "BUDGET_HARD_LIMIT")
    rows = ledger_rows(ctx, story)
    spent = [e for e in rows if e["run_id"] == outcome.run_id]
    assert len(spent) == 1 and spent[0]["total_tokens"] > 0  # what it streamed before the kill
    phase_total = sum(e["total_tokens"] for e in rows if e["phase"] == "implementation")
    assert 100000 <= phase_total < 200000


@pytest.mark.parametrize(
    ("coverage", "read"),
    [("81", 81.0), ("NaN", None), ("Infinity", None), ("250", None), ("-5", None), ("true", None)],
)
def test_a_reviewer_coverage_outside_0_to_100_counts_as_not_reported(
    coverage: str, read: float | None
) -> None:
    """Not reported means the review's coverage check fails: NaN compared with the threshold
    would have passed it."""
    from storyflow.adapters.agents.output import parse_output, review_of

    parsed = parse_output(f'{{"type": "result", "verdict": "PASS", "coverage": {coverage}}}')
    assert parsed is not None
    review = review_of(parsed)
    assert review is not None and review["coverage"] == read


def test_an_artifact_left_from_before_the_run_is_not_the_agents_output(
    workspace: Workspace,
) -> None:
    """An agent that writes nothing, in a folder that already holds the registered
    elaboration (older than the run), did not produce one: MALFORMED_OUTPUT, and the old
    file is not submitted again as the run's result."""
    configure(
        workspace,
        {
            "phase_agents": {"elaborate": "fake"},
            "agents": {"fake": command_agent(fake_command("noartifact"))},
            "retries": NO_RETRIES,
        },
    )
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    run_env = env(ctx)
    run_story(ctx, run_env, story)  # generate, scripted
    source = workspace.write(f"inbox/{story}-elaboration.yaml", elaboration("PASS"))
    submitted = workspace.cli("artifact", "submit", story, "elaboration", str(source), "--json")
    assert submitted.code == 0, submitted
    registered = ctx.store.latest_artifact(story, ArtifactKind.ELABORATION)
    assert registered is not None and registered.version == 1
    epic = ctx.epic(ctx.story(story).epic)
    old = ctx.files.locate(epic, ctx.story(story)) / registered.path
    past = time.time() - 3600
    os.utime(old, (past, past))

    outcome = run_story(ctx, run_env, story)

    assert (outcome.phase, outcome.status, outcome.error_code) == (
        "elaborate",
        "blocked",
        "MALFORMED_OUTPUT",
    )
    assert "did not write a new elaboration" in (outcome.message or "")
    latest = ctx.store.latest_artifact(story, ArtifactKind.ELABORATION)
    assert latest is not None and latest.version == 1


class _SeenTools(NullObserver):
    """The tool calls the run's observer (the live board) is told of as agents work."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str | None]] = []

    def on_tool_call(self, story_id: str, run_id: str, call: ToolCall) -> None:
        self.calls.append((run_id, call.name, call.detail, call.reviewer))


def test_the_observer_hears_of_each_tool_call_while_the_agent_works(
    workspace: Workspace,
) -> None:
    tools = {"tools": ["Read: PLAN.exec.md", "Write: story.yaml"], "delay": 0.2}
    scenario(workspace, {"phases": {"generate": tools}})
    configure(
        workspace,
        {
            "default_agent": "fake",
            "agents": {"fake": command_agent(fake_command("tools", "0.2"))},
            "phase_agents": {"generate": "scripted"},
            "reviewers": {"names": ["lint"]},
            "scenario": "scenario.yaml",
        },
    )
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    seen = _SeenTools()
    assert drive(ctx, env(ctx, observer=seen), story) is Status.COMPLETED
    rows = {r["phase"]: r["id"] for r in runs_of(ctx, story)}
    implement = [c[1:] for c in seen.calls if c[0] == rows["implement"]]
    assert implement == [("Bash", "pytest -q", None), ("Edit", "src/feature.py", None)]
    assert [c[1:] for c in seen.calls if c[0] == rows["review"]] == [
        ("Bash", "lint check src/", "lint")
    ]
    assert [c[1:] for c in seen.calls if c[0] == rows["generate"]] == [  # the scripted agent
        ("Read", "PLAN.exec.md", None),
        ("Write", "story.yaml", None),
    ]
