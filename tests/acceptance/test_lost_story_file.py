"""A story folder deleted by hand: storyflow sync renders the story file again from the
latest story snapshot the database holds (so the description and Reuse Plan come back),
or, without a snapshot, says that text is lost and how to get it back from git. A folder
renamed by hand is not taken for a lost one: no command writes the story file anew beside it."""

from __future__ import annotations

import shutil

import pytest

from tests.acceptance._helpers import ok, refused, show
from tests.support import Workspace


def _folder(ws: Workspace, story: str) -> list[str]:
    return [str(p.relative_to(ws.root)) for p in (ws.root / "plans").glob(f"**/{story}")]


def test_a_deleted_story_folder_comes_back_from_its_snapshot(workspace: Workspace) -> None:
    ws = workspace
    assert ws.run("epic", "new", "FLOW", "--title", "Flow", "--layout", "staged").code == 0
    for title in ("one", "two"):
        assert ws.run("story", "new", "FLOW", "--title", title).code == 0
    for story in ("FLOW-001", "FLOW-002"):
        (path,) = list((ws.root / "plans").glob(f"**/{story}/story.yaml"))
        text = path.read_text(encoding="utf-8")
        text = text.replace("reuse_plan: ''", "reuse_plan: Reuses @repo/shared.")
        path.write_text(text.replace("description: ''", "description: Important."), "utf-8")
        assert ws.run("story", "move", story, "generated").code == 0
    # FLOW-001 enters elaboration: the engine keeps a snapshot of its story file
    moved = ws.run("story", "move", "FLOW-001", "in-elaboration")
    assert moved.code == 0, moved.stderr
    (kept,) = _folder(ws, "FLOW-001")
    before = (ws.root / kept / "story.yaml").read_text(encoding="utf-8")
    for story in ("FLOW-001", "FLOW-002"):
        shutil.rmtree(ws.root / _folder(ws, story)[0])

    synced = ws.run("sync")

    assert synced.code == 0, synced.stderr
    restored = (ws.root / kept / "story.yaml").read_text(encoding="utf-8")
    assert restored == before
    assert "FLOW-001: the story file was missing: rendered again from its story snapshot v1" in (
        synced.stderr
    )
    (lost,) = _folder(ws, "FLOW-002")
    text = (ws.root / lost / "story.yaml").read_text(encoding="utf-8")
    assert "reuse_plan: ''" in text
    assert "FLOW-002: the story file was missing and the database holds no story snapshot" in (
        synced.stderr
    )
    assert f"git checkout -- {lost}" in synced.stderr
    checked = ws.run("check")
    assert checked.code == 0, checked.stdout


@pytest.mark.parametrize("layout", ["staged", "flat"])
def test_a_story_folder_renamed_by_hand_is_not_written_anew_by_any_command(
    workspace: Workspace, layout: str
) -> None:
    """FLOW-002's folder renamed to FLOW-009: the commands that write FLOW-002's story file
    are refused before they change anything, naming the file that holds the story and the
    ``git mv`` that puts it back, instead of rendering an empty copy beside it; a change
    that re-renders every story of the epic is committed and says so. Renamed back, the
    story runs and nothing written in its file was lost."""
    ws = workspace
    ok(ws.run("epic", "new", "FLOW", "--title", "Flow", "--layout", layout))
    for title in ("one", "two"):
        ok(ws.run("story", "new", "FLOW", "--title", title))
    (path,) = list((ws.root / "plans").glob("**/FLOW-002/*"))
    path.write_text(
        path.read_text("utf-8").replace("## Description\n", "## Description\n\nKept.\n")
        if layout == "flat"
        else path.read_text("utf-8").replace("description: ''", "description: Kept."),
        "utf-8",
    )
    written = path.read_text("utf-8")
    renamed = path.parent.with_name("FLOW-009")
    path.parent.rename(renamed)
    holder = (renamed / path.name).relative_to(ws.root).as_posix()
    moved = f"git mv {renamed.relative_to(ws.root)} {path.parent.relative_to(ws.root)}"
    (ws.root / "elaboration.yaml").write_text("verdict: PASS\nsummary: clear\n", "utf-8")

    for args in (
        ("story", "render", "FLOW-002"),
        ("story", "move", "FLOW-002", "generated"),
        ("story", "block", "FLOW-002", "--reason", "waiting"),
        ("token", "log", "FLOW-002", "elaboration", "--input", "5", "--output", "5"),
        ("story", "update", "FLOW-002", "--title", "Renamed"),
        ("artifact", "submit", "FLOW-002", "elaboration", "elaboration.yaml"),
        ("run", "FLOW-002"),
    ):
        error = refused(ws, "FLOW-002", *args, exit_status=7, code="ARTIFACT_STORY_MISMATCH")
        assert error["details"]["file"] == holder, (args, error)
        assert moved in error["hint"], (args, error)
    assert not path.parent.exists()

    # a change to every story file of the epic is committed; FLOW-002's copy is not written
    updated = ok(ws.run("epic", "update", "FLOW", "--enforcement", "warning"))
    assert f"{holder} says it is FLOW-002: the change is committed" in updated.stderr, updated
    assert moved in updated.stderr, updated
    assert not path.parent.exists()
    assert renamed.joinpath(path.name).read_text("utf-8") == written

    renamed.rename(path.parent)
    ok(ws.run("story", "render", "FLOW-002"))
    assert "Kept." in path.read_text("utf-8")
    ok(ws.run("check"))
    ok(ws.run("run", "FLOW-002"))  # the story generated: its agent writes the file
    assert show(ws, "FLOW-002")["status"] == "generated"
    ok(ws.run("check"))
