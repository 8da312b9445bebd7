"""A command agent's processes end with its phase and with its worker: a child the agent
left behind is ended when the agent exits (it would write into the story folder later), and
an agent whose worker was killed with SIGKILL dies with it, so the worker that takes the
story over is the only one running its phase. An agent whose program cannot start is refused
before any story is claimed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from storyflow.domain.statuses import Status
from tests.run_support import FAKES, configure, epic_with, fake_command, runs_of
from tests.support import Workspace


def test_a_child_the_agent_left_running_is_ended_with_its_phase(workspace: Workspace) -> None:
    configure(
        workspace,
        {
            "agents": {"fake": {"type": "command", "command": fake_command("forkchild")}},
            "phase_agents": {"generate": "fake"},
        },
    )
    (story,) = epic_with(workspace.ctx(), 1)
    result = workspace.run("run", story, "--json")
    assert result.code == 0 and result.json["status"] == "succeeded", result
    time.sleep(2.5)  # the child would have written by now
    assert not (workspace.root / "orphan.txt").exists()


def test_an_agent_dies_with_its_killed_worker(workspace: Workspace) -> None:
    configure(
        workspace,
        {
            "agents": {"fake": {"type": "command", "command": fake_command("sleep", "4")}},
            "phase_agents": {"elaborate": "fake"},
        },
    )
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    assert workspace.run("run", story, "--json").code == 0  # generate (scripted)
    doomed = workspace.spawn("run", story, "--json", start_new_session=True)
    deadline = time.monotonic() + 30
    while not any(r["phase"] == "elaborate" for r in runs_of(ctx, story)):
        assert time.monotonic() < deadline, "the elaborate phase never started"
        time.sleep(0.05)
    time.sleep(1.0)  # the agent is sleeping
    os.kill(doomed.pid, signal.SIGKILL)  # the worker alone, not its agent's process group
    doomed.communicate(timeout=30)
    time.sleep(4.5)  # an agent still alive would have written its elaboration by now
    assert not list(workspace.root.glob(f"plans/**/{story}/elaboration.yaml"))
    assert ctx.story(story).status is Status.IN_ELABORATION


@pytest.mark.parametrize(
    ("program", "why"),
    [
        ("/nonexistent/agent-cli", "No such file or directory"),
        ("agent-cli-nowhere-on-path", "not on PATH"),
        (str(FAKES / "not-executable.txt"), "not executable"),
    ],
    ids=["missing", "not-on-path", "not-executable"],
)
def test_an_agent_that_cannot_start_is_refused_before_any_story_is_claimed(
    workspace: Workspace, program: str, why: str
) -> None:
    """A command agent whose program cannot start would fail every phase it runs and block
    every story it touches: the run is refused first, naming the agent and what to fix."""
    configure(
        workspace,
        {
            "agents": {"cli": {"type": "command", "command": [program, "-p", "{story}"]}},
            "phase_agents": {"elaborate": "cli"},
        },
    )
    stories = epic_with(workspace.ctx(), 2)
    for args in (("run", "--epic", "FLOW"), ("run", stories[0])):
        result = workspace.run(*args, "--json")
        assert result.code == 2, result
        error = result.json["error"]
        assert error["code"] == "AGENT_SPAWN_FAILED", error
        assert error["message"].startswith(f"agent cli: cannot start {program!r}: "), error
        assert why in error["message"], error
        assert "runs.agents.cli.command" in error["hint"], error
    ctx = workspace.ctx()
    assert [ctx.story(s).status for s in stories] == [Status.PENDING] * 2
    assert all(runs_of(ctx, s) == [] for s in stories)
