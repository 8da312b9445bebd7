"""The use cases on a real database: numbering, split, next, leases, board, show, artifact
versions, approvals and requirements."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from storyflow.adapters.db.connection import Connection
from storyflow.adapters.db.store import Store, ts
from storyflow.domain.guidance import next_action
from storyflow.domain.model import Story
from storyflow.domain.statuses import Status
from storyflow.errors import ConflictError, InvalidInput, NotFoundError, RuleViolation
from storyflow.services import artifacts as artifact_service
from storyflow.services import epics, requirements, stories, story_reads, transitions
from storyflow.services.context import Context
from tests.support import Driver, Workspace, elaboration, new_story, plan

S = Status


@pytest.fixture
def driver(workspace: Workspace) -> Driver:
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow")
    return Driver(workspace, ctx)


def _file(ws: Workspace, relative: str) -> Any:
    path = ws.root / relative
    assert path.is_file(), (
        f"{relative} missing; have {sorted(p.name for p in path.parent.glob('*'))}"
    )
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _ids(found: list[Story]) -> list[str]:
    return [s.id for s in found]


# ---- numbering and the harness story ------------------------------------------------------


def test_story_numbers_and_the_harness_story(driver: Driver, workspace: Workspace) -> None:
    ctx = driver.ctx
    assert new_story(ctx, title="One") == "FLOW-001"
    assert new_story(ctx, title="Two") == "FLOW-002"
    harness = workspace.cli("story", "new", "FLOW", "--harness", "--title", "Harness", "--json")
    assert harness.code == 0, harness
    assert harness.json["id"] == "FLOW-000"
    assert harness.json["depends_on"] == []
    assert harness.json["path"] == "plans/flow/backlog/FLOW-000/story.yaml"
    assert ctx.story("FLOW-000").is_harness

    # Stories created after the harness depend on it, before anything they name themselves.
    three = stories.create_story(ctx, "FLOW", title="Three")
    assert three.id == "FLOW-003" and three.depends_on == ("FLOW-000",)
    four = stories.create_story(ctx, "FLOW", title="Four", depends_on=["FLOW-001"])
    assert four.depends_on == ("FLOW-000", "FLOW-001")
    five = stories.create_story(ctx, "FLOW", title="Five", depends_on=["FLOW-000", "FLOW-002"])
    assert five.depends_on == ("FLOW-000", "FLOW-002")
    # Stories created before it are left alone.
    assert ctx.story("FLOW-001").depends_on == ()
    assert _file(workspace, "plans/flow/backlog/FLOW-003/story.yaml")["depends_on"] == ["FLOW-000"]

    with pytest.raises(ConflictError) as duplicate:
        stories.create_story(ctx, "FLOW", title="Another harness", harness=True)
    assert duplicate.value.code == "DUPLICATE_ID"
    assert _ids(story_reads.list_stories(ctx)) == [
        "FLOW-000",
        "FLOW-001",
        "FLOW-002",
        "FLOW-003",
        "FLOW-004",
        "FLOW-005",
    ]


def test_numbering_is_per_epic_and_follows_the_layout(driver: Driver, workspace: Workspace) -> None:
    ctx = driver.ctx
    epics.create_epic(ctx, "REVI", title="Revi", layout=None, timezone="America/Denver")
    flat = workspace.cli("epic", "new", "SYNC", "--title", "Sync", "--layout", "flat", "--json")
    assert flat.code == 0, flat
    assert new_story(ctx, "FLOW") == "FLOW-001"
    assert new_story(ctx, "REVI") == "REVI-001"
    assert new_story(ctx, "SYNC") == "SYNC-001"
    assert new_story(ctx, "SYNC") == "SYNC-002"
    assert (workspace.root / "plans/stories/SYNC-002/SYNC-002.md").is_file()
    assert not list((workspace.root / "plans").glob("*.md"))  # no loose story files
    with pytest.raises(NotFoundError) as missing:
        new_story(ctx, "NOPE")
    assert missing.value.code == "EPIC_NOT_FOUND"


def test_a_story_must_name_existing_dependencies(driver: Driver) -> None:
    ctx = driver.ctx
    with pytest.raises(InvalidInput) as unknown:
        new_story(ctx, depends_on=["FLOW-042"])
    assert unknown.value.code == "UNKNOWN_DEPENDENCY"
    assert story_reads.list_stories(ctx) == []
    first = new_story(ctx)
    second = new_story(ctx, depends_on=[first])
    with pytest.raises(InvalidInput) as cycle:
        stories.update_story(ctx, first, depends_on=[second])
    assert cycle.value.code == "DEPENDENCY_CYCLE"
    assert ctx.story(first).depends_on == ()


# ---- reading the story file ---------------------------------------------------------------


def test_a_story_file_edited_in_place_is_parsed_again_whatever_its_timestamps(
    driver: Driver,
) -> None:
    """A process keeps its last parse of each story file with the text it parsed: the same
    text gets the same parse, any other text a new one, even when an edit keeps the file's
    size and its timestamps (a stamp would have taken it for the file read before)."""
    ctx = driver.ctx
    sid = new_story(ctx, title="Cached")
    story, epic = ctx.story(sid), ctx.epic("FLOW")
    path, text, first = ctx.files.read_story(epic, story)
    assert ctx.files.read_story(epic, story)[2] is first
    edited = text.replace("title: Cached", "title: Cachet")
    assert edited != text and len(edited) == len(text)
    stamp = path.stat()
    path.write_text(edited, encoding="utf-8")  # in place: the same inode and size
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert ctx.files.read_story(epic, story)[2].meta["title"] == "Cachet"


# ---- split --------------------------------------------------------------------------------


def test_split_children_supersede_the_original_and_take_over_its_dependents(
    driver: Driver, workspace: Workspace
) -> None:
    ctx = driver.ctx
    original = new_story(ctx, title="Too big", priority="P1", requires=["db-1"], phase=2)
    dependent = new_story(ctx, title="Waits for it", depends_on=[original])
    other = new_story(ctx, title="Unrelated")
    driver.drive_to(original, S.NEEDS_SPLIT)

    superseded, children = stories.split_story(ctx, original, ["Part one", "Part two"])

    child_ids = [c.id for c in children]
    assert child_ids == ["FLOW-004", "FLOW-005"]
    for child, title in zip(children, ["Part one", "Part two"], strict=True):
        stored = ctx.story(child.id)
        assert stored.title == title
        assert stored.status is S.PENDING
        assert stored.split_from == original
        assert (stored.priority, stored.phase, stored.requires) == ("P1", 2, ("db-1",))
        data = _file(workspace, f"plans/flow/backlog/{child.id}/story.yaml")
        assert data["split_from"] == original and data["status"] == "pending"
        assert data["agent_log"][-1]["action"] == f"story created (split from {original})"
        assert story_reads.history(ctx, child.id)[0]["reason"] == f"split from {original}"

    assert superseded.status is S.SUPERSEDED
    stored = ctx.story(original)
    assert stored.status is S.SUPERSEDED
    assert stored.superseded_by == tuple(child_ids)
    last = story_reads.history(ctx, original)[-1]
    assert (last["from_status"], last["to_status"]) == ("needs-split", "superseded")
    archived = _file(workspace, f"plans/flow/archive/{original}/story.yaml")
    assert archived["status"] == "superseded"
    assert archived["superseded_by"] == child_ids
    assert "split into FLOW-004, FLOW-005" in archived["agent_log"][-1]["action"]
    assert not (workspace.root / "plans/flow/backlog" / original).exists()

    assert ctx.story(dependent).depends_on == tuple(child_ids)
    dep_file = _file(workspace, f"plans/flow/backlog/{dependent}/story.yaml")
    assert dep_file["depends_on"] == child_ids
    assert original in dep_file["agent_log"][-1]["action"]
    assert ctx.story(other).depends_on == ()

    # The superseded story is terminal.
    with pytest.raises(RuleViolation) as terminal:
        transitions.move(ctx, original, "generated")
    assert terminal.value.code == "TERMINAL_STATUS"


def test_only_a_needs_split_story_can_be_split(driver: Driver, workspace: Workspace) -> None:
    ctx = driver.ctx
    story_id = new_story(ctx)
    before = workspace.snapshot()
    with pytest.raises(RuleViolation) as refused:
        stories.split_story(ctx, story_id, ["a", "b"])
    assert refused.value.code == "SPLIT_NOT_ALLOWED"
    assert workspace.snapshot() == before
    driver.drive_to(story_id, S.NEEDS_SPLIT)
    before = workspace.snapshot()
    with pytest.raises(InvalidInput):
        stories.split_story(ctx, story_id, ["just one"])
    assert workspace.snapshot() == before
    assert _ids(story_reads.list_stories(ctx)) == [story_id]
    assert ctx.story(story_id).status is S.NEEDS_SPLIT
    result = workspace.cli("story", "split", story_id, "--into", "A", "--into", "B", "--json")
    assert result.code == 0, result
    assert [c["split_from"] for c in result.json["children"]] == [story_id, story_id]


# ---- next ---------------------------------------------------------------------------------


def _conn(ctx: Context) -> Connection:
    """The store's own connection: the tests write rows no command writes yet (leases)."""
    assert isinstance(ctx.store, Store)
    return ctx.store.conn


