"""storyflow sync on a real database: the round trip db -> files -> empty db -> sync gives
back the same board, history, ledger and artifacts (field by field, both layouts); hand
edits go through the rules; the database moving on re-renders files; conflicts wait for
--prefer; the Agent Log is append-only; bad files are reported with file and line."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.layouts import LayoutName
from storyflow.domain.statuses import Status
from storyflow.services import stories, transitions
from tests.support import Workspace, elaboration, new_story, verification
from tests.sync_helpers import (
    Clock,
    Clones,
    assert_same_state,
    build_history,
    clones,
    db_state,
    other_database_url,
    run_sync,
    with_clock,
)

S = Status
__all__ = ["clones", "other_database_url"]  # fixtures


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _story_path(ws: Workspace, story_id: str) -> Path:
    ctx = ws.ctx()
    story = ctx.story(story_id)
    return ctx.files.story_file(ctx.epic(story.epic), story)


# ---- rebuild: the round trip --------------------------------------------------------------


@pytest.mark.parametrize("layout", [LayoutName.STAGED, LayoutName.FLAT])
def test_round_trip_rebuilds_the_same_database(
    workspace: Workspace, clones: Clones, clock: Clock, layout: LayoutName
) -> None:
    build_history(workspace, layout, clock)
    original = db_state(workspace.ctx())
    assert len(original["stories"]) == 10

    fresh = clones.fresh(workspace)
    ctx = with_clock(fresh, clock, actor="newcomer")
    report = run_sync(ctx)
    assert report.errors == [], report.problems
    assert report.conflicts == []
    assert report.rebuilt["stories"] == 10
    assert report.rebuilt["epics"] == 1
    assert_same_state(original, db_state(fresh.ctx()))

    # Files were left as they were, and a second sync has nothing to do, reading nothing.
    assert fresh.snapshot() == {
        k: v for k, v in workspace.snapshot().items() if not k.startswith("inbox/")
    }
    again = run_sync(fresh.ctx())
    assert again.nothing_to_do, again.to_json()
    assert again.read == 0


def test_rebuild_in_worker_processes_gives_the_same_database(
    workspace: Workspace, clones: Clones, clock: Clock
) -> None:
    """--jobs 2: the story folders are read by forked workers, inserted by the parent."""
    build_history(workspace, LayoutName.FLAT, clock)
    original = db_state(workspace.ctx())
    fresh = clones.fresh(workspace)
    report = run_sync(with_clock(fresh, clock), jobs=2)
    assert report.errors == [] and report.rebuilt["stories"] == 10, report.problems
    assert_same_state(original, db_state(fresh.ctx()))


def test_rebuilt_database_keeps_working(workspace: Workspace, clones: Clones, clock: Clock) -> None:
    """After a rebuild the engine carries on: guards see the rebuilt evidence, versions
    continue, and the log chain accepts new rows."""
    driver = build_history(workspace, LayoutName.STAGED, clock)
    fresh = clones.fresh(workspace)
    run_sync(with_clock(fresh, clock))
    ctx = with_clock(fresh, clock)
    # FLOW-002 (graph integration) is in-qa: a verification with a scenario takes it on.
    driver.ws, driver.ctx = fresh, ctx
    scenario = {"name": "graph", "status": "pass", "evidence": "e2e"}
    driver.submit("FLOW-002", "verification", verification("PASS", scenarios=[scenario]))
    transitions.move(ctx, "FLOW-002", S.UAT.value)
    assert ctx.story("FLOW-002").status is S.UAT
    # FLOW-007 is pending and waits for db-schema-002; blocked FLOW-004 unblocks.
    transitions.move(ctx, "FLOW-004", S.READY_TO_WORK.value)
    assert ctx.story("FLOW-004").blocked_from is None


# ---- files -> db --------------------------------------------------------------------------


@pytest.fixture
def synced(workspace: Workspace, clock: Clock) -> Workspace:
    """FLOW (staged): FLOW-001 generated with its Reuse Plan, FLOW-002 pending; synced."""
    ctx = with_clock(workspace, clock)
    from storyflow.services import epics
    from tests.support import Driver

    epics.create_epic(ctx, "FLOW", title="Flow")
    driver = Driver(workspace, ctx)
    first = new_story(ctx, "FLOW", title="First")
    driver.drive_to(first, S.GENERATED)
    driver.fill_story(first)
    new_story(ctx, "FLOW", title="Second")
    report = run_sync(ctx)
    assert not report.errors, report.problems
    return workspace


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (old, text[:500])
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_hand_edited_legal_status_is_a_transition(synced: Workspace, clock: Clock) -> None:
    path = _story_path(synced, "FLOW-001")
    _edit(path, "status: generated", "status: in-elaboration")
    clock.tick()
    report = run_sync(with_clock(synced, clock, actor="editor"))
    assert report.errors == [], report.problems
    moved = [c for c in report.changes if c.action == "moved"]
    assert [(c.story, c.detail["from"], c.detail["to"]) for c in moved] == [
        ("FLOW-001", "generated", "in-elaboration")
    ]
    ctx = synced.ctx()
    assert ctx.story("FLOW-001").status is S.IN_ELABORATION
    last = ctx.store.history("FLOW-001")[-1]
    assert (last["from_status"], last["to_status"], last["actor"]) == (
        "generated",
        "in-elaboration",
        "editor",
    )
    # The projection followed: the folder moved to its stage, the log got the row.
    moved_path = _story_path(synced, "FLOW-001")
    assert "/elaboration/FLOW-001/" in moved_path.as_posix()
    data = yaml.safe_load(moved_path.read_text(encoding="utf-8"))
    assert data["agent_log"][-1]["action"] == "status: generated -> in-elaboration"
    assert run_sync(synced.ctx()).nothing_to_do


def test_hand_edited_illegal_status_is_reported_not_applied(
    synced: Workspace, clock: Clock
) -> None:
    path = _story_path(synced, "FLOW-002")
    _edit(path, "status: pending", "status: completed")
    before_file = path.read_bytes()
    before = db_state(synced.ctx())
    report = run_sync(with_clock(synced, clock))
    assert [p.code for p in report.errors] == ["TRANSITION_NOT_ALLOWED"]
    assert report.errors[0].story == "FLOW-002"
    assert report.exit_status() == 3
    assert db_state(synced.ctx()) == before
    assert path.read_bytes() == before_file
    # Reported again next time (the edit is still there), until fixed or overridden.
    assert [p.code for p in run_sync(synced.ctx()).errors] == ["TRANSITION_NOT_ALLOWED"]
    _edit(path, "status: completed", "status: pending")
    assert run_sync(synced.ctx()).errors == []


def test_hand_edited_metadata_goes_through_story_update(synced: Workspace, clock: Clock) -> None:
    path = _story_path(synced, "FLOW-002")
    _edit(path, "title: Second", "title: Second, sharper")
    _edit(path, "priority: P2", "priority: P0")
    _edit(path, "depends_on: []", "depends_on:\n- FLOW-001")
    report = run_sync(with_clock(synced, clock))
    assert report.errors == [], report.problems
    story = synced.ctx().story("FLOW-002")
    assert (story.title, story.priority, story.depends_on) == (
        "Second, sharper",
        "P0",
        ("FLOW-001",),
    )
    events = synced.ctx().store.recent_events("FLOW-002", 5)
    assert events[0]["type"] == "story_updated"
    # A cycle is refused by the same rule as story update --depends-on.
    _edit(_story_path(synced, "FLOW-001"), "depends_on: []", "depends_on:\n- FLOW-002")
    report = run_sync(synced.ctx())
    assert [p.code for p in report.errors] == ["DEPENDENCY_CYCLE"]
    assert synced.ctx().story("FLOW-001").depends_on == ()


@pytest.mark.parametrize("phase", ["-1", "10000", str(10**20)])
def test_hand_edited_phase_out_of_range_is_reported_not_applied(
    synced: Workspace, clock: Clock, phase: str
) -> None:
    """10**20 overflowed the database's integer: an internal error, not a report."""
    path = _story_path(synced, "FLOW-002")
    text = path.read_text(encoding="utf-8")
    assert "\nphase:" not in text  # no phase yet: the hand edit adds one
    edited = text.replace("\npriority: ", f"\nphase: {phase}\npriority: ", 1)
    assert edited != text
    path.write_text(edited, encoding="utf-8")
    before = db_state(synced.ctx())
    report = run_sync(with_clock(synced, clock))
    assert [p.code for p in report.errors] == ["INVALID_INPUT"], report.problems
    assert "phase" in report.errors[0].message
    assert db_state(synced.ctx()) == before


