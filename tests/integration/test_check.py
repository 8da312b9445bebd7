"""storyflow check on a real workspace and database: every finding kind, with its file,
line and code; a workspace driven through every status checks clean; PATHS narrow it; it
reads in bulk and writes nothing."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from storyflow.domain.budgets import Enforcement
from storyflow.domain.findings import CHECK_CODES
from storyflow.domain.layouts import LayoutName
from storyflow.domain.model import AcceptancePart
from storyflow.domain.statuses import Status
from storyflow.services import epics, transitions
from storyflow.services.check import CheckReport, run_check
from storyflow.services.context import Context
from tests.support import Driver, Workspace, new_story, proof, qa_gate


@dataclass
class Plans:
    """FLOW (staged): FLOW-001 completed, FLOW-002 in-progress, FLOW-003 pending (depends on
    FLOW-002). REVI (flat, Markdown, America/Denver): REVI-001 uat, REVI-002 generated."""

    ws: Workspace
    ctx: Context
    driver: Driver

    def path(self, story_id: str) -> Path:
        story = self.ctx.story(story_id)
        return self.ctx.files.story_file(self.ctx.epic(story.epic), story)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.ws.root).as_posix()

    def check(self, paths: list[str] | None = None) -> CheckReport:
        return run_check(self.ws.ctx(), paths=paths)

    def found(self, paths: list[str] | None = None) -> list[tuple[str, str | None, int | None]]:
        return [(f.code, f.file, f.line) for f in self.check(paths).findings]


@pytest.fixture
def plans(workspace: Workspace) -> Plans:
    ctx = workspace.ctx()
    driver = Driver(workspace, ctx)
    epics.create_epic(ctx, "FLOW", title="Flow")
    epics.create_epic(ctx, "REVI", title="Revi", layout=LayoutName.FLAT, timezone="America/Denver")
    done, doing = new_story(ctx, "FLOW", title="Done"), new_story(ctx, "FLOW", title="Doing")
    new_story(ctx, "FLOW", title="Later", depends_on=[doing])
    driver.drive_to(done, Status.COMPLETED)
    driver.drive_to(doing, Status.IN_PROGRESS)
    flat = new_story(ctx, "REVI", title="Flat in UAT")
    driver.drive_to(flat, Status.UAT)
    driver.drive_to(new_story(ctx, "REVI", title="Flat generated"), Status.GENERATED)
    return Plans(workspace, ctx, driver)


def line_of(path: Path, pattern: str) -> int:
    """The 1-based number of the first line matching ``pattern``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if re.search(pattern, line):
            return number
    raise AssertionError(f"{pattern!r} not in {path}")


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def row_line(path: Path, pattern: str) -> int:
    """The line an Agent Log row starts on: the table row (Markdown) or the ``- `` of the
    list item (YAML) that contains ``pattern``."""
    number = line_of(path, pattern)
    if path.suffix == ".md":
        return number
    lines = path.read_text(encoding="utf-8").splitlines()
    while not lines[number - 1].startswith("- "):
        number -= 1
    return number