def _lease(ctx: Context, story_id: str, *, minutes: int, owner: str = "worker-1") -> None:
    now = datetime.now(UTC)
    _conn(ctx).execute(
        "INSERT INTO story_leases (story_id, owner, phase, acquired_at, heartbeat_at, "
        "expires_at) VALUES (:story_id, :owner, :phase, :at, :at, :expires)",
        {
            "story_id": story_id,
            "owner": owner,
            "phase": "implement",
            "at": ts(now),
            "expires": ts(now + timedelta(minutes=minutes)),
        },
    )


def _expire_lease(ctx: Context, story_id: str) -> None:
    past = ts(datetime.now(UTC) - timedelta(seconds=1))
    _conn(ctx).execute(
        "UPDATE story_leases SET expires_at = :past WHERE story_id = :id",
        {"past": past, "id": story_id},
    )


def _next_json_agrees(ctx: Context, epic: str | None = None) -> None:
    """`next --json` (objects the database encodes) prints what story_json of `workable`
    gives: the same stories, order, keys, key order and values."""
    slow = [story_reads.story_json(s) for s in story_reads.workable(ctx, epic=epic)]
    fast = story_reads.workable_json(ctx, epic=epic)
    assert json.dumps(fast) == json.dumps(slow)
    assert story_reads.workable_json(ctx, epic=epic, limit=2) == slow[:2]