def test_new_artifact_file_is_submitted_before_the_status_it_enables(
    synced: Workspace, clock: Clock
) -> None:
    ctx = with_clock(synced, clock)
    transitions.move(ctx, "FLOW-001", S.IN_ELABORATION.value)
    run_sync(ctx)
    folder = _story_path(synced, "FLOW-001").parent
    (folder / "elaboration.yaml").write_text(yaml.safe_dump(elaboration("PASS")))
    _edit(folder / "story.yaml", "status: in-elaboration", "status: ready-to-work")
    clock.tick()
    report = run_sync(with_clock(synced, clock))
    assert report.errors == [], report.problems
    actions = [(c.action, c.story) for c in report.changes]
    assert actions == [("submitted", "FLOW-001"), ("moved", "FLOW-001")]
    latest = synced.ctx().store.latest_artifact("FLOW-001", ArtifactKind.ELABORATION)
    assert latest is not None and (latest.version, latest.verdict) == (1, "PASS")
    assert synced.ctx().story("FLOW-001").status is S.READY_TO_WORK
    assert run_sync(synced.ctx()).nothing_to_do


def test_a_refused_artifact_holds_back_its_whole_story(synced: Workspace, clock: Clock) -> None:
    ctx = with_clock(synced, clock)
    transitions.move(ctx, "FLOW-001", S.IN_ELABORATION.value)
    run_sync(ctx)
    folder = _story_path(synced, "FLOW-001").parent
    (folder / "elaboration.yaml").write_text("verdict: MAYBE\n")
    _edit(folder / "story.yaml", "title: First", "title: First, renamed")
    before = db_state(synced.ctx())
    report = run_sync(synced.ctx())
    assert [p.code for p in report.errors] == ["INVALID_VERDICT"]
    assert report.errors[0].file == f"{synced.ctx().files.rel(folder)}/elaboration.yaml"
    assert db_state(synced.ctx()) == before


