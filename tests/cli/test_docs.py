"""storyflow docs: the reference is generated from the live objects (every status, edge,
guard, error code, budget, layout, schema, check code and command is in it), byte-stable,
its links resolve, and --check exits 3 exactly when a generated file drifted."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from storyflow.adapters.files.story_files import StoryFiles
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.budgets import DEFAULT_BUDGETS
from storyflow.domain.findings import CHECK_CODES
from storyflow.domain.layouts import LAYOUTS, LEGACY_ARTIFACT_NAMES
from storyflow.domain.statuses import Status
from storyflow.domain.transitions import EDGES, Guard
from storyflow.entrypoints.cli.check import reference_files
from storyflow.entrypoints.cli.main import cli, main
from storyflow.errors import CODES
from storyflow.schemas.artifacts import json_schema
from storyflow.services.docs import MARKER
from storyflow.services.links import LinkChecker
from tests.support import Result, Workspace


def invoke(*args: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as done:
            code = int(done.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def _tree(group: click.Group, ctx: click.Context) -> Iterator[tuple[click.Command, click.Context]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        child = click.Context(command, info_name=name, parent=ctx)
        yield command, child
        if isinstance(command, click.Group):
            yield from _tree(command, child)


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return reference_files()


def test_two_runs_give_the_same_bytes_and_no_timestamps(files: dict[str, str]) -> None:
    assert reference_files() == files
    stamp = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
    assert [name for name, text in files.items() if stamp.search(text)] == []
    for name, text in files.items():
        assert MARKER in text[:400], name
        assert text.endswith("\n"), name


def test_statuses_edges_and_guards(files: dict[str, str]) -> None:
    statuses = files["statuses.md"]
    for status in Status:
        assert f"| `{status.value}` |" in statuses
    edge_rows = [
        line
        for line in statuses.split("## Transitions", 1)[1].split("\n## ", 1)[0].splitlines()
        if line.startswith("| `")
    ]
    assert len(edge_rows) == len(EDGES)
    assert "```mermaid\nstateDiagram-v2\n" in statuses
    guards = files["guards.md"]
    for guard in Guard:
        assert f"| `{guard.value}` |" in guards


def test_error_codes_with_their_exit_statuses(files: dict[str, str]) -> None:
    for code in CODES.values():
        assert f"| `{code.code}` | {code.exit_status} |" in files["errors.md"]


def test_budgets_layouts_artifacts_and_check_codes(files: dict[str, str]) -> None:
    for phase, budget in DEFAULT_BUDGETS.items():
        assert (
            f"| `{phase.value}` | {budget.estimate:,} | {budget.warning:,} |"
            in (files["budgets.md"])
        )
    for level in ("advisory", "warning", "soft_gate", "hard_gate"):
        assert f"| `{level}` |" in files["budgets.md"]
    layouts = files["layouts.md"]
    for layout in LAYOUTS.values():
        for pattern in layout.artifact_patterns.values():
            assert f"`{pattern}`" in layouts
    for pattern in LEGACY_ARTIFACT_NAMES:
        assert f"`{pattern.replace('|', chr(92) + '|')}`" in layouts
    for kind in ArtifactKind:
        assert f"(schemas/{kind.value}.json)" in files["artifacts.md"]
        schema = json.loads(files[f"schemas/{kind.value}.json"])
        assert schema.pop("$comment") == MARKER
        assert schema == json_schema(kind)
    for code in CHECK_CODES:
        assert f"| `{code}` |" in files["checks.md"]


def test_every_command_and_option_with_its_variable(files: dict[str, str]) -> None:
    page = files["cli.md"]
    root = click.Context(cli, info_name="storyflow", **cli.context_settings)
    commands = 0
    for command, ctx in _tree(cli, root):
        commands += 1
        assert f"## `{ctx.command_path}`\n" in page, ctx.command_path
        section = page.split(f"## `{ctx.command_path}`\n", 1)[1].split("\n## `", 1)[0]
        for param in command.params:
            if isinstance(param, click.Option) and param.expose_value:
                assert f"`{param.opts[0]}" in section, (ctx.command_path, param.opts)
                envvar = param.envvar or f"{ctx.auto_envvar_prefix}_{param.name.upper()}"
                assert f"`{envvar}`" in section, (ctx.command_path, envvar)
    assert commands > 30

    # Generating the reference leaves the commands as they were: -h still asks for help.
    assert invoke("story", "move", "-h").code == 0


def test_every_link_in_the_reference_resolves(files: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "docs" / "reference"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
    docs = [f"docs/reference/{name}" for name in files if name.endswith(".md")]
    assert LinkChecker(StoryFiles(tmp_path, max_bytes=10**7)).check(docs) == []


def test_check_exits_3_exactly_when_a_generated_file_drifted(tmp_path: Path) -> None:
    out = tmp_path / "ref"
    written = invoke("docs", "--output", str(out), "--json")
    assert written.code == 0, written
    assert written.json["files"] == len(reference_files())
    assert invoke("docs", "--check", "--output", str(out)).code == 0
    (out / "notes.md").write_text("# Our notes\n", encoding="utf-8")  # not generated
    assert invoke("docs", "--check", "--output", str(out)).code == 0
    retired = out / "schemas" / "retired.json"
    retired.write_text(json.dumps({"$comment": MARKER}) + "\n", encoding="utf-8")
    stale = invoke("docs", "--check", "--output", str(out), "--json")
    assert stale.code == 3, stale
    assert stale.json["stale"] == [
        {"path": "schemas/retired.json", "reason": "no longer generated"}
    ]
    rewritten = invoke("docs", "--output", str(out), "--json")
    assert rewritten.code == 0
    assert rewritten.json["written"] == [
        {"path": "schemas/retired.json", "reason": "no longer generated"}
    ]
    assert not retired.exists() and (out / "notes.md").exists()
    assert invoke("docs", "--check", "--output", str(out)).code == 0


def test_the_default_folder_is_in_the_workspace_and_needs_no_database(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = workspace.cli("docs", "--json")
    assert result.code == 0, result
    assert result.json["directory"] == str(workspace.root / "docs" / "reference")
    assert (workspace.root / "docs/reference/cli.md").is_file()
    bare = tmp_path / "no-workspace"
    bare.mkdir()
    monkeypatch.chdir(bare)
    monkeypatch.setenv("STORYFLOW_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert invoke("docs").code == 0
    assert (bare / "docs/reference/README.md").is_file()
