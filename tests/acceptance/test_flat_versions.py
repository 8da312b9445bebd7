"""Every version keeps a file of its own in the flat layout, whose names are stamped to the
minute: a second code review (or proof) in the same minute is ``…-HHMM-2.md``, through
``storyflow artifact submit`` and through ``storyflow run``; ``storyflow sync`` submits files
it finds in the order they were written and rebuilds every version from them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from storyflow.domain.statuses import Status
from tests.acceptance._helpers import Flow, markdown_artifact, ok, split_front_matter
from tests.run_support import configure, scenario
from tests.support import Workspace
from tests.support import code_review as review_data
from tests.sync_helpers import Clones, clones, other_database_url

__all__ = ["clones", "other_database_url"]  # fixtures

STAMPED = ("code_review", "proof")


def _fresh_minute(margin: float) -> None:
    """Wait, when the minute has less than ``margin`` seconds left, for the next one: what
    follows is stamped within one minute (every zone's offset is whole minutes)."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.1)


def _flat_story(ws: Workspace, target: Status) -> tuple[Flow, str]:
    flow = Flow(ws)
    flow.epic("REVI", "--layout", "flat", "--tz", "America/Denver")
    story = flow.story("REVI")
    flow.drive_to(story, target)
    return flow, story


def _run_one_flat_story(ws: Workspace) -> tuple[str, Path]:
    """``run --epic`` of a flat epic's one story (scenario.yaml in place), within one minute:
    the story and its folder, once it is completed."""
    configure(ws, {"scenario": "scenario.yaml"})
    flow = Flow(ws)
    flow.epic("REVI", "--layout", "flat", "--tz", "America/Denver")
    story = flow.story("REVI")
    _fresh_minute(margin=30)
    ran = ws.run("run", "--epic", "REVI", timeout=120)
    assert ran.code == 0, ran
    assert ok(ws.run("story", "show", story, "--json")).json["status"] == "completed"
    return story, flow.path(story).parent


def _versions(ws: Workspace, story: str, kind: str) -> list[dict[str, Any]]:
    listed = ok(ws.run("artifact", "list", story, "--json")).json
    return [a for a in listed if a["kind"] == kind]


def _assert_each_version_has_its_file(ws: Workspace, story: str, folder: Path, kind: str) -> None:
    versions = _versions(ws, story, kind)
    assert len({v["path"] for v in versions}) == len(versions), versions
    for v in versions:
        raw = ok(ws.run("artifact", "show", story, kind, "--version", str(v["version"]), "--raw"))
        assert (folder / v["path"]).read_text("utf-8") == raw.stdout, v


def _no_time(artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in a.items() if k != "submitted_at"} for a in artifacts]


def _assert_a_fresh_clone_rebuilds_every_version(ws: Workspace, clones: Clones, story: str) -> None:
    """The files are the record in git: a clone's database rebuilt from them lists every
    version the first database has (story snapshots live in the database only)."""
    fresh = clones.fresh(ws)
    ok(fresh.run("sync"))
    listed = ("artifact", "list", story, "--json")
    mine = [a for a in ok(ws.run(*listed)).json if a["kind"] != "story"]
    assert _no_time(ok(fresh.run(*listed)).json) == _no_time(mine)


def test_two_code_reviews_submitted_in_one_minute_keep_both_files(
    workspace: Workspace, clones: Clones
) -> None:
    flow, story = _flat_story(workspace, Status.READY_FOR_CODE_REVIEW)
    folder = flow.path(story).parent
    drafts = workspace.root / "drafts"
    drafts.mkdir()
    texts = {
        "FAIL": markdown_artifact(
            review_data("FAIL", findings=[{"severity": "high", "message": "a bug"}]),
            "Code review",
            {"Summary": "one blocking finding"},
        ),
        "PASS": markdown_artifact(review_data("PASS"), "Code review", {"Summary": "clean"}),
    }
    _fresh_minute(margin=20)
    paths = []
    for verdict, text in texts.items():
        draft = drafts / f"review-{verdict}.md"
        draft.write_text(text, "utf-8")
        done = ok(workspace.run("artifact", "submit", story, "code_review", str(draft), "--json"))
        assert (done.json["verdict"], done.json["unchanged"]) == (verdict, False)
        paths.append(done.json["path"])
    first, second = paths
    assert second == first.removesuffix(".md") + "-2.md", paths
    assert (folder / first).read_text("utf-8") == texts["FAIL"]
    assert (folder / second).read_text("utf-8") == texts["PASS"]
    shown = ok(workspace.run("artifact", "show", story, "code_review", "--version", "1", "--json"))
    assert (shown.json["path"], shown.json["verdict"]) == (first, "FAIL")
    _assert_each_version_has_its_file(workspace, story, folder, "code_review")
    # the newest file is the one a submission without PATH takes: the same file again
    again = ok(workspace.run("artifact", "submit", story, "code_review", "--json")).json
    assert (again["path"], again["version"], again["unchanged"]) == (second, 2, True)
    # the first review's text once more is a third version: a file of its own too, not the
    # first one's name (which would stand for two versions)
    third = ok(
        workspace.run(
            "artifact", "submit", story, "code_review", str(drafts / "review-FAIL.md"), "--json"
        )
    ).json
    assert (third["path"], third["version"]) == (first.removesuffix(".md") + "-3.md", 3)
    _assert_each_version_has_its_file(workspace, story, folder, "code_review")
    assert ok(workspace.run("check", "--json")).code == 0  # the -2 name is the layout's
    _assert_a_fresh_clone_rebuilds_every_version(workspace, clones, story)