def test_cli_changes_are_recorded_without_changes(synced: Workspace) -> None:
    """Engine projections change files too: the next sync finds them in agreement."""
    assert synced.cli("story", "move", "FLOW-002", "generated").code == 0
    assert synced.cli("story", "update", "FLOW-001", "--priority", "P1").code == 0
    report = run_sync(synced.ctx())
    assert report.changes == [] and report.conflicts == [] and report.problems == []
    assert report.recorded >= 2
    assert report.nothing_to_do
    again = run_sync(synced.ctx())
    assert again.read == 0 and again.nothing_to_do


# ---- db -> files ---------------------------------------------------------------------------


def test_database_moved_on_rerenders_the_file(
    synced: Workspace, clones: Clones, clock: Clock
) -> None:
    mate = clones.teammate(synced)
    their = with_clock(mate, clock, actor="mate")
    transitions.move(their, "FLOW-002", S.GENERATED.value)
    path = _story_path(synced, "FLOW-002")
    assert "status: pending" in path.read_text(encoding="utf-8")
    report = run_sync(synced.ctx())
    assert [(c.action, c.direction, c.story) for c in report.changes] == [
        ("rendered", "db->files", "FLOW-002")
    ]
    text = path.read_text(encoding="utf-8")
    assert "status: generated" in text
    assert "status: pending -> generated" in text
    assert run_sync(synced.ctx()).nothing_to_do


def test_stale_file_with_a_hand_edit_elsewhere_merges(
    synced: Workspace, clones: Clones, clock: Clock
) -> None:
    """The teammate renamed the story; here someone raised its priority: both apply."""
    mate = clones.teammate(synced)
    stories.update_story(with_clock(mate, clock, actor="mate"), "FLOW-002", title="Theirs")
    path = _story_path(synced, "FLOW-002")
    _edit(path, "priority: P2", "priority: P1")
    report = run_sync(synced.ctx())
    assert report.conflicts == [] and report.errors == [], report.to_json()
    story = synced.ctx().story("FLOW-002")
    assert (story.title, story.priority) == ("Theirs", "P1")
    text = path.read_text(encoding="utf-8")
    assert "title: Theirs" in text and "priority: P1" in text


def test_conflicting_edits_are_listed_and_left_alone_until_prefer(
    synced: Workspace, clones: Clones, clock: Clock
) -> None:
    mate = clones.teammate(synced)
    stories.update_story(with_clock(mate, clock, actor="mate"), "FLOW-002", title="Theirs")
    path = _story_path(synced, "FLOW-002")
    _edit(path, "title: Second", "title: Mine")
    before_file = path.read_bytes()
    before = db_state(synced.ctx())
    report = run_sync(synced.ctx())
    assert [(c.field, c.file_value, c.db_value, c.resolution) for c in report.conflicts] == [
        ("title", "Mine", "Theirs", None)
    ]
    assert report.conflicts[0].file == synced.ctx().files.rel(path)
    assert report.exit_status() == 5
    assert path.read_bytes() == before_file
    assert db_state(synced.ctx()) == before
    # A dry run with --prefer says what it would do, and does nothing.
    dry = run_sync(synced.ctx(), prefer="files", dry_run=True)
    assert [c.resolution for c in dry.conflicts] == ["files"]
    assert path.read_bytes() == before_file and db_state(synced.ctx()) == before

    report = run_sync(with_clock(synced, clock), prefer="files")
    assert [(c.field, c.resolution) for c in report.conflicts] == [("title", "files")]
    assert synced.ctx().story("FLOW-002").title == "Mine"
    events = synced.ctx().store.recent_events("FLOW-002", 10)
    resolved = [e for e in events if e["type"] == "sync_conflict_resolved"]
    assert resolved and resolved[0]["payload"]["resolution"] == "files"
    assert resolved[0]["payload"]["field"] == "title"


