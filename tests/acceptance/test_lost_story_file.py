"""A story folder deleted by hand: storyflow sync renders the story file again from the
latest story snapshot the database holds (so the description and Reuse Plan come back),
or, without a snapshot, says that text is lost and how to get it back from git."""

from __future__ import annotations

import shutil

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