def test_next_orders_workable_stories_by_priority_then_age(
    driver: Driver, workspace: Workspace
) -> None:
    ctx = driver.ctx
    old_p2 = new_story(ctx, title="old P2", priority="P2")
    p0 = new_story(ctx, title="P0", priority="P0")
    young_p2 = new_story(ctx, title="young P2", priority="P2")
    p1 = new_story(ctx, title="P1", priority="high")  # an alias for P1
    not_ready = new_story(ctx, title="not ready", priority="P0")
    waits = new_story(ctx, title="waits for not-ready", priority="P0", depends_on=[not_ready])
    done = new_story(ctx, title="done", priority="P4")
    after_done = new_story(ctx, title="after done", priority="P3", depends_on=[done])
    needs_db = new_story(ctx, title="needs db", priority="P0", requires=["db-schema-002"])
    leased = new_story(ctx, title="leased", priority="P0")
    epics.create_epic(ctx, "REVI", title="Revi")
    other_epic = new_story(ctx, "REVI", title="elsewhere", priority="P4")

    # Reach ready-to-work in an order unlike creation: age is creation, not readiness.
    for story_id in (young_p2, p1, p0, old_p2, waits, after_done, needs_db, leased, other_epic):
        driver.drive_to(story_id, S.READY_TO_WORK)
    driver.drive_to(not_ready, S.GENERATED)
    transitions.move(ctx, done, "completed", force=True, reason="shipped before storyflow")
    _lease(ctx, leased, minutes=30)

    assert _ids(story_reads.workable(ctx)) == [p0, p1, old_p2, young_p2, after_done, other_epic]
    assert _ids(story_reads.workable(ctx, epic="FLOW")) == [p0, p1, old_p2, young_p2, after_done]
    _next_json_agrees(ctx)
    _next_json_agrees(ctx, "FLOW")
    cli = workspace.cli("next", "--epic", "FLOW", "--limit", "2", "--json")
    assert cli.code == 0, cli
    assert [s["id"] for s in cli.json] == [p0, p1]

    requirements.set_requirement(ctx, "db-schema-002", met=True)
    _expire_lease(ctx, leased)
    assert _ids(story_reads.workable(ctx, epic="FLOW")) == [
        p0,
        needs_db,
        leased,
        p1,
        old_p2,
        young_p2,
        after_done,
    ]
    _next_json_agrees(ctx, "FLOW")
    # Completing the dependency releases the story that waited for it.
    transitions.move(ctx, not_ready, "cancelled", reason="dropped")
    assert waits not in _ids(story_reads.workable(ctx))  # cancelled is not completed
    requirements.set_requirement(ctx, "db-schema-002", met=False)
    assert needs_db not in _ids(story_reads.workable(ctx))