def test_prefer_db_rerenders_the_conflicting_file(
    synced: Workspace, clones: Clones, clock: Clock
) -> None:
    mate = clones.teammate(synced)
    stories.update_story(with_clock(mate, clock, actor="mate"), "FLOW-002", title="Theirs")
    path = _story_path(synced, "FLOW-002")
    _edit(path, "title: Second", "title: Mine")
    report = run_sync(synced.ctx(), prefer="db")
    assert [(c.field, c.resolution) for c in report.conflicts] == [("title", "db")]
    assert "title: Theirs" in path.read_text(encoding="utf-8")
    assert synced.ctx().story("FLOW-002").title == "Theirs"


# ---- the Agent Log is append-only ----------------------------------------------------------


def test_deleted_agent_log_row_is_reported_and_restored_only_with_prefer_db(
    synced: Workspace, clock: Clock
) -> None:
    path = _story_path(synced, "FLOW-001")
    text = path.read_text(encoding="utf-8")
    rows = yaml.safe_load(text)["agent_log"]
    assert len(rows) == 2
    cut = re.sub(
        r"- timestamp: [^\n]*\n  agent: [^\n]*\n  action: story created[^\n]*\n"
        r"  outputs: [^\n]*\n",
        "",
        text,
        count=1,
    )
    assert cut != text
    path.write_text(cut, encoding="utf-8")
    before = db_state(synced.ctx())
    report = run_sync(synced.ctx())
    assert [p.code for p in report.errors] == ["AGENT_LOG_EDITED"]
    assert "removed" in report.errors[0].message
    assert report.exit_status() == 5
    assert path.read_text(encoding="utf-8") == cut
    assert db_state(synced.ctx()) == before
    # --prefer files cannot bring a row back either; --prefer db re-renders the log.
    report = run_sync(synced.ctx(), prefer="db")
    assert [p.code for p in report.errors] == []
    restored = yaml.safe_load(path.read_text(encoding="utf-8"))["agent_log"]
    assert restored == rows
    assert run_sync(synced.ctx()).nothing_to_do


def test_rows_appended_by_hand_join_the_log(synced: Workspace) -> None:
    path = _story_path(synced, "FLOW-002")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(
            "- timestamp: '2026-03-02T16:00:00Z'\n  agent: pm\n  action: reviewed the scope\n"
            "  outputs: notes.md\n"
        )
    report = run_sync(synced.ctx())
    assert [c.action for c in report.changes] == ["log_appended"], report.to_json()
    ctx = synced.ctx()
    assert ctx.store.log_rows("FLOW-002")[-1].action == "reviewed the scope"
    assert ctx.story("FLOW-002").version == len(ctx.store.log_rows("FLOW-002"))
    assert run_sync(synced.ctx()).nothing_to_do


# ---- bad input ----------------------------------------------------------------------------


def test_bad_files_are_reported_with_file_and_line(
    workspace: Workspace, clones: Clones, clock: Clock
) -> None:
    build_history(workspace, LayoutName.STAGED, clock)
    fresh = clones.fresh(workspace)
    plans = fresh.root / "plans" / "flow"
    # a merge conflict marker in one story file
    marked = plans / "done" / "FLOW-001" / "story.yaml"
    text = marked.read_text(encoding="utf-8").replace(
        "title: Story 0\n", "<<<<<<< HEAD\ntitle: Story 0\n=======\ntitle: Zero\n>>>>>>> x\n"
    )
    marked.write_text(text, encoding="utf-8")
    # malformed YAML in another
    broken = next(plans.glob("*/FLOW-006/story.yaml"))
    broken.write_text(
        broken.read_text(encoding="utf-8").replace("priority: P1", "priority: [P1"),
        encoding="utf-8",
    )
    # two folders for one story
    original = next(plans.glob("*/FLOW-007"))
    (plans / "done").mkdir(exist_ok=True)
    import shutil

    shutil.copytree(original, plans / "done" / "FLOW-007")
    before_files = fresh.snapshot()
    report = run_sync(with_clock(fresh, clock))
    found = {(p.code, p.file, p.line) for p in report.errors}
    marker_line = text.splitlines().index("<<<<<<< HEAD") + 1
    assert ("MERGE_CONFLICT", "plans/flow/done/FLOW-001/story.yaml", marker_line) in found
    broken_rel = broken.relative_to(fresh.root).as_posix()
    assert any(c == "INVALID_YAML" and f == broken_rel and line for c, f, line in found), found
    assert any(c == "DUPLICATE_ID" for c, _, _ in found), found
    # FLOW-003 depends on FLOW-001: left out with it, and says why.
    assert any(p.code == "UNKNOWN_DEPENDENCY" and p.story == "FLOW-003" for p in report.errors)
    assert report.exit_status() == 5  # two folders for one ID is a conflict (it outranks 7)
    ctx = fresh.ctx()
    assert ctx.store.get_story("FLOW-001") is None
    assert ctx.store.get_story("FLOW-006") is None
    assert ctx.store.get_story("FLOW-007") is None
    assert ctx.store.get_story("FLOW-002") is not None  # the good ones are in
    assert fresh.snapshot() == before_files