def test_a_run_whose_review_fails_then_passes_in_one_minute_keeps_both_reviews(
    workspace: Workspace, clones: Clones
) -> None:
    scenario(
        workspace,
        {
            "defaults": {"delay": 0, "usage": {"input": 100, "output": 20}},
            "rules": [
                {
                    "stories": ["REVI-001"],
                    "phase": "review",
                    "iteration": 1,
                    "reviewers": {"security": "FAIL"},
                }
            ],
        },
    )
    story, folder = _run_one_flat_story(workspace)
    reviews = _versions(workspace, story, "code_review")
    assert [r["verdict"] for r in reviews] == ["FAIL", "PASS"]
    for kind in STAMPED:
        first, second = (v["path"] for v in _versions(workspace, story, kind))
        assert second == first.removesuffix(".md") + "-2.md", (kind, first, second)
        _assert_each_version_has_its_file(workspace, story, folder, kind)
    fail, _ = split_front_matter((folder / reviews[0]["path"]).read_text("utf-8"))
    assert fail["verdict"] == "FAIL"
    assert ok(workspace.run("check", "--json")).code == 0
    _assert_a_fresh_clone_rebuilds_every_version(workspace, clones, story)


def test_sync_submits_the_files_it_finds_in_the_order_they_were_written(
    workspace: Workspace, clones: Clones
) -> None:
    """Files no Agent Log row names (copied in by hand, say) are submitted oldest first, in
    the workspace and in a fresh clone alike: by the name alone "-2.md" sorts before ".md"
    and "-10" before "-9"."""
    flow, story = _flat_story(workspace, Status.READY_FOR_CODE_REVIEW)
    folder = flow.path(story).parent
    verdicts = {"": "FAIL", "-2": "FAIL", "-9": "FAIL", "-10": "PASS"}
    for serial, verdict in verdicts.items():
        findings = [{"severity": "high", "message": f"bug {serial}"}] if verdict == "FAIL" else []
        text = markdown_artifact(review_data(verdict, findings=findings), "Review", {})
        (folder / f"CODE-REVIEW-{story}-20260302-1504{serial}.md").write_text(text, "utf-8")
    fresh = clones.fresh(workspace)
    for ws in (workspace, fresh):
        ok(ws.run("sync"))
        reviews = _versions(ws, story, "code_review")
        assert [(r["version"], r["path"], r["verdict"]) for r in reviews] == [
            (n, f"CODE-REVIEW-{story}-20260302-1504{serial}.md", verdict)
            for n, (serial, verdict) in enumerate(verdicts.items(), start=1)
        ], ws.root
        latest = ok(ws.run("artifact", "show", story, "code_review", "--json")).json
        assert latest["verdict"] == "PASS"


def test_a_retried_attempt_replaces_the_failed_attempts_file(
    workspace: Workspace, clones: Clones
) -> None:
    """A failed attempt's file was never a version: the retry, in the same minute, writes
    over it rather than beside it (left beside it, check and sync would find a stray file
    they cannot read)."""
    scenario(
        workspace,
        {
            "defaults": {"delay": 0, "usage": {"input": 100, "output": 20}},
            "rules": [
                {"stories": ["REVI-001"], "phase": "implement", "attempt": 1, "fail": "garbage"}
            ],
        },
    )
    story, folder = _run_one_flat_story(workspace)
    proofs = _versions(workspace, story, "proof")
    assert len(proofs) == 1
    assert sorted(p.name for p in folder.glob("PROOF-*")) == [proofs[0]["path"]]
    _assert_each_version_has_its_file(workspace, story, folder, "proof")
    assert ok(workspace.run("check", "--json")).code == 0
    synced = ok(workspace.run("sync", "--json")).json
    assert synced["problems"] == [] and synced["changes"] == []
    _assert_a_fresh_clone_rebuilds_every_version(workspace, clones, story)