def drop_row(path: Path, pattern: str) -> None:
    """Delete the Agent Log row that contains ``pattern`` (all its lines, in YAML)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = row_line(path, pattern) - 1
    end = start + 1
    if path.suffix != ".md":
        while end < len(lines) and lines[end].startswith("  "):
            end += 1
    path.write_text("".join(lines[:start] + lines[end:]), encoding="utf-8")


# ---- clean ----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [LayoutName.STAGED, LayoutName.FLAT])
def test_stories_driven_through_every_status_check_clean(
    workspace: Workspace, layout: LayoutName
) -> None:
    ctx = workspace.ctx()
    epics.create_epic(ctx, "EPIC", title="Every status", layout=layout)
    driver = Driver(workspace, ctx)
    for status in Status:
        driver.drive_to(new_story(ctx, "EPIC", title=status.value), status)
    report = run_check(workspace.ctx())
    assert report.findings == []
    assert report.clean and report.database == "checked"
    assert report.stories == len(Status) + 2  # the split children
    assert report.to_json()["summary"]["findings"] == 0


def test_the_fixture_checks_clean_and_check_writes_nothing(plans: Plans) -> None:
    before = plans.ws.snapshot()
    history = plans.ctx.store.history("FLOW-002")
    report = plans.check()
    assert report.findings == [], report.findings
    assert report.stories == 5 and report.files > 5
    assert plans.ws.snapshot() == before
    assert plans.ctx.store.history("FLOW-002") == history


# ---- front matter against the database ------------------------------------------------------


def test_a_hand_edited_status_is_drift_at_its_line(plans: Plans) -> None:
    path = plans.path("FLOW-002")
    edit(path, "status: in-progress", "status: completed")
    [finding] = plans.check().findings
    assert (finding.code, finding.file, finding.line) == (
        "CHECK_STATUS_DRIFT",
        plans.rel(path),
        line_of(path, r"^status:"),
    )
    assert finding.story == "FLOW-002"
    assert "completed in the file, in-progress in the database" in finding.message
    assert "storyflow story move" in finding.hint


def test_a_legacy_spelling_of_the_same_status_is_not_drift(plans: Plans) -> None:
    edit(plans.path("FLOW-002"), "status: in-progress", "status: wip")
    assert plans.found() == []


def test_edited_metadata_fields_are_drift(plans: Plans) -> None:
    path = plans.path("FLOW-003")
    edit(path, "title: Later", "title: Sooner")
    edit(path, "priority: P2", "priority: P0")
    edit(path, "- FLOW-002", "- FLOW-001")
    found = {(f.code, f.line, f.message.split(" ")[0]) for f in plans.check().findings}
    assert found == {
        ("CHECK_FIELD_DRIFT", line_of(path, r"^title:"), "title"),
        ("CHECK_FIELD_DRIFT", line_of(path, r"^priority:"), "priority"),
        ("CHECK_FIELD_DRIFT", line_of(path, r"^depends_on:"), "depends_on"),
    }


# ---- the Agent Log ---------------------------------------------------------------------------


@pytest.mark.parametrize("story_id", ["FLOW-002", "REVI-001"], ids=["yaml", "markdown"])
def test_a_deleted_agent_log_row_is_caught_where_it_was(plans: Plans, story_id: str) -> None:
    path = plans.path(story_id)
    drop_row(path, r"plan v1 submitted")
    [finding] = plans.check().findings
    assert finding.code == "CHECK_AGENT_LOG_REMOVED"
    assert finding.file == plans.rel(path)
    # reported at the row that now follows the gap
    assert finding.line == row_line(path, r"ready-to-work -> in-progress")
    assert "were removed here" in finding.message


def test_rows_missing_at_the_end_are_restored_by_render(plans: Plans) -> None:
    path = plans.path("REVI-001")
    drop_row(path, r"in-qa -> uat")
    [finding] = plans.check().findings
    assert finding.code == "CHECK_AGENT_LOG_REMOVED"
    assert "missing at the end" in finding.message
    assert finding.hint == "storyflow story render REVI-001 appends them"
    assert plans.ws.cli("story", "render", "REVI-001").code == 0
    assert plans.found() == []


@pytest.mark.parametrize("story_id", ["FLOW-002", "REVI-001"], ids=["yaml", "markdown"])
def test_an_edited_agent_log_row_is_caught_at_its_line(plans: Plans, story_id: str) -> None:
    path = plans.path(story_id)
    edit(path, "plan v1 submitted", "plan v1 submitted and approved by everyone")
    [finding] = plans.check().findings
    assert (finding.code, finding.file, finding.line) == (
        "CHECK_AGENT_LOG_EDITED",
        plans.rel(path),
        row_line(path, r"plan v1 submitted and approved"),
    )
    # what the database recorded: the row as the engine wrote it, with the file's hash
    assert re.search(r"\| plan v1 submitted \(sha256 [0-9a-f]{12}\) \|", finding.message)


def test_a_row_added_by_hand_is_unrecorded(plans: Plans) -> None:
    path = plans.path("REVI-002")
    text = path.read_text(encoding="utf-8").rstrip("\n")
    path.write_text(text + "\n| 2030-01-01T00:00:00Z | me | hand-written | - |\n", "utf-8")
    [finding] = plans.check().findings
    assert (finding.code, finding.line) == (
        "CHECK_AGENT_LOG_UNRECORDED",
        line_of(path, "hand-written"),
    )


def test_a_row_changed_in_the_database_breaks_the_hash_chain(plans: Plans) -> None:
    store = plans.ctx.store
    with store.transaction():
        store.conn.execute(
            "UPDATE agent_log SET action = :action WHERE story_id = :id AND seq = 2",
            {"action": "rewritten history", "id": "FLOW-002"},
        )
    found = {(f.code, f.story, f.line) for f in plans.check().findings}
    # The file keeps the original row, which now differs from the database's; and the
    # database's own hash chain says the row was changed there.
    path = plans.path("FLOW-002")
    assert found == {
        ("CHECK_AGENT_LOG_CHAIN", "FLOW-002", None),
        ("CHECK_AGENT_LOG_EDITED", "FLOW-002", row_line(path, "pending -> generated")),
    }
    chain = next(f for f in plans.check().findings if f.code == "CHECK_AGENT_LOG_CHAIN")
    assert "row 2 of FLOW-002 does not match its hash chain" in chain.message


# ---- tokens -----------------------------------------------------------------------------------


def test_a_completed_story_without_tokens_for_a_phase_it_ran(plans: Plans) -> None:
    ctx, driver = plans.ctx, plans.driver
    story = new_story(ctx, "FLOW", title="Forced")
    driver.drive_to(story, Status.UAT)
    driver.submit(story, "qa_gate", qa_gate("PASS"))
    driver.tokens(story, "story_generation", "elaboration")
    transitions.move(ctx, story, "completed", force=True, reason="deadline")
    path = plans.path(story)
    [finding] = plans.check().findings
    assert (finding.code, finding.file, finding.line) == (
        "CHECK_TOKENS_MISSING",
        plans.rel(path),
        line_of(path, r"^token_budget:"),
    )
    assert "code_review, implementation, qa_verification" in finding.message
    assert finding.hint.startswith(f"storyflow token log {story} code_review")
    driver.tokens(story, "implementation", "code_review", "qa_verification")
    assert plans.found() == []


def _set_acceptance(ctx: Context, *parts: AcceptancePart) -> None:
    """As a plan import whose acceptance section names ``parts`` sets it."""
    epic = ctx.epic("FLOW")
    with ctx.store.transaction():
        ctx.store.update_epic(
            replace(
                epic,
                settings=replace(epic.settings, acceptance=parts),
                version=epic.version + 1,
            ),
            epic.version,
        )


def test_tokens_are_not_asked_of_an_epic_whose_acceptance_rule_leaves_them_out(
    plans: Plans,
) -> None:
    """The FLOW seed's acceptance rule names reuse only: the engine completes its stories
    without tokens, and check (the pre-commit hook, CI) must not refuse what it allowed."""
    ctx, driver = plans.ctx, plans.driver
    _set_acceptance(ctx, AcceptancePart.REUSE)
    story = new_story(ctx, "FLOW", title="Reuse only")
    driver.drive_to(story, Status.UAT)
    driver.submit(story, "qa_gate", qa_gate("PASS"))
    transitions.move(ctx, story, "completed")  # no tokens: the rule does not ask for them
    assert plans.found() == []
    _set_acceptance(ctx, AcceptancePart.REUSE, AcceptancePart.TOKENS)
    assert [f.code for f in plans.check().findings] == ["CHECK_TOKENS_MISSING"]


@pytest.mark.parametrize("story_id", ["FLOW-001", "REVI-001"])  # YAML and Markdown files
def test_a_hand_edited_token_budget_is_drift_until_rendered(plans: Plans, story_id: str) -> None:
    path = plans.path(story_id)
    total = re.search(r"total_used: (\d+)", path.read_text(encoding="utf-8"))
    assert total is not None
    edit(path, total.group(0), f"total_used: {int(total.group(1)) + 1}")
    [finding] = plans.check().findings
    assert (finding.code, finding.file) == ("CHECK_TOKEN_BUDGET_DRIFT", plans.rel(path))
    assert f"total_used ({int(total.group(1)) + 1} in the file, {total.group(1)} in" in (
        finding.message
    )
    assert finding.line == line_of(path, r"^token_budget:|^## Token Budget")
    assert finding.hint.startswith(f"storyflow story render {story_id}")
    plans.ws.cli("story", "render", story_id)
    assert plans.found() == []
    added = re.search(r"^( *)total_used: ", path.read_text(encoding="utf-8"), re.M)
    assert added is not None
    edit(path, added.group(0), f"{added.group(1)}note: mine\n{added.group(0)}")
    [finding] = plans.check().findings
    assert finding.code == "CHECK_TOKEN_BUDGET_DRIFT"
    assert "note (not written by storyflow)" in finding.message


def test_an_epic_update_re_renders_its_stories_token_budgets(plans: Plans) -> None:
    """The section follows the epic's enforcement and budgets: changing them re-renders
    every story file of the epic, so nothing is left stale (and check stays clean)."""
    epics.update_epic(plans.ctx, "FLOW", enforcement=Enforcement.WARNING)
    for story_id in ("FLOW-001", "FLOW-002", "FLOW-003"):
        assert "enforcement: warning" in plans.path(story_id).read_text(encoding="utf-8")
    assert "enforcement: advisory" in plans.path("REVI-001").read_text(encoding="utf-8")
    assert plans.found() == []


# ---- names, places, folders -------------------------------------------------------------------


def test_misnamed_and_legacy_artifact_files(plans: Plans) -> None:
    staged = plans.path("FLOW-002").parent
    flat = plans.path("REVI-001").parent
    (staged / "proof-final.yaml").write_text(yaml.safe_dump(proof()), "utf-8")
    (staged / "REVIEW.yaml").write_text(
        yaml.safe_dump({"verdict": "PASS", "coverage": 90}), "utf-8"
    )
    (flat / "ELAB-REVI-002-20260101-1200.md").write_text("---\nverdict: PASS\n---\n", "utf-8")
    found = {(f.code, f.file) for f in plans.check().findings}
    assert found == {
        ("CHECK_NAMING", plans.rel(staged / "proof-final.yaml")),
        ("CHECK_LEGACY_NAME", plans.rel(staged / "REVIEW.yaml")),
        ("CHECK_NAMING", plans.rel(flat / "ELAB-REVI-002-20260101-1200.md")),
    }
    legacy = next(f for f in plans.check().findings if f.code == "CHECK_LEGACY_NAME")
    assert "code_review" in legacy.message and "artifact submit FLOW-002" in legacy.hint


def test_loose_story_files_outside_story_folders(plans: Plans) -> None:
    root = plans.ws.root
    loose = ["plans/REVI-099.md", "plans/stories/REVI-001.md", "plans/flow/backlog/story.yaml"]
    for rel in loose:
        (root / rel).write_text("---\nid: x\n---\n", "utf-8")
    # plan files are not story files
    for rel in ("plans/PLAN.exec.md", "plans/stories/stories.index.md", "plans/README.md"):
        (root / rel).write_text("# plan\n", "utf-8")
    found = [(f.code, f.file) for f in plans.check().findings]
    assert sorted(found) == sorted(("CHECK_LOOSE_FILE", rel) for rel in loose)


def test_a_staged_folder_in_the_wrong_stage_and_render_moves_it_back(plans: Plans) -> None:
    folder = plans.path("FLOW-002").parent
    wrong = folder.parent.parent / "done" / folder.name
    shutil.move(folder, wrong)
    [finding] = plans.check().findings
    assert (finding.code, finding.file) == ("CHECK_STAGE_FOLDER", plans.rel(wrong))
    assert "in-progress (stage in-progress/) but its folder is in done/" in finding.message
    assert plans.ws.cli("story", "render", "FLOW-002").code == 0
    assert plans.found() == []


def test_two_folders_for_one_id(plans: Plans) -> None:
    folder = plans.path("FLOW-003").parent
    copy = folder.parent.parent / "archive" / folder.name
    shutil.copytree(folder, copy)
    found = plans.found()
    assert ("CHECK_DUPLICATE_ID", plans.rel(copy), None) in found
    duplicate = next(f for f in plans.check().findings if f.code == "CHECK_DUPLICATE_ID")
    assert plans.rel(folder) in duplicate.message and plans.rel(copy) in duplicate.message
    # the copy is in the wrong stage too; the original (where the story belongs) is fine
    assert {c for c, file, _ in found if file and file.startswith(plans.rel(folder))} == set()


def test_folders_the_database_does_not_know_and_misnamed_folders(plans: Plans) -> None:
    root = plans.ws.root
    for rel in ("plans/flow/backlog/FLOW-050", "plans/stories/ZED-001", "plans/stories/REVI-7"):
        (root / rel).mkdir()
    (root / "plans/stories/REVI-099").mkdir()
    (root / "plans/flow/REVI-098").mkdir()
    found = {(f.code, f.file) for f in plans.check().findings}
    assert {
        ("CHECK_UNTRACKED_STORY", "plans/flow/backlog/FLOW-050"),
        ("CHECK_UNTRACKED_STORY", "plans/stories/ZED-001"),
        ("CHECK_UNTRACKED_STORY", "plans/stories/REVI-099"),
        ("CHECK_NAMING", "plans/stories/REVI-7"),
        ("CHECK_MISPLACED_FOLDER", "plans/flow/REVI-098"),
        ("CHECK_MISSING_STORY_FILE", "plans/flow/backlog/FLOW-050/story.yaml"),
    } <= found


def test_a_story_whose_folder_is_gone(plans: Plans) -> None:
    path = plans.path("FLOW-003")
    shutil.rmtree(path.parent)
    [finding] = plans.check().findings
    assert (finding.code, finding.file) == ("CHECK_MISSING_STORY_FILE", plans.rel(path))
    assert finding.hint == "storyflow story render FLOW-003 writes it again"


# ---- schemas and evidence ---------------------------------------------------------------------


def test_a_schema_invalid_artifact_at_its_line(plans: Plans) -> None:
    path = plans.path("FLOW-001").parent / "proof.yaml"
    edit(path, "lint: pass", "lint: mostly")
    [finding] = plans.check().findings
    assert (finding.code, finding.file, finding.line) == (
        "CHECK_SCHEMA",
        plans.rel(path),
        line_of(path, r"^checks:"),
    )
    assert "checks.lint" in finding.message


def test_an_artifact_that_contradicts_its_evidence(plans: Plans) -> None:
    path = plans.path("FLOW-001").parent / "qa-gate.yaml"
    path.write_text(
        yaml.safe_dump(qa_gate("PASS", checks=[{"name": "tests", "status": "fail"}])), "utf-8"
    )
    [finding] = plans.check().findings
    assert (finding.code, finding.line) == (
        "CHECK_GATE_CONTRADICTION",
        line_of(path, r"^decision:"),
    )
    assert "disagrees with its evidence" in finding.message


def test_unreadable_artifacts_and_another_storys_artifact(plans: Plans) -> None:
    folder = plans.path("FLOW-002").parent
    (folder / "plan.yaml").write_text("approach: a\nsteps: [one\n", "utf-8")
    (folder / "code-review.yaml").write_bytes(b"verdict: PASS\nsummary: \xff\xfe\n")
    proof_path = folder / "proof.yaml"
    proof_path.write_text(yaml.safe_dump({**proof(), "story_id": "FLOW-001"}), "utf-8")
    found = {(f.code, f.file, f.line) for f in plans.check().findings}
    assert found == {
        ("CHECK_UNREADABLE", plans.rel(folder / "plan.yaml"), 3),
        ("CHECK_UNREADABLE", plans.rel(folder / "code-review.yaml"), 2),
        ("CHECK_ARTIFACT_STORY_MISMATCH", plans.rel(proof_path), line_of(proof_path, "story_id")),
    }


def test_merge_conflicts_and_story_files_that_cannot_be_read(plans: Plans) -> None:
    conflicted = plans.path("REVI-001")
    text = conflicted.read_text(encoding="utf-8")
    head, rule, rows = text.rpartition("|---|---|---|---|\n")
    ours = "| 2030-01-01T00:00:00Z | ana | ours | - |\n"
    theirs = "| 2030-01-01T00:00:00Z | bo | theirs | - |\n"
    conflicted.write_text(
        f"{head}{rule}{rows}<<<<<<< HEAD\n{ours}=======\n{theirs}>>>>>>> branch\n", "utf-8"
    )
    binary = plans.path("FLOW-003")
    data = binary.read_bytes()
    binary.write_bytes(data.replace(b"title: Later", b"title: L\xe4ter"))
    title_line = data[: data.index(b"title: Later")].count(b"\n") + 1
    config = plans.ws.root / "storyflow.yaml"
    config.write_text(
        config.read_text("utf-8").replace("max_file_bytes: 1048576", "max_file_bytes: 20000"),
        "utf-8",
    )
    big = plans.path("FLOW-001").parent / "verification.yaml"
    big.write_text(big.read_text("utf-8") + "# padding\n" * 3000, "utf-8")
    found = {(f.code, f.file, f.line) for f in plans.check().findings}
    assert found == {
        ("CHECK_MERGE_CONFLICT", plans.rel(conflicted), line_of(conflicted, "^<<<<<<<")),
        ("CHECK_UNREADABLE", plans.rel(binary), title_line),
        ("CHECK_UNREADABLE", plans.rel(big), None),
    }


def test_the_story_file_schema_applies_once_the_story_was_elaborated(plans: Plans) -> None:
    # REVI-002 is generated: its Reuse Plan is still the placeholder (a draft), and fine.
    assert "## Reuse Plan\n\n<!--" in plans.path("REVI-002").read_text(encoding="utf-8")
    assert plans.found() == []
    # FLOW-002 has been elaborated: an empty Reuse Plan breaks the story schema.
    path = plans.path("FLOW-002")
    edit(path, "reuse_plan: Reuses @repo/shared.", "reuse_plan: ''")
    [finding] = plans.check().findings
    assert (finding.code, finding.line) == ("CHECK_SCHEMA", line_of(path, r"^reuse_plan:"))
    assert "reuse_plan" in finding.message


# ---- dependencies --------------------------------------------------------------------------


def test_dependency_cycles_in_the_files_and_in_the_database(plans: Plans) -> None:
    path = plans.path("FLOW-002")
    edit(path, "depends_on: []", "depends_on:\n- FLOW-003")
    codes = [(f.code, f.file, f.line) for f in plans.check().findings]
    assert ("CHECK_DEPENDENCY_CYCLE", plans.rel(path), line_of(path, "^depends_on:")) in codes
    cycle = next(f for f in plans.check().findings if f.code == "CHECK_DEPENDENCY_CYCLE")
    assert cycle.message == "dependency cycle in the story files: FLOW-002 -> FLOW-003 -> FLOW-002"
    # The same cycle in the database (written around the engine) is reported once.
    store = plans.ctx.store
    with store.transaction():
        store.conn.execute(
            "INSERT INTO story_dependencies (story_id, depends_on) VALUES ('FLOW-002', 'FLOW-003')"
        )
    cycles = [f for f in plans.check().findings if f.code == "CHECK_DEPENDENCY_CYCLE"]
    assert [c.message for c in cycles] == [
        "dependency cycle in the database: FLOW-002 -> FLOW-003 -> FLOW-002"
    ]


def test_an_unknown_dependency_in_a_story_file(plans: Plans) -> None:
    path = plans.path("REVI-002")
    edit(path, "depends_on: []", "depends_on:\n- REVI-404")
    found = {(f.code, f.line) for f in plans.check().findings}
    line = line_of(path, "^depends_on:")
    assert found == {("CHECK_UNKNOWN_DEPENDENCY", line), ("CHECK_FIELD_DRIFT", line)}


# ---- docs -------------------------------------------------------------------------------------


def test_broken_links_in_the_docs(plans: Plans) -> None:
    ws = plans.ws
    ws.write("docs/guide.md", "# Guide\n\n## Set up\n\nText.\n")
    ws.write(
        "README.md",
        "# Project\n\n"
        "Read [the guide](docs/guide.md), [set up](docs/guide.md#set-up) and "
        "[above](#project).\n"
        "Broken: [gone](docs/gone.md) and [no anchor](docs/guide.md#tear-down).\n\n"
        "```\n[in a fence](nowhere.md)\n```\n\n"
        "`[in code](nowhere.md)` and [web](https://example.com/x.md)\n",
    )
    ws.write("docs/sub/deep.md", "# Deep\n\n[up](../guide.md) [bad](../../missing/file.md)\n")
    found = sorted((f.file, f.line, f.message) for f in plans.check().findings)
    assert found == [
        ("README.md", 4, "link to docs/gone.md: docs/gone.md does not exist"),
        (
            "README.md",
            4,
            "link to docs/guide.md#tear-down: docs/guide.md has no heading or anchor #tear-down",
        ),
        ("docs/sub/deep.md", 3, "link to ../../missing/file.md: missing/file.md does not exist"),
    ]
    assert {f.code for f in plans.check().findings} == {"CHECK_BROKEN_LINK"}


def test_stale_generated_docs(plans: Plans) -> None:
    ws = plans.ws
    assert ws.cli("check").code == 0  # no generated docs kept: nothing to be stale
    assert ws.cli("docs").code == 0
    assert (ws.root / "docs/reference/statuses.md").is_file()
    assert ws.cli("check").code == 0
    edit(ws.root / "docs/reference/errors.md", "| `USAGE` | 2 |", "| `USAGE` | 9 |")
    marker = (ws.root / "docs/reference/guards.md").read_text(encoding="utf-8").split("\n")[2]
    ws.write("docs/reference/retired.md", f"# Retired\n\n{marker}\n")
    ws.write("docs/reference/notes.md", "# Our own notes\n")  # not generated: left alone
    result = ws.cli("check", "--json")
    assert result.code == 3, result
    found = [(f["code"], f["file"], f["message"]) for f in result.json["findings"]]
    assert found == [
        ("CHECK_DOCS_STALE", "docs/reference/errors.md", "docs/reference/errors.md: out of date"),
        (
            "CHECK_DOCS_STALE",
            "docs/reference/retired.md",
            "docs/reference/retired.md: no longer generated",
        ),
    ]
    (ws.root / "docs/reference/statuses.md").unlink()
    missing = ws.cli("check", "--json").json["findings"]
    assert ("CHECK_DOCS_STALE", "docs/reference/statuses.md") in {
        (f["code"], f["file"]) for f in missing
    }
    assert ws.cli("docs").code == 0
    assert ws.cli("check").code == 0
    assert (ws.root / "docs/reference/notes.md").is_file()


# ---- scope, bulk reads, an empty database ---------------------------------------------------


def test_paths_limit_the_check_to_what_they_concern(plans: Plans) -> None:
    flow = plans.path("FLOW-002")
    revi = plans.path("REVI-001")
    edit(flow, "status: in-progress", "status: uat")
    edit(revi, "status: uat", "status: completed")
    plans.ws.write("plans/REVI-099.md", "# loose\n")
    assert {f.story for f in plans.check().findings} == {"FLOW-002", "REVI-001", "REVI-099"}
    report = plans.check([plans.rel(flow)])
    assert [(f.code, f.story) for f in report.findings] == [("CHECK_STATUS_DRIFT", "FLOW-002")]
    assert report.stories == 1
    # a deleted file still names its story's folder; a loose file is checked as itself
    assert [f.story for f in plans.check([plans.rel(revi.parent) + "/gone.md"]).findings] == [
        "REVI-001"
    ]
    assert [f.code for f in plans.check(["plans/REVI-099.md"]).findings] == ["CHECK_LOOSE_FILE"]
    assert plans.check(["src/app.py"]).findings == []


def test_the_database_is_read_with_a_fixed_number_of_queries(plans: Plans) -> None:
    def queries(extra: int) -> int:
        for index in range(extra):
            plans.driver.drive_to(
                new_story(plans.ctx, "FLOW", title=f"More {index}"), Status.IN_PROGRESS
            )
        ctx = plans.ws.ctx()
        inner = ctx.store.conn
        count = 0
        original = inner.fetchall

        def counting(sql: str, params: Any = None) -> Any:
            nonlocal count
            count += 1
            return original(sql, params)

        inner.fetchall = counting
        assert run_check(ctx).clean
        return count

    assert queries(0) == queries(6)


def test_with_an_empty_database_the_files_are_checked_on_their_own(
    plans: Plans, tmp_path: Path, database_url: str | None
) -> None:
    clone = Workspace.create(tmp_path / "clone", None)  # a fresh clone: a new SQLite database
    try:
        shutil.copytree(plans.ws.root / "plans", clone.root / "plans")
        report = run_check(clone.ctx())
        assert (report.database, report.findings, report.stories) == ("empty", [], 5)
        path = clone.root / "plans/flow/in-progress/FLOW-002/story.yaml"
        edit(path, "status: in-progress", "status: completed")
        edit(path.parent / "plan.yaml", "approach:", "approach_renamed:")
        found = {(f.code, f.file) for f in run_check(clone.ctx()).findings}
        assert found == {
            ("CHECK_STAGE_FOLDER", "plans/flow/in-progress/FLOW-002"),
            ("CHECK_SCHEMA", "plans/flow/in-progress/FLOW-002/plan.yaml"),
        }
    finally:
        clone.close()


def test_every_finding_code_is_declared_with_a_summary_and_a_hint() -> None:
    for code, declared in CHECK_CODES.items():
        assert code.startswith("CHECK_") and declared.summary and declared.hint


def test_a_story_moved_between_the_database_read_and_the_file_read_is_not_reported(
    plans: Plans, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process moves FLOW-002 right after check read the database: its file is
    ahead of what check read (status, a new Agent Log row). The second pass reads both
    again and agrees, so nothing is reported; a hand edit stays reported, once."""
    from storyflow.adapters.db.store import Store

    real = Store.audit_rows
    calls: list[int] = []

    def read_then_move(self: Store) -> Any:
        rows = real(self)
        calls.append(1)
        if len(calls) == 1:
            transitions.move(plans.ws.ctx("worker"), "FLOW-002", "blocked", reason="API down")
        return rows

    monkeypatch.setattr(Store, "audit_rows", read_then_move)
    report = plans.check()
    assert len(calls) == 2 and report.findings == [], report.findings
    assert plans.ctx.story("FLOW-002").status is Status.BLOCKED

    edit(plans.path("FLOW-003"), "title: Later", "title: Later, renamed")
    assert [f.code for f in plans.check().findings] == ["CHECK_FIELD_DRIFT"]
    assert len(calls) == 4  # findings: checked twice