def test_folder_in_the_wrong_stage_is_moved_by_its_status(synced: Workspace) -> None:
    folder = _story_path(synced, "FLOW-002").parent
    target = folder.parent.parent / "done" / folder.name
    target.parent.mkdir(exist_ok=True)
    folder.rename(target)
    report = run_sync(synced.ctx())
    warnings = [p for p in report.problems if p.code == "WRONG_STAGE_FOLDER"]
    assert len(warnings) == 1 and warnings[0].warning
    assert report.exit_status() == 0
    assert synced.ctx().story("FLOW-002").status is S.PENDING
    assert "/backlog/FLOW-002/" in _story_path(synced, "FLOW-002").as_posix()
    assert not target.exists()
    assert run_sync(synced.ctx()).nothing_to_do


def test_dry_run_writes_nothing(workspace: Workspace, clones: Clones, clock: Clock) -> None:
    build_history(workspace, LayoutName.FLAT, clock)
    fresh = clones.fresh(workspace)
    before = fresh.snapshot()
    report = run_sync(fresh.ctx(), dry_run=True)
    assert report.rebuilt["stories"] == 10
    assert fresh.ctx().store.list_stories() == []
    assert fresh.snapshot() == before
    assert not (fresh.root / ".storyflow" / "sync").exists()


# ---- engine-owned parts, epics, missing files ----------------------------------------------


def test_hand_edited_token_budget_is_reported_and_rerendered(synced: Workspace) -> None:
    ctx = synced.ctx()
    from storyflow.services import tokens

    tokens.log_tokens(ctx, "FLOW-001", "story_generation", input_tokens=100, output_tokens=50)
    run_sync(synced.ctx())
    path = _story_path(synced, "FLOW-001")
    _edit(path, "tokens_used: 150", "tokens_used: 15")
    report = run_sync(synced.ctx())
    assert [(p.code, p.warning) for p in report.problems] == [("PROJECTION_EDITED", True)]
    assert report.exit_status() == 0
    assert "tokens_used: 150" in path.read_text(encoding="utf-8")
    assert [e.total_tokens for e in synced.ctx().store.ledger("FLOW-001")] == [150]
    # the keys rendered from the ledger and the epic's budgets, not only its entries
    for old, new in (("total_used: 150", "total_used: 1"), ("enforcement: advisory", "x: 1")):
        _edit(path, old, new)
        report = run_sync(synced.ctx())
        assert [(p.code, p.warning) for p in report.problems] == [("PROJECTION_EDITED", True)]
        assert "the Token Budget" in report.problems[0].message
        text = path.read_text(encoding="utf-8")
        assert f"{old}\n" in text and f"{new}\n" not in text


def test_epic_file_edits_and_database_changes(synced: Workspace, clones: Clones) -> None:
    path = synced.root / "plans" / "flow" / "FLOW.epic.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert (data["prefix"], data["layout"], data["version"]) == ("FLOW", "staged", 1)
    # a hand edit of the title and the coverage threshold goes through epic update
    _edit(path, "title: Flow", "title: Flow, renamed")
    _edit(path, "coverage_threshold: 45.0", "coverage_threshold: 60.0")
    report = run_sync(synced.ctx())
    assert report.errors == [], report.problems
    epic = synced.ctx().epic("FLOW")
    assert (epic.title, epic.settings.coverage_threshold, epic.version) == (
        "Flow, renamed",
        60.0,
        2,
    )
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["version"] == 2
    # a change in the database (a teammate) rewrites the file
    mate = clones.teammate(synced)
    from storyflow.services import epics

    epics.update_epic(mate.ctx(), "FLOW", require_approval=True)
    report = run_sync(synced.ctx())
    assert [(c.action, c.epic) for c in report.changes] == [("rendered", "FLOW")]
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["settings"]["require_approval"]
    # a missing epic file is written again; the layout cannot be changed by editing
    path.unlink()
    run_sync(synced.ctx())
    assert path.is_file()
    _edit(path, "layout: staged", "layout: flat")
    report = run_sync(synced.ctx())
    assert [p.code for p in report.errors] == ["PROJECTION_EDITED"]
    assert synced.ctx().epic("FLOW").layout.value == "staged"


def test_story_without_a_folder_is_written_again(synced: Workspace) -> None:
    import shutil

    folder = _story_path(synced, "FLOW-002").parent
    shutil.rmtree(folder)
    report = run_sync(synced.ctx())
    assert [(c.action, c.story) for c in report.changes] == [("rendered", "FLOW-002")]
    data = yaml.safe_load(_story_path(synced, "FLOW-002").read_text(encoding="utf-8"))
    assert data["status"] == "pending" and data["agent_log"]
    assert run_sync(synced.ctx()).nothing_to_do


