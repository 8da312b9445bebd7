"""Story files, story folders, epic files and the trace this user may not write (``chattr
+i``: root ignores permission bits). A change whose file writes would fail after the commit
is refused before it (WORKSPACE_NOT_WRITABLE, exit 2, naming the file, with a hint), leaving
files and database as they were; what only fails after a commit (the trace, a re-render of
an epic's stories) is a warning, never INTERNAL.

The executable runs as a subprocess (``via="run"``), as in test_database_environment.py.
"""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Seeded
from tests.cli.helpers import refuse, unchanged
from tests.cli.test_database_environment import immutable, status_of

UPDATE = ("story", "update", "FLOW-002", "--title", "Renamed")
MOVE = ("story", "move", "FLOW-002", "in-elaboration")


def title_of(seeded: Seeded, story_id: str) -> str:
    result = seeded.ws.run("story", "show", story_id, "--json")
    assert result.code == 0, result
    return str(result.json["title"])


def test_an_immutable_story_file_refuses_the_update_before_the_commit(seeded: Seeded) -> None:
    """It was INTERNAL after the commit: the database had the new title, the file the old."""
    ws, rel = seeded.ws, seeded.story_file("FLOW-002")
    with unchanged(ws), immutable(ws.root / rel):
        error = refuse(ws, *UPDATE, code="WORKSPACE_NOT_WRITABLE", via="run")
        assert rel in error["message"], error
        assert "chattr -i" in error["hint"], error
        refuse(ws, *MOVE, code="WORKSPACE_NOT_WRITABLE", via="run")
    assert title_of(seeded, "FLOW-002") == "Second"
    assert ws.run(*UPDATE).code == 0  # writable again: the same update goes through
    assert "Renamed" in (ws.root / rel).read_text(encoding="utf-8")


def test_an_immutable_story_folder_refuses_the_move_before_the_commit(seeded: Seeded) -> None:
    ws, folder = seeded.ws, seeded.folder("FLOW-002")
    with unchanged(ws), immutable(ws.root / folder):
        error = refuse(ws, *MOVE, code="WORKSPACE_NOT_WRITABLE", via="run")
        assert folder in error["message"], error
        refuse(ws, *UPDATE, code="WORKSPACE_NOT_WRITABLE", via="run")
    assert status_of(ws, "FLOW-002") == "generated"
    assert ws.run(*MOVE).code == 0


def test_a_new_story_in_an_immutable_stage_folder_is_refused(seeded: Seeded) -> None:
    """The story file is staged inside the transaction (PendingWrites.add): it said
    INVALID_INPUT 'move what is in the way' (exit 7)."""
    ws = seeded.ws
    stage = (ws.root / seeded.folder("FLOW-003")).parent
    new = ("story", "new", "FLOW", "--title", "Fourth")
    with unchanged(ws), immutable(stage):
        error = refuse(ws, *new, code="WORKSPACE_NOT_WRITABLE", via="run")
        assert str(stage) in error["message"], error
    assert ws.run(*new).code == 0


def test_an_immutable_epic_file_refuses_the_epic_update(seeded: Seeded) -> None:
    """The epic file exists: staging beside it works, the rename after the commit did not
    (INTERNAL, with the epic updated in the database)."""
    ws = seeded.ws
    (epic_file,) = (ws.root / "plans").rglob("FLOW.epic.yaml")
    update = ("epic", "update", "FLOW", "--title", "Renamed")
    with unchanged(ws), immutable(epic_file):
        error = refuse(ws, *update, code="WORKSPACE_NOT_WRITABLE", via="run")
        assert str(epic_file) in error["message"], error
    assert ws.run(*update).code == 0


def test_a_re_render_after_the_commit_that_cannot_write_is_a_warning(seeded: Seeded) -> None:
    """An epic's budget change re-renders its stories after the commit: a story file it
    cannot write is said (committed; story render brings it up to date), not INTERNAL."""
    ws, rel = seeded.ws, seeded.story_file("FLOW-002")
    with immutable(ws.root / rel):
        result = ws.run("epic", "update", "FLOW", "--enforcement", "soft_gate")
        assert result.code == 0, result
        assert "Traceback" not in result.stderr
        assert f"FLOW-002: the change is committed, but storyflow cannot write {rel}" in (
            result.stderr
        ), result
        assert "storyflow story render FLOW-002" in result.stderr
    assert ws.run("story", "render", "FLOW-002").code == 0
    assert "soft_gate" in (ws.root / rel).read_text(encoding="utf-8")


def test_a_trace_that_cannot_be_written_is_a_warning_after_the_commit(seeded: Seeded) -> None:
    """The trace lines follow the commit: a trace file or folder this user cannot write
    leaves the change committed, with a warning, once (exit 0, not INTERNAL)."""
    ws = seeded.ws
    trace = ws.root / ".storyflow" / "trace"
    workspace_trace = trace / "workspace.jsonl"
    before = workspace_trace.read_bytes()
    with immutable(workspace_trace):
        result = ws.run(*UPDATE)
        assert result.code == 0, result
        warnings = [line for line in result.stderr.splitlines() if "trace" in line]
        assert len(warnings) == 1, result
        assert "the events are recorded in the database" in warnings[0], warnings
        assert str(workspace_trace) in warnings[0] and "chattr -i" in warnings[0], warnings
    assert workspace_trace.read_bytes() == before
    assert title_of(seeded, "FLOW-002") == "Renamed"
    stories = trace / "stories"
    for story_trace in stories.glob("FLOW-003.jsonl"):
        story_trace.unlink()
    with immutable(stories):
        result = ws.run("story", "update", "FLOW-003", "--title", "Third renamed")
        assert result.code == 0, result
        assert "cannot write the trace" in result.stderr, result
    assert not Path(stories / "FLOW-003.jsonl").exists()
    assert ws.run("story", "update", "FLOW-003", "--title", "Again").code == 0
    assert (stories / "FLOW-003.jsonl").exists()
