"""Workers as processes: a worker killed with SIGKILL mid-phase is taken over once its lease
expires, and its phase is recorded exactly once; four workers drive 200 stories to rest."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.statuses import TERMINAL, Status
from storyflow.services.stories import create_story
from tests.run_support import configure, epic_with, ledger_rows, runs_of, scenario
from tests.support import Workspace


def test_a_killed_workers_story_is_finished_once_by_another(workspace: Workspace) -> None:
    scenario(workspace, {"phases": {"implement": {"delay": 4}}})
    configure(workspace, {"scenario": "scenario.yaml", "lease_seconds": 1.5})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    doomed = workspace.spawn("worker", "--epic", "FLOW", "--until-idle", start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the implement phase is running
        if any(r["phase"] == "implement" for r in runs_of(ctx, story)):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the worker never started implementing")
    time.sleep(0.5)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.communicate(timeout=30)
    assert ctx.store.lease(story) is not None  # left behind by the dead worker
    rescuer = workspace.spawn(
        "worker", "--epic", "FLOW", "--until-idle", "--json", start_new_session=True
    )
    out, err = rescuer.communicate(timeout=120)
    assert rescuer.returncode == 0, err
    assert ctx.story(story).status is Status.COMPLETED
    implement = [r for r in runs_of(ctx, story) if r["phase"] == "implement"]
    assert [(r["attempt"], r["status"]) for r in implement] == [(1, "succeeded")]
    proofs = [a for a in ctx.store.list_artifacts(story) if a.kind is ArtifactKind.PROOF]
    assert [p.version for p in proofs] == [1]
    spent = [e for e in ledger_rows(ctx, story) if e["run_id"] == implement[0]["id"]]
    assert len(spent) == 1
    history = [h["to_status"] for h in ctx.store.history(story)]
    assert history.count("ready-for-code-review") == 1
    locks = [e for e in ctx.store.recent_events(story, 100) if e["type"] == "lock"]
    assert [e["payload"]["action"] for e in locks] == ["takeover"]
    assert locks[0]["payload"]["previous_owner"] != locks[0]["payload"]["owner"]
    assert locks[0]["payload"]["expired_at"]  # when the dead worker's lease ran out
    summary = json.loads(out)
    assert summary["takeovers"] == 1
    assert ctx.store.lease(story) is None


def test_a_dead_workers_unrendered_commit_is_rendered_by_the_next_worker(
    workspace: Workspace,
) -> None:
    """A worker killed between its commit and the story file leaves a stale file and an
    expired lease on a story no claim takes over (here cancelled): the next worker renders
    the file, abandons the dead run, drops the lease and records the takeover."""
    configure(workspace)
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    epic = ctx.epic("FLOW")
    before = ctx.files.story_file(epic, ctx.story(story)).read_text(encoding="utf-8")
    cancelled = workspace.run("story", "cancel", story, "--reason", "dropped from the scope")
    assert cancelled.code == 0, cancelled.stderr
    # the folder moved to its stage, but the dead worker never rewrote the file
    path = ctx.files.story_file(epic, ctx.story(story))
    path.write_text(before, encoding="utf-8")
    runs = ctx.store.run_store()
    past = datetime.now(UTC) - timedelta(seconds=30)
    with ctx.store.transaction():
        assert runs.acquire(story, owner="dead", phase="gate", now=past, expires=past) is False
        assert runs.insert_run(
            run_id="deadrun",
            story_id=story,
            phase="gate",
            attempt=1,
            key="dead-key",
            agent="scripted",
            model=None,
            worker="dead",
            trace_id="0" * 32,
            started_at=past,
        )
    assert workspace.run("check").code == 3  # the file says pending

    out, err = workspace.spawn("worker", "--epic", "FLOW", "--until-idle", "--json").communicate(
        timeout=120
    )

    assert json.loads(out)["takeovers"] == 1, err
    assert "status: cancelled" in path.read_text(encoding="utf-8")
    checked = workspace.run("check")
    assert checked.code == 0, checked.stdout + checked.stderr
    assert ctx.store.lease(story) is None
    (dead,) = runs_of(ctx, story)
    assert (dead["status"], dead["error_code"]) == ("abandoned", "WORKER_LOST")
    locks = [e["payload"] for e in ctx.store.recent_events(story, 100) if e["type"] == "lock"]
    assert [(p["action"], p["previous_owner"], p.get("released")) for p in locks] == [
        ("takeover", "dead", True)
    ]


def test_four_workers_drive_two_hundred_stories_to_rest(workspace: Workspace) -> None:
    scenario(
        workspace,
        {
            "rules": [
                {
                    "every": 5,
                    "offset": 2,
                    "phase": "review",
                    "iteration": 1,
                    "reviewers": {"security": "FAIL"},
                },
                {"every": 4, "offset": 3, "phase": "gate", "verdict": "CONCERNS"},
                {
                    "numbers": [4, 104],
                    "phase": "elaborate",
                    "iteration": 1,
                    "verdict": "SPLIT_REQUIRED",
                    "split_into": ["{title} A", "{title} B"],
                },
            ]
        },
    )
    configure(workspace, {"scenario": "scenario.yaml", "lease_seconds": 30})
    ctx = workspace.ctx()
    ids = epic_with(ctx, 1)
    for number in range(2, 201):
        depends = [f"FLOW-{number - 7:03d}"] if number % 9 == 0 else []
        ids.append(create_story(ctx, "FLOW", title=f"Story {number}", depends_on=depends).id)
    result = workspace.run("run", "--epic", "FLOW", "--workers", "4", "--json", timeout=280)
    assert result.code == 0, result
    summary = json.loads(result.stdout)
    stories = ctx.store.list_stories(epic="FLOW")
    assert len(stories) == 204  # two splits, two children each
    left = {s.id for s in stories if s.status not in TERMINAL}
    # on failure: what the run said of the stories it left (a refusal names its reason)
    said = [entry for entry in summary["stories"] if entry["story"] in left]
    lines = [line for line in result.stderr.splitlines() if any(x in line for x in left)]
    assert not left, (Counter(s.status for s in stories), said, lines)
    assert Counter(s.status for s in stories) == {
        Status.COMPLETED: 202,
        Status.SUPERSEDED: 2,
    }
    rows = ctx.store.conn.fetchall("SELECT id, story_id, phase, status, outcome FROM runs")
    assert len(rows) == len(summary["runs"]) == len({r["id"] for r in rows})
    assert all(r["status"] == "succeeded" for r in rows)
    # every run appears once in the trace, and its tokens once in the ledger
    trace = workspace.root / ".storyflow" / "trace" / "workspace.jsonl"
    lines = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    completes = Counter(e["run_id"] for e in lines if e["type"] == "phase_complete")
    assert set(completes) == {r["id"] for r in rows} and set(completes.values()) == {1}
    assert all(e["trace_id"] and e["span_id"] for e in lines)
    ledger = ctx.store.conn.fetchall(
        "SELECT run_id, SUM(total_tokens) AS total, COUNT(*) AS n FROM workflow_token_logs "
        "GROUP BY run_id"
    )
    by_run = {r["run_id"]: int(r["total"]) for r in ledger}
    for row in rows:
        recorded = json.loads(row["outcome"])["tokens"]["total"]
        assert by_run.get(row["id"], 0) == recorded, row
    assert summary["tokens"]["total"] == sum(by_run.values())
    # storyflow metrics folds the same rows: its figures are sums over the ledger
    metrics = workspace.cli("metrics", "--epic", "FLOW", "--json").json
    per_story = ctx.store.conn.fetchall(
        "SELECT story_id, SUM(total_tokens) AS t FROM workflow_token_logs GROUP BY story_id"
    )
    assert metrics["tokens"]["total"] == sum(by_run.values())
    assert {s: v["total"] for s, v in metrics["tokens"]["by_story"].items()} == {
        r["story_id"]: int(r["t"]) for r in per_story
    }
    assert metrics["runs"]["total"] == len(rows)
    # per story: one succeeded run per phase step, matching its history
    for story in stories:
        history = [h["to_status"] for h in ctx.store.history(story.id)]
        story_runs = [r for r in rows if r["story_id"] == story.id]
        reviews = sum(1 for r in story_runs if r["phase"] == "review")
        assert reviews == history.count("ready-for-qa") + history.count("code-review-failed")
        assert sum(1 for r in story_runs if r["phase"] == "gate") == history.count("completed")
