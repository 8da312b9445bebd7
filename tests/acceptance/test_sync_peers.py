"""Two clones of one git repository, each with its own database: what one clone's engine
commits (moves, artifacts, approvals, tokens) reaches the other through git and storyflow
sync as that clone made it: same history (actors, times, versions), artifact versions and
submitters, ledger and files, nothing applied twice, no story file rewritten."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import Result, Workspace, storyflow_command
from tests.sync_helpers import Clones, clones, other_database_url

__all__ = ["clones", "other_database_url"]  # fixtures

ELABORATION = Path(__file__).resolve().parents[2] / "examples" / "artifacts" / "elaboration.yaml"


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def _as(ws: Workspace, actor: str, *args: str, status: int = 0) -> Result:
    done = subprocess.run(
        [*storyflow_command(), *args],
        cwd=ws.root,
        env={**ws.env, "STORYFLOW_ACTOR": actor},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    result = Result(done.returncode, done.stdout, done.stderr)
    assert result.code == status, (args, result)
    return result


def _json(ws: Workspace, *args: str) -> Any:
    return _as(ws, "reader", *args, "--json").json


def _commit(root: Path, message: str) -> None:
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", message)
    _git(root, "push", "-q", "origin", "HEAD:master")


@pytest.fixture
def team(workspace: Workspace, clones: Clones, tmp_path: Path) -> tuple[Workspace, Workspace]:
    """Alice's clone (the workspace: an epic, three stories, two in elaboration) and Bob's,
    cloned from the same origin and synced (rebuilt) on a database of its own."""
    a = workspace
    _git(tmp_path, "init", "-q", "--bare", "origin.git")
    _git(a.root, "init", "-q")
    for root in (a.root,):
        _git(root, "config", "user.email", "a@example.com")
        _git(root, "config", "user.name", "A")
    _git(a.root, "remote", "add", "origin", str(tmp_path / "origin.git"))
    _as(a, "alice", "epic", "new", "FLOW", "--title", "Flow", "--layout", "staged")
    for n in range(3):
        _as(a, "alice", "story", "new", "FLOW", "--title", f"story {n}")
    for path in (a.root / "plans").rglob("story.yaml"):
        text = path.read_text(encoding="utf-8").replace("reuse_plan: ''", "reuse_plan: Reuses x.")
        path.write_text(text, encoding="utf-8")
    _as(a, "alice", "sync")
    for story_id in ("FLOW-001", "FLOW-002"):
        _as(a, "alice", "story", "move", story_id, "generated")
        _as(a, "alice", "story", "move", story_id, "in-elaboration")
    _commit(a.root, "setup")
    _git(tmp_path, "clone", "-q", str(tmp_path / "origin.git"), "B")
    _git(tmp_path / "B", "config", "user.email", "b@example.com")
    _git(tmp_path / "B", "config", "user.name", "B")
    b = Workspace.create(tmp_path / "B", clones.database_url)
    clones.made.append(b)
    _as(b, "bob", "sync")
    assert _git(b.root, "status", "--porcelain") == ""
    return a, b


def _pull(b: Workspace) -> None:
    _git(b.root, "pull", "-q", "--no-rebase", "origin", "master")


def _view(ws: Workspace, story_id: str) -> dict[str, Any]:
    """What a team member sees of a story, at the precision the files keep."""
    history = [
        {**r, "created_at": r["created_at"][:19]} for r in _json(ws, "story", "history", story_id)
    ]
    artifacts = [
        {**a, "submitted_at": a["submitted_at"][:19]}
        for a in _json(ws, "artifact", "list", story_id)
        if a["kind"] != "story"  # snapshots on entering elaboration: database only
    ]
    shown = _json(ws, "story", "show", story_id)
    return {
        "history": history,
        "artifacts": artifacts,
        "budget": _json(ws, "budget", "show", story_id),
        "version": shown["version"],
        "status": shown["status"],
    }


def test_a_peers_moves_artifacts_approvals_and_tokens_arrive_as_made(
    team: tuple[Workspace, Workspace], clones: Clones
) -> None:
    a, b = team
    _as(a, "alice", "artifact", "submit", "FLOW-001", "elaboration", str(ELABORATION))
    _as(a, "alice", "approve", "FLOW-001", "--by", "pm-carol")
    _as(
        a, "alice", "token", "log", "FLOW-001", "elaboration", "--input", "9000", "--output", "3100"
    )
    _as(a, "alice", "story", "block", "FLOW-002", "--reason", "waiting on infra")
    _as(a, "alice", "story", "move", "FLOW-003", "generated")
    _as(a, "alice", "story", "move", "FLOW-003", "in-elaboration")
    _commit(a.root, "alice works")
    _pull(b)
    report = _as(b, "bob", "sync", "--json").json
    assert report["problems"] == [], report
    assert {c["action"] for c in report["changes"]} == {"log_appended"}, report
    for story_id in ("FLOW-001", "FLOW-002", "FLOW-003"):
        mine, theirs = _view(a, story_id), _view(b, story_id)
        # the transition row and the log row of one move may straddle a second boundary
        assert [{**r, "created_at": None} for r in theirs["history"]] == [
            {**r, "created_at": None} for r in mine["history"]
        ], story_id
        assert theirs["artifacts"] == mine["artifacts"], story_id
        assert {k: theirs[k] for k in ("budget", "version", "status")} == {
            k: mine[k] for k in ("budget", "version", "status")
        }, story_id
    assert {a["submitted_by"] for a in _view(b, "FLOW-001")["artifacts"]} == {"alice"}
    # Exactly what a rebuild from the same files reads; no file rewritten; nothing left.
    fresh = clones.fresh(b, "fresh")
    _as(fresh, "carl", "sync")
    for story_id in ("FLOW-001", "FLOW-002", "FLOW-003"):
        assert _view(fresh, story_id) == _view(b, story_id), story_id
    assert _git(b.root, "status", "--porcelain") == ""
    assert _as(b, "bob", "sync", "--json").json["nothing_to_do"]
    _as(b, "bob", "check")


def test_a_row_no_edge_allows_is_refused_and_nothing_of_the_story_applied(
    team: tuple[Workspace, Workspace],
) -> None:
    a, b = team
    _as(a, "alice", "token", "log", "FLOW-001", "elaboration", "--input", "10", "--output", "5")
    path = next((a.root / "plans").rglob("FLOW-001/story.yaml"))
    with path.open("a", encoding="utf-8") as handle:
        handle.write(
            "- timestamp: '2026-03-02T16:00:00Z'\n  agent: mallory\n"
            "  action: 'status: in-elaboration -> completed'\n  outputs: story.yaml\n"
        )
    _commit(a.root, "a forged row")
    before = _view(b, "FLOW-001")
    _pull(b)
    report = _as(b, "bob", "sync", "--json", status=3).json
    [problem] = report["problems"]
    assert problem["code"] == "TRANSITION_NOT_ALLOWED", problem
    assert "row" in problem["message"] and "git log -p" in problem["hint"], problem
    assert _view(b, "FLOW-001") == before  # neither the tokens nor the move


def test_a_story_file_checked_out_behind_the_database_is_rendered_again(
    team: tuple[Workspace, Workspace],
) -> None:
    a, _ = team
    path = next((a.root / "plans").rglob("FLOW-001/story.yaml"))
    _as(a, "alice", "token", "log", "FLOW-001", "elaboration", "--input", "10", "--output", "5")
    _git(a.root, "checkout", "-q", "HEAD", "--", str(path))  # the row just added is gone
    report = _as(a, "alice", "sync", "--json").json
    assert [c["action"] for c in report["changes"]] == ["rendered"], report
    assert "tokens: elaboration" in path.read_text(encoding="utf-8")
    _as(a, "alice", "check")


def test_diverged_logs_are_reported_with_a_hint_that_works(
    team: tuple[Workspace, Workspace],
) -> None:
    a, b = team
    _as(a, "alice", "token", "log", "FLOW-001", "elaboration", "--input", "10", "--output", "5")
    _commit(a.root, "alice's tokens")
    _as(b, "bob", "token", "log", "FLOW-001", "elaboration", "--input", "20", "--output", "5")
    _git(b.root, "add", "-A")
    _git(b.root, "commit", "-qm", "bob's tokens")
    merged = subprocess.run(
        ["git", "pull", "-q", "--no-rebase", "origin", "master"],
        cwd=b.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert merged.returncode != 0  # both appended to the same Agent Log
    [conflicted] = _git(b.root, "diff", "--name-only", "--diff-filter=U").split()
    _git(b.root, "checkout", "--theirs", conflicted)
    report = _as(b, "bob", "sync", "--json", status=5).json
    [problem] = report["problems"]
    assert problem["code"] == "AGENT_LOG_EDITED" and "diverged" in problem["message"], problem
    assert "--ours" in problem["hint"] and "empty one" in problem["hint"], problem
    # Follow the hint: Bob keeps his side; Alice, whose row was dropped, rebuilds.
    _git(b.root, "checkout", "--ours", conflicted)
    _as(b, "bob", "sync")
    _commit(b.root, "merge: bob's side of FLOW-001")
    _git(a.root, "pull", "-q", "--no-rebase", "origin", "master")
    assert _as(a, "alice", "sync", status=5)
    if a.database_url is not None:
        return  # PostgreSQL: an empty database is another test's business
    (a.root / ".storyflow" / "storyflow.db").rename(a.root / "old.db")
    _as(a, "alice", "sync")
    _as(a, "alice", "token", "log", "FLOW-001", "elaboration", "--input", "10", "--output", "5")
    _commit(a.root, "alice's tokens again")
    _pull(b)
    _as(b, "bob", "sync")
    assert _view(b, "FLOW-001") == _view(a, "FLOW-001")
    assert _json(b, "budget", "show", "FLOW-001") == _json(a, "budget", "show", "FLOW-001")
