"""Every guard of DESIGN §3 refusing through the storyflow executable: exit status, error code,
the --json error body, and nothing changed (status, history, files) by a refusal.

Setup walks stories in-process (``Flow``); the refused command and the one that then passes
run as subprocesses.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

from storyflow.domain.statuses import Status
from tests.acceptance._helpers import (
    Flow,
    error_body,
    fill_reuse_plan,
    history,
    ok,
    read_story,
    refused,
    show,
    status,
)
from tests.support import (
    BREAKING_PLAN,
    Workspace,
    code_review,
    elaboration,
    plan,
    proof,
    qa_gate,
    verification,
)

S = Status


@pytest.fixture
def flow(workspace: Workspace) -> Flow:
    flow = Flow(workspace)
    flow.epic("FLOW")
    return flow


def submit_run(ws: Workspace, flow: Flow, sid: str, kind: str, data: dict[str, object]) -> None:
    ok(ws.run("artifact", "submit", sid, kind, str(flow.draft(sid, kind, data))))


def submit_args(flow: Flow, sid: str, kind: str, data: dict[str, object]) -> tuple[str, ...]:
    return ("artifact", "submit", sid, kind, str(flow.draft(sid, kind, data)))


def last_move(ws: Workspace, sid: str) -> dict[str, object]:
    return history(ws, sid)[-1]


# ---- elaboration --------------------------------------------------------------------------


def test_story_file_without_reuse_plan_is_refused(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    flow.move(sid, "generated")
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "in-elaboration",
        exit_status=3,
        code="GUARD_FAILED",
        guard="story-file-valid",
    )
    assert "reuse_plan" in error["message"]
    assert (error["details"]["from"], error["details"]["to"]) == ("generated", "in-elaboration")
    fill_reuse_plan(flow.path(sid))
    ok(workspace.run("story", "move", sid, "in-elaboration"))
    assert status(workspace, sid) == "in-elaboration"


def test_flat_story_file_without_reuse_plan_section_is_refused(
    workspace: Workspace, flow: Flow
) -> None:
    flow.epic("REVI", "--layout", "flat", "--tz", "America/Denver")
    sid = flow.story("REVI")
    flow.move(sid, "generated")
    path = flow.path(sid)
    text = path.read_text("utf-8")
    without = re.sub(r"## Reuse Plan\n.*?(?=## Token Budget)", "", text, flags=re.S)
    assert "## Reuse Plan" not in without
    path.write_text(without, "utf-8")
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "in-elaboration",
        exit_status=3,
        code="GUARD_FAILED",
        guard="story-file-valid",
    )
    assert "reuse_plan" in error["message"]


def test_missing_elaboration_is_refused(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    flow.drive_to(sid, S.IN_ELABORATION)
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "ready-to-work",
        exit_status=3,
        code="GUARD_FAILED",
        guard="evidence",
    )
    assert "no elaboration" in error["message"]
    assert f"storyflow artifact submit {sid} elaboration" in error["hint"]


def test_elaboration_verdict_must_lead_to_the_target(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    flow.drive_to(sid, S.IN_ELABORATION)
    flow.submit(sid, "elaboration", elaboration("NEEDS_REFINEMENT"))
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "ready-to-work",
        exit_status=3,
        code="GUARD_FAILED",
        guard="evidence",
    )
    assert "NEEDS_REFINEMENT" in error["message"]
    refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "needs-split",
        exit_status=3,
        code="GUARD_FAILED",
        guard="evidence",
    )
    ok(workspace.run("story", "move", sid, "needs-refinement"))
    # Back in elaboration, the earlier verdict is stale: this round needs its own elaboration.
    flow.move(sid, "generated")
    flow.move(sid, "in-elaboration")
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "needs-refinement",
        exit_status=3,
        code="GUARD_FAILED",
        guard="evidence",
    )
    assert "since the story last entered in-elaboration" in error["message"]


def test_approval_required_until_approved(workspace: Workspace, flow: Flow) -> None:
    flow.epic("PMUX", "--require-approval")
    sid = flow.story("PMUX")
    flow.drive_to(sid, S.IN_ELABORATION)
    flow.submit(sid, "elaboration", elaboration("PASS"))
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "ready-to-work",
        exit_status=3,
        code="GUARD_FAILED",
        guard="approval",
    )
    assert error["hint"] == f"storyflow approve {sid} --by NAME"
    approved = ok(workspace.run("approve", sid, "--by", "pm", "--json")).json
    assert approved["approved_by"] == "pm"
    ok(workspace.run("story", "move", sid, "ready-to-work"))
    assert status(workspace, sid) == "ready-to-work"


# ---- implementation -----------------------------------------------------------------------


def test_missing_plan_is_refused(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    flow.drive_to(sid, S.READY_TO_WORK)
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "in-progress",
        exit_status=3,
        code="GUARD_FAILED",
        guard="plan",
    )
    assert "no plan" in error["message"]


def test_breaking_change_plan_needs_migration(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story("FLOW", "--breaking-change")
    assert show(workspace, sid)["breaking_change"] is True
    flow.drive_to(sid, S.READY_TO_WORK)
    flow.submit(sid, "plan", plan())
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "in-progress",
        exit_status=3,
        code="GUARD_FAILED",
        guard="plan",
    )
    for key in ("migration_path", "backward_compatibility", "migration_tests"):
        assert key in error["message"], error
    flow.submit(sid, "plan", plan(migration_path=BREAKING_PLAN["migration_path"]))
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "in-progress",
        exit_status=3,
        code="GUARD_FAILED",
        guard="plan",
    )
    assert "migration_path" not in error["message"]
    assert "backward_compatibility" in error["message"]
    submit_run(workspace, flow, sid, "plan", plan(**BREAKING_PLAN))
    ok(workspace.run("story", "move", sid, "in-progress"))


def test_unmet_dependency_is_refused_until_completed(workspace: Workspace, flow: Flow) -> None:
    first = flow.story()
    second = flow.story("FLOW", "--depends-on", first)
    assert show(workspace, second)["depends_on"] == [first]
    flow.drive_to(second, S.READY_TO_WORK)
    flow.submit(second, "plan", plan())
    error = refused(
        workspace,
        second,
        "story",
        "move",
        second,
        "in-progress",
        exit_status=3,
        code="GUARD_FAILED",
        guard="dependencies",
    )
    assert f"{first} (pending)" in error["message"]
    flow.drive_to(first, S.COMPLETED)
    ok(workspace.run("story", "move", second, "in-progress"))
    assert status(workspace, second) == "in-progress"


def test_unmet_requirement_is_refused_until_met(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story("FLOW", "--requires", "db-schema-002")
    flow.drive_to(sid, S.READY_TO_WORK)
    flow.submit(sid, "plan", plan())
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "in-progress",
        exit_status=3,
        code="GUARD_FAILED",
        guard="requirements",
    )
    assert "db-schema-002" in error["message"]
    assert error["hint"].endswith("storyflow requirement met db-schema-002")
    # a typo is recorded (a requirement may be declared before a story names it), but said
    typo = ok(workspace.run("requirement", "met", "db-schema-02"))
    assert "no story requires it yet (did you mean db-schema-002?)" in typo.stderr
    refused(workspace, sid, "story", "move", sid, "in-progress", exit_status=3, code="GUARD_FAILED")
    known = ok(workspace.run("requirement", "met", "db-schema-002"))
    assert "warning" not in known.stderr
    ok(workspace.run("story", "move", sid, "in-progress"))
    assert status(workspace, sid) == "in-progress"


def test_proof_needs_reuse_verification(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    flow.drive_to(sid, S.IN_PROGRESS)
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "ready-for-code-review",
        exit_status=3,
        code="GUARD_FAILED",
        guard="proof",
    )
    assert "no proof" in error["message"]
    # A proof without the section is not a proof: its schema refuses it at submission.
    bare = {k: v for k, v in proof().items() if k != "reuse_verification"}
    error = refused(
        workspace,
        sid,
        *submit_args(flow, sid, "proof", bare),
        exit_status=7,
        code="SCHEMA_INVALID",
    )
    assert "reuse_verification" in [e["field"] for e in error["details"]["errors"]]
    # An empty Reuse Verification passes the schema but not the guard.
    flow.submit(sid, "proof", proof(reuse_verification={"packages_used": []}))
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "ready-for-code-review",
        exit_status=3,
        code="GUARD_FAILED",
        guard="proof",
    )
    assert "no reused package" in error["message"]
    justified = {"justification": "no shared package covers this yet"}
    submit_run(workspace, flow, sid, "proof", proof(reuse_verification=justified))
    ok(workspace.run("story", "move", sid, "ready-for-code-review"))


# ---- code review and QA -------------------------------------------------------------------


def test_review_pass_below_coverage_threshold(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    flow.drive_to(sid, S.READY_FOR_CODE_REVIEW)
    error = refused(
        workspace,
        sid,
        *submit_args(flow, sid, "code_review", code_review("PASS", coverage=30)),
        exit_status=3,
        code="GATE_CONTRADICTION",
    )
    assert "below the threshold 45%" in error["message"]
    assert "code_review" not in show(workspace, sid)["artifacts"]
    # Accepted at 80 % ...
    flow.submit(sid, "code_review", code_review("PASS", coverage=80))
    # ... but the epic raises its threshold before the move: the guard reads it anew.
    updated = ok(workspace.run("epic", "update", "FLOW", "--coverage-threshold", "90", "--json"))
    assert updated.json["settings"]["coverage_threshold"] == 90
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "ready-for-qa",
        exit_status=3,
        code="GUARD_FAILED",
        guard="coverage",
    )
    assert "coverage 80" in error["message"] and "90%" in error["message"]
    submit_run(workspace, flow, sid, "code_review", code_review("PASS", coverage=95))
    ok(workspace.run("story", "move", sid, "ready-for-qa"))


def test_graph_integration_verification_needs_scenarios(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story("FLOW", "--graph-integration")
    flow.drive_to(sid, S.IN_QA)
    flow.submit(sid, "verification", verification("PASS"))
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "uat",
        exit_status=3,
        code="GUARD_FAILED",
        guard="scenarios",
    )
    assert "scenario" in error["message"]
    # A passing scenario without evidence is not evidence.
    flow.submit(
        sid, "verification", verification("PASS", scenarios=[{"name": "g", "status": "pass"}])
    )
    refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "uat",
        exit_status=3,
        code="GUARD_FAILED",
        guard="scenarios",
    )
    scenario = {"name": "real graph", "status": "pass", "evidence": "runs/graph-1.log"}
    submit_run(workspace, flow, sid, "verification", verification("PASS", scenarios=[scenario]))
    ok(workspace.run("story", "move", sid, "uat"))


CONTRADICTING_GATES = [
    qa_gate("PASS", checks=[{"name": "tests", "status": "fail"}]),
    qa_gate("PASS", issues=[{"severity": "high", "description": "data loss"}]),
    qa_gate("PASS", issues=[{"severity": "medium", "description": "docs"}]),
    qa_gate("CONCERNS", issues=[]),
    qa_gate("FAIL", checks=[{"name": "tests", "status": "pass"}]),
]


def test_qa_gate_contradicting_its_evidence_is_refused_at_submit(
    workspace: Workspace, flow: Flow
) -> None:
    sid = flow.story()
    flow.drive_to(sid, S.UAT)
    for n, gate in enumerate(CONTRADICTING_GATES):
        error = refused(
            workspace,
            sid,
            *submit_args(flow, sid, "qa_gate", gate),
            exit_status=3,
            code="GATE_CONTRADICTION",
            human=n == 0,
        )
        assert "disagrees with its evidence" in error["details"]["problems"][0], gate
    # A failed check that is not required does not fail the gate.
    optional = [
        {"name": "tests", "status": "pass"},
        {"name": "docs", "required": False, "status": "fail"},
    ]
    submit_run(workspace, flow, sid, "qa_gate", qa_gate("PASS", checks=optional))
    flow.tokens(sid)
    ok(workspace.run("story", "move", sid, "completed"))


def test_waived_gate_needs_an_unexpired_waiver(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    flow.drive_to(sid, S.UAT)
    flow.tokens(sid)
    failing = [{"name": "perf", "status": "fail"}]
    waiver = {"reason": "perf fix next sprint", "approver": "pm"}
    cases = [
        (qa_gate("WAIVED", checks=failing), "WAIVED needs a waiver"),
        (
            qa_gate("WAIVED", checks=failing, waiver={**waiver, "expires": "2020-01-31"}),
            "waiver expired on 2020-01-31",
        ),
        (
            qa_gate("WAIVED", waiver={**waiver, "expires": "2999-01-01"}),
            "nothing to waive",
        ),
    ]
    for n, (gate, problem) in enumerate(cases):
        error = refused(
            workspace,
            sid,
            *submit_args(flow, sid, "qa_gate", gate),
            exit_status=3,
            code="GATE_CONTRADICTION",
            human=n == 0,
        )
        assert problem in error["message"], error
    expires = (date.today() + timedelta(days=30)).isoformat()
    valid = qa_gate("WAIVED", checks=failing, waiver={**waiver, "expires": expires})
    submit_run(workspace, flow, sid, "qa_gate", valid)
    ok(workspace.run("story", "move", sid, "completed"))
    assert status(workspace, sid) == "completed"


# ---- the acceptance rule ------------------------------------------------------------------


def test_acceptance_rule_needs_tokens_for_every_phase_that_ran(
    workspace: Workspace, flow: Flow
) -> None:
    sid = flow.story()
    flow.drive_to(sid, S.UAT)
    flow.submit(sid, "qa_gate", qa_gate("PASS"))
    phases = ["code_review", "elaboration", "implementation", "qa_verification", "story_generation"]
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "completed",
        exit_status=3,
        code="GUARD_FAILED",
        guard="acceptance",
    )
    assert "no tokens recorded for phase(s) that ran: " + ", ".join(phases) in error["message"]
    flow.tokens(sid, *phases[:-1])
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "completed",
        exit_status=3,
        code="GUARD_FAILED",
        guard="acceptance",
    )
    assert "no tokens recorded for phase(s) that ran: story_generation" in error["message"]
    assert error["hint"] == f"storyflow token log {sid} story_generation --input N --output M"
    flow.tokens(sid, "story_generation")
    # A file outside the layout's naming convention also breaks the acceptance rule.
    stray = flow.path(sid).parent / "notes.txt"
    stray.write_text("scratch", "utf-8")
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "completed",
        exit_status=3,
        code="GUARD_FAILED",
        guard="acceptance",
    )
    assert "naming: notes.txt does not follow the staged layout" in error["message"]
    stray.unlink()
    ok(workspace.run("story", "move", sid, "completed"))


def test_acceptance_rule_needs_lint_types_tests_passing(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    flow.drive_to(sid, S.IN_PROGRESS)
    checks = {"lint": "pass", "typecheck": "fail", "tests": "pass"}
    flow.submit(sid, "proof", proof(checks=checks))
    flow.move(sid, "ready-for-code-review")
    for target in (S.READY_FOR_QA, S.IN_QA, S.UAT):
        flow.step(sid, target)
    flow.submit(sid, "qa_gate", qa_gate("PASS"))
    flow.tokens(sid)
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "completed",
        exit_status=3,
        code="GUARD_FAILED",
        guard="acceptance",
    )
    messages = [f["message"] for f in error["details"]["failures"]]
    assert messages == ["acceptance: typecheck is fail"]


# ---- block, cancel, split -----------------------------------------------------------------


def test_block_needs_reason_and_unblock_returns(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    flow.drive_to(sid, S.READY_TO_WORK)
    refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "blocked",
        exit_status=3,
        code="GUARD_FAILED",
        guard="reason",
    )
    # `story block` makes the reason a required option: a usage error.
    usage = workspace.run("story", "block", sid, "--json")
    error_body(usage, 2, "USAGE")
    assert status(workspace, sid) == "ready-to-work"

    ok(workspace.run("story", "block", sid, "--reason", "waiting on the API team"))
    shown = show(workspace, sid)
    assert (shown["status"], shown["blocked_from"]) == ("blocked", "ready-to-work")
    assert shown["blocked_reason"] == "waiting on the API team"
    path = flow.path(sid)
    assert path.parent.parent.name == "ready-to-work"  # a blocked story keeps its stage
    meta = read_story(path)["meta"]
    assert (meta["status"], meta["blocked_from"]) == ("blocked", "ready-to-work")

    # Only back where it came from, or to a re-entry status whose guards hold.
    refused(
        workspace,
        sid,
        "story",
        "unblock",
        sid,
        "--to",
        "uat",
        exit_status=3,
        code="GUARD_FAILED",
        guard="unblock-target",
    )
    refused(
        workspace,
        sid,
        "story",
        "unblock",
        sid,
        "--to",
        "in-progress",
        exit_status=3,
        code="GUARD_FAILED",
        guard="plan",
    )
    moved = ok(workspace.run("story", "unblock", sid, "--reason", "API ready", "--json")).json
    assert (moved["from"], moved["to"]) == ("blocked", "ready-to-work")
    shown = show(workspace, sid)
    assert (shown["status"], shown["blocked_from"], shown["blocked_reason"]) == (
        "ready-to-work",
        None,
        None,
    )
    meta = read_story(flow.path(sid))["meta"]
    assert meta["status"] == "ready-to-work"
    assert "blocked_from" not in meta and "blocked_reason" not in meta
    # Not blocked any more: unblock is refused.
    refused(
        workspace,
        sid,
        "story",
        "unblock",
        sid,
        exit_status=3,
        code="TRANSITION_NOT_ALLOWED",
    )


def test_unblock_keeps_the_evidence_of_the_status_it_returns_to(
    workspace: Workspace, flow: Flow
) -> None:
    elaborated = flow.story()
    flow.drive_to(elaborated, S.IN_ELABORATION)
    flow.submit(elaborated, "elaboration", elaboration("PASS"))
    proven = flow.story()
    flow.drive_to(proven, S.IN_PROGRESS)
    flow.submit(proven, "proof", proof())
    for sid in (elaborated, proven):
        ok(workspace.run("story", "block", sid, "--reason", "waiting"))
        ok(workspace.run("story", "unblock", sid))
    # Back where they were, their evidence still counts.
    ok(workspace.run("story", "move", elaborated, "ready-to-work"))
    ok(workspace.run("story", "move", proven, "ready-for-code-review"))

    # Re-entering elaboration from elsewhere starts a new round: earlier evidence is stale.
    flow.move(elaborated, "blocked", "--reason", "scope changed")
    ok(workspace.run("story", "unblock", elaborated, "--to", "in-elaboration"))
    error = refused(
        workspace,
        elaborated,
        "story",
        "move",
        elaborated,
        "ready-to-work",
        exit_status=3,
        code="GUARD_FAILED",
        guard="evidence",
    )
    assert "since the story last entered in-elaboration" in error["message"]


def test_cancel_needs_reason(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    flow.move(sid, "generated")
    refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "cancelled",
        exit_status=3,
        code="GUARD_FAILED",
        guard="reason",
    )
    refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "cancelled",
        "--reason",
        "   ",
        exit_status=3,
        code="GUARD_FAILED",
        guard="reason",
    )
    ok(workspace.run("story", "cancel", sid, "--reason", "out of scope"))
    last = last_move(workspace, sid)
    assert (last["from_status"], last["to_status"], last["reason"]) == (
        "generated",
        "cancelled",
        "out of scope",
    )
    assert flow.path(sid).parent.parent.name == "archive"


def test_split_only_from_needs_split(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story("FLOW", "--requires", "db-schema-002")
    flow.drive_to(sid, S.IN_ELABORATION)
    split = ("story", "split", sid, "--into", "Part A", "--into", "Part B")
    error = refused(workspace, sid, *split, exit_status=3, code="SPLIT_NOT_ALLOWED")
    assert error["details"]["status"] == "in-elaboration"
    flow.step(sid, S.NEEDS_SPLIT)
    refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "superseded",
        exit_status=3,
        code="GUARD_FAILED",
        guard="split-children",
    )
    data = ok(workspace.run(*split, "--json")).json
    children = [c["id"] for c in data["children"]]
    assert children == ["FLOW-002", "FLOW-003"]
    assert data["story"]["status"] == "superseded"
    assert data["story"]["superseded_by"] == children
    original = show(workspace, sid)
    assert (original["status"], original["superseded_by"]) == ("superseded", children)
    last = last_move(workspace, sid)
    assert (last["from_status"], last["to_status"]) == ("needs-split", "superseded")
    assert read_story(flow.path(sid))["meta"]["superseded_by"] == children
    for child, title in zip(children, ("Part A", "Part B"), strict=True):
        shown = show(workspace, child)
        assert (shown["status"], shown["split_from"], shown["title"]) == ("pending", sid, title)
        assert shown["requires"] == ["db-schema-002"]  # children inherit the links
        meta = read_story(flow.path(child))["meta"]
        assert (meta["status"], meta["split_from"]) == ("pending", sid)
        assert history(workspace, child)[0]["reason"] == f"split from {sid}"
    ok(workspace.run("story", "move", children[0], "generated"))
    # The superseded story is terminal: not even a split again.
    refused(workspace, sid, *split, exit_status=3, code="SPLIT_NOT_ALLOWED")


# ---- overrides and terminal statuses ------------------------------------------------------


def test_force_needs_reason_and_is_recorded(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "in-progress",
        exit_status=3,
        code="TRANSITION_NOT_ALLOWED",
    )
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "in-progress",
        "--force",
        exit_status=3,
        code="REASON_REQUIRED",
    )
    assert "--reason" in error["hint"]
    # --force never invents a status.
    refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "shipped",
        "--force",
        "--reason",
        "x",
        exit_status=7,
        code="INVALID_STATUS",
    )
    moved = ok(
        workspace.run(
            "story", "move", sid, "in-progress", "--force", "--reason", "hotfix", "--json"
        )
    ).json
    assert (moved["from"], moved["to"], moved["forced"]) == ("pending", "in-progress", True)
    last = last_move(workspace, sid)
    assert (last["from_status"], last["to_status"], last["forced"], last["reason"]) == (
        "pending",
        "in-progress",
        True,
        "hotfix",
    )
    story = read_story(flow.path(sid))
    assert story["meta"]["status"] == "in-progress"
    assert story["agent_log"][-1]["action"] == "status: pending -> in-progress (FORCED: hotfix)"
    assert flow.path(sid).parent.parent.name == "in-progress"
    text = ok(workspace.run("story", "history", sid)).stdout
    assert "FORCED hotfix" in text


def test_terminal_statuses_are_never_left(workspace: Workspace, flow: Flow) -> None:
    completed, cancelled, superseded = flow.story(), flow.story(), flow.story()
    flow.drive_to(completed, S.COMPLETED)
    flow.drive_to(cancelled, S.CANCELLED)
    flow.drive_to(superseded, S.SUPERSEDED)
    for sid, terminal in (
        (completed, "completed"),
        (cancelled, "cancelled"),
        (superseded, "superseded"),
    ):
        error = refused(
            workspace,
            sid,
            "story",
            "move",
            sid,
            "in-progress",
            "--force",
            "--reason",
            "reopen it",
            exit_status=3,
            code="TERMINAL_STATUS",
        )
        assert error["details"] == {"story": sid, "status": terminal}
    refused(
        workspace,
        completed,
        "story",
        "block",
        completed,
        "--reason",
        "x",
        exit_status=3,
        code="TERMINAL_STATUS",
    )
