"""storyflow plan import / export through the storyflow executable: the round trip, dry
run, a requirement that holds imported stories back, status requests, and every kind of
bad plan refused with its file, line and code, leaving the workspace as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance._helpers import error_body, human_error, ok
from tests.cli.helpers import refuse, unchanged
from tests.plan_support import FLOW_INDEX, FOLDERS, SEEDS, plan_folder, set_status
from tests.support import Workspace

FLOW = FOLDERS["FLOW"]
INDEX = f"{FLOW}/stories.index.md"


def _json(ws: Workspace, *args: str) -> Any:
    return ok(ws.run(*args, "--json")).json


def test_import_export_import_through_the_cli(workspace: Workspace) -> None:
    ws = workspace
    plan_folder(ws, "FLOW", index=FLOW_INDEX)
    report = _json(ws, "plan", "import", FLOW)
    assert report["created"] is True and report["counts"]["added"] == 20
    assert {s["name"]: s["value"] for s in report["settings"]}["coverage_threshold"] == 45.0
    board = _json(ws, "board", "--epic", "FLOW")
    exported = _json(ws, "plan", "export", "FLOW")
    assert exported == {
        "epic": "FLOW",
        "path": INDEX,
        "written": True,
        "bytes": exported["bytes"],
        "stories": 20,
    }
    first = (ws.root / INDEX).read_bytes()
    again = _json(ws, "plan", "import", FLOW)
    assert again["changed"] is False and again["warnings"] == []
    assert {s["change"] for s in again["stories"]} == {"unchanged"}
    assert _json(ws, "board", "--epic", "FLOW") == board
    human = ok(ws.run("plan", "export", "FLOW"))
    assert human.stdout.strip() == f"unchanged: {INDEX} (20 stories)"
    assert (ws.root / INDEX).read_bytes() == first
    text = ok(ws.run("plan", "import", FLOW)).stdout
    assert "0 added, 0 updated, 20 unchanged stories" in text and "nothing changed" in text


def test_the_plan_file_itself_can_be_named(workspace: Workspace) -> None:
    plan_folder(workspace, "REVI")
    result = ok(workspace.run("plan", "import", "plans/future/revi/PLAN.exec.md"))
    assert result.stdout.startswith("imported REVI from plans/future/revi (new epic): 16 added")
    shown = _json(workspace, "story", "show", "REVI-003")
    assert shown["path"] == "plans/stories/REVI-003/REVI-003.md"
    assert shown["phase"] == 1 and shown["depends_on"] == ["REVI-000"]
    assert shown["details"]["deliverable"] == "Error contracts documented in Claude workflow"


def test_dry_run_prints_the_report_and_writes_nothing(workspace: Workspace) -> None:
    plan_folder(workspace, "FLOW", index=FLOW_INDEX)
    before = workspace.snapshot()
    report = _json(workspace, "plan", "import", FLOW, "--dry-run")
    assert report["dry_run"] is True and report["counts"]["added"] == 20
    text = ok(workspace.run("plan", "import", FLOW, "--dry-run")).stdout
    assert text.startswith("would import FLOW")
    assert workspace.snapshot() == before
    assert _json(workspace, "epic", "list") == []
    assert _json(workspace, "requirement", "list") == []


def test_an_imported_story_waits_for_its_requirement(workspace: Workspace) -> None:
    ws = workspace
    plan_folder(ws, "FLOW", index=FLOW_INDEX)
    ok(ws.run("plan", "import", FLOW))
    plan_file = ws.write("inbox/plan.yaml", {"approach": "tables first", "steps": ["one"]})
    ok(ws.run("artifact", "submit", "FLOW-020", "plan", str(plan_file)))
    error = error_body(
        ws.run("story", "move", "FLOW-020", "in-progress", "--json"), 3, "GUARD_FAILED"
    )
    assert "db-schema-002" in error["message"]
    assert "FLOW-020" not in [s["id"] for s in _json(ws, "next")]
    ok(ws.run("requirement", "met", "db-schema-002"))
    assert [s["id"] for s in _json(ws, "next")][:1] == ["FLOW-020"]
    moved = _json(ws, "story", "move", "FLOW-020", "in-progress")
    assert (moved["from"], moved["to"]) == ("ready-to-work", "in-progress")


def test_an_illegal_status_request_is_reported_not_applied(workspace: Workspace) -> None:
    ws = workspace
    plan_folder(ws, "FLOW", index=FLOW_INDEX)
    ok(ws.run("plan", "import", FLOW))
    ok(ws.run("plan", "export", "FLOW"))
    index = ws.root / INDEX
    index.write_text(set_status(index.read_text(encoding="utf-8"), "FLOW-015", "uat"), "utf-8")
    report = _json(ws, "plan", "import", FLOW)
    (story,) = [s for s in report["stories"] if "move" in s]
    assert story["id"] == "FLOW-015"
    assert story["move"]["result"] == "refused"
    assert story["move"]["code"] == "TRANSITION_NOT_ALLOWED"
    (warning,) = report["warnings"]
    assert warning["file"] == INDEX and isinstance(warning["line"], int)
    assert "pending -> uat not applied" in warning["message"]
    assert _json(ws, "story", "show", "FLOW-015")["status"] == "pending"
    human = ok(ws.run("plan", "import", FLOW))
    assert f"warning: {INDEX}:{warning['line']}: FLOW-015" in human.stdout


def test_export_to_another_file(workspace: Workspace) -> None:
    plan_folder(workspace, "REVI")
    ok(workspace.run("plan", "import", "plans/future/revi"))
    result = _json(workspace, "plan", "export", "REVI", "--output", "docs/revi-index.md")
    assert result["path"] == "docs/revi-index.md" and result["written"] is True
    text = (workspace.root / "docs/revi-index.md").read_text(encoding="utf-8")
    assert text.startswith("---\ndoc_type: stories_index\n")
    (workspace.root / "adir").mkdir()
    error_body(workspace.run("plan", "export", "REVI", "--output", "adir", "--json"), 2, "USAGE")
    error_body(workspace.run("plan", "export", "NOPE", "--json"), 6, "EPIC_NOT_FOUND")


def test_export_replaces_only_the_epics_index(workspace: Workspace) -> None:
    ws = workspace
    revi = FOLDERS["REVI"]
    plan_folder(ws, "REVI")
    plan_folder(ws, "FLOW", index=FLOW_INDEX)
    ok(ws.run("plan", "import", revi))
    ok(ws.run("plan", "import", FLOW))
    (ws.root / "notes.md").write_text("# my notes, no front matter\n", encoding="utf-8")
    in_the_way = {
        f"{revi}/PLAN.exec.md": "plan_exec",  # the plan itself
        "plans/stories/REVI-003/REVI-003.md": None,  # a story file
        "notes.md": None,  # no front matter at all
        INDEX: "stories_index",  # another epic's index
    }
    for path, doc_type in in_the_way.items():
        with unchanged(ws, with_views=False):  # every file's bytes, every row
            error = refuse(
                ws, "plan", "export", "REVI", "--output", path, code="FILE_EXISTS", via="run"
            )
        assert error["details"]["file"] == path and error["details"]["doc_type"] == doc_type
        assert path in error["message"] and "--force" in error["hint"]
    # a previous export, edited by hand, is still replaced (atomically), as is the default
    exported = _json(ws, "plan", "export", "REVI", "--output", "docs/revi-index.md")
    index = ws.root / "docs/revi-index.md"
    fresh = index.read_bytes()
    index.write_text(set_status(index.read_text("utf-8"), "REVI-003", "in-progress"), "utf-8")
    again = _json(ws, "plan", "export", "REVI", "--output", "docs/revi-index.md")
    assert again == {**exported, "written": True} and index.read_bytes() == fresh
    assert _json(ws, "plan", "export", "REVI")["path"] == f"{revi}/stories.index.md"
    # --force is the way out
    forced = _json(ws, "plan", "export", "REVI", "--output", "notes.md", "--force")
    assert forced["written"] is True and (ws.root / "notes.md").read_bytes() == fresh


# ---- bad input ------------------------------------------------------------------------------


def _index(*sections: str, front: str = "doc_type: stories_index\nstory_prefix: FLOW\n") -> str:
    return f"---\n{front}---\n\n# FLOW — Stories Index\n\n" + "\n".join(sections)


def _story(story_id: str, *, depends: str = "none", status: str = "pending") -> str:
    return f"## {story_id}: Story {story_id}\n\n**Status:** {status}\n**Depends On:** {depends}\n"


def _line_of(text: str, needle: str, nth: int = 1) -> int:
    found = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return found[nth - 1]


def _plan_text() -> str:
    return (SEEDS / "FLOW.PLAN.exec.md").read_text(encoding="utf-8")


# Each case: (file it breaks, its content, the expected code, the line the error names).
Case = Callable[[], tuple[str, str | bytes, str, int | None]]


def _no_front_matter() -> tuple[str, str, str, int]:
    text = _plan_text().split("---\n", 2)[2]
    return "PLAN.exec.md", text, "FRONT_MATTER_MISSING", 1


def _plan_doc_type() -> tuple[str, str, str, int]:
    return "PLAN.exec.md", _plan_text().replace("plan_exec", "plan_meta"), "WRONG_DOC_TYPE", 2


def _index_doc_type() -> tuple[str, str, str, int]:
    text = _index(_story("FLOW-001"), front="doc_type: plan_exec\n")
    return "stories.index.md", text, "WRONG_DOC_TYPE", 2


def _index_no_front_matter() -> tuple[str, str, str, int]:
    return "stories.index.md", "# FLOW\n\n" + _story("FLOW-001"), "FRONT_MATTER_MISSING", 1


def _bad_prefix() -> tuple[str, str, str, int]:
    text = _plan_text().replace('story_prefix: "FLOW"', 'story_prefix: "flow-sync"')
    return "PLAN.exec.md", text, "INVALID_ID", _line_of(text, "story_prefix")


def _duplicate_section() -> tuple[str, str, str, int]:
    text = _index(_story("FLOW-001"), _story("FLOW-002"), _story("FLOW-001"))
    return "stories.index.md", text, "DUPLICATE_SECTION", _line_of(text, "## FLOW-001", 2)


def _duplicate_rule_section() -> tuple[str, str, str, int]:
    text = _plan_text() + "\n## Token Budget Rule\n\n- Enforcement levels: `hard_gate`\n"
    return "PLAN.exec.md", text, "DUPLICATE_SECTION", _line_of(text, "## Token Budget Rule", 2)


def _duplicate_prefix_section() -> tuple[str, str, str, int]:
    text = _plan_text().replace(
        "## Artifact Rules", "## Story Prefix\n\nAll stories use **FLOW**.\n\n## Artifact Rules", 1
    )
    return "PLAN.exec.md", text, "DUPLICATE_SECTION", _line_of(text, "## Story Prefix", 2)


def _unknown_dependency() -> tuple[str, str, str, int]:
    text = _index(_story("FLOW-001"), _story("FLOW-002", depends="FLOW-001, FLOW-099"))
    return "stories.index.md", text, "UNKNOWN_DEPENDENCY", _line_of(text, "FLOW-099")


def _cycle() -> tuple[str, str, str, int]:
    text = _index(
        _story("FLOW-001", depends="FLOW-003"),
        _story("FLOW-002", depends="FLOW-001"),
        _story("FLOW-003", depends="FLOW-002"),
    )
    return "stories.index.md", text, "DEPENDENCY_CYCLE", _line_of(text, "FLOW-003", 1)


def _not_utf8() -> tuple[str, bytes, str, int]:
    text = _index(_story("FLOW-001"), "## FLOW-002: Caf\udce9\n").encode("utf-8", "surrogateescape")
    return "stories.index.md", text, "NOT_UTF8", text.count(b"\n")


def _huge() -> tuple[str, str, str, None]:
    padding = "".join(_story(f"FLOW-{n:03d}") for n in range(1, 120))
    return "stories.index.md", _index(padding + "x" * 1_100_000), "FILE_TOO_LARGE", None


def _conflict_in_index() -> tuple[str, str, str, int]:
    text = _index(
        _story("FLOW-001"),
        "<<<<<<< HEAD\n" + _story("FLOW-002", status="wip") + "=======\n",
        _story("FLOW-002", status="done") + ">>>>>>> feature\n",
    )
    return "stories.index.md", text, "MERGE_CONFLICT", _line_of(text, "<<<<<<<")


def _malformed_yaml() -> tuple[str, str, str, int]:
    text = _index(_story("FLOW-001"), front="doc_type: stories_index\ntitle: [unclosed\n")
    return "stories.index.md", text, "INVALID_YAML", 4  # where PyYAML finds the list unclosed


def _meta_doc_type() -> tuple[str, str, str, int]:
    return "PLAN.meta.md", "---\ndoc_type: plan_exec\n---\n\n## Notes\n", "WRONG_DOC_TYPE", 2


def _other_prefix() -> tuple[str, str, str, int]:
    text = _index(_story("FLOW-001"), front="doc_type: stories_index\nstory_prefix: REVI\n")
    return "stories.index.md", text, "INVALID_ID", 3


CASES: dict[str, Case] = {
    "no front matter": _no_front_matter,
    "index without front matter": _index_no_front_matter,
    "wrong doc_type": _plan_doc_type,
    "index with wrong doc_type": _index_doc_type,
    "unknown prefix format": _bad_prefix,
    "duplicate story sections": _duplicate_section,
    "a rule section twice in the plan": _duplicate_rule_section,
    "the story prefix section twice": _duplicate_prefix_section,
    "dependency on an unknown story": _unknown_dependency,
    "dependency cycle": _cycle,
    "not UTF-8": _not_utf8,
    "huge file": _huge,
    "merge conflict in the index": _conflict_in_index,
    "malformed front matter": _malformed_yaml,
    "meta with wrong doc_type": _meta_doc_type,
    "index of another epic": _other_prefix,
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_plans_are_refused_and_nothing_is_written(workspace: Workspace, case: str) -> None:
    ws = workspace
    folder = plan_folder(ws, "FLOW")
    name, content, code, line = CASES[case]()
    target = folder / name
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    before = ws.snapshot()
    error = error_body(ws.run("plan", "import", FLOW, "--json"), 7, code)
    shown = f"{FLOW}/{name}"
    assert error["details"]["file"] == shown, error
    if line is not None:
        assert error["details"]["line"] == line, error
        assert f"{shown}:{line}" in error["message"], error
    human_error(ws.cli("plan", "import", str(folder)), 7, code)  # the same, in-process
    assert ws.snapshot() == before
    assert ok(ws.cli("epic", "list", "--json")).json == []
    assert ok(ws.cli("requirement", "list", "--json")).json == []


def test_a_duplicate_rule_section_refuses_the_reimport(workspace: Workspace) -> None:
    ws = workspace
    folder = plan_folder(ws, "REVI")
    ok(ws.run("plan", "import", FOLDERS["REVI"]))
    plan = folder / "PLAN.exec.md"
    text = plan.read_text(encoding="utf-8") + (
        "\n## Token Budget Rule\n\n- Enforcement levels: `hard_gate`\n"
    )
    plan.write_text(text, encoding="utf-8")
    first, second = (
        _line_of(text, "## Token Budget Rule"),
        _line_of(text, "## Token Budget Rule", 2),
    )
    with unchanged(ws):
        error = refuse(ws, "plan", "import", FOLDERS["REVI"], code="DUPLICATE_SECTION", via="run")
        refuse(ws, "plan", "import", str(folder), "--dry-run", code="DUPLICATE_SECTION")
    assert error["details"] == {
        "file": f"{FOLDERS['REVI']}/PLAN.exec.md",
        "line": second,
        "first_line": first,
        "section": "Token Budget Rule",
    }
    assert f"PLAN.exec.md:{second}:" in error["message"]
    assert f"line {first}" in error["message"]


def test_the_same_rule_title_under_different_headings_is_no_duplicate(
    workspace: Workspace,
) -> None:
    ws = workspace
    folder = plan_folder(ws, "REVI")
    plan = folder / "PLAN.exec.md"
    text = plan.read_text(encoding="utf-8")
    gate = "#### Reuse Gate\n\nReuse the shared packages.\n\n"
    for phase in ("### Phase 1:", "### Phase 2:"):
        start = text.index(phase)
        end = text.index("\n### ", start + 1)
        text = text[: end + 1] + gate + text[end + 1 :]
    plan.write_text(text, encoding="utf-8")
    report = _json(ws, "plan", "import", FOLDERS["REVI"])
    assert report["counts"]["added"] == 16
    assert {s["name"]: s["value"] for s in report["settings"]}["reuse_gate"] is True


def test_a_conflicted_story_file_refuses_the_reimport(workspace: Workspace) -> None:
    ws = workspace
    folder = plan_folder(ws, "FLOW", index=FLOW_INDEX)
    ok(ws.run("plan", "import", FLOW))
    story_file = folder / "ready-to-work/FLOW-005/story.yaml"
    text = story_file.read_text(encoding="utf-8")
    story_file.write_text(
        text.replace(
            "priority: P2\n", "<<<<<<< HEAD\npriority: P2\n=======\npriority: P1\n>>>>>>> b\n"
        ),
        encoding="utf-8",
    )
    index = folder / "stories.index.md"
    index.write_text(
        index.read_text(encoding="utf-8").replace("Proof persistence", "Proof store"), "utf-8"
    )
    before = ws.snapshot()
    board = _json(ws, "story", "list", "--epic", "FLOW")
    error = error_body(ws.run("plan", "import", FLOW, "--json"), 7, "MERGE_CONFLICT")
    assert error["details"]["file"] == f"{FLOW}/ready-to-work/FLOW-005/story.yaml"
    assert error["details"]["line"] == _line_of(story_file.read_text("utf-8"), "<<<<<<<")
    assert ws.snapshot() == before
    assert _json(ws, "story", "list", "--epic", "FLOW") == board


def test_a_missing_plan_and_a_plan_outside_the_workspace(
    workspace: Workspace, tmp_path: Path
) -> None:
    error_body(workspace.run("plan", "import", "plans/nowhere", "--json"), 6, "FILE_NOT_FOUND")
    (workspace.root / "plans/empty").mkdir(parents=True)
    error_body(workspace.run("plan", "import", "plans/empty", "--json"), 6, "FILE_NOT_FOUND")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "PLAN.exec.md").write_text(_plan_text(), encoding="utf-8")
    error_body(workspace.run("plan", "import", str(outside), "--json"), 7, "INVALID_INPUT")