def test_round_trip_of_an_imported_plan(workspace: Workspace, clones: Clones, clock: Clock) -> None:
    """Stories plan import created (at their stated statuses, with the plan's details)."""
    from tests.plan_support import FLOW_INDEX, plan_folder, run_import

    ctx = with_clock(workspace, clock)
    report = run_import(ctx, plan_folder(workspace, "FLOW", index=FLOW_INDEX))
    assert ctx.store.list_stories(epic="FLOW"), report
    original = db_state(workspace.ctx())
    fresh = clones.fresh(workspace)
    rebuilt = run_sync(with_clock(fresh, clock))
    assert rebuilt.errors == [], rebuilt.problems
    assert_same_state(original, db_state(fresh.ctx()))


def test_conflict_markers_in_an_epic_file_stop_its_rebuild(
    workspace: Workspace, clones: Clones, clock: Clock
) -> None:
    build_history(workspace, LayoutName.STAGED, clock)
    fresh = clones.fresh(workspace)
    path = fresh.root / "plans" / "flow" / "FLOW.epic.yaml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(4, "<<<<<<< HEAD\n")
    path.write_text("".join(lines), encoding="utf-8")
    report = run_sync(fresh.ctx())
    assert [(p.code, p.file, p.line) for p in report.errors] == [
        ("MERGE_CONFLICT", "plans/flow/FLOW.epic.yaml", 5)
    ]
    assert report.exit_status() == 7
    assert fresh.ctx().store.list_epics() == []


# ---- the no-op index (services/sync_quick.py) ----------------------------------------------


def _indexed(ws: Workspace) -> None:
    """Two syncs: the first finds nothing to do and leaves the index, the second trusts it."""
    first = run_sync(ws.ctx())
    assert first.nothing_to_do and not first.by_index, first.to_json()
    second = run_sync(ws.ctx())
    assert second.nothing_to_do and second.by_index, second.to_json()
    assert (second.files, second.unchanged) == (first.files, first.unchanged)
    assert (ws.root / ".storyflow" / "sync" / "index.json").is_file()


def test_an_idle_sync_indexes_the_folders_and_the_next_one_trusts_the_index(
    synced: Workspace,
) -> None:
    _indexed(synced)
    shown = synced.run("sync", "--json")
    assert shown.code == 0, shown
    assert shown.json["nothing_to_do"] and shown.json["files"]["by_index"] is True
    dry = run_sync(synced.ctx(), dry_run=True)
    assert dry.nothing_to_do and dry.by_index


def test_a_file_edited_in_place_with_its_size_is_not_taken_for_synced(synced: Workspace) -> None:
    _indexed(synced)
    path = _story_path(synced, "FLOW-001")
    text = path.read_text(encoding="utf-8")
    _edit(path, "priority: P2", "priority: P1")  # same size, new mtime
    assert len(path.read_text(encoding="utf-8")) == len(text)
    report = run_sync(synced.ctx())
    assert not report.by_index and report.read >= 1
    assert synced.ctx().story("FLOW-001").priority == "P1"


def test_a_resized_file_with_its_old_mtime_is_not_taken_for_synced(synced: Workspace) -> None:
    import os

    _indexed(synced)
    path = _story_path(synced, "FLOW-001")
    before = path.stat()
    _edit(path, "title: First", "title: First of all")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    report = run_sync(synced.ctx())
    assert not report.by_index
    assert synced.ctx().story("FLOW-001").title == "First of all"


def test_a_new_file_a_move_or_a_lost_folder_each_go_to_the_full_survey(
    synced: Workspace,
) -> None:
    import shutil

    _indexed(synced)
    # A file sync does not track: the full survey finds nothing to do and indexes again.
    (_story_path(synced, "FLOW-002").parent / "notes.txt").write_text("x", encoding="utf-8")
    untracked = run_sync(synced.ctx())
    assert not untracked.by_index and untracked.nothing_to_do
    assert run_sync(synced.ctx()).by_index
    # The database moved on (a CLI move): recorded by the full survey, then indexed again.
    assert synced.cli("story", "move", "FLOW-002", "generated").code == 0
    moved = run_sync(synced.ctx())
    assert not moved.by_index and moved.recorded >= 1
    _indexed(synced)
    # A story folder gone: the full survey writes it again.
    shutil.rmtree(_story_path(synced, "FLOW-002").parent)
    lost = run_sync(synced.ctx())
    assert not lost.by_index
    assert [(c.action, c.story) for c in lost.changes] == [("rendered", "FLOW-002")]


