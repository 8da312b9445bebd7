"""``.storyflow/`` (a clone's own database, locks, caches and traces) never goes into git.
Its ``.gitignore`` ignores itself, so no clone gets it from git: a fresh clone whose first
command is ``storyflow sync`` (as the README says), not ``init``, must write its own, or a
``git add -A`` there commits the database, and a pull elsewhere silently replaces the other
clone's database with it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.acceptance._helpers import ok
from tests.support import Workspace
from tests.sync_helpers import other_database_url

__all__ = ["other_database_url"]  # fixture


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@x", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_a_fresh_clone_synced_keeps_its_state_folder_out_of_git(
    workspace: Workspace, tmp_path: Path, other_database_url: str | None
) -> None:
    ok(workspace.run("epic", "new", "FLOW", "--title", "Flow"))
    ok(workspace.run("story", "new", "FLOW", "--title", "one"))
    git(workspace.root, "init", "-q")
    git(workspace.root, "add", "-A")
    git(workspace.root, "commit", "-qm", "plan")
    assert ".storyflow/" not in git(workspace.root, "ls-files")

    root = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(workspace.root), str(root))
    assert not (root / ".storyflow").exists()
    mate = Workspace(root=root, database_url=other_database_url)
    ok(mate.run("sync"))  # its first command: no init
    ok(mate.run("story", "move", "FLOW-001", "cancelled", "--reason", "dup"))
    assert (root / ".storyflow" / ".gitignore").is_file()
    untracked = git(root, "status", "--porcelain", "--untracked-files=all")
    assert ".storyflow" not in untracked, untracked
    assert "story.yaml" in untracked  # the move's projection: the record, for git
    git(root, "add", "-A")
    assert not [p for p in git(root, "ls-files").splitlines() if p.startswith(".storyflow/")]


def test_a_state_folder_that_lost_its_gitignore_gets_it_back(workspace: Workspace) -> None:
    ignore = workspace.root / ".storyflow" / ".gitignore"
    ignore.unlink()
    ok(workspace.run("story", "list", "--json"))
    ok(workspace.run("epic", "list"))
    assert ignore.read_text("utf-8").splitlines()[-1] == "*"


def test_check_and_the_hook_refuse_a_state_folder_in_git(workspace: Workspace) -> None:
    ok(workspace.run("epic", "new", "FLOW", "--title", "Flow"))
    git(workspace.root, "init", "-q")
    git(workspace.root, "add", "-A")
    git(workspace.root, "commit", "-qm", "plan")
    assert ok(workspace.run("check")).stdout.startswith("storyflow check: clean")
    # a repository where it went in before (or someone forced it in)
    git(workspace.root, "add", "-f", ".storyflow")
    tracked = git(workspace.root, "ls-files", ".storyflow").split()
    assert ".storyflow/trace/workspace.jsonl" in tracked  # and the database, on SQLite
    result = workspace.run("check", "--json")
    assert result.code == 3, result
    findings = result.json["findings"]
    assert {f["code"] for f in findings} == {"CHECK_STATE_TRACKED"}
    assert sorted(f["file"] for f in findings) == [p for p in tracked if not p.endswith("ignore")]
    assert findings[0]["hint"].startswith("git rm -r --cached .storyflow")
    ok(workspace.run("hooks", "install"))
    commit = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "db"],
        cwd=workspace.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert commit.returncode != 0 and "CHECK_STATE_TRACKED" in commit.stdout + commit.stderr
    git(workspace.root, "rm", "-q", "-r", "--cached", ".storyflow")
    assert ok(workspace.run("check")).stdout.startswith("storyflow check: clean")