def test_next_is_empty_without_ready_stories(driver: Driver, workspace: Workspace) -> None:
    new_story(driver.ctx)
    assert story_reads.workable(driver.ctx) == []
    result = workspace.cli("next", "--json")
    assert result.code == 0 and result.json == []
    missing = workspace.cli("next", "--epic", "NOPE", "--json")
    assert missing.code == 6 and missing.json["error"]["code"] == "EPIC_NOT_FOUND"


def test_a_leased_story_cannot_be_moved_until_the_lease_expires(
    driver: Driver, workspace: Workspace
) -> None:
    ctx = driver.ctx
    story_id = new_story(ctx)
    driver.drive_to(story_id, S.READY_TO_WORK)
    driver.submit(story_id, "plan", plan())
    _lease(ctx, story_id, minutes=10, owner="worker-7")

    refused = workspace.cli("story", "move", story_id, "in-progress")
    assert refused.code == 5, refused
    assert "error[STORY_LOCKED]" in refused.stderr and "worker-7" in refused.stderr
    as_json = workspace.cli("story", "move", story_id, "in-progress", "--json")
    assert as_json.code == 5
    assert as_json.json["error"]["code"] == "STORY_LOCKED"
    assert as_json.json["error"]["details"]["owner"] == "worker-7"
    # Blocking and cancelling are moves too.
    assert workspace.cli("story", "block", story_id, "--reason", "x").code == 5
    assert ctx.story(story_id).status is S.READY_TO_WORK
    assert len(story_reads.history(ctx, story_id)) == 4

    shown = workspace.cli("story", "show", story_id, "--json").json
    assert shown["lock"]["owner"] == "worker-7"
    assert shown["lock"]["phase"] == "implement"

    # The lease owner itself may move the story.
    result = transitions.move(ctx, story_id, "in-progress", lease_owner="worker-7")
    assert result.target is S.IN_PROGRESS
    transitions.move(ctx, story_id, "blocked", reason="wait", lease_owner="worker-7")

    _expire_lease(ctx, story_id)
    moved = workspace.cli("story", "move", story_id, "in-progress", "--json")
    assert moved.code == 0, moved
    assert (moved.json["from"], moved.json["to"]) == ("blocked", "in-progress")
    assert ctx.story(story_id).status is S.IN_PROGRESS


# ---- board and show -----------------------------------------------------------------------


def test_board_counts_every_status(driver: Driver, workspace: Workspace) -> None:
    ctx = driver.ctx
    ids = [new_story(ctx, title=f"s{i}") for i in range(5)]
    driver.drive_to(ids[1], S.GENERATED)
    driver.drive_to(ids[2], S.READY_TO_WORK)
    driver.drive_to(ids[3], S.CANCELLED)
    epics.create_epic(ctx, "REVI", title="Revi")
    elsewhere = new_story(ctx, "REVI")

    board = story_reads.board(ctx, epic="FLOW")
    assert set(board["counts"]) == {s.value for s in Status}
    assert board["total"] == 5
    assert {k: v for k, v in board["counts"].items() if v} == {
        "pending": 2,
        "generated": 1,
        "ready-to-work": 1,
        "cancelled": 1,
    }
    assert [s["id"] for s in board["statuses"]["pending"]] == [ids[0], ids[4]]
    assert board["statuses"]["ready-to-work"] == [{"id": ids[2], "title": "s2", "priority": "P2"}]

    everything = workspace.cli("board", "--json")
    assert everything.code == 0, everything
    assert everything.json["total"] == 6 and everything.json["epic"] is None
    assert everything.json["counts"]["pending"] == 3
    assert elsewhere in [s["id"] for s in everything.json["statuses"]["pending"]]
    assert sum(everything.json["counts"].values()) == 6
    human = workspace.cli("board", "--epic", "FLOW")
    assert human.code == 0 and "pending (2)" in human.stdout and "total 5" in human.stdout