def test_a_damaged_or_foreign_index_is_ignored(synced: Workspace) -> None:
    _indexed(synced)
    index = synced.root / ".storyflow" / "sync" / "index.json"
    index.write_text("{not json", encoding="utf-8")
    assert not run_sync(synced.ctx()).by_index
    assert run_sync(synced.ctx()).by_index  # written again by the idle full survey
    data = yaml.safe_load(index.read_text(encoding="utf-8"))
    data["database"] = "another-database"
    index.write_text(yaml.safe_dump(data), encoding="utf-8")
    report = run_sync(synced.ctx())
    assert not report.by_index and report.nothing_to_do


# ---- the walk ahead (adapters/files/walk_ahead.py) ------------------------------------------


def test_the_walk_ahead_answers_what_the_walk_finds_and_leaves_no_child(
    synced: Workspace,
) -> None:
    import os

    from storyflow.adapters.files import sync_scan
    from storyflow.adapters.files.walk_ahead import WalkAhead

    _indexed(synced)
    base = str(synced.root)
    key = (synced.ctx().epic("FLOW").root, True, "FLOW")
    ahead = WalkAhead.start(base, [key])
    assert ahead is not None, "this test process has no other thread: the walk forks"
    answers = ahead.take()
    here = sync_scan.digest_epic(base, key[0], staged=True, prefixes=["FLOW"])
    assert here is not None and here.folders
    assert answers == {key: here}
    with pytest.raises(ChildProcessError):
        os.waitpid(ahead.pid, os.WNOHANG)  # reaped
    assert ahead.take() == {}  # answers are taken once


def test_a_discarded_walk_ahead_is_stopped_and_reaped(synced: Workspace) -> None:
    import os

    from storyflow.adapters.files.walk_ahead import WalkAhead

    ahead = WalkAhead.start(str(synced.root), [("plans/stories", True, "FLOW")])
    assert ahead is not None
    ahead.discard()
    with pytest.raises(ChildProcessError):
        os.waitpid(ahead.pid, os.WNOHANG)
    assert ahead.take() == {}


def test_no_walk_ahead_while_another_thread_runs(synced: Workspace) -> None:
    import threading

    from storyflow.adapters.files.walk_ahead import WalkAhead

    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert WalkAhead.start(str(synced.root), [("plans/stories", True, "FLOW")]) is None
    finally:
        release.set()
        other.join()


def test_the_cli_sync_trusts_the_index_only_when_the_folders_match_it(synced: Workspace) -> None:
    """Through the executable (on PostgreSQL its folder walk runs in a child process while
    the database opens): idle by the index, then a hand edit found and applied."""
    _indexed(synced)
    idle = synced.run("sync", "--json")
    assert idle.code == 0 and idle.json["files"]["by_index"] is True, idle
    _edit(_story_path(synced, "FLOW-001"), "priority: P2", "priority: P1")
    edited = synced.run("sync", "--json")
    assert edited.code == 0, edited
    assert edited.json["files"]["by_index"] is False and not edited.json["nothing_to_do"]
    assert synced.ctx().story("FLOW-001").priority == "P1"
    again = synced.run("sync", "--json")
    assert again.json["nothing_to_do"], again


def _left_for_next_sync(report: Any) -> Any:
    """The sync succeeded (exit 0) and left FLOW-001 to the next one, with one warning."""
    assert report.errors == [] and report.exit_status() == 0, report.problems
    (left,) = report.problems
    assert (left.code, left.story, left.warning) == ("VERSION_CONFLICT", "FLOW-001", True)
    return left


