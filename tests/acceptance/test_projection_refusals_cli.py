"""What the projection could not write is refused before the commit, through the executable:
a stage folder already taken, a story file that is a directory, merge-conflict markers, a
YAML tag storyflow check calls unreadable, a story folder that leads out of the workspace.
Each refusal exits with its code and hint and leaves the database and the files unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from storyflow.domain.statuses import Status
from tests.acceptance._helpers import Flow, error_body, history, ok, read_story, refused, show
from tests.support import Workspace


@pytest.fixture
def flow(workspace: Workspace) -> Flow:
    flow = Flow(workspace)
    flow.epic("FLOW")
    return flow


def _stage(ws: Workspace, stage: str) -> Path:
    return ws.root / "plans" / "flow" / stage


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _sync_changes(ws: Workspace) -> list[dict[str, Any]]:
    """The changes every sync event of the trace claims."""
    lines = ok(ws.run("trace", "--workspace", "--json")).stdout.splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == "sync" and e["changes"]]


# ---- 1. something already where the stage move puts the folder -----------------------------


@pytest.mark.parametrize("obstacle", ["file", "folder", "empty folder", "stage is a file"])
def test_a_move_onto_a_taken_stage_folder_is_refused(
    workspace: Workspace, flow: Flow, obstacle: str
) -> None:
    sid = flow.story()
    flow.drive_to(sid, Status.IN_ELABORATION)
    flow.evidence_for(sid, Status.READY_TO_WORK)
    stage = _stage(workspace, "ready-to-work")
    taken = stage / sid
    if obstacle == "stage is a file":
        stage.parent.mkdir(parents=True, exist_ok=True)
        stage.write_text("not a folder\n")
        taken = stage
    elif obstacle == "file":
        stage.mkdir(parents=True)
        taken.write_text("")
    else:
        taken.mkdir(parents=True)
        if obstacle == "folder":
            (taken / "notes.txt").write_text("x\n")
    before = flow.path(sid).read_bytes()
    error = refused(
        workspace, sid, "story", "move", sid, "ready-to-work", exit_status=5, code="FOLDER_OCCUPIED"
    )
    shown = taken.relative_to(workspace.root).as_posix()
    assert error["details"]["path"] == shown
    assert "move or remove" in error["hint"] and shown in error["hint"]
    assert show(workspace, sid)["status"] == "in-elaboration"
    assert flow.path(sid).read_bytes() == before
    assert "/elaboration/" in str(flow.path(sid))

    (taken.unlink if taken.is_file() else lambda: shutil.rmtree(taken))()
    ok(workspace.run("story", "move", sid, "ready-to-work"))
    moved = flow.path(sid)
    assert "/ready-to-work/" in str(moved)
    assert read_story(moved)["meta"]["status"] == "ready-to-work"
    assert read_story(moved)["reuse_plan"]  # the written plan came along
    assert ok(workspace.run("check")).code == 0


def test_cancel_and_split_onto_a_taken_archive_folder_are_refused(
    workspace: Workspace, flow: Flow
) -> None:
    cancelled, split = flow.story(), flow.story()
    flow.drive_to(split, Status.NEEDS_SPLIT)
    archive = _stage(workspace, "archive")
    archive.mkdir(parents=True)
    for sid in (cancelled, split):
        (archive / sid).write_text("in the way\n")
    refused(
        workspace,
        cancelled,
        *("story", "cancel", cancelled, "--reason", "dropped"),
        exit_status=5,
        code="FOLDER_OCCUPIED",
    )
    stories_before = ok(workspace.run("story", "list", "--json")).json
    refused(
        workspace,
        split,
        *("story", "split", split, "--into", "part one", "--into", "part two"),
        exit_status=5,
        code="FOLDER_OCCUPIED",
    )
    assert ok(workspace.run("story", "list", "--json")).json == stories_before  # no children
    # A block stays in its stage: nothing to stat, nothing in the way.
    ok(workspace.run("story", "block", cancelled, "--reason", "waiting"))
    assert show(workspace, cancelled)["status"] == "blocked"


# ---- 2. a directory where the story file should be -----------------------------------------


def test_sync_and_render_refuse_a_story_file_that_is_a_directory(
    workspace: Workspace, flow: Flow
) -> None:
    sid = flow.story()
    ok(workspace.run("sync"))
    path = flow.path(sid)
    path.unlink()
    path.mkdir()
    refused(workspace, sid, "story", "render", sid, exit_status=7, code="INVALID_INPUT")
    story_before, history_before = show(workspace, sid), history(workspace, sid)
    files_before = workspace.snapshot()
    for _ in range(2):
        result = workspace.run("sync", "--json")
        assert result.code == 7, result
        report = result.json
        assert [p["code"] for p in report["problems"]] == ["INVALID_INPUT"]
        assert "is a directory, not a file" in report["problems"][0]["message"]
        assert report["problems"][0]["hint"]
        assert report["changes"] == []
    assert show(workspace, sid) == story_before
    assert history(workspace, sid) == history_before
    assert workspace.snapshot() == files_before and path.is_dir()
    assert _sync_changes(workspace) == []
    human = workspace.run("story", "render", sid)
    assert "is a directory, not a file" in human.stderr and "Traceback" not in human.stderr

    path.rmdir()
    ok(workspace.run("story", "render", sid))
    assert read_story(path)["meta"]["id"] == sid


# ---- 3. what sync and check refuse, a move refuses too ---------------------------------------


@pytest.mark.parametrize("layout", ["staged", "flat"])
def test_a_move_refuses_merge_conflict_markers(workspace: Workspace, layout: str) -> None:
    flow = Flow(workspace)
    prefix = "FLOW" if layout == "staged" else "REVI"
    flow.epic(prefix, "--layout", layout)
    sid = flow.story(prefix)
    path = flow.path(sid)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("<<<<<<< HEAD\n=======\n>>>>>>> other\n")
    error = refused(
        workspace, sid, "story", "move", sid, "generated", exit_status=7, code="MERGE_CONFLICT"
    )
    assert "merge-conflict marker" in error["message"] and "<<<<<<<" in error["hint"]
    sync = workspace.run("sync", "--json")
    assert "MERGE_CONFLICT" in [p["code"] for p in sync.json["problems"]]


def test_a_move_refuses_a_python_tag_that_check_calls_unreadable(
    workspace: Workspace, flow: Flow, tmp_path: Path
) -> None:
    sid = flow.story()
    path = flow.path(sid)
    marker = tmp_path / "executed"
    text = path.read_text(encoding="utf-8").replace(
        "priority: P2", f'priority: !!python/object/apply:os.system ["touch {marker}"]'
    )
    path.write_text(text, encoding="utf-8")
    check = workspace.run("check", "--json")
    assert check.code == 3 and "CHECK_UNREADABLE" in check.stdout
    error = refused(
        workspace, sid, "story", "move", sid, "generated", exit_status=7, code="INVALID_YAML"
    )
    assert "python/object/apply" in error["message"]
    assert not marker.exists()


# ---- 4. a story folder that leads out of the workspace -------------------------------------


def test_a_story_folder_linked_outside_the_workspace_is_refused_and_reported(
    workspace: Workspace, flow: Flow, tmp_path: Path
) -> None:
    sid = flow.story()
    ok(workspace.run("sync"))
    folder = flow.path(sid).parent
    outside = tmp_path / "elsewhere" / sid
    outside.parent.mkdir()
    shutil.move(folder, outside)
    folder.symlink_to(outside, target_is_directory=True)
    listing, story_bytes = _listing(outside), (outside / "story.yaml").read_bytes()

    for args in (("story", "move", sid, "generated"), ("story", "render", sid)):
        error = refused(workspace, sid, *args, exit_status=7, code="OUTSIDE_WORKSPACE")
        assert "outside the workspace" in error["message"] and "symlink" in error["hint"]
    refused(
        workspace,
        sid,
        *("story", "update", sid, "--priority", "P1"),
        exit_status=7,
        code="OUTSIDE_WORKSPACE",
    )
    result = workspace.run("sync", "--json")
    assert result.code == 7, result
    assert [p["code"] for p in result.json["problems"]] == ["OUTSIDE_WORKSPACE"]
    assert _listing(outside) == listing
    assert (outside / "story.yaml").read_bytes() == story_bytes

    check = workspace.run("check", "--json")
    assert check.code == 3, check
    codes = [f["code"] for f in check.json["findings"]]
    assert "CHECK_OUTSIDE_WORKSPACE" in codes

    folder.unlink()
    shutil.move(outside, folder)
    ok(workspace.run("story", "update", sid, "--priority", "P1"))
    assert ok(workspace.run("check")).code == 0


def test_a_symlink_that_stays_inside_the_workspace_is_fine(
    workspace: Workspace, flow: Flow
) -> None:
    sid = flow.story()
    epic_root = workspace.root / "plans" / "flow"
    kept = workspace.root / "kept" / "flow"
    kept.parent.mkdir()
    shutil.move(epic_root, kept)
    epic_root.symlink_to(Path("..") / "kept" / "flow", target_is_directory=True)
    flow.drive_to(sid, Status.READY_TO_WORK)
    ok(workspace.run("story", "render", sid))
    assert (kept / "ready-to-work" / sid / "story.yaml").is_file()
    assert ok(workspace.run("sync")).code == 0
    assert ok(workspace.run("check")).code == 0


def test_the_json_error_of_a_taken_folder(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    flow.drive_to(sid, Status.GENERATED)
    flow.evidence_for(sid, Status.IN_ELABORATION)
    taken = _stage(workspace, "elaboration") / sid
    taken.mkdir(parents=True)
    error = error_body(
        workspace.run("story", "move", sid, "in-elaboration", "--json"), 5, "FOLDER_OCCUPIED"
    )
    assert error["details"]["story"] == sid
