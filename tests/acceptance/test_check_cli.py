"""storyflow check, docs and ci through the installed executable (subprocesses): exit 0 on a
clean workspace, 3 with every finding named by file, line, code and hint; PATHS relative to
the current directory; read-only start-up without SQLAlchemy; docs byte-stable; the CI
workflow is YAML with the two steps."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from storyflow.adapters.files.yamlio import load_mapping
from storyflow.domain.layouts import LayoutName
from storyflow.domain.statuses import Status
from storyflow.services import epics, transitions
from tests.support import Driver, Workspace, new_story, qa_gate


def _plans(ws: Workspace) -> Driver:
    """FLOW-001 in-progress, FLOW-002 completed by force without tokens for most phases,
    REVI-001 (flat) in uat."""
    ctx = ws.ctx()
    driver = Driver(ws, ctx)
    epics.create_epic(ctx, "FLOW", title="Flow")
    epics.create_epic(ctx, "REVI", title="Revi", layout=LayoutName.FLAT, timezone="America/Denver")
    driver.drive_to(new_story(ctx, "FLOW", title="Doing"), Status.IN_PROGRESS)
    driver.drive_to(new_story(ctx, "REVI", title="Flat"), Status.UAT)
    return driver


def _line(path: Path, pattern: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if re.search(pattern, line))


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_clean_workspace_exits_0(workspace: Workspace) -> None:
    _plans(workspace)
    human = workspace.run("check")
    assert human.code == 0, human
    assert human.stdout.startswith("storyflow check: clean (2 story folders, ")
    assert human.stderr == ""
    body = workspace.run("check", "--json")
    assert body.code == 0, body
    assert body.json["findings"] == []
    assert body.json["summary"]["clean"] is True
    assert body.json["summary"]["database"] == "checked"


def test_every_kind_of_breakage_is_reported_with_file_line_code_and_hint(
    workspace: Workspace,
) -> None:
    ws = workspace
    driver = _plans(ws)
    ctx = driver.ctx
    forced = new_story(ctx, "FLOW", title="Forced")
    driver.drive_to(forced, Status.UAT)
    driver.submit(forced, "qa_gate", qa_gate("PASS"))
    transitions.move(ctx, forced, "completed", force=True, reason="demo day")
    assert ws.run("docs").code == 0  # the workspace keeps generated docs

    root = ws.root
    story = root / "plans/flow/in-progress/FLOW-001/story.yaml"
    flat = root / "plans/stories/REVI-001/REVI-001.md"
    plan = root / "plans/flow/in-progress/FLOW-001/plan.yaml"
    _replace(story, "status: in-progress", "status: uat")  # a hand-edited status
    lines = flat.read_text(encoding="utf-8").splitlines(keepends=True)
    flat.write_text("".join(line for line in lines if "plan v1 submitted" not in line), "utf-8")
    _replace(flat, "proof v1 submitted", "proof v1 submitted (all green)")  # an edited row
    (plan.parent / "plan-v2.yaml").write_text(plan.read_text("utf-8"), "utf-8")  # misnamed
    (root / "plans/REVI-009.md").write_text("# REVI-009\n", "utf-8")  # loose at the root
    _replace(plan, "approach: do it", "approach: ''")  # schema-invalid
    _replace(root / "docs/reference/errors.md", "| `USAGE` | 2 |", "| `USAGE` | 4 |")  # stale
    ws.write("README.md", "# Readme\n\nSee [the guide](docs/guide.md).\n")  # a broken link

    result = ws.run("check", "--json")
    assert result.code == 3, result
    found = {(f["code"], f["file"], f["line"]) for f in result.json["findings"]}
    assert found == {
        ("CHECK_STATUS_DRIFT", "plans/flow/in-progress/FLOW-001/story.yaml", 5),
        ("CHECK_AGENT_LOG_REMOVED", "plans/stories/REVI-001/REVI-001.md", _line(flat, "-> in-pr")),
        (
            "CHECK_AGENT_LOG_EDITED",
            "plans/stories/REVI-001/REVI-001.md",
            _line(flat, r"\(all green\)"),
        ),
        ("CHECK_NAMING", "plans/flow/in-progress/FLOW-001/plan-v2.yaml", None),
        ("CHECK_LOOSE_FILE", "plans/REVI-009.md", None),
        ("CHECK_SCHEMA", "plans/flow/in-progress/FLOW-001/plan.yaml", _line(plan, "^approach")),
        ("CHECK_TOKENS_MISSING", "plans/flow/done/FLOW-002/story.yaml", 17),
        ("CHECK_DOCS_STALE", "docs/reference/errors.md", None),
        ("CHECK_BROKEN_LINK", "README.md", 3),
    }
    assert _line(story, "^status:") == 5
    assert _line(root / "plans/flow/done/FLOW-002/story.yaml", "^token_budget:") == 17
    for finding in result.json["findings"]:
        assert set(finding) == {"code", "file", "line", "story", "message", "hint"}
        assert finding["message"] and finding["hint"]
    summary = result.json["summary"]
    assert summary["clean"] is False and summary["findings"] == 9
    assert sum(summary["by_code"].values()) == 9

    human = ws.run("check")
    assert human.code == 3
    out = human.stdout.splitlines()
    assert (
        "plans/flow/in-progress/FLOW-001/story.yaml:5: CHECK_STATUS_DRIFT: status is uat in "
        in ("\n".join(out))
    )
    assert "README.md:3: CHECK_BROKEN_LINK: link to docs/guide.md: " in "\n".join(out)
    assert sum(line.startswith("    hint: ") for line in out) == 9
    assert out[-1].startswith("storyflow check: 9 finding(s) (")


def test_paths_are_read_relative_to_the_current_directory(workspace: Workspace) -> None:
    _plans(workspace)
    story = workspace.root / "plans/flow/in-progress/FLOW-001/story.yaml"
    _replace(story, "status: in-progress", "status: uat")
    _replace(workspace.root / "plans/stories/REVI-001/REVI-001.md", "status: uat", "status: qa")
    both = workspace.run("check", "--json")
    assert {f["story"] for f in both.json["findings"]} == {"FLOW-001", "REVI-001"}
    one = workspace.run("check", "--json", "plans/flow/in-progress/FLOW-001/story.yaml")
    assert one.code == 3, one
    assert [f["story"] for f in one.json["findings"]] == ["FLOW-001"]
    assert one.json["summary"]["paths"] == ["plans/flow/in-progress/FLOW-001/story.yaml"]
    other = workspace.run("check", "--json", "plans/stories/REVI-002/REVI-002.md", "/elsewhere")
    assert other.code == 0, other
    assert other.json["summary"]["ignored"] == ["/elsewhere"]


def test_check_starts_without_sqlalchemy(workspace: Workspace) -> None:
    _plans(workspace)
    script = (
        "import sys\n"
        "from storyflow.entrypoints.cli.main import main\n"
        "try:\n"
        "    main(['check', '--json'])\n"
        "except SystemExit as done:\n"
        "    code = done.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic'))\n"
        "print('RESULT', code, heavy, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=workspace.root,
        env=workspace.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "RESULT 0 []" in done.stderr, done.stderr
    assert json.loads(done.stdout)["summary"]["clean"] is True


def test_docs_are_byte_stable_and_check_exits_3_naming_the_stale_files(
    workspace: Workspace, tmp_path: Path
) -> None:
    out = tmp_path / "reference"
    first = workspace.run("docs", "--output", str(out))
    assert first.code == 0, first
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert "cli.md" in files and "schemas/qa_gate.json" in files
    again = workspace.run("docs", "--output", str(out), "--json")
    assert again.code == 0 and again.json["written"] == []
    assert {
        p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()
    } == files
    assert workspace.run("docs", "--check", "--output", str(out)).code == 0
    _replace(out / "guards.md", "a reason is given", "a good reason is given")
    (out / "cli.md").unlink()
    stale = workspace.run("docs", "--check", "--output", str(out))
    assert stale.code == 3, stale
    assert stale.stdout.splitlines() == [
        f"stale: {out / 'cli.md'} (missing)",
        f"stale: {out / 'guards.md'} (out of date)",
        f"storyflow docs: {out} stale ({len(files)} files)",
    ]
    assert not (out / "cli.md").exists()  # --check writes nothing


def test_ci_github_prints_a_workflow_with_the_check_and_docs_steps(workspace: Workspace) -> None:
    result = workspace.run("ci", "github")
    assert result.code == 0, result
    yaml.safe_load(result.stdout)  # any YAML reader takes it
    workflow = load_mapping(result.stdout, source="workflow")  # 'on' stays a string here
    assert set(workflow["on"]) == {"push", "pull_request"}
    steps = workflow["jobs"]["storyflow"]["steps"]
    runs = [step.get("run") for step in steps]
    assert runs[-2:] == ["storyflow check", "storyflow docs --check"]
    assert any(str(r).startswith("pip install") for r in runs)
    assert steps[0]["uses"].startswith("actions/checkout@")
    team = workspace.run(
        "ci", "github", "--database-secret", "TEAM_DB", "--working-directory", "tools/plans"
    )
    job = load_mapping(team.stdout, source="workflow")["jobs"]["storyflow"]
    assert job["env"] == {"STORYFLOW_DATABASE_URL": "${{ secrets.TEAM_DB }}"}
    assert job["defaults"] == {"run": {"working-directory": "tools/plans"}}
    bad = workspace.run("ci", "github", "--database-secret", "not a name")
    assert bad.code == 7 and "error[INVALID_INPUT]" in bad.stderr
