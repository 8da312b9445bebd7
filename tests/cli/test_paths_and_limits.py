"""Paths and limits a user can get wrong, through the storyflow executable (subprocesses):
check given the workspace root, docs and plan export over files storyflow did not write or
that are not regular files, story numbers past six digits, epic roots that would break the
workspace, an unusable git hooks folder, and coverage thresholds out of range. Each refusal
has its code, exit status and hint, and leaves files and database as they were."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from storyflow.domain.statuses import Status
from storyflow.services import docs as docs_service
from tests.cli.conftest import Seeded
from tests.cli.helpers import no_traceback, refuse, refuse_with, run_in, unchanged
from tests.support import Result, Workspace, new_story


def listing(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


def _drift_flow_001(seeded: Seeded) -> str:
    """A hand-edited status in FLOW-001's story file: a finding for check."""
    path = seeded.ws.root / seeded.story_file("FLOW-001")
    text = path.read_text(encoding="utf-8")
    assert "status: in-elaboration" in text
    path.write_text(text.replace("status: in-elaboration", "status: flying", 1), "utf-8")
    return seeded.story_file("FLOW-001")


# ---- check PATHS ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", [".", "./", "root", "parent", "sub/.."])
def test_check_given_the_workspace_root_checks_everything(seeded: Seeded, how: str) -> None:
    ws = seeded.ws
    story_file = _drift_flow_001(seeded)
    (ws.root / "sub").mkdir()
    arg = {"root": str(ws.root), "parent": str(ws.root.parent)}.get(how, how)
    whole = ws.run("check", "--json")
    assert whole.code == 3, whole
    given = ws.run("check", "--json", arg)
    assert given.code == 3, given
    assert given.json["findings"] == whole.json["findings"]
    assert story_file in {f["file"] for f in given.json["findings"]}
    assert given.json["summary"]["paths"] is None  # the whole workspace
    human = ws.run("check", arg)
    assert human.code == 3, human
    assert human.stdout.splitlines()[-1].startswith("storyflow check: ")
    assert "finding(s) (" in human.stdout.splitlines()[-1]


def test_check_from_a_subfolder_given_dot_dot(seeded: Seeded) -> None:
    ws = seeded.ws
    _drift_flow_001(seeded)
    result = run_in(ws.root / "plans", "check", "..", env=ws.env)
    assert result.code == 3, result