def test_story_show(driver: Driver, workspace: Workspace) -> None:
    ctx = driver.ctx
    story_id = new_story(ctx, title="Shown", requires=["db-7"])
    dependency = new_story(ctx, title="Dependency")
    stories.update_story(ctx, story_id, depends_on=[dependency])
    driver.drive_to(story_id, S.IN_ELABORATION)
    for summary in ("v1", "v2", "v3"):
        driver.submit(story_id, "elaboration", elaboration("NEEDS_REFINEMENT", summary=summary))
    driver.submit(story_id, "elaboration", elaboration("PASS"))
    driver.tokens(story_id, "elaboration")
    transitions.move(ctx, story_id, "ready-to-work")
    driver.submit(story_id, "plan", plan())

    data = story_reads.show_story(ctx, story_id)
    assert data["id"] == story_id and data["status"] == "ready-to-work"
    assert data["next_action"] == next_action(S.READY_TO_WORK, story_id)
    assert f"storyflow artifact submit {story_id} plan" in data["next_action"]
    assert data["path"] == f"plans/flow/ready-to-work/{story_id}/story.yaml"
    arts = data["artifacts"]
    assert set(arts) == {"story", "elaboration", "plan"}
    assert (arts["elaboration"]["version"], arts["elaboration"]["verdict"]) == (4, "PASS")
    assert arts["plan"]["version"] == 1 and arts["plan"]["verdict"] is None
    assert arts["plan"]["path"] == f"plans/flow/ready-to-work/{story_id}/plan.yaml"
    assert (workspace.root / arts["plan"]["path"]).is_file()
    assert len(arts["plan"]["sha256"]) == 64
    assert data["dependencies"] == [{"id": dependency, "status": "pending"}]
    assert data["unmet_requirements"] == ["db-7"]
    budget = data["budget"]
    assert budget["total_used"] == 150 and budget["entries"] == 1
    assert budget["phases"]["elaboration"]["used"] == 150
    assert budget["enforcement"] == "advisory"
    assert data["lock"] is None
    events = data["last_events"]
    row = _conn(ctx).fetchone(
        "SELECT COUNT(*) AS n FROM workflow_events WHERE story_id = :id", {"id": story_id}
    )
    assert row is not None and int(row["n"]) > 10
    assert len(events) == 10
    assert events[0]["type"] == "artifact" and events[0]["payload"]["kind"] == "plan"
    assert events[1]["type"] == "transition"
    assert events[1]["payload"] == {
        "from": "in-elaboration",
        "to": "ready-to-work",
        "forced": False,
    }
    assert [e["created_at"] for e in events] == sorted(
        (e["created_at"] for e in events), reverse=True
    )

    cli = workspace.cli("story", "show", story_id, "--json")
    assert cli.code == 0, cli
    assert cli.json["artifacts"]["elaboration"]["version"] == 4
    assert cli.json["next_action"] == data["next_action"]
    human = workspace.cli("story", "show", story_id)
    assert human.code == 0
    assert "next      " + data["next_action"] in human.stdout
    assert "lock      none" in human.stdout
    assert f"{dependency} (pending)" in human.stdout and "db-7 (unmet)" in human.stdout


def test_story_show_of_a_blocked_story(driver: Driver) -> None:
    story_id = new_story(driver.ctx)
    driver.drive_to(story_id, S.BLOCKED)
    data = story_reads.show_story(driver.ctx, story_id)
    assert (data["status"], data["blocked_from"], data["blocked_reason"]) == (
        "blocked",
        "ready-to-work",
        "test",
    )
    assert data["next_action"] == f"resolve the blocker, then: storyflow story unblock {story_id}"
    # The story folder stays in the stage it was blocked from.
    assert data["path"] == f"plans/flow/ready-to-work/{story_id}/story.yaml"


# ---- artifact versions --------------------------------------------------------------------


