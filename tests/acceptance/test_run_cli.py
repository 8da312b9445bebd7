"""`storyflow run` as a user runs it: one phase of one story, a lease that keeps a second run
out (exit 5) or makes it wait, the refusals, a soft_gate pause, and a whole epic."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.budgets import Enforcement
from storyflow.services import epics
from tests.run_support import configure, epic_with, runs_of, scenario
from tests.support import Workspace, new_story


def wait_for_lease(ws: Workspace, story: str, timeout: float = 30) -> None:
    ctx = ws.ctx()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ctx.store.lease(story) is not None:
            return
        time.sleep(0.05)
    raise AssertionError(f"nobody leased {story}")


def finish(proc: subprocess.Popen[str]) -> tuple[int, Any, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, json.loads(out) if out.strip() else None, err


def test_two_runs_of_one_story_one_runs_the_other_exits_5(workspace: Workspace) -> None:
    scenario(workspace, {"phases": {"generate": {"delay": 2}, "elaborate": {"delay": 2}}})
    configure(workspace, {"scenario": "scenario.yaml"})
    (story,) = epic_with(workspace.ctx(), 1)
    first = workspace.spawn("run", story, "--json")
    wait_for_lease(workspace, story)
    second = workspace.spawn("run", story, "--json")
    lost_code, lost, _ = finish(second)
    won_code, won, err = finish(first)
    assert (won_code, lost_code) == (0, 5), err
    assert lost["error"]["code"] == "STORY_LOCKED"
    assert lost["error"]["details"]["story"] == story and lost["error"]["details"]["owner"]
    assert (won["phase"], won["status"], won["to"]) == ("generate", "succeeded", "generated")
    history = workspace.run("story", "history", story, "--json").json
    assert [h["to_status"] for h in history] == ["pending", "generated"]
    # --wait: the second run waits for the lease, then runs the next phase
    first = workspace.spawn("run", story, "--json")
    wait_for_lease(workspace, story)
    waiting = workspace.spawn("run", story, "--wait", "--json")
    assert finish(first)[0] == 0
    code, waited, err = finish(waiting)
    assert code == 0, err
    assert waited["phase"] == "plan"
    ctx = workspace.ctx()
    assert [r["phase"] for r in runs_of(ctx, story)] == ["generate", "elaborate", "plan"]


def test_run_refuses_what_it_cannot_do(workspace: Workspace) -> None:
    configure(workspace)
    ctx = workspace.ctx()
    first, second = epic_with(ctx, 2)
    cases = [
        (("run", first, "--phase", "review"), 3, "PHASE_NOT_APPLICABLE"),
        (("run", first, "--phase", "deploy"), 7, "UNKNOWN_RUN_PHASE"),
        (("run", "FLOW-999"), 6, "STORY_NOT_FOUND"),
        (("run",), 2, "USAGE"),
        (("run", first, "--epic", "FLOW"), 2, "USAGE"),
    ]
    for args, status, code in cases:
        result = workspace.run(*args, "--json")
        assert result.code == status, (args, result)
        assert result.json["error"]["code"] == code
    # the error names the flag that was given
    for args, flag in (
        (("run", "--epic", "FLOW", "--workers", "0"), "--workers"),
        (("worker", "--concurrency", "0"), "--concurrency"),
    ):
        result = workspace.run(*args, "--json")
        assert result.code == 2 and result.json["error"]["code"] == "USAGE", result
        assert result.json["error"]["message"].startswith(f"{flag} must be between 1 and 64")
    assert workspace.run("story", "block", second, "--reason", "waiting").code == 0
    blocked = workspace.run("run", second, "--json")
    assert blocked.code == 3 and blocked.json["error"]["code"] == "NOTHING_TO_RUN"
    assert workspace.run("run", first).code == 0
    again = workspace.run("run", first, "--phase", "generate", "--json")
    assert again.code == 3 and again.json["error"]["code"] == "PHASE_NOT_APPLICABLE"
    assert "--force" in again.json["error"]["hint"]


def test_soft_gate_pauses_until_the_overrun_is_confirmed(workspace: Workspace) -> None:
    scenario(workspace, {"phases": {"implement": {"usage": {"input": 9000}}}})
    configure(
        workspace,
        {"scenario": "scenario.yaml"},
        budgets={"implementation": {"estimate": 1000, "warning": 2000, "hard": 5000}},
    )
    (story,) = epic_with(workspace.ctx(), 1, enforcement=Enforcement.SOFT_GATE)
    for _ in range(3):
        assert workspace.run("run", story).code == 0
    paused = workspace.run("run", story, "--json")
    assert paused.code == 4, paused
    assert paused.json["error"]["code"] == "BUDGET_CONFIRMATION_REQUIRED"
    assert paused.json["error"]["details"]["status"] == "paused"
    shown = workspace.run("story", "show", story, "--json").json
    assert shown["status"] == "in-progress" and shown["lock"] is None
    assert shown["artifacts"]["proof"]["version"] == 1
    # what the person must do: confirm, not "implement, submit the proof" again
    assert shown["next_action"].endswith(
        f"storyflow story move {story} ready-for-code-review --confirm-budget --reason '...'"
    )
    again = workspace.run("run", story, "--json")  # the recorded pause, no agent
    assert again.code == 4 and again.json["error"]["details"]["recorded"] is True
    assert again.json["error"]["details"]["run_id"] == paused.json["error"]["details"]["run_id"]
    refused = workspace.run("story", "move", story, "ready-for-code-review", "--json")
    assert refused.code == 4
    confirmed = workspace.run(
        "story", "move", story, "ready-for-code-review", "--confirm-budget", "--reason", "ok"
    )
    assert confirmed.code == 0, confirmed
    assert "confirm" not in workspace.run("story", "show", story, "--json").json["next_action"]
    assert workspace.run("run", story, "--json").json["phase"] == "review"


def test_run_an_epic_with_workers_ends_with_the_report(workspace: Workspace) -> None:
    scenario(
        workspace,
        {
            "rules": [
                {
                    "stories": ["FLOW-002"],
                    "phase": "review",
                    "iteration": 1,
                    "reviewers": {"lint": "FAIL"},
                },
                {"stories": ["FLOW-003"], "phase": "gate", "verdict": "CONCERNS"},
            ]
        },
    )
    configure(workspace, {"scenario": "scenario.yaml"})
    ctx = workspace.ctx()
    ids = epic_with(ctx, 4)
    from storyflow.services.stories import update_story

    update_story(ctx, ids[3], depends_on=[ids[0]])
    result = workspace.run("run", "--epic", "FLOW", "--workers", "2", "--json")
    assert result.code == 0, result
    summary = result.json
    assert summary["status_counts"] == {"completed": 4}
    assert summary["reviews"] == {"FAIL": 1, "PASS": 4}
    assert summary["gates"] == {"CONCERNS": 1, "PASS": 3}
    assert summary["tokens"]["total"] == sum(r["tokens"]["total"] for r in summary["runs"])
    assert len({r["run_id"] for r in summary["runs"]}) == len(summary["runs"]) == 30
    human = workspace.run("run", "--epic", "FLOW")
    assert human.code == 0 and "run report for FLOW: 0 phase runs" in human.stdout
    assert "stories: 4 completed" in human.stdout
    epics.create_epic(ctx, "NONE", title="No stories yet")
    empty = workspace.run("run", "--epic", "NONE")
    assert empty.code == 0 and "run report for NONE: 0 phase runs" in empty.stdout, empty
    assert "\nstories: none\n" in empty.stdout, empty


def test_an_epic_that_asks_for_approval_pauses_its_stories_until_approved(
    workspace: Workspace,
) -> None:
    """A passing elaboration in an approval epic waits for a person, not a failure: the
    workers leave the story in in-elaboration, the report says why, and after
    ``storyflow approve`` the next run takes the edge without running the analyst again."""
    configure(workspace)
    ctx = workspace.ctx()
    from storyflow.services import epics

    epics.create_epic(ctx, "FLOW", title="Flow", require_approval=True)
    waiting = new_story(ctx, "FLOW", title="Needs a PM")
    first = workspace.run("run", "--epic", "FLOW", "--workers", "2", "--json")
    assert first.code == 0, first
    assert first.json["status_counts"] == {"in-elaboration": 1}
    (story,) = first.json["stories"]
    assert "awaiting PM/UX approval" in story["reason"]
    assert [(r["phase"], r["status"]) for r in runs_of(ctx, waiting)] == [
        ("generate", "succeeded"),
        ("elaborate", "paused"),
    ]
    again = workspace.run("run", waiting, "--json")  # still waiting: exit 3, nothing runs
    assert again.code == 3, again
    assert again.json["error"]["code"] == "AWAITING_APPROVAL"
    assert f"storyflow approve {waiting}" in again.json["error"]["hint"]
    assert len(runs_of(ctx, waiting)) == 2
    assert workspace.run("run", "--epic", "FLOW", "--json").json["runs"] == []
    next_action = workspace.run("story", "show", waiting, "--json").json["next_action"]
    assert f"storyflow approve {waiting} --by NAME, then storyflow run {waiting}" in next_action
    assert "submit the elaboration" not in next_action

    assert workspace.run("approve", waiting, "--by", "pm-lead").code == 0
    done = workspace.run("run", "--epic", "FLOW", "--workers", "2", "--json")
    assert done.code == 0, done
    assert done.json["status_counts"] == {"completed": 1}
    runs = runs_of(ctx, waiting)
    elaborations = [r for r in runs if r["phase"] == "elaborate"]
    assert [(r["status"], r["attempt"]) for r in elaborations] == [
        ("paused", 1),
        ("succeeded", 2),
    ]
    assert elaborations[1]["outcome"]["reused"] is True  # the analyst did not run again
    shown = workspace.run("artifact", "list", waiting, "--json").json
    assert [a["version"] for a in shown if a["kind"] == "elaboration"] == [1]


def test_a_plan_imported_mid_flight_blocks_what_cannot_complete_before_any_agent_runs(
    workspace: Workspace,
) -> None:
    """An index imported mid-flight brings stories past generation with no Reuse Plan, and
    stories past implementation with no proof. No phase ahead of them writes either, so the
    acceptance rule would refuse them at the very end: the run blocks each one when it is
    first claimed, with the reason and what to do, and no agent spends a token on it. A
    person completes the story file, unblocks the story, and the run takes it on."""
    from tests.plan_support import FLOW_INDEX, FOLDERS, plan_folder

    plan_folder(workspace, "FLOW", index=FLOW_INDEX)
    imported = workspace.run("plan", "import", FOLDERS["FLOW"], "--json")
    assert imported.code == 0, imported
    reuse = [w for w in imported.json["warnings"] if "empty Reuse Plan" in w["message"]]
    (uat,) = [w for w in reuse if w["message"].startswith("FLOW-010: imported at uat")]
    assert uat["file"].endswith("stories.index.md") and uat["line"]
    assert not [w for w in reuse if w["message"].startswith("FLOW-001:")]  # completed
    # storyflow check agrees: the same stories, each at its story file; the ones imported
    # as done are records, with nothing left to plan
    checked = workspace.run("check", "--json")
    assert checked.code == 3, checked
    flagged = {f["story"] for f in checked.json["findings"] if "reuse_plan" in f["message"]}
    assert flagged == {w["message"].split(":")[0] for w in reuse}
    assert "FLOW-001" not in flagged and "FLOW-002" not in flagged
    configure(workspace)
    ctx = workspace.ctx()
    before = {s.id: s.status.value for s in ctx.store.list_stories(epic="FLOW")}
    assert before["FLOW-007"] == "generated" and before["FLOW-010"] == "uat"

    result = workspace.run("run", "--epic", "FLOW", "--workers", "2", "--json", timeout=120)
    assert result.code == 0, result
    ran = {r["story"] for r in result.json["runs"]}
    assert ran == {s for s, status in before.items() if status == "pending"}
    after = {s.id: s for s in ctx.store.list_stories(epic="FLOW")}
    no_reuse_plan = "story file: reuse_plan"
    assert after["FLOW-007"].status.value == "blocked"
    assert after["FLOW-007"].blocked_from is not None
    assert after["FLOW-007"].blocked_from.value == "generated"
    assert no_reuse_plan in (after["FLOW-007"].blocked_reason or "")
    assert after["FLOW-010"].status.value == "blocked"
    reason = after["FLOW-010"].blocked_reason or ""
    assert "no proof from the last implementation round" in reason and no_reuse_plan in reason
    for story_id, status in before.items():
        if status in ("pending", "completed", "cancelled", "blocked"):
            continue
        now = after[story_id]
        assert runs_of(ctx, story_id) == [], story_id  # no agent ran for it
        assert now.status.value in ("blocked", status), story_id
    blocked_now = [s for s, status in before.items() if after[s].status.value != status]
    report = {s["story"]: s for s in result.json["stories"]}
    for story_id in blocked_now:
        if before[story_id] != "pending":
            assert no_reuse_plan in report[story_id]["reason"], report[story_id]

    (story_file,) = workspace.root.glob("**/FLOW-007/story.yaml")
    text = story_file.read_text(encoding="utf-8")
    assert "reuse_plan: ''" in text
    story_file.write_text(
        text.replace("reuse_plan: ''", "reuse_plan: Reuses @repo/db."), encoding="utf-8"
    )
    assert workspace.run("story", "unblock", "FLOW-007").code == 0
    resumed = workspace.run("run", "FLOW-007", "--json")
    assert resumed.code == 3, resumed  # the FLOW plan asks for approval after elaboration
    assert resumed.json["error"]["code"] == "AWAITING_APPROVAL"
    assert [(r["phase"], r["status"]) for r in runs_of(ctx, "FLOW-007")] == [
        ("elaborate", "paused")
    ]


def test_run_of_a_story_that_cannot_complete_says_what_to_do(workspace: Workspace) -> None:
    from tests.plan_support import FLOW_INDEX, FOLDERS, plan_folder

    plan_folder(workspace, "FLOW", index=FLOW_INDEX)
    assert workspace.run("plan", "import", FOLDERS["FLOW"]).code == 0
    configure(workspace)
    refused = workspace.run("run", "FLOW-010", "--json")
    assert refused.code == 3, refused
    error = refused.json["error"]
    assert error["code"] == "PRECONDITION_FAILED"
    assert "no proof from the last implementation round" in error["message"]
    assert error["hint"] == (
        "write it, then: storyflow artifact submit FLOW-010 proof; "
        "then: storyflow story unblock FLOW-010"
    )
    shown = workspace.run("story", "show", "FLOW-010", "--json").json
    assert shown["status"] == "blocked" and shown["blocked_from"] == "uat"
    assert runs_of(workspace.ctx(), "FLOW-010") == []


def wait_for_running(ws: Workspace, stories: list[str], timeout: float = 60) -> list[str]:
    """Until some story has a phase running; returns those that do."""
    ctx = ws.ctx()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [s for s in stories if any(r["status"] == "running" for r in runs_of(ctx, s))]
        if running:
            return running
        time.sleep(0.05)
    raise AssertionError("no phase started")


def test_sigterm_finishes_the_running_phases_and_a_second_interrupts_them(
    workspace: Workspace,
) -> None:
    """``run --epic``: the first SIGTERM lets the running phases finish and takes nothing
    new; the second interrupts the agents, records their runs as abandoned and releases the
    leases. Either way it exits 130 with the report, files and database agree, and a later
    run drives every story to completion."""
    scenario(workspace, {"defaults": {"delay": 1.5}})
    configure(workspace, {"scenario": "scenario.yaml"})
    stories = epic_with(workspace.ctx(), 3)
    ctx = workspace.ctx()

    run = workspace.spawn("run", "--epic", "FLOW", "--workers", "2", "--json")
    running = wait_for_running(workspace, stories)
    run.send_signal(signal.SIGTERM)
    code, report, err = finish(run)
    assert code == 130, err
    assert report["interrupted"] is True
    started = [s for s in stories if runs_of(ctx, s)]
    assert set(running) <= set(started) and len(started) <= 2  # one phase per worker
    for story in started:  # finished, not cut short; and nothing new began
        assert [r["status"] for r in runs_of(ctx, story)] == ["succeeded"]
    assert all(ctx.store.lease(s) is None for s in stories)
    assert workspace.run("check").code == 0
    before = {s: len(runs_of(ctx, s)) for s in stories}

    run = workspace.spawn("run", "--epic", "FLOW", "--workers", "2", "--json")
    running = wait_for_running(workspace, stories)
    run.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    code, report, err = finish(run)
    assert code == 130, err
    assert report["interrupted"] is True
    started = [s for s in stories if len(runs_of(ctx, s)) > before[s]]
    assert set(running) <= set(started) and len(started) <= 2
    for story in started:
        (last,) = runs_of(ctx, story)[before[story] :]
        assert (last["status"], last["error_code"]) == ("abandoned", "RUN_INTERRUPTED"), last
    assert not any(r["status"] == "running" for s in stories for r in runs_of(ctx, s))
    assert all(ctx.store.lease(s) is None for s in stories)
    checked = workspace.run("check")
    assert checked.code == 0, checked.stdout + checked.stderr

    scenario(workspace, {"defaults": {"delay": 0}})
    code, report, err = finish(workspace.spawn("run", "--epic", "FLOW", "--workers", "2", "--json"))
    assert code == 0, err
    assert [ctx.story(s).status.value for s in stories] == ["completed"] * 3


def test_a_hand_edit_waiting_for_sync_survives_the_phases_runs(workspace: Workspace) -> None:
    """The run engine renders the story file after each phase: a title edited by hand
    meanwhile stays until storyflow sync applies it."""
    scenario(workspace, {})
    configure(workspace, {"scenario": "scenario.yaml"})
    (story,) = epic_with(workspace.ctx(), 1)
    assert workspace.run("run", story).code == 0  # generate
    ctx = workspace.ctx()
    path = ctx.files.story_file(ctx.epic("FLOW"), ctx.story(story))
    text = path.read_text(encoding="utf-8")
    assert "title: Story 1\n" in text
    path.write_text(text.replace("title: Story 1\n", "title: Renamed by hand\n"), "utf-8")
    for _ in range(2):  # elaborate, plan: each renders the file in its new stage folder
        assert workspace.run("run", story).code == 0
    path = ctx.files.story_file(ctx.epic("FLOW"), ctx.story(story))
    assert "title: Renamed by hand\n" in path.read_text(encoding="utf-8")
    assert ctx.story(story).status.value == "in-progress"
    assert workspace.run("sync").code == 0
    assert workspace.ctx().story(story).title == "Renamed by hand"


def test_sync_and_check_leave_a_story_in_a_workers_hands(workspace: Workspace) -> None:
    """While a run holds a story -- here waiting to retry after its agent wrote an
    elaboration that does not validate -- sync leaves the story's files alone with a
    warning instead of refusing the half-done output, and check lists it as in a run
    instead of failing on it; afterwards the next sync takes the hand edit."""
    scenario(workspace, {"rules": [{"phase": "elaborate", "attempt": 1, "fail": "malformed"}]})
    retries = {"MALFORMED_OUTPUT": {"retries": 1, "backoff": 4}}
    configure(workspace, {"scenario": "scenario.yaml", "retries": retries, "backoff_max": 4})
    (story,) = epic_with(workspace.ctx(), 1)
    assert workspace.run("run", story).code == 0  # generate
    running = workspace.spawn("run", story, "--json")  # elaborate: fails once, then retries
    ctx = workspace.ctx()
    deadline = time.monotonic() + 30
    while not any(r["status"] == "failed" for r in runs_of(ctx, story)):
        assert time.monotonic() < deadline, "the first attempt never failed"
        time.sleep(0.05)
    path = ctx.files.story_file(ctx.epic("FLOW"), ctx.story(story))
    # the failed attempt's run row commits before its projection rewrites the file: edit
    # under the engine's file lock, as a person's edit between two projections
    with ctx.files.lock(story):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("title: Story 1\n", "title: Renamed by hand\n"), "utf-8")

    during = workspace.run("sync", "--json")
    assert during.code == 0, during.stdout + during.stderr
    (left,) = during.json["problems"]
    assert (left["code"], left["story"], left["level"]) == ("STORY_LOCKED", story, "warning")
    assert "next sync" in left["message"] and f"story show {story}" in left["hint"]
    assert ctx.story(story).title == "Story 1"
    assert ctx.store.latest_artifact(story, ArtifactKind.ELABORATION) is None
    checked = workspace.run("check", "--json")
    assert checked.code == 0, checked.stdout + checked.stderr
    assert checked.json["findings"] == [] and checked.json["summary"]["in_run"] == [story]
    assert f"note: a run holds {story}" in workspace.run("check").stdout

    code, outcome, err = finish(running)
    assert code == 0, err
    assert (outcome["phase"], outcome["status"]) == ("elaborate", "succeeded")
    after = workspace.run("sync", "--json")
    assert after.code == 0, after.stdout + after.stderr
    assert after.json["problems"] == []
    assert workspace.ctx().story(story).title == "Renamed by hand"
    checked = workspace.run("check", "--json")
    assert checked.code == 0, checked.stdout
    assert checked.json["summary"]["in_run"] == []