def test_a_pre_commit_hook_passing_dot_fails_on_findings(seeded: Seeded) -> None:
    """What a hook or CI step that passes ``.`` runs: the exit status must fail the step."""
    ws = seeded.ws
    _drift_flow_001(seeded)
    done = subprocess.run(
        [sys.executable, "-m", "storyflow", "check", "."],
        cwd=ws.root,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done


def test_check_of_paths_that_name_nothing_says_so(seeded: Seeded) -> None:
    ws = seeded.ws
    _drift_flow_001(seeded)
    result = ws.run("check", "src/app.py", "/elsewhere")
    assert result.code == 0, result  # a hook's commit that touches no plan file passes
    out = result.stdout
    assert "note: ignored, outside the workspace: /elsewhere" in out
    assert "PATHS name no story folder or file storyflow checks" in out
    assert out.splitlines()[-1] == "storyflow check: clean of 2 paths (0 story folders, 0 files)"
    body = ws.run("check", "--json", "/elsewhere")
    assert body.json["summary"]["paths"] == []
    assert body.json["summary"]["ignored"] == ["/elsewhere"]


def test_check_of_one_story_names_its_scope(seeded: Seeded) -> None:
    ws = seeded.ws
    story_file = _drift_flow_001(seeded)
    result = ws.run("check", story_file)
    assert result.code == 3, result
    assert result.stdout.splitlines()[-1].startswith(
        "storyflow check: 2 finding(s) of 1 path (1 story folder, "
    )


# ---- docs --output over files storyflow did not write --------------------------------------


def test_docs_refuses_to_replace_a_file_it_did_not_write(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "errors.md").write_text("my notes\n", encoding="utf-8")

    def call(*argv: str) -> Result:
        return run_in(tmp_path, *argv)

    error = refuse_with(call, "docs", "--output", "d", code="FILE_EXISTS")
    assert error["details"]["files"] == ["d/errors.md"]
    assert "--force" in error["hint"]
    assert listing(folder) == ["errors.md"]  # nothing written
    assert (folder / "errors.md").read_text(encoding="utf-8") == "my notes\n"

    check = run_in(tmp_path, "docs", "--output", "d", "--check", "--json")
    assert check.code == 3, check
    reasons = {d["path"]: d["reason"] for d in check.json["stale"]}
    assert reasons["errors.md"] == docs_service.NOT_GENERATED
    assert reasons["cli.md"] == "missing"

    forced = run_in(tmp_path, "docs", "--output", "d", "--force")
    assert forced.code == 0, forced
    assert docs_service.MARKER in (folder / "errors.md").read_text(encoding="utf-8")
    assert run_in(tmp_path, "docs", "--output", "d", "--check").code == 0


def test_docs_leaves_other_files_in_the_folder_alone(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "notes.md").write_text("mine\n", encoding="utf-8")
    assert run_in(tmp_path, "docs", "--output", "d").code == 0
    assert (folder / "notes.md").read_text(encoding="utf-8") == "mine\n"


@needs_fifo
def test_docs_refuses_a_fifo_in_its_place_even_with_force(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    os.mkfifo(folder / "cli.md")

    def call(*argv: str) -> Result:
        return run_in(tmp_path, *argv, timeout=30)

    for force in ((), ("--force",)):
        error = refuse_with(call, "docs", "--output", "d", *force, code="INVALID_INPUT")
        assert "d/cli.md" in error["message"]
        assert listing(folder) == ["cli.md"]
    assert (folder / "cli.md").is_fifo()
    check = run_in(tmp_path, "docs", "--output", "d", "--check", "--json", timeout=30)
    assert check.code == 3, check  # read without blocking on the FIFO


@needs_fifo
def test_docs_output_that_is_not_a_folder(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "f")

    def call(*argv: str) -> Result:
        return run_in(tmp_path, *argv, timeout=30)

    refuse_with(call, "docs", "--output", "f", code="INVALID_INPUT")
    assert (tmp_path / "f").is_fifo()


# ---- plan export --output: not a regular file ------------------------------------------------


@needs_fifo
@pytest.mark.parametrize("force", [(), ("--force",)])
def test_plan_export_refuses_a_fifo(seeded: Seeded, tmp_path: Path, force: tuple[str]) -> None:
    ws = seeded.ws
    fifo = tmp_path / "index.fifo"
    os.mkfifo(fifo)
    before = listing(tmp_path)
    with unchanged(ws):
        error = refuse(
            ws, "plan", "export", "REVI", "--output", str(fifo), *force, code="INVALID_INPUT"
        )
    assert "not a regular file" in error["message"]
    assert error["hint"]
    assert fifo.is_fifo()
    assert listing(tmp_path) == before  # no temp file left beside it


def test_plan_export_refuses_a_device(seeded: Seeded) -> None:
    null = Path(os.devnull)
    if not null.exists() or null.is_file():
        pytest.skip("no device file here")
    with unchanged(seeded.ws):
        refuse(
            seeded.ws, "plan", "export", "REVI", "--output", str(null), "--force",
            code="INVALID_INPUT",
        )  # fmt: skip
    assert not null.is_file()


def test_plan_export_still_writes_a_new_file(seeded: Seeded, tmp_path: Path) -> None:
    out = tmp_path / "index.md"
    result = seeded.ws.run("plan", "export", "REVI", "--output", str(out))
    assert result.code == 0, result
    assert out.is_file()


# ---- story numbers past six digits -----------------------------------------------------------


def test_story_new_refuses_a_seven_digit_number(workspace: Workspace) -> None:
    ws = workspace
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures/plans/seeds", ws.root / "s")
    folder = ws.root / "plans/revi"
    folder.mkdir(parents=True)
    shutil.copyfile(ws.root / "s/REVI.PLAN.exec.md", folder / "PLAN.exec.md")
    shutil.rmtree(ws.root / "s")
    assert ws.run("plan", "import", "plans/revi").code == 0
    assert ws.run("plan", "export", "REVI").code == 0
    index = folder / "stories.index.md"
    with index.open("a", encoding="utf-8") as handle:
        handle.write("\n## REVI-999999: Last one\n\n**Status:** pending\n")
    imported = ws.run("plan", "import", "plans/revi")
    assert imported.code == 0, imported
    with unchanged(ws):
        error = refuse(ws, "story", "new", "REVI", "--title", "x", code="STORY_NUMBERS_EXHAUSTED")
    assert error["details"]["epic"] == "REVI"
    assert "new epic" in error["hint"]
    assert not (ws.root / "plans/stories/REVI-1000000").exists()


def test_split_refuses_children_past_the_last_number(seeded: Seeded) -> None:
    ws = seeded.ws
    driver = seeded.driver
    ctx = driver.ctx
    big = new_story(ctx, "REVI", title="Big")
    driver.drive_to(big, Status.NEEDS_SPLIT)
    # the epic's highest number is 999998: one child fits, two do not
    with ctx.store.transaction(write=True):
        ctx.store.conn.execute(
            "UPDATE workflow_stories SET number = 999998 WHERE id = :id", {"id": "REVI-001"}
        )
    with unchanged(ws):
        error = refuse(
            ws, "story", "split", big, "--into", "A", "--into", "B",
            code="STORY_NUMBERS_EXHAUSTED", via="run",
        )  # fmt: skip
    assert error["details"]["left"] == 1


# ---- epic roots ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("root", "why"),
    [
        (".", "is the workspace itself"),
        ("./.", "is the workspace itself"),
        ("./", "is the workspace itself"),
        (".git", "hidden folder"),
        (".storyflow", "hidden folder"),
        ("plans/.x", "hidden folder"),
        ("plans/flow/backlog/FLOW-003", "story folder"),
        ("plans/flow/sub", "inside epic FLOW's root"),
        ("plans", "holds epic"),
        ("plans/stories", "is epic REVI's root"),
        ("web/node_modules/plans", "lies in node_modules/, a folder sync does not search"),
        ("build/plans", "lies in build/, a folder sync does not search"),
        ("a/b/c/d/e/f/g/h/i", "more than 8 folders deep"),
    ],
)
def test_epic_new_refuses_a_root_that_breaks_the_workspace(
    seeded: Seeded, root: str, why: str
) -> None:
    ws = seeded.ws
    with unchanged(ws):
        error = refuse(
            ws, "epic", "new", "NEW", "--title", "New", "--layout", "staged", "--root", root,
            code="INVALID_INPUT", via="run",
        )  # fmt: skip
    assert why in error["message"], error
    assert error["details"]["value"] in (root, root.strip("/"))
    assert not (ws.root / ".git" / "NEW.epic.yaml").exists()
    assert not (ws.root / ".storyflow" / "NEW.epic.yaml").exists()
    assert ws.run("check").code == 0


def test_epic_root_is_normalised_and_flat_epics_share_a_root(seeded: Seeded) -> None:
    ws = seeded.ws
    made = ws.run("epic", "new", "NEW", "--title", "New", "--root", "./plans//new/", "--json")
    assert made.code == 0, made
    assert made.json["root"] == "plans/new"
    assert (ws.root / "plans/new/NEW.epic.yaml").is_file()
    shared = ws.run(
        "epic", "new", "SHARE", "--title", "Shared", "--layout", "flat", "--root", "plans/stories"
    )
    assert shared.code == 0, shared
    assert ws.run("check").code == 0


def test_epic_root_through_a_symlink_out_of_the_workspace(seeded: Seeded, tmp_path: Path) -> None:
    ws = seeded.ws
    (tmp_path / "away").mkdir()
    (ws.root / "link").symlink_to(tmp_path / "away")
    with unchanged(ws):
        error = refuse(
            ws, "epic", "new", "NEW", "--title", "New", "--root", "link/x",
            code="INVALID_INPUT", via="run",
        )  # fmt: skip
    assert "out of the workspace" in error["message"]
    assert listing(tmp_path / "away") == []


# ---- hooks install with an unusable hooks folder ---------------------------------------------


def _git_init(root: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, timeout=60)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_hooks_install_when_the_hooks_folder_is_a_file(workspace: Workspace) -> None:
    ws = workspace
    _git_init(ws.root)
    hooks = ws.root / ".git" / "hooks"
    shutil.rmtree(hooks, ignore_errors=True)
    hooks.write_text("x\n", encoding="utf-8")
    error = refuse(ws, "hooks", "install", code="GIT_HOOKS_UNUSABLE", via="run")
    assert "core.hooksPath" in error["hint"]
    assert hooks.read_text(encoding="utf-8") == "x\n"


@needs_fifo
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_hooks_install_when_the_hook_is_not_a_file(workspace: Workspace, kind: str) -> None:
    ws = workspace
    _git_init(ws.root)
    hook = ws.root / ".git" / "hooks" / "pre-commit"
    hook.parent.mkdir(exist_ok=True)
    if kind == "folder":
        hook.mkdir()
    else:
        os.mkfifo(hook)

    def call(*argv: str) -> Result:
        return run_in(ws.root, *argv, env=ws.env, timeout=30)

    for force in ((), ("--force",)):
        refuse_with(call, "hooks", "install", *force, code="GIT_HOOKS_UNUSABLE")
    assert hook.is_dir() if kind == "folder" else hook.is_fifo()


# ---- artifact validate --coverage-threshold --------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "-5", "101", "1e400", "-inf"])
def test_artifact_validate_coverage_threshold_out_of_range(seeded: Seeded, value: str) -> None:
    ws = seeded.ws
    ws.write("review.yaml", "verdict: PASS\nsummary: fine\ncoverage: 10\n")
    error = refuse(
        ws, "artifact", "validate", "review.yaml", "--kind", "code_review",
        f"--coverage-threshold={value}", code="INVALID_INPUT", via="run",
    )  # fmt: skip
    assert "between 0 and 100" in error["message"]
    assert "--coverage-threshold" in error["hint"]
    # the same values epic new refuses
    refuse(
        ws, "epic", "new", "NEW", "--title", "x", f"--coverage-threshold={value}",
        code="INVALID_INPUT", via="run",
    )  # fmt: skip


def test_a_pass_review_below_a_valid_threshold_is_still_refused(seeded: Seeded) -> None:
    ws = seeded.ws
    ws.write("review.yaml", "verdict: PASS\nsummary: fine\ncoverage: 10\n")
    result = ws.run(
        "artifact", "validate", "review.yaml", "--kind", "code_review",
        "--coverage-threshold", "45",
    )  # fmt: skip
    assert result.code == 3, result
    no_traceback(result)
    assert "GATE_CONTRADICTION" in result.stderr


# ---- line ends ---------------------------------------------------------------------------------


@pytest.mark.parametrize("story_id", ["FLOW-002", "REVI-001"], ids=["yaml", "markdown"])
def test_a_story_file_saved_with_crlf_keeps_crlf_when_the_engine_renders_it(
    seeded: Seeded, story_id: str
) -> None:
    """An editor on Windows (or git's core.autocrlf) saved the story file with CRLF: the
    engine's re-renders keep CRLF on every line instead of mixing in LF lines."""
    ws = seeded.ws
    path = ws.root / seeded.story_file(story_id)
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    logged = ws.run("token", "log", story_id, "elaboration", "--input", "10", "--output", "5")
    assert logged.code == 0, logged
    moved = ws.run("story", "move", story_id, "in-elaboration")
    assert moved.code == 0, moved
    path = ws.root / seeded.story_file(story_id)  # the staged layout moved the folder
    data = path.read_bytes()
    assert b"status: generated -> in-elaboration" in data
    assert data.count(b"\n") > 20 and data.count(b"\n") == data.count(b"\r\n")
    checked = ws.run("check")
    assert checked.code == 0, checked
