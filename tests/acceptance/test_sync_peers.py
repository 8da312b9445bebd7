"""Two clones of one git repository, each with its own database: what one clone's engine
commits (moves, artifacts, approvals, tokens) reaches the other through git and storyflow
sync as that clone made it: same history (actors, times, versions), artifact versions and
submitters, ledger and files, nothing applied twice, no story file rewritten."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import Result, Workspace, assert_story_list_agrees_with_show, storyflow_command
from tests.sync_helpers import Clones, clones, other_database_url

__all__ = ["clones", "other_database_url"]  # fixtures

ELABORATION = Path(__file__).resolve().parents[2] / "examples" / "artifacts" / "elaboration.yaml"
# FLOW-001 elaboration tokens, reported: --output 5 --input N (N follows)
LOG_TOKENS = ("token", "log", "FLOW-001", "elaboration", "--output", "5", "--input")


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
    assert result.code == status, (args, result.stdout, result.stderr)
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


def _diverge(a: Workspace, b: Workspace, alice: tuple[str, ...], bob: tuple[str, ...]) -> Path:
    """Alice does ``alice`` and pushes; Bob does ``bob``, commits and pulls: a merge
    conflict in the story file both changed (returned, left conflicted in Bob's clone)."""
    _as(a, "alice", *alice)
    _commit(a.root, "alice's change")
    _as(b, "bob", *bob)
    _git(b.root, "add", "-A")
    _git(b.root, "commit", "-qm", "bob's change")
    merged = subprocess.run(
        ["git", "pull", "-q", "--no-rebase", "origin", "master"],
        cwd=b.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert merged.returncode != 0  # both appended to the same Agent Log
    [conflicted] = _git(b.root, "diff", "--name-only", "--diff-filter=U").split()
    return b.root / conflicted


def _agree(a: Workspace, b: Workspace) -> None:
    """Both clones see the same stories, are clean, and have nothing left to sync."""
    for story_id in ("FLOW-001", "FLOW-002", "FLOW-003"):
        mine, theirs = _view(a, story_id), _view(b, story_id)
        # the transition row and the log row of one move may straddle a second boundary
        for view in (mine, theirs):
            view["history"] = [{**r, "created_at": None} for r in view["history"]]
        assert mine == theirs, story_id
    for ws in (a, b):
        _as(ws, "reader", "check")
        assert _as(ws, "reader", "sync", "--json").json["nothing_to_do"]


def _alice_runs(a: Workspace, story_id: str) -> None:
    """Alice runs the story's next phase with the scripted agent and pushes."""
    from tests.run_support import configure

    configure(a)
    _as(a, "alice", "run", story_id)
    _commit(a.root, f"alice runs {story_id}")


def _untouched(ws: Workspace) -> dict[str, Any]:
    """What the files do not carry: each story's events (its trace) and runs."""
    from tests.run_support import runs_of

    ctx = ws.ctx()
    try:
        return {
            story_id: {
                "trace": _as(ws, "reader", "trace", story_id, "--json").stdout,
                "runs": runs_of(ctx, story_id),
            }
            for story_id in ("FLOW-002", "FLOW-003")
        }
    finally:
        ctx.store.conn.close()


def test_diverged_logs_are_reported_and_prefer_files_rebuilds_that_story(
    team: tuple[Workspace, Workspace],
) -> None:
    a, b = team
    _alice_runs(a, "FLOW-003")  # a run and its events, which no file carries
    _pull(b)
    _as(b, "bob", "sync")
    path = _diverge(a, b, (*LOG_TOKENS, "10"), (*LOG_TOKENS, "20"))
    _git(b.root, "checkout", "--theirs", str(path))
    report = _as(b, "bob", "sync", "--json", status=5).json
    [problem] = report["problems"]
    assert problem["code"] == "AGENT_LOG_EDITED" and "diverged" in problem["message"], problem
    assert "--ours" in problem["hint"] and "--prefer files" in problem["hint"], problem
    # Follow the hint: Bob keeps his side; Alice, whose row was dropped, rebuilds the story.
    _git(b.root, "checkout", "--ours", str(path))
    _as(b, "bob", "sync")
    _commit(b.root, "merge: bob's side of FLOW-001")
    _git(a.root, "pull", "-q", "--no-rebase", "origin", "master")
    assert _as(a, "alice", "sync", status=5)
    others = _untouched(a)
    assert others["FLOW-003"]["runs"], others  # the run is there to be kept
    events = _as(a, "reader", "trace", "FLOW-001", "--json").stdout.splitlines()
    report = _as(a, "alice", "sync", "--prefer", "files", "--json").json
    assert report["problems"] == [], report
    [change] = report["changes"]
    assert change["action"] == "story_rebuilt" and change["story"] == "FLOW-001", change
    assert (change["dropped"], change["ledger"]) == (1, 1), change
    text = _as(a, "alice", "sync", "--prefer", "files", "--dry-run").stdout
    assert "nothing to do" in text
    _agree(a, b)
    assert _untouched(a) == others
    after = _as(a, "reader", "trace", "FLOW-001", "--json").stdout.splitlines()
    assert after[: len(events)] == events  # FLOW-001's own events are kept too
    [rebuilt] = [json.loads(line) for line in after if '"story_rebuilt"' in line]
    assert [r["action"] for r in rebuilt["dropped_rows"]] == [
        "tokens: elaboration +15 (reported)"
    ], rebuilt
    assert _json(a, "budget", "show", "FLOW-001")["phases"]["elaboration"]["used"] == 25
    assert_story_list_agrees_with_show(a)  # the rebuilt story's links were replaced
    # Alice redoes her change; it reaches Bob as any other.
    _as(a, "alice", *LOG_TOKENS, "10")
    _commit(a.root, "alice's tokens again")
    _pull(b)
    assert [c["action"] for c in _as(b, "bob", "sync", "--json").json["changes"]] == [
        "log_appended"
    ]
    _agree(a, b)


def _rows(text: str) -> tuple[str, list[str], str]:
    """A story file as (what precedes the Agent Log, its rows, the keys after it)."""
    head, _, log = text.partition("agent_log:\n")
    tail = re.search(r"(?m)^(?![- ])", log)
    end = tail.start() if tail else len(log)
    rows = [r for r in re.split(r"(?m)^(?=- timestamp)", log[:end]) if r]
    return head, rows, log[end:]


def _union(ours: str, theirs: str) -> str:
    """Both sides' Agent Log rows in time order (theirs, made first, before ours), with
    theirs' other keys and Token Budget, and the later updated_at."""
    head_ours, mine, _ = _rows(ours)
    head, rows, tail = _rows(theirs)
    merged = rows + [r for r in mine if r not in rows]
    merged.sort(key=lambda r: r.split("\n", 1)[0])  # by timestamp, stably
    stamp = re.compile(r"(?m)^updated_at: .*$")
    later = max(stamp.findall(head_ours) + stamp.findall(head))
    return stamp.sub(later, head) + "agent_log:\n" + "".join(merged) + tail


def test_both_sides_rows_that_form_one_history_are_taken_by_prefer_files(
    team: tuple[Workspace, Workspace],
) -> None:
    a, b = team
    path = _diverge(
        a,
        b,
        ("token", "log", "FLOW-001", "elaboration", "--input", "10", "--output", "5"),
        ("artifact", "submit", "FLOW-001", "elaboration", str(ELABORATION)),
    )
    ours = _git(b.root, "show", f":2:{path.relative_to(b.root)}")
    theirs = _git(b.root, "show", f":3:{path.relative_to(b.root)}")
    path.write_text(_union(ours, theirs), encoding="utf-8")
    _git(b.root, "add", str(path))
    _git(b.root, "commit", "-qm", "merge: both sides of FLOW-001")
    _git(b.root, "push", "-q", "origin", "HEAD:master")
    # Bob's row is now after Alice's: his database's log diverged from the file.
    report = _as(b, "bob", "sync", "--json", status=5).json
    assert [p["code"] for p in report["problems"]] == ["AGENT_LOG_EDITED"], report
    report = _as(b, "bob", "sync", "--prefer", "files", "--json").json
    assert [c["action"] for c in report["changes"]] == ["story_rebuilt"], report
    assert report["changes"][0]["dropped"] == 0, report  # Bob's row moved, none dropped
    # Alice's database's log is the file's beginning: Bob's row arrives as any other.
    _pull(a)
    report = _as(a, "alice", "sync", "--json").json
    assert [c["action"] for c in report["changes"]] == ["log_appended"], report
    _agree(a, b)
    view = _view(a, "FLOW-001")
    assert [x["submitted_by"] for x in view["artifacts"]] == ["bob"]
    assert view["budget"]["phases"]["elaboration"]["used"] == 15 and view["version"] == 5


def test_prefer_files_refuses_a_union_of_two_conflicting_histories(
    team: tuple[Workspace, Workspace],
) -> None:
    a, b = team
    path = _diverge(
        a,
        b,
        ("story", "block", "FLOW-001", "--reason", "waiting on infra"),
        ("story", "block", "FLOW-001", "--reason", "waiting on legal"),
    )
    ours = _git(b.root, "show", f":2:{path.relative_to(b.root)}")
    theirs = _git(b.root, "show", f":3:{path.relative_to(b.root)}")
    union = _union(ours, theirs)
    path.write_text(union, encoding="utf-8")
    before = _view(b, "FLOW-001")
    report = _as(b, "bob", "sync", "--prefer", "files", "--json", status=3).json
    [problem] = report["problems"]
    assert problem["code"] == "AGENT_LOG_INVALID" and problem["story"] == "FLOW-001", problem
    assert "moves it from in-elaboration" in problem["message"], problem
    assert "--ours" in problem["hint"] and "--prefer files" in problem["hint"], problem
    assert report["changes"] == [], report
    assert _view(b, "FLOW-001") == before
    assert path.read_text(encoding="utf-8") == union
    shown = _as(b, "bob", "sync", "--prefer", "files", status=3)
    assert "error[AGENT_LOG_INVALID]" in shown.stdout, shown


def _commit_all_but(root: Path, left_out: Path, message: str) -> None:
    """Commit and push every change but ``left_out`` (a file someone forgot to add)."""
    _git(root, "add", "-A")
    _git(root, "reset", "-q", "--", str(left_out))
    _git(root, "commit", "-qm", message)
    _git(root, "push", "-q", "origin", "HEAD:master")


def test_a_peers_artifact_version_whose_file_was_not_committed_waits_for_it(
    team: tuple[Workspace, Workspace],
) -> None:
    a, b = team
    _as(a, "alice", "artifact", "submit", "FLOW-001", "elaboration", str(ELABORATION))
    _as(a, "alice", "approve", "FLOW-001", "--by", "pm-carol")
    _as(a, "alice", "token", "log", "FLOW-001", "elaboration", "--input", "90", "--output", "31")
    _as(a, "alice", "story", "move", "FLOW-003", "generated")
    forgotten = next((a.root / "plans").rglob("FLOW-001/elaboration.yaml"))
    _commit_all_but(a.root, forgotten, "alice works (without elaboration.yaml)")
    before = _view(b, "FLOW-001")
    _pull(b)
    story_file = next((b.root / "plans").rglob("FLOW-001/story.yaml"))
    text = story_file.read_text(encoding="utf-8")
    report = _as(b, "bob", "sync", "--json", status=6).json
    [problem] = report["problems"]
    assert problem["code"] == "ARTIFACT_FILE_MISSING" and problem["story"] == "FLOW-001", problem
    assert problem["file"].endswith("FLOW-001/elaboration.yaml"), problem
    assert "elaboration v1" in problem["message"], problem
    assert "git add" in problem["hint"] and "--prefer db" in problem["hint"], problem
    # Nothing of FLOW-001 is applied (not its tokens, not its approval); the others are.
    assert [(c["action"], c["story"]) for c in report["changes"]] == [
        ("log_appended", "FLOW-003")
    ], report
    assert _view(b, "FLOW-001") == before
    assert story_file.read_text(encoding="utf-8") == text
    # It waits: the next sync asks again, --prefer files cannot supply the file either.
    assert _as(b, "bob", "sync", "--json", status=6).json["problems"] == [problem]
    _as(b, "bob", "sync", "--prefer", "files", status=6)
    # Alice commits the file: Bob's clone replays her rows as she made them.
    _commit(a.root, "alice adds elaboration.yaml")
    _pull(b)
    report = _as(b, "bob", "sync", "--json").json
    assert report["problems"] == [], report
    [change] = report["changes"]
    assert (change["action"], change["artifacts"], change["approvals"]) == (
        "log_appended",
        1,
        1,
    ), change
    _agree(a, b)


# v2 of FLOW-001's elaboration, made from the example's v1: (the edit, its verdict, what a
# clone that has v1's file under v2's name is told). Another verdict is told by the row's
# verdict; the same verdict by the content hash the row carries.
SECOND_VERSIONS = {
    "another verdict": (
        ("verdict: PASS", "verdict: NEEDS_REFINEMENT"),
        "NEEDS_REFINEMENT",
        "its verdict is PASS, the row's NEEDS_REFINEMENT",
    ),
    "the same verdict": (
        ("Scope is clear;", "Scope was narrowed;"),
        "PASS",
        "its content is not the one submitted",
    ),
}


def _resubmit(a: Workspace, tmp_path: Path, second: str = "another verdict") -> None:
    """Alice submits FLOW-001's elaboration again: the example with one of SECOND_VERSIONS."""
    (old, new), _, _ = SECOND_VERSIONS[second]
    path = tmp_path / "elaboration-v2.yaml"
    path.write_text(ELABORATION.read_text(encoding="utf-8").replace(old, new), "utf-8")
    _as(a, "alice", "artifact", "submit", "FLOW-001", "elaboration", str(path))


@pytest.mark.parametrize("second", SECOND_VERSIONS)
def test_an_older_file_under_the_name_of_a_peers_new_version_is_not_taken_for_it(
    team: tuple[Workspace, Workspace], tmp_path: Path, second: str
) -> None:
    """The staged layout keeps one elaboration.yaml: Alice submits v2 and commits all but
    the file. Bob's folder still has v1's file under that name: its verdict, or with the
    same verdict its content hash, is not the one the row states, so it is not registered
    as v2; the story waits."""
    _, verdict, told = SECOND_VERSIONS[second]
    a, b = team
    _as(a, "alice", "artifact", "submit", "FLOW-001", "elaboration", str(ELABORATION))
    _commit(a.root, "alice: elaboration v1")
    _pull(b)
    _as(b, "bob", "sync")
    _resubmit(a, tmp_path, second)
    forgotten = next((a.root / "plans").rglob("FLOW-001/elaboration.yaml"))
    _commit_all_but(a.root, forgotten, "alice: elaboration v2 (without the file)")
    before = _view(b, "FLOW-001")
    _pull(b)
    report = _as(b, "bob", "sync", "--json", status=6).json
    [problem] = report["problems"]
    assert (problem["code"], problem["story"]) == ("ARTIFACT_FILE_MISSING", "FLOW-001"), report
    assert "elaboration v2" in problem["message"], problem
    assert told in problem["message"], problem
    assert _view(b, "FLOW-001") == before  # v1 stays v1; nothing of the rows applied
    # Alice commits the file: Bob's clone takes v2 as she made it.
    _commit(a.root, "alice adds elaboration.yaml")
    _pull(b)
    report = _as(b, "bob", "sync", "--json").json
    assert report["problems"] == [], report
    assert [c["action"] for c in report["changes"]] == ["log_appended"], report
    listed = _json(b, "artifact", "list", "FLOW-001")
    assert [(x["version"], x["verdict"]) for x in listed if x["kind"] == "elaboration"] == [
        (1, "PASS"),
        (2, verdict),
    ]
    _agree(a, b)


def _elaborated(a: Workspace) -> Workspace:
    """Alice's clone alone: FLOW-001 in elaboration with elaboration v1 (PASS) submitted."""
    _as(a, "alice", "epic", "new", "FLOW", "--title", "Flow", "--layout", "staged")
    _as(a, "alice", "story", "new", "FLOW", "--title", "story")
    path = next((a.root / "plans").rglob("story.yaml"))
    text = path.read_text(encoding="utf-8").replace("reuse_plan: ''", "reuse_plan: Reuses x.")
    path.write_text(text, encoding="utf-8")
    _as(a, "alice", "sync")
    _as(a, "alice", "story", "move", "FLOW-001", "generated")
    _as(a, "alice", "story", "move", "FLOW-001", "in-elaboration")
    _as(a, "alice", "artifact", "submit", "FLOW-001", "elaboration", str(ELABORATION))
    return a


def test_a_version_edited_before_it_was_committed_waits_until_its_clone_syncs_the_edit(
    team: tuple[Workspace, Workspace], tmp_path: Path
) -> None:
    """Alice submits v2, edits the file by hand and commits both without syncing: the file
    is not the content v2's row names, so Bob's story waits. Alice's sync submits the edit
    as v3; once that is pushed, Bob takes v3 (v2's file was overwritten, as for any
    version the next one overwrote in the staged layout)."""
    a, b = team
    _as(a, "alice", "artifact", "submit", "FLOW-001", "elaboration", str(ELABORATION))
    _commit(a.root, "alice: elaboration v1")
    _pull(b)
    _as(b, "bob", "sync")
    _resubmit(a, tmp_path, "the same verdict")
    edited = next((a.root / "plans").rglob("FLOW-001/elaboration.yaml"))
    edited.write_text(edited.read_text("utf-8").replace("narrowed", "narrowed again"), "utf-8")
    _commit(a.root, "alice: elaboration v2, edited")
    _pull(b)
    report = _as(b, "bob", "sync", "--json", status=6).json
    [problem] = report["problems"]
    assert problem["code"] == "ARTIFACT_FILE_MISSING", report
    assert "or one edited after it was submitted" in problem["message"], problem
    report = _as(a, "alice", "sync", "--json").json
    assert [(c["action"], c["story"]) for c in report["changes"]] == [("submitted", "FLOW-001")], (
        report
    )
    _commit(a.root, "alice: the edit as elaboration v3")
    _pull(b)
    report = _as(b, "bob", "sync", "--json").json
    assert report["problems"] == [], report
    listed = [x for x in _json(b, "artifact", "list", "FLOW-001") if x["kind"] == "elaboration"]
    assert [x["version"] for x in listed] == [1, 3]
    shown = _json(b, "artifact", "show", "FLOW-001", "elaboration", "--version", "3")
    assert "narrowed again" in json.dumps(shown), shown


def test_a_file_whose_line_ends_git_converted_is_still_its_version(
    team: tuple[Workspace, Workspace],
) -> None:
    """A checkout with CRLF line ends (core.autocrlf on Windows) has the same content."""
    a, b = team
    _as(a, "alice", "artifact", "submit", "FLOW-001", "elaboration", str(ELABORATION))
    _commit(a.root, "alice: elaboration v1")
    _pull(b)
    converted = next((b.root / "plans").rglob("FLOW-001/elaboration.yaml"))
    converted.write_bytes(converted.read_bytes().replace(b"\n", b"\r\n"))
    report = _as(b, "bob", "sync", "--json").json
    assert report["problems"] == [], report
    listed = _json(b, "artifact", "list", "FLOW-001")
    assert [(x["kind"], x["version"]) for x in listed] == [("elaboration", 1)]


def test_a_fresh_clone_without_an_artifact_file_reads_the_story_without_that_version(
    workspace: Workspace, clones: Clones
) -> None:
    # (not the team's clones: on PostgreSQL, Bob's database is the one fresh clones get)
    a = _elaborated(workspace)
    fresh = clones.fresh(a, "fresh")
    next((fresh.root / "plans").rglob("FLOW-001/elaboration.yaml")).unlink()
    # No other side to wait for: it warns, and reads the rest of the story.
    report = _as(fresh, "carl", "sync", "--json").json
    [warning] = report["problems"]
    assert (warning["code"], warning["level"]) == ("ARTIFACT_FILE_MISSING", "warning"), report
    assert "not registered" in warning["message"], warning
    assert warning["file"].endswith("FLOW-001/elaboration.yaml"), warning
    shown = _json(fresh, "story", "show", "FLOW-001")
    assert (shown["status"], shown["version"]) == ("in-elaboration", 4), shown
    assert [x["kind"] for x in _json(fresh, "artifact", "list", "FLOW-001")] == []


@pytest.mark.parametrize("second", SECOND_VERSIONS)
def test_a_fresh_clone_reads_a_story_whose_file_is_an_older_version_without_the_new_one(
    workspace: Workspace, clones: Clones, tmp_path: Path, second: str
) -> None:
    told = SECOND_VERSIONS[second][2]
    a = _elaborated(workspace)
    _resubmit(a, tmp_path, second)
    fresh = clones.fresh(a, "fresh")
    older = next((fresh.root / "plans").rglob("FLOW-001/elaboration.yaml"))
    older.write_text(ELABORATION.read_text(encoding="utf-8"), encoding="utf-8")  # v1's file
    report = _as(fresh, "carl", "sync", "--json").json
    [warning] = report["problems"]
    assert (warning["code"], warning["level"]) == ("ARTIFACT_FILE_MISSING", "warning"), report
    assert "elaboration v2" in warning["message"], warning
    assert told in warning["message"], warning
    assert [x["kind"] for x in _json(fresh, "artifact", "list", "FLOW-001")] == []


def test_prefer_db_keeps_this_databases_side_of_a_story_whose_artifact_file_is_missing(
    team: tuple[Workspace, Workspace],
) -> None:
    a, b = team
    _as(a, "alice", "artifact", "submit", "FLOW-001", "elaboration", str(ELABORATION))
    _as(a, "alice", "token", "log", "FLOW-001", "elaboration", "--input", "90", "--output", "31")
    forgotten = next((a.root / "plans").rglob("FLOW-001/elaboration.yaml"))
    _commit_all_but(a.root, forgotten, "alice works (without elaboration.yaml)")
    before = _view(b, "FLOW-001")
    _pull(b)
    report = _as(b, "bob", "sync", "--prefer", "db", "--json").json
    [problem] = report["problems"]
    assert (problem["code"], problem["level"]) == ("ARTIFACT_FILE_MISSING", "warning"), problem
    assert "re-rendered the story file from the database" in problem["message"], problem
    assert [c["action"] for c in report["changes"]] == ["rendered"], report
    assert _view(b, "FLOW-001") == before
    story_file = next((b.root / "plans").rglob("FLOW-001/story.yaml"))
    assert "elaboration v1 submitted" not in story_file.read_text(encoding="utf-8")
    _as(b, "bob", "check")
    assert _as(b, "bob", "sync", "--json").json["nothing_to_do"]


def test_prefer_files_does_not_rebuild_a_story_whose_artifact_file_is_missing(
    team: tuple[Workspace, Workspace],
) -> None:
    a, _ = team
    _as(a, "alice", "artifact", "submit", "FLOW-001", "elaboration", str(ELABORATION))
    story_file = next((a.root / "plans").rglob("FLOW-001/story.yaml"))
    (story_file.parent / "elaboration.yaml").unlink()
    text = story_file.read_text(encoding="utf-8")
    story_file.write_text(text.replace("agent: alice", "agent: alicia", 1), encoding="utf-8")
    before = _view(a, "FLOW-001")
    report = _as(a, "alice", "sync", "--prefer", "files", "--json", status=6).json
    [problem] = report["problems"]
    assert problem["code"] == "ARTIFACT_FILE_MISSING", problem
    assert "not rebuilt" in problem["message"] and "--prefer db" in problem["hint"], problem
    assert report["changes"] == [], report
    assert _view(a, "FLOW-001") == before  # elaboration v1 is still there


def _ledger(ws: Workspace, story_id: str) -> list[tuple[int, str | None, str | None]]:
    """The story's ledger entries as (tokens, note, run); the story file carries no run."""
    ctx = ws.ctx()
    try:
        rows = ctx.store.conn.fetchall(
            "SELECT total_tokens, note, run_id FROM workflow_token_logs WHERE story_id = :s "
            "ORDER BY id",
            {"s": story_id},
        )
        return [(int(r["total_tokens"]), r["note"], r["run_id"]) for r in rows]
    finally:
        ctx.store.conn.close()


def test_prefer_files_keeps_the_notes_and_runs_of_the_ledger_entries_the_file_keeps(
    team: tuple[Workspace, Workspace],
) -> None:
    a, b = team
    _alice_runs(a, "FLOW-001")  # its tokens are the run's
    _as(a, "alice", *LOG_TOKENS, "7", "--note", "first pass, by hand")
    _commit(a.root, "alice logs tokens by hand")
    _pull(b)
    _as(b, "bob", "sync")
    kept = _ledger(a, "FLOW-001")
    assert kept[-1] == (12, "first pass, by hand", None) and kept[0][2] is not None, kept
    path = _diverge(
        a, b, (*LOG_TOKENS, "10", "--note", "alice's"), (*LOG_TOKENS, "20", "--note", "bob's")
    )
    _git(b.root, "checkout", "--ours", str(path))
    _as(b, "bob", "sync")
    _commit(b.root, "merge: bob's side of FLOW-001")
    _git(a.root, "pull", "-q", "--no-rebase", "origin", "master")
    report = _as(a, "alice", "sync", "--prefer", "files", "--json").json
    assert [c["action"] for c in report["changes"]] == ["story_rebuilt"], report
    # Alice's own entries the file keeps keep their note and run; Bob's arrives with his
    # note (the file's notes); the one the file dropped is gone.
    assert _ledger(a, "FLOW-001") == [*kept, (25, "bob's", None)]
    _agree(a, b)


def test_a_measurements_notes_reach_the_other_clones(
    team: tuple[Workspace, Workspace], clones: Clones
) -> None:
    """The notes of actual_measurements (the seed's "Document findings") are in the story
    file: a peer's replayed entry and a fresh clone's rebuild carry them; a file rendered
    before notes were keeps the database's; a hand edit of one is reverted."""
    a, b = team
    tokens = ("token", "log", "FLOW-001", "elaboration")
    _as(a, "alice", *tokens, "--input", "900", "--output", "310", "--note", "graph analysis")
    _as(a, "alice", *tokens, "--before", "1000", "--after", "1500")
    path = next((a.root / "plans").rglob("FLOW-001/story.yaml"))
    assert "    notes: graph analysis\n" in path.read_text(encoding="utf-8")
    assert path.read_text(encoding="utf-8").count("notes:") == 1  # none without a note
    _commit(a.root, "alice logs tokens")
    _pull(b)
    assert [c["action"] for c in _as(b, "bob", "sync", "--json").json["changes"]] == [
        "log_appended"
    ]
    assert _ledger(b, "FLOW-001") == [(1210, "graph analysis", None), (500, None, None)]
    fresh = clones.fresh(a, "fresh")
    _as(fresh, "carl", "sync")
    assert _ledger(fresh, "FLOW-001") == _ledger(a, "FLOW-001")
    # A story file rendered by an earlier storyflow (no notes): clean, and rebuilt with the
    # database's notes.
    text = path.read_text(encoding="utf-8").replace("    notes: graph analysis\n", "")
    path.write_text(text, encoding="utf-8")
    _as(a, "alice", "check")
    assert _as(a, "alice", "sync", "--json").json["nothing_to_do"]
    edited = text.replace("story created (pending)", "story created (pending) by hand", 1)
    assert edited != text
    path.write_text(edited, encoding="utf-8")  # an Agent Log edit: the file's history wins
    report = _as(a, "alice", "sync", "--prefer", "files", "--json").json
    assert [c["action"] for c in report["changes"]] == ["story_rebuilt"], report
    assert _ledger(a, "FLOW-001")[0][1] == "graph analysis"
    # A note edited by hand: check names it, sync puts the database's back.
    _as(a, "alice", "story", "render", "FLOW-001")
    text = path.read_text(encoding="utf-8")
    assert "notes: graph analysis" in text
    path.write_text(text.replace("notes: graph analysis", "notes: by hand"), encoding="utf-8")
    found = _as(a, "alice", "check", "--json", status=3).json["findings"]
    assert [f["code"] for f in found] == ["CHECK_TOKEN_BUDGET_DRIFT"], found
    assert (
        "entry 1: notes ('by hand' in the file, 'graph analysis' in the database)"
        in (found[0]["message"])
    ), found
    report = _as(a, "alice", "sync", "--json").json
    assert [p["code"] for p in report["problems"]] == ["PROJECTION_EDITED"], report
    assert "notes: graph analysis" in path.read_text(encoding="utf-8")
    _as(a, "alice", "check")


def test_a_measurement_added_by_hand_behind_a_peers_rows_is_logged_not_taken_as_theirs(
    team: tuple[Workspace, Workspace],
) -> None:
    """Alice logs tokens, then adds a measurement by hand and commits without syncing. Bob's
    sync replays her row's entry as she made it and logs the added one (its own row), which
    reaches Alice's clone as Bob's row."""
    a, b = team
    _as(a, "alice", "token", "log", "FLOW-001", "elaboration", "--input", "90", "--output", "10")
    path = next((a.root / "plans").rglob("FLOW-001/story.yaml"))
    text = path.read_text(encoding="utf-8")
    added = "  - phase: elaboration\n    tokens_used: 777\n    notes: by hand\n  total_used:"
    path.write_text(text.replace("  total_used:", added, 1), encoding="utf-8")
    _commit(a.root, "alice: tokens, and a measurement by hand")
    _pull(b)
    report = _as(b, "bob", "sync", "--json").json
    assert report["problems"] == [], report
    assert [(c["action"], c.get("ledger")) for c in report["changes"]] == [
        ("log_appended", 1),
        ("tokens_logged", None),
    ], report
    assert _ledger(b, "FLOW-001") == [(100, None, None), (777, "by hand", None)]
    story_file = next((b.root / "plans").rglob("FLOW-001/story.yaml"))
    assert "agent: bob\n  action: 'tokens: elaboration +777 (measured)'" in story_file.read_text(
        encoding="utf-8"
    )
    _commit(b.root, "bob: synced")
    _git(a.root, "pull", "-q", "--no-rebase", "origin", "master")
    report = _as(a, "alice", "sync", "--json").json
    assert [c["action"] for c in report["changes"]] == ["log_appended"], report
    assert _ledger(a, "FLOW-001") == _ledger(b, "FLOW-001")
    _agree(a, b)


def test_prefer_db_on_a_diverged_log_one_row_longer_keeps_this_databases_side(
    team: tuple[Workspace, Workspace],
) -> None:
    """Alice's side has two rows past the common beginning, Bob's one: Alice's second row
    is not an extension of Bob's log, and --prefer db must not replay it."""
    a, b = team
    _as(a, "alice", *LOG_TOKENS, "10")
    path = _diverge(a, b, (*LOG_TOKENS, "11"), (*LOG_TOKENS, "20"))
    _git(b.root, "checkout", "--theirs", str(path))
    before = _view(b, "FLOW-001")
    report = _as(b, "bob", "sync", "--json", status=5).json
    [problem] = report["problems"]
    assert problem["code"] == "AGENT_LOG_EDITED" and "diverged" in problem["message"], problem
    report = _as(b, "bob", "sync", "--prefer", "db", "--json").json
    assert [c["action"] for c in report["changes"]] == ["rendered"], report
    assert _view(b, "FLOW-001") == before
    assert "+16" not in path.read_text(encoding="utf-8")  # Alice's row is gone from it
    _as(b, "bob", "check")


def test_a_merge_that_keeps_both_stage_folders_of_a_story_is_reported_with_the_way_out(
    team: tuple[Workspace, Workspace],
) -> None:
    """Alice takes FLOW-001 to ready-to-work, Bob cancels it: each clone moved its folder to
    another stage, and the merge (a rename/rename conflict) leaves both folders."""
    a, b = team
    _as(a, "alice", "artifact", "submit", "FLOW-001", "elaboration", str(ELABORATION))
    _as(a, "alice", "story", "move", "FLOW-001", "ready-to-work")
    _commit(a.root, "alice: FLOW-001 ready to work")
    _as(b, "bob", "story", "cancel", "FLOW-001", "--reason", "dropped")
    _git(b.root, "add", "-A")
    _git(b.root, "commit", "-qm", "bob: FLOW-001 cancelled")
    merged = subprocess.run(
        ["git", "pull", "-q", "--no-rebase", "origin", "master"],
        cwd=b.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert merged.returncode != 0
    plans = b.root / "plans" / "flow"
    ours, theirs = plans / "archive" / "FLOW-001", plans / "ready-to-work" / "FLOW-001"
    assert ours.is_dir() and theirs.is_dir()
    before = _view(b, "FLOW-001")
    report = _as(b, "bob", "sync", "--json", status=5).json
    [problem] = [p for p in report["problems"] if p["story"] == "FLOW-001"]
    assert problem["code"] == "DUPLICATE_ID", problem
    message, hint = problem["message"], problem["hint"]
    # What each folder holds: the story file's state, the files this database has not seen.
    assert "plans/flow/archive/FLOW-001 (story.yaml: merge-conflict markers)" in message
    assert (
        "plans/flow/ready-to-work/FLOW-001 (story.yaml: merge-conflict markers; not seen by "
        "this database: elaboration.yaml)"
    ) in message, message
    # Which folder is current, and what to do.
    assert "this database has FLOW-001 cancelled, in plans/flow/archive/FLOW-001" in hint, hint
    assert "not seen plans/flow/ready-to-work/FLOW-001/elaboration.yaml" in hint, hint
    # Both sides' story file is the conflicted one (--ours, --theirs): each is in its commit.
    alices = _git(b.root, "rev-parse", "MERGE_HEAD").strip()
    take_alices = f"git checkout {alices} -- plans/flow/ready-to-work/FLOW-001/story.yaml"
    assert "git checkout HEAD -- plans/flow/archive/FLOW-001/story.yaml" in hint, hint
    assert take_alices in hint and "git rm -r" in hint, hint
    assert "--prefer files" in hint, hint
    assert ours.is_dir() and theirs.is_dir()  # nothing deleted
    assert _view(b, "FLOW-001") == before
    # Bob takes Alice's side, as the hint says (her story file, in both folders): now the
    # story files say which folder is current, and that the other holds nothing it lacks.
    _git(b.root, *take_alices.split()[1:])
    (ours / "story.yaml").write_bytes((theirs / "story.yaml").read_bytes())
    report = _as(b, "bob", "sync", "--json", status=5).json
    [problem] = [p for p in report["problems"] if p["story"] == "FLOW-001"]
    assert problem["code"] == "DUPLICATE_ID", problem
    assert problem["hint"] == (
        "the story file says ready-to-work: plans/flow/ready-to-work/FLOW-001 is FLOW-001's "
        "folder. The other holds nothing it lacks: delete the other (git rm -r "
        "plans/flow/archive/FLOW-001), then storyflow sync"
    ), problem
    _git(b.root, "rm", "-rq", "--", str(ours))
    _git(b.root, "add", "-A")
    report = _as(b, "bob", "sync", "--json", status=5).json
    assert [p["code"] for p in report["problems"]] == ["AGENT_LOG_EDITED"], report
    report = _as(b, "bob", "sync", "--prefer", "files", "--json").json
    assert [c["action"] for c in report["changes"]] == ["story_rebuilt"], report
    _git(b.root, "commit", "-qm", "merge: alice's side of FLOW-001")
    _git(b.root, "push", "-q", "origin", "HEAD:master")
    _pull(a)
    assert _as(a, "alice", "sync", "--json").json["problems"] == []
    _agree(a, b)