def test_a_story_moved_while_sync_reads_it_is_left_for_the_next_sync(
    synced: Workspace, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process moves the story's folder between the survey and the read of a new
    artifact in it: the sync leaves the story with a warning, not a FILE_NOT_FOUND error,
    and the next sync takes the artifact from where the folder is now."""
    from storyflow.services import sync as sync_module

    folder = _story_path(synced, "FLOW-001").parent  # backlog/: FLOW-001 is generated
    (folder / "elaboration.yaml").write_text(yaml.safe_dump(elaboration("PASS")))
    real_survey = sync_module.survey

    def survey_then_move(*args: object, **kwargs: object) -> object:
        found = real_survey(*args, **kwargs)  # type: ignore[arg-type]
        transitions.move(synced.ctx("worker"), "FLOW-001", S.IN_ELABORATION.value)
        return found

    monkeypatch.setattr(sync_module, "survey", survey_then_move)
    clock.tick()
    _left_for_next_sync(run_sync(with_clock(synced, clock)))
    assert synced.ctx().store.latest_artifact("FLOW-001", ArtifactKind.ELABORATION) is None
    monkeypatch.setattr(sync_module, "survey", real_survey)
    again = run_sync(with_clock(synced, clock))
    assert again.errors == [], again.problems
    assert [(c.action, c.story) for c in again.changes][:1] == [("submitted", "FLOW-001")]


def test_a_folder_moved_while_the_walk_goes_by_is_not_two_folders(
    synced: Workspace, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk lists FLOW-001 in backlog/, a projection moves it to elaboration/, and the
    walk lists it there too: the story is taken from where it is, not refused as
    DUPLICATE_ID. A file deleted between the listing and its stat is simply not there."""
    from storyflow.adapters.files.sync_io import SyncFiles

    folder = _story_path(synced, "FLOW-001").parent  # backlog/
    moved_to = folder.parent.parent / "elaboration" / "FLOW-001"
    shutil.copytree(folder, moved_to)  # the walk saw both ...
    _edit(moved_to / "story.yaml", "status: generated", "status: in-elaboration")
    real_scan = SyncFiles.scan_epic

    def scan_then_move(self: SyncFiles, *args: Any, **kwargs: Any) -> Any:
        found = real_scan(self, *args, **kwargs)
        shutil.rmtree(folder)  # ... and the old place is gone by the time sync looks
        return found

    monkeypatch.setattr(SyncFiles, "scan_epic", scan_then_move)
    clock.tick()
    report = run_sync(with_clock(synced, clock))
    assert report.problems == [], report.problems
    assert synced.ctx().story("FLOW-001").status is S.IN_ELABORATION


def test_a_story_another_writer_changes_during_sync_is_left_for_the_next_sync(
    synced: Workspace, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a second sync (or any command) can write a story while this sync
    applies a hand edit to it: this sync's compare-and-set loses. The story is left with a
    warning, not an exit 5, and the next sync applies the edit."""
    from storyflow.adapters.db.store import Store

    real = Store.cas_update_story

    def another_writer_first(self: Store, story: Any, expected: int, *args: Any) -> None:
        monkeypatch.setattr(Store, "cas_update_story", real)  # once
        self.conn.execute(
            "UPDATE workflow_stories SET version = version + 1 WHERE id = :id", {"id": story.id}
        )
        real(self, story, expected, *args)

    _edit(_story_path(synced, "FLOW-001"), "title: First", "title: First, renamed")
    monkeypatch.setattr(Store, "cas_update_story", another_writer_first)
    clock.tick()
    _left_for_next_sync(run_sync(with_clock(synced, clock)))
    assert synced.ctx().story("FLOW-001").title == "First"
    again = run_sync(with_clock(synced, clock))
    assert again.errors == [] and again.problems == [], again.problems
    assert synced.ctx().story("FLOW-001").title == "First, renamed"


def test_a_folder_gone_from_every_place_the_walk_listed_is_left_for_the_next_sync(
    synced: Workspace, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listed in two stage folders, and gone from both by the time sync looks (moved on
    again): a warning, not DUPLICATE_ID; the next sync finds it where it ended up."""
    from storyflow.adapters.files.sync_io import SyncFiles

    folder = _story_path(synced, "FLOW-001").parent  # backlog/
    listed_too = folder.parent.parent / "elaboration" / "FLOW-001"
    shutil.copytree(folder, listed_too)
    parked = synced.root / "parked"
    real_scan = SyncFiles.scan_epic

    def scan_then_move(self: SyncFiles, *args: Any, **kwargs: Any) -> Any:
        found = real_scan(self, *args, **kwargs)
        shutil.rmtree(listed_too)
        folder.rename(parked)  # neither place holds it while sync looks
        return found

    monkeypatch.setattr(SyncFiles, "scan_epic", scan_then_move)
    clock.tick()
    left = _left_for_next_sync(run_sync(with_clock(synced, clock)))
    assert "moved while sync walked" in left.message
    monkeypatch.setattr(SyncFiles, "scan_epic", real_scan)
    parked.rename(folder)
    again = run_sync(with_clock(synced, clock))
    assert again.problems == [], again.problems


def test_a_leased_story_without_a_folder_is_not_written_by_sync(
    synced: Workspace, clock: Clock
) -> None:
    """The folder of a story a run holds is the run's to write: sync does not re-render a
    missing one under it, and does once the lease is gone."""
    ctx = with_clock(synced, clock)
    folder = _story_path(synced, "FLOW-001").parent
    shutil.rmtree(folder)
    runs = ctx.store.run_store()
    with ctx.store.transaction():
        assert (
            runs.acquire(
                "FLOW-001",
                owner="worker-1",
                phase="elaborate",
                now=clock.now,
                expires=clock.now + timedelta(minutes=5),
            )
            is not None
        )
    report = run_sync(with_clock(synced, clock))
    assert report.errors == [], report.problems
    assert [(p.code, p.story, p.warning) for p in report.problems] == [
        ("STORY_LOCKED", "FLOW-001", True)
    ]
    assert not folder.exists()
    with ctx.store.transaction():
        runs.release("FLOW-001", owner="worker-1")
    report = run_sync(with_clock(synced, clock))
    assert report.errors == [] and report.problems == [], report.problems
    assert (folder / "story.yaml").is_file()