def test_artifact_versions(driver: Driver, workspace: Workspace) -> None:
    ctx = driver.ctx
    story_id = new_story(ctx)
    driver.drive_to(story_id, S.IN_ELABORATION)
    first = elaboration("NEEDS_REFINEMENT", summary="first look")
    second = elaboration("NEEDS_REFINEMENT", summary="second look")

    assert driver.submit(story_id, "elaboration", first)["version"] == 1
    v2 = driver.submit(story_id, "elaboration", second)
    assert (v2["version"], v2["unchanged"]) == (2, False)
    again = driver.submit(story_id, "elaboration", second)
    assert (again["version"], again["unchanged"]) == (2, True)
    assert again["sha256"] == v2["sha256"]
    folder = workspace.root / f"plans/flow/elaboration/{story_id}"
    assert yaml.safe_load((folder / "elaboration.yaml").read_text())["summary"] == "second look"

    listed = [(a.kind.value, a.version) for a in artifact_service.list_artifacts(ctx, story_id)]
    assert listed == [("elaboration", 1), ("elaboration", 2), ("story", 1)]

    old = workspace.cli("artifact", "show", story_id, "elaboration", "--version", "1", "--json")
    assert old.code == 0, old
    assert old.json["version"] == 1 and old.json["content"]["summary"] == "first look"
    assert old.json["content"]["story_id"] == story_id
    raw = workspace.cli("artifact", "show", story_id, "elaboration", "--version", "1", "--raw")
    assert raw.code == 0 and yaml.safe_load(raw.stdout) == first
    latest = workspace.cli("artifact", "show", story_id, "elaboration", "--json")
    assert latest.json["version"] == 2 and latest.json["content"]["summary"] == "second look"
    missing = workspace.cli("artifact", "show", story_id, "elaboration", "--version", "3", "--json")
    assert missing.code == 6 and missing.json["error"]["code"] == "ARTIFACT_NOT_FOUND"

    # Going back to earlier content is a new version: only the latest counts as "the same".
    back = driver.submit(story_id, "elaboration", first)
    assert (back["version"], back["unchanged"]) == (3, False)
    again = driver.submit(story_id, "elaboration", second)
    assert (again["version"], again["unchanged"]) == (4, False)

    # The same content in a later round (the story left and re-entered the status) is new.
    transitions.move(ctx, story_id, "needs-refinement")
    transitions.move(ctx, story_id, "generated")
    transitions.move(ctx, story_id, "in-elaboration")
    v5 = driver.submit(story_id, "elaboration", second)
    assert (v5["version"], v5["unchanged"]) == (5, False)
    # Submitting the file already in the story folder (no PATH) is the same file again.
    assert artifact_service.submit(ctx, story_id, "elaboration")["unchanged"] is True


def test_a_refused_artifact_stores_nothing(driver: Driver, workspace: Workspace) -> None:
    ctx = driver.ctx
    story_id = new_story(ctx)
    driver.drive_to(story_id, S.IN_ELABORATION)
    with pytest.raises(RuleViolation) as contradiction:
        driver.submit(story_id, "elaboration", {"verdict": "CONDITIONAL_PASS", "summary": "x"})
    assert contradiction.value.code == "GATE_CONTRADICTION"
    with pytest.raises(InvalidInput) as wrong_story:
        driver.submit(story_id, "elaboration", elaboration("PASS", story_id="FLOW-999"))
    assert wrong_story.value.code == "ARTIFACT_STORY_MISMATCH"
    assert [a.kind.value for a in artifact_service.list_artifacts(ctx, story_id)] == ["story"]
    assert not (workspace.root / f"plans/flow/elaboration/{story_id}/elaboration.yaml").exists()


# ---- approvals ----------------------------------------------------------------------------


