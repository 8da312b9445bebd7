"""Runs in two clones on one database: a clone whose story files are behind the database
(another clone ran the story's earlier phases and its files are not pulled here) leaves
the story alone with STORY_FILES_BEHIND instead of running a phase on stale files and
blocking the story at a later gate."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable

from storyflow.domain.statuses import Status
from storyflow.services.runs import FILES_CATCH_UP_SECONDS
from tests.run_support import configure, epic_with, runs_of
from tests.support import Result, Workspace
from tests.sync_helpers import Clones, clones, other_database_url

__all__ = ["clones", "other_database_url"]  # fixtures


def test_a_clone_whose_story_files_are_behind_leaves_the_story_alone(
    workspace: Workspace, clones: Clones
) -> None:
    configure(workspace)
    ctx = workspace.ctx()
    ahead, other = epic_with(ctx, 2)
    mate = clones.teammate(workspace)  # a clone of the files as they are now, same database
    generated = workspace.run("run", ahead, "--json")
    assert generated.code == 0, generated.stderr
    assert ctx.story(ahead).status is Status.GENERATED
    runs_before = runs_of(ctx, ahead)
    file_before = (mate.root / "plans").glob(f"**/{ahead}/story.yaml")
    (mate_file,) = list(file_before)
    mate_text = mate_file.read_text(encoding="utf-8")

    refused = mate.run("run", ahead, "--json")

    assert refused.code == 5, refused
    error = refused.json["error"]
    assert error["code"] == "STORY_FILES_BEHIND"
    assert "storyflow sync" in error["hint"] and "pull" in error["hint"]
    assert error["details"]["story"] == ahead
    assert error["details"]["file_rows"] < error["details"]["database_rows"]
    assert ctx.story(ahead).status is Status.GENERATED  # not blocked, not moved
    assert runs_of(ctx, ahead) == runs_before  # no run recorded, no failure counted
    assert mate_file.read_text(encoding="utf-8") == mate_text  # nothing written
    assert ctx.store.lease(ahead) is None
    text = mate.run("run", ahead)
    assert text.code == 5 and "error[STORY_FILES_BEHIND]" in text.stderr
    assert "(hint: if another clone ran it, pull" in text.stderr
    assert "Traceback" not in text.stderr

    # a worker in the clone that is behind runs what it can and leaves that story alone
    worked = mate.run("worker", "--epic", "FLOW", "--until-idle", "--concurrency", "2")
    assert worked.code == 0, worked.stderr
    assert "STORY_FILES_BEHIND" in worked.stdout + worked.stderr
    assert ctx.story(other).status is Status.COMPLETED
    assert ctx.story(ahead).status is Status.GENERATED
    assert runs_of(ctx, ahead) == runs_before

    # after a pull (the folder as the other clone has it) the clone runs the story
    folder = mate_file.parent
    shutil.rmtree(folder)
    (source,) = list((workspace.root / "plans").glob(f"**/{ahead}"))
    shutil.copytree(source, mate.root / source.relative_to(workspace.root))
    resumed = mate.run("run", ahead, "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json["phase"] == "elaborate"


def run_while(clone: Workspace, story_id: str, meanwhile: Callable[[], None]) -> Result:
    """``storyflow run ID --json`` in ``clone`` while ``meanwhile`` runs in a thread."""
    side = threading.Thread(target=meanwhile)
    side.start()
    try:
        return clone.run("run", story_id, "--json")
    finally:
        side.join()


def test_a_phase_waits_a_moment_for_a_story_file_a_projection_is_writing(
    workspace: Workspace, clones: Clones
) -> None:
    """On a shared database a file behind may be one a worker of this clone is writing
    (its projection follows its commit; a split's children are claimable before their
    files exist): the phase waits for it a moment instead of refusing at once."""
    configure(workspace)
    ctx = workspace.ctx()
    ahead, _ = epic_with(ctx, 2)
    mate = clones.teammate(workspace)
    assert workspace.run("run", ahead, "--json").code == 0  # generate, in the other clone
    (source,) = list((workspace.root / "plans").glob(f"**/{ahead}"))
    (stale,) = list((mate.root / "plans").glob(f"**/{ahead}"))

    def lands() -> None:  # the file catches up while the phase waits for it
        time.sleep(1.0)
        shutil.rmtree(stale)
        shutil.copytree(source, mate.root / source.relative_to(workspace.root))

    resumed = run_while(mate, ahead, lands)
    assert resumed.code == 0, resumed.stderr
    assert resumed.json["phase"] == "elaborate"
    assert FILES_CATCH_UP_SECONDS >= 1.5  # the wait outlasts the landing above


def test_a_phase_waiting_for_its_story_file_keeps_its_lease(
    workspace: Workspace, clones: Clones
) -> None:
    """The wait for a story file behind the database outlasts a short lease: the lease is
    kept alive meanwhile. (The wait used to sit inside the phase's transaction, where a
    heartbeat is not seen before the commit: the lease expired, an idle worker of the clone
    took the story over and rendered its file from the database, and the waiting phase ran
    on it and blocked the story at the story-file guard.)"""
    configure(workspace, {"lease_seconds": 0.6, "heartbeat_seconds": 0.1})
    ctx = workspace.ctx()
    ahead, _ = epic_with(ctx, 2)
    mate = clones.teammate(workspace)
    assert workspace.run("run", ahead, "--json").code == 0  # generate, in the other clone
    held: list[bool] = []

    def watch() -> None:  # past the lease's first expiry, well inside the wait
        time.sleep(1.4)
        held.append(ctx.store.active_lease(ahead, ctx.now()) is not None)

    refused = run_while(mate, ahead, watch)
    assert refused.code == 5, refused
    assert refused.json["error"]["code"] == "STORY_FILES_BEHIND"
    assert held == [True], "the lease expired while the phase waited for its story file"
    assert ctx.store.lease(ahead) is None  # released when the phase was refused
    assert ctx.story(ahead).status is Status.GENERATED
    assert FILES_CATCH_UP_SECONDS > 1.4 > 0.6  # the watch falls inside the wait, past the lease


def test_a_story_file_behind_the_database_of_this_clone_is_rendered_again(
    workspace: Workspace,
) -> None:
    """As a worker killed between its commit and the file's projection leaves it (or a
    checkout of an older commit): with the database in the clone's own .storyflow/ nobody
    else wrote the rows the file lacks, so the run renders the file again and goes on; on a
    database other clones share the run is refused and storyflow sync renders it."""
    configure(workspace)
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    assert workspace.run("run", story, "--json").code == 0  # generate
    (generated,) = list((workspace.root / "plans").glob(f"**/{story}/story.yaml"))
    behind = generated.read_text(encoding="utf-8")
    assert workspace.run("run", story, "--json").code == 0  # elaborate
    (current,) = list((workspace.root / "plans").glob(f"**/{story}/story.yaml"))
    current.write_text(behind, encoding="utf-8")
    version = ctx.story(story).version

    result = workspace.run("run", story, "--json")

    if workspace.database_url is None:  # SQLite in .storyflow/: this clone's own
        assert result.code == 0, result.stderr
        assert result.json["phase"] == "plan"
    else:
        assert result.code == 5, result
        error = result.json["error"]
        assert error["code"] == "STORY_FILES_BEHIND"
        assert "storyflow sync here renders the file again" in error["hint"]
        assert ctx.story(story).version == version  # nothing ran
        assert workspace.run("sync").code == 0
        assert workspace.run("run", story, "--json").json["phase"] == "plan"
    assert workspace.run("check").code == 0
    (moved,) = list((workspace.root / "plans").glob(f"**/{story}/story.yaml"))
    rows = [
        line for line in moved.read_text(encoding="utf-8").splitlines() if "- timestamp:" in line
    ]
    assert len(rows) == ctx.story(story).version
