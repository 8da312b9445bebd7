"""``storyflow run --epic --workers N`` runs its workers in N processes under one parent: the
runs are spread over them, a worker process killed mid-phase is taken over by another once
its lease expires (the run goes on and says so), killing the parent ends its workers too, and
a story refused before its phase is reported once, not once per process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.statuses import Status
from storyflow.services.context import Context
from tests.run_support import configure, epic_with, fake_command, runs_of, scenario
from tests.support import Workspace


def _workers(ws: Workspace) -> list[str]:
    rows = ws.ctx().store.conn.fetchall("SELECT DISTINCT worker FROM runs ORDER BY worker")
    return [row["worker"] for row in rows]


def _children(pid: int) -> list[int]:
    """The worker processes of ``pid`` (multiprocessing's resource tracker left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return found


def _two(pid: int) -> list[int] | None:
    """Both worker processes of ``pid`` (the second may start a moment after the first)."""
    found = sorted(_children(pid))
    return found if len(found) == 2 else None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def _running(ws: Workspace, story: str, phase: str) -> bool:
    return any(r["phase"] == phase and r["status"] == "running" for r in runs_of(ws.ctx(), story))


def test_the_workers_are_processes_of_their_own(workspace: Workspace) -> None:
    scenario(workspace, {"defaults": {"delay": 0.2}})
    configure(workspace, {"scenario": "scenario.yaml"})
    stories = epic_with(workspace.ctx(), 4)
    run = workspace.spawn("run", "--epic", "FLOW", "--workers", "2", "--json")
    children = _until(lambda: _two(run.pid), "two worker processes")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    summary = json.loads(out)
    assert summary["workers"] == 2
    ctx = workspace.ctx()
    assert all(ctx.story(s).status is Status.COMPLETED for s in stories)
    pids = {int(worker.split(":")[1]) for worker in _workers(workspace)}
    assert len(pids) == 2 and run.pid not in pids, pids
    assert set(children) == pids
    recorded = [r["id"] for s in stories for r in runs_of(ctx, s)]
    assert sorted(r["run_id"] for r in summary["runs"]) == sorted(recorded)


def _implementing(ws: Workspace, delay: float) -> tuple[Context, str, subprocess.Popen[str]]:
    """``run --epic --workers 2`` on one story, returned once its implement phase (which
    takes ``delay`` seconds) is running; leases of 1.5 s."""
    scenario(ws, {"phases": {"implement": {"delay": delay}}})
    configure(ws, {"scenario": "scenario.yaml", "lease_seconds": 1.5})
    ctx = ws.ctx()
    (story,) = epic_with(ctx, 1)
    run = ws.spawn("run", "--epic", "FLOW", "--workers", "2", "--json")
    _until(lambda: _running(ws, story, "implement"), "the implement phase running")
    return ctx, story, run


def _implemented_once(ctx: Context, story: str) -> None:
    assert ctx.story(story).status is Status.COMPLETED
    implement = [r for r in runs_of(ctx, story) if r["phase"] == "implement"]
    assert [(r["attempt"], r["status"]) for r in implement] == [(1, "succeeded")]
    proofs = [a for a in ctx.store.list_artifacts(story) if a.kind is ArtifactKind.PROOF]
    assert [p.version for p in proofs] == [1]
    assert ctx.store.lease(story) is None


def test_a_killed_worker_process_is_taken_over_and_the_run_goes_on(workspace: Workspace) -> None:
    ctx, story, run = _implementing(workspace, 3)
    lease = ctx.store.lease(story)
    assert lease is not None
    doomed = int(str(lease["owner"]).split(":")[1])
    assert doomed in _children(run.pid)
    os.kill(doomed, signal.SIGKILL)

    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert f"(pid {doomed}) ended by signal 9" in err, err
    assert "worker process 1 started again" in err or "worker process 0 started again" in err
    _implemented_once(ctx, story)
    assert json.loads(out)["takeovers"] == 1
    assert workspace.run("check").code == 0


def test_killing_the_run_ends_its_workers(workspace: Workspace) -> None:
    ctx, story, run = _implementing(workspace, 4)
    children = _children(run.pid)
    assert len(children) == 2
    run.kill()
    run.communicate(timeout=30)
    _until(lambda: not any(_alive(pid) for pid in children), "the workers ending", timeout=10)
    time.sleep(4.5)  # a worker still alive would have finished the phase by now
    assert ctx.story(story).status is Status.IN_PROGRESS
    assert [r["status"] for r in runs_of(ctx, story) if r["phase"] == "implement"] == ["running"]

    rescued = workspace.run("run", "--epic", "FLOW", "--workers", "2", "--json", timeout=120)
    assert rescued.code == 0, rescued
    _implemented_once(ctx, story)
    assert rescued.json["takeovers"] == 1


def test_a_refused_story_is_reported_once(workspace: Workspace) -> None:
    """Merge-conflict markers in a story file: the story is left alone, once, whichever
    worker process tries it first; the others are told and do not try it."""
    scenario(workspace, {})
    configure(workspace, {"scenario": "scenario.yaml"})
    ctx = workspace.ctx()
    broken, *others = epic_with(ctx, 4)
    assert workspace.run("run", broken).code == 0  # generate
    path = ctx.files.story_file(ctx.epic("FLOW"), ctx.story(broken))
    with path.open("a", encoding="utf-8") as out:
        out.write("<<<<<<< HEAD\nx: 1\n=======\nx: 2\n>>>>>>> theirs\n")
    before = ctx.story(broken)

    run = workspace.spawn("run", "--epic", "FLOW", "--workers", "3")
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert err.count(f"{broken} refused: MERGE_CONFLICT") == 1, err
    assert err.count("failed: MERGE_CONFLICT") == 1, err
    assert all(ctx.story(s).status is Status.COMPLETED for s in others)
    after = ctx.story(broken)
    assert (after.status, after.version) == (before.status, before.version)


def test_the_agents_of_a_worker_process_can_be_stopped_with_sigterm(workspace: Workspace) -> None:
    """A worker process leaves SIGINT and SIGTERM to its parent, but the command agents it
    starts do not inherit that: a timed-out agent's group gets SIGTERM, and must hear it."""
    agent = {"type": "command", "command": fake_command("signals")}
    configure(workspace, {"agents": {"cli": agent}, "phase_agents": {"elaborate": "cli"}})
    stories = epic_with(workspace.ctx(), 2)
    done = workspace.run("run", "--epic", "FLOW", "--workers", "2", timeout=120)
    assert done.code == 0, done
    ctx = workspace.ctx()
    runs = [r["id"] for s in stories for r in runs_of(ctx, s) if r["phase"] == "elaborate"]
    assert len(runs) == 2
    for run_id in runs:
        line = (workspace.root / ".storyflow" / "runs" / run_id / "stderr.txt").read_text()
        ignored = int(line.split(":")[1], 16)
        for signum in (signal.SIGINT, signal.SIGTERM):
            assert not ignored & (1 << (signum - 1)), (signal.Signals(signum).name, line)


def test_a_worker_commands_processes_are_started_again_until_they_keep_dying(
    workspace: Workspace,
) -> None:
    """``storyflow worker --concurrency 2`` (no --until-idle: a service) keeps two worker
    processes: a killed one is started again, until three of its slot's processes in a row
    died young; SIGTERM then stops the command with its report."""
    scenario(workspace, {"defaults": {"delay": 0.2}})
    configure(workspace, {"scenario": "scenario.yaml"})
    stories = epic_with(workspace.ctx(), 3)
    command = workspace.spawn("worker", "--epic", "FLOW", "--concurrency", "2", "--json")
    survivor, doomed = _until(lambda: _two(command.pid), "two worker processes")
    killed = []
    for _ in range(3):
        os.kill(doomed, signal.SIGKILL)
        killed.append(doomed)

        def replaced(gone: int = doomed) -> list[int]:
            now = _children(command.pid)
            return [p for p in now if p not in (survivor, gone) and p not in killed]

        if len(killed) < 3:
            doomed = _until(replaced, "a new worker process")[0]
    _until(lambda: _children(command.pid) == [survivor], "only the survivor left", timeout=20)
    ctx = workspace.ctx()
    _until(lambda: all(ctx.story(s).status is Status.COMPLETED for s in stories), "the stories")
    command.send_signal(signal.SIGTERM)
    out, err = command.communicate(timeout=60)
    assert command.returncode == 0, err
    assert len(re.findall(r"; worker process \d started again", err)) == 2, err
    assert "its slot is not started again: 3 of its processes in a row died" in err, err
    assert json.loads(out)["interrupted"] is True
    assert workspace.run("check").code == 0