def test_an_epic_that_requires_approval(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow", require_approval=True)
    driver = Driver(workspace, ctx)
    story_id = new_story(ctx)
    driver.drive_to(story_id, S.IN_ELABORATION)

    with pytest.raises(RuleViolation) as nothing_to_approve:
        transitions.approve(ctx, story_id, by="pm")
    assert nothing_to_approve.value.code == "GUARD_FAILED"
    driver.submit(story_id, "elaboration", elaboration("NEEDS_REFINEMENT"))
    with pytest.raises(RuleViolation):
        transitions.approve(ctx, story_id, by="pm")

    driver.submit(story_id, "elaboration", elaboration("PASS"))
    refused = workspace.cli("story", "move", story_id, "ready-to-work", "--json")
    assert refused.code == 3, refused
    error = refused.json["error"]
    assert error["code"] == "GUARD_FAILED"
    assert [f["guard"] for f in error["details"]["failures"]] == ["approval"]
    assert error["hint"] == f"storyflow approve {story_id} --by NAME"

    approved = workspace.cli("approve", story_id, "--by", "pm", "--note", "looks right", "--json")
    assert approved.code == 0, approved
    assert approved.json == {"story": story_id, "elaboration_version": 2, "approved_by": "pm"}

    # An approval belongs to the version it approved: a new elaboration needs a new one.
    driver.submit(story_id, "elaboration", elaboration("PASS", summary="revised"))
    with pytest.raises(RuleViolation) as stale:
        transitions.move(ctx, story_id, "ready-to-work")
    assert stale.value.code == "GUARD_FAILED"
    transitions.approve(ctx, story_id, by="ux")
    assert transitions.move(ctx, story_id, "ready-to-work").target is S.READY_TO_WORK
    log = [row.action for row in ctx.store.log_rows(story_id)]
    assert "elaboration v2 approved by pm" in log and "elaboration v3 approved by ux" in log
    assert any(
        e["type"] == "approval" for e in story_reads.show_story(ctx, story_id)["last_events"]
    )


def test_without_the_approval_setting_no_approval_is_needed(driver: Driver) -> None:
    story_id = new_story(driver.ctx)
    driver.drive_to(story_id, S.IN_ELABORATION)
    driver.submit(story_id, "elaboration", elaboration("PASS"))
    assert transitions.move(driver.ctx, story_id, "ready-to-work").target is S.READY_TO_WORK


# ---- requirements -------------------------------------------------------------------------


def test_requirements_gate_implementation(driver: Driver, workspace: Workspace) -> None:
    ctx = driver.ctx
    story_id = new_story(ctx, requires=["db-schema-002"])
    listed = requirements.list_requirements(ctx)
    assert [(r["name"], r["met"], r["stories"]) for r in listed] == [("db-schema-002", False, 1)]
    driver.drive_to(story_id, S.READY_TO_WORK)
    driver.submit(story_id, "plan", plan())

    refused = workspace.cli("story", "move", story_id, "in-progress", "--json")
    assert refused.code == 3, refused
    failures = refused.json["error"]["details"]["failures"]
    assert [f["guard"] for f in failures] == ["requirements"]
    assert "db-schema-002" in failures[0]["message"]
    assert failures[0]["hint"] == "when it is in place: storyflow requirement met db-schema-002"

    met = workspace.cli(
        "requirement",
        "met",
        "db-schema-002",
        "--note",
        "migration 002 live",
        "--actor",
        "dba",
        "--json",
    )
    assert met.code == 0, met
    listed = workspace.cli("requirement", "list", "--json").json
    assert [(r["name"], r["met"], r["note"], r["stories"]) for r in listed] == [
        ("db-schema-002", True, "migration 002 live", 1)
    ]
    assert listed[0]["updated_by"] == "dba"
    assert transitions.move(ctx, story_id, "in-progress").target is S.IN_PROGRESS

    unmet = workspace.cli("requirement", "unmet", "db-schema-002", "--json")
    assert unmet.code == 0 and unmet.json["met"] is False
    listed = requirements.list_requirements(ctx)
    # The note survives an update that gives none.
    assert [(r["met"], r["note"]) for r in listed] == [(False, "migration 002 live")]
    assert story_reads.show_story(ctx, story_id)["unmet_requirements"] == ["db-schema-002"]
    # A name no story requires is recorded, with a warning that names the closest one.
    typo = workspace.cli("requirement", "met", "db-schema-02")
    assert typo.code == 0, typo
    assert (
        "db-schema-02: a new requirement, no story requires it yet (did you mean " in (typo.stderr)
        and "db-schema-002?)" in typo.stderr
    ), typo


def test_requirement_names_are_checked(driver: Driver, workspace: Workspace) -> None:
    for bad in ("", "../x", "a b", "-leading"):
        with pytest.raises(InvalidInput):
            requirements.set_requirement(driver.ctx, bad, met=True)
    result = workspace.cli("requirement", "met", "a b", "--json")
    assert result.code == 7 and result.json["error"]["code"] == "INVALID_INPUT"
    assert requirements.list_requirements(driver.ctx) == []
    assert requirements.set_requirement(driver.ctx, "api/v2:ready", met=True)["met"] is True
    assert [r["stories"] for r in requirements.list_requirements(driver.ctx)] == [0]


def test_dependencies_gate_implementation(driver: Driver) -> None:
    ctx = driver.ctx
    first = new_story(ctx)
    second = new_story(ctx, depends_on=[first])
    driver.drive_to(second, S.READY_TO_WORK)
    driver.submit(second, "plan", plan())
    with pytest.raises(RuleViolation) as refused:
        transitions.move(ctx, second, "in-progress")
    assert refused.value.code == "GUARD_FAILED"
    assert f"{first} (pending)" in refused.value.message
    transitions.move(ctx, first, "completed", force=True, reason="done elsewhere")
    assert transitions.move(ctx, second, "in-progress").target is S.IN_PROGRESS


def test_a_long_lived_context_sees_an_epic_that_another_writer_changed(
    driver: Driver, workspace: Workspace
) -> None:
    """The store memoises epics by their row; a worker's context, open for hours, must still
    apply a settings change that another connection committed meanwhile."""
    sid = new_story(driver.ctx)
    driver.drive_to(sid, S.IN_ELABORATION)
    driver.submit(sid, "elaboration", elaboration("PASS"))
    assert not driver.ctx.load(sid).epic.settings.require_approval

    epics.update_epic(workspace.ctx(), "FLOW", require_approval=True)

    loaded = driver.ctx.load(sid)
    assert loaded.epic.settings.require_approval and loaded.epic.version == 2
    with pytest.raises(RuleViolation) as refused:
        driver.move(sid, "ready-to-work")
    assert refused.value.code == "GUARD_FAILED"
    assert driver.ctx.story(sid).status is S.IN_ELABORATION


def test_a_read_after_deferred_writes_sees_them_and_a_lost_compare_and_set_stops_it(
    driver: Driver,
) -> None:
    """Deferred writes travel with the next read (one round trip on PostgreSQL): the read
    sees them, and when one of them is a compare-and-set that lost, the read does not
    happen, the conflict names the story and nothing commits."""
    ctx = driver.ctx
    sid = new_story(ctx)
    story = ctx.story(sid)
    moved = replace(story, title="Renamed", version=story.version + 1)
    with ctx.store.transaction():
        ctx.store.cas_update_story(moved, story.version)
        seen = ctx.store.get_story(sid)  # the deferred write goes first, in the same trip
        assert seen is not None and (seen.title, seen.version) == ("Renamed", story.version + 1)

    stale = replace(moved, title="Lost", version=story.version + 1)
    with pytest.raises(ConflictError) as lost, ctx.store.transaction():
        ctx.store.cas_update_story(stale, story.version)  # the version moved on meanwhile
        ctx.store.get_story(sid)
        pytest.fail("the read after a lost compare-and-set returned")
    assert lost.value.code == "VERSION_CONFLICT" and sid in lost.value.message
    after = ctx.story(sid)
    assert (after.title, after.version) == ("Renamed", story.version + 1)


def test_a_submission_and_its_agent_log_row_carry_one_time(workspace: Workspace) -> None:
    """Sync in another clone takes a version's submitted_at from its Agent Log row: the row
    is stamped with the submission's own time, not a later reading of the clock (a slow
    transaction could put them in different seconds, and the clones would disagree)."""
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow")
    story = new_story(ctx, "FLOW", title="One")
    start = datetime(2026, 12, 7, 12, 0, 0, 900_000, tzinfo=UTC)
    ticks = iter(range(1000))
    ctx = replace(ctx, clock=lambda: start + timedelta(seconds=next(ticks)))  # 1 s a call
    source = workspace.root / "elaboration.yaml"
    source.write_text(yaml.safe_dump(elaboration()), encoding="utf-8")
    submitted = artifact_service.submit(ctx, story, "elaboration", source)
    (stored,) = [a for a in ctx.store.list_artifacts(story) if a.kind == "elaboration"]
    row = ctx.store.log_rows(story)[-1]
    assert "elaboration v1 submitted" in row.action, row
    stamp = datetime.fromisoformat(row.timestamp.replace("Z", "+00:00"))
    assert stamp == stored.submitted_at.replace(microsecond=0), (row, stored, submitted)
