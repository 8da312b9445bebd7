"""The command-line surface: every command documented, every option tied to a STORYFLOW_*
variable, every data command speaking JSON, the state machine printable, the schemas
exported."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import click
import pytest

from storyflow import __version__
from storyflow.adapters.db.migrate import HEAD_REVISION
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.statuses import Status
from storyflow.domain.transitions import EDGES
from storyflow.entrypoints.cli.main import cli, main
from storyflow.services import epics
from tests.support import Driver, Result, Workspace, code_review, elaboration, new_story, plan

# ---- the command tree ---------------------------------------------------------------------


def _walk(
    group: click.Group, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*path, name))


COMMANDS: dict[tuple[str, ...], click.Command] = {(): cli, **dict(_walk(cli, ()))}
LEAVES = {path: c for path, c in COMMANDS.items() if not isinstance(c, click.Group)}
# Commands whose output is JSON by nature or chosen by --format: no --json flag.
NO_JSON_FLAG = {("graph",), ("artifact", "schema"), ("ci", "github")}


def _ids(path: tuple[str, ...]) -> str:
    return " ".join(path) or "storyflow"


def invoke(*args: str) -> Result:
    """The CLI in this process, outside any workspace."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as done:
            code = int(done.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def _flat(text: str) -> str:
    return " ".join(text.split())


def _documented_options(command: click.Command) -> list[click.Option]:
    """The options a user sets: not --help nor --version (eager, they expose no value)."""
    return [p for p in command.params if isinstance(p, click.Option) and p.expose_value]


def test_the_tree_has_the_expected_commands() -> None:
    assert {" ".join(p) for p in LEAVES} == {
        "init",
        "approve",
        "next",
        "board",
        "graph",
        "epic new",
        "epic list",
        "epic show",
        "epic update",
        "story new",
        "story list",
        "story show",
        "story history",
        "story move",
        "story block",
        "story unblock",
        "story cancel",
        "story split",
        "story update",
        "story render",
        "artifact submit",
        "artifact list",
        "artifact show",
        "artifact validate",
        "artifact schema",
        "token log",
        "budget show",
        "requirement list",
        "requirement met",
        "requirement unmet",
        "db upgrade",
        "db current",
        "check",
        "docs",
        "hooks install",
        "ci github",
        "plan import",
        "plan export",
        "models show",
        "models check",
        "trace",
        "metrics",
        "sync",
        "run",
        "worker",
    }


@pytest.mark.parametrize("path", list(COMMANDS), ids=_ids)
def test_help_exits_0_and_documents_every_option(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    result = invoke(*path, "--help")
    assert result.code == 0, result
    assert result.stderr == ""
    assert result.stdout.startswith(f"Usage: {' '.join(('storyflow', *path))} ")
    assert command.help and command.help.strip(), f"{_ids(path)} has no docstring"
    first_line = _flat(command.help.split("\n\n")[0])
    assert first_line[:40] in _flat(result.stdout)
    for option in _documented_options(command):
        assert option.help and option.help.strip(), f"{_ids(path)} {option.opts} has no help"
        for flag in (*option.opts, *option.secondary_opts):
            assert flag in result.stdout, f"{_ids(path)}: {flag} missing from --help"
        assert _flat(option.help)[:30] in _flat(result.stdout)
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            assert name in result.stdout


def test_short_help_flag() -> None:
    assert invoke("-h").stdout == invoke("--help").stdout
    assert invoke("story", "move", "-h").code == 0


def _expected_envvar(path: tuple[str, ...], option: click.Option) -> str:
    if option.envvar:
        assert isinstance(option.envvar, str)
        return option.envvar
    assert option.name is not None
    parts = ["STORYFLOW", *path, option.name]
    return "_".join(p.upper().replace("-", "_") for p in parts)


@pytest.mark.parametrize("path", list(COMMANDS), ids=_ids)
def test_every_option_shows_its_storyflow_variable(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    options = _documented_options(command)
    help_text = _flat(invoke(*path, "--help").stdout)
    for option in options:
        assert option.show_envvar, f"{_ids(path)} {option.opts}: show_envvar is off"
        name = _expected_envvar(path, option)
        assert name.startswith("STORYFLOW_")
        assert re.search(rf"\[env var: {name}[;\]]", help_text), f"{_ids(path)}: no {name}"
    assert help_text.count("[env var: STORYFLOW_") == len(options)


def test_an_option_reads_its_variable(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The variable shown in --help is the one that is read.
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow")
    new_story(ctx, title="One")
    new_story(ctx, title="Two", priority="P0")
    monkeypatch.setenv("STORYFLOW_STORY_LIST_AS_JSON", "1")
    listed = workspace.cli("story", "list")
    assert listed.code == 0, listed
    assert [s["id"] for s in listed.json] == ["FLOW-001", "FLOW-002"]
    monkeypatch.setenv("STORYFLOW_STORY_LIST_STATUSES", "pending")
    assert len(workspace.cli("story", "list").json) == 2


def test_every_leaf_command_but_graph_and_schema_takes_json() -> None:
    without = {p for p, c in LEAVES.items() if not any(o.name == "as_json" for o in c.params)}
    assert without == NO_JSON_FLAG
    for path in LEAVES.keys() - NO_JSON_FLAG:
        option = next(o for o in LEAVES[path].params if o.name == "as_json")
        assert isinstance(option, click.Option) and option.is_flag and "--json" in option.opts


def test_version() -> None:
    result = invoke("--version")
    assert result.code == 0
    assert result.stdout.strip() == f"storyflow, version {__version__}"


@pytest.mark.parametrize(
    "args",
    [("nosuch",), ("story", "nosuch"), ("db", "sideways"), ("--no-such-flag",)],
    ids=" ".join,
)
def test_unknown_command_or_option_exits_2(args: tuple[str, ...]) -> None:
    result = invoke(*args)
    assert result.code == 2, result
    assert result.stdout == ""
    assert "nosuch" in result.stderr or "sideways" in result.stderr or "no-such" in result.stderr
    as_json = invoke(*args, "--json")
    assert as_json.code == 2
    assert as_json.json["error"]["code"] == "USAGE"


def test_a_missing_required_option_exits_2(workspace: Workspace) -> None:
    result = workspace.cli("story", "new", "FLOW")
    assert result.code == 2, result
    assert "--title" in result.stderr


# ---- the state machine --------------------------------------------------------------------

STATUSES = [
    "pending",
    "generated",
    "in-elaboration",
    "needs-refinement",
    "needs-split",
    "ready-to-work",
    "in-progress",
    "ready-for-code-review",
    "code-review-failed",
    "ready-for-qa",
    "in-qa",
    "needs-work",
    "uat",
    "completed",
    "blocked",
    "cancelled",
    "superseded",
]
TERMINAL = {"completed", "cancelled", "superseded"}
NON_TERMINAL = [s for s in STATUSES if s not in TERMINAL]
# DESIGN §3, written out here independently of the engine's table.
LIFECYCLE = {
    ("pending", "generated"),
    ("generated", "in-elaboration"),
    ("in-elaboration", "ready-to-work"),
    ("in-elaboration", "needs-refinement"),
    ("in-elaboration", "needs-split"),
    ("needs-refinement", "generated"),
    ("needs-split", "generated"),
    ("needs-split", "superseded"),
    ("ready-to-work", "in-progress"),
    ("in-progress", "ready-for-code-review"),
    ("in-progress", "ready-for-qa"),
    ("ready-for-code-review", "ready-for-qa"),
    ("ready-for-code-review", "code-review-failed"),
    ("code-review-failed", "in-progress"),
    ("ready-for-qa", "in-qa"),
    ("in-qa", "uat"),
    ("in-qa", "needs-work"),
    ("needs-work", "in-progress"),
    ("uat", "completed"),
    ("uat", "in-progress"),
}


def test_graph_prints_a_mermaid_state_diagram_naming_every_status() -> None:
    result = invoke("graph")
    assert result.code == 0, result
    lines = result.stdout.splitlines()
    assert lines[0] == "stateDiagram-v2"
    for status in STATUSES:
        node = status.replace("-", "_")
        assert f'    state "{status}" as {node}' in lines
    for source, target in LIFECYCLE:
        assert any(
            line.startswith(f"    {source.replace('-', '_')} --> {target.replace('-', '_')}: ")
            for line in lines
        ), (source, target)
    assert "    [*] --> pending" in lines
    for terminal in TERMINAL:
        assert f"    {terminal} --> [*]" in lines
    assert invoke("graph", "--format", "mermaid").stdout == result.stdout


def test_graph_json_has_one_row_per_edge_with_the_escapes() -> None:
    result = invoke("graph", "--format", "json")
    assert result.code == 0, result
    rows = result.json
    assert len(rows) == len(EDGES)
    pairs = [(r["from"], r["to"]) for r in rows]
    assert len(set(pairs)) == len(pairs)
    block = {(s, "blocked") for s in NON_TERMINAL if s != "blocked"}
    cancel = {(s, "cancelled") for s in NON_TERMINAL}
    unblock = {("blocked", s) for s in NON_TERMINAL if s != "blocked"}
    assert set(pairs) == LIFECYCLE | block | cancel | unblock
    assert len(rows) == 20 + 13 + 14 + 13
    by_pair = {(r["from"], r["to"]): r for r in rows}
    for pair in block | cancel:
        assert by_pair[pair]["guards"] == ["reason"], pair
        assert by_pair[pair]["trigger"] in {"block", "cancel"}
    for pair in unblock:
        assert by_pair[pair]["trigger"] == "unblock"
        assert by_pair[pair]["guards"][0] == "unblock-target"
    assert not [p for p in pairs if p[0] in TERMINAL]
    for row in rows:
        assert set(row) == {"from", "to", "trigger", "guards", "evidence", "budget_phase"}
    gate = by_pair[("uat", "completed")]
    assert gate["evidence"]["kind"] == "qa_gate"
    assert set(gate["evidence"]["verdicts"]) == {"PASS", "CONCERNS", "WAIVED"}
    assert {"gate-evidence", "acceptance"} <= set(gate["guards"])


def test_graph_table() -> None:
    result = invoke("graph", "--format", "table")
    assert result.code == 0
    assert result.stdout.splitlines()[0].split()[:3] == ["FROM", "TO", "TRIGGER"]
    assert len(result.stdout.splitlines()) == len(EDGES) + 1


# ---- artifact schemas ---------------------------------------------------------------------

REQUIRED = {
    "story": {"id", "title", "status", "reuse_plan", "token_budget", "agent_log"},
    "elaboration": {"story_id", "verdict"},
    "plan": {"story_id", "approach"},
    "proof": {"story_id", "summary", "reuse_verification"},
    "code_review": {"story_id", "verdict"},
    "verification": {"story_id", "verdict"},
    "qa_gate": {"story_id", "decision"},
}
VERDICTS = {
    "elaboration": (
        "verdict",
        {"PASS", "CONDITIONAL_PASS", "NEEDS_REFINEMENT", "FAIL", "SPLIT_REQUIRED"},
    ),
    "code_review": ("verdict", {"PASS", "FAIL"}),
    "verification": ("verdict", {"PASS", "FAIL"}),
    "qa_gate": ("decision", {"PASS", "CONCERNS", "FAIL", "WAIVED"}),
}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


@pytest.mark.parametrize("kind", [k.value for k in ArtifactKind])
def test_artifact_schema_prints_a_json_schema(kind: str) -> None:
    result = invoke("artifact", "schema", kind)
    assert result.code == 0, result
    schema = json.loads(result.stdout)
    assert schema["type"] == "object"
    assert schema["$id"].endswith(f"/{kind}.json")
    assert set(schema["required"]) == REQUIRED[kind]
    assert set(schema["required"]) <= set(schema["properties"])
    for ref in _refs(schema):
        assert ref.startswith("#/$defs/")
        assert ref.removeprefix("#/$defs/") in schema["$defs"], ref
    if kind in VERDICTS:
        field, values = VERDICTS[kind]
        assert set(schema["properties"][field]["enum"]) == values


def test_seven_artifact_kinds() -> None:
    assert set(REQUIRED) == {k.value for k in ArtifactKind}


def test_artifact_schema_accepts_aliases_and_refuses_unknown_kinds() -> None:
    assert (
        invoke("artifact", "schema", "code-review").json
        == invoke("artifact", "schema", "code_review").json
    )
    refused = invoke("artifact", "schema", "poem")
    assert refused.code == 7
    assert "INVALID_KIND" in refused.stderr


# ---- --json on every data command ---------------------------------------------------------


@pytest.fixture
def populated(workspace: Workspace) -> Workspace:
    """FLOW-001 in elaboration with two elaborations and tokens; FLOW-002 ready to work."""
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow")
    driver = Driver(workspace, ctx)
    first = new_story(ctx, title="First", requires=["db-schema-002"])
    second = new_story(ctx, title="Second", priority="P0")
    driver.drive_to(first, Status.IN_ELABORATION)
    driver.submit(first, "elaboration", elaboration("NEEDS_REFINEMENT", summary="too big"))
    driver.submit(first, "elaboration", elaboration("PASS"))
    driver.tokens(first, "elaboration")
    driver.drive_to(second, Status.READY_TO_WORK)
    return workspace


READ_COMMANDS: dict[str, tuple[tuple[str, ...], Any]] = {
    "story list": (("story", "list"), lambda d: [s["id"] for s in d] == ["FLOW-001", "FLOW-002"]),
    "story list --status": (
        ("story", "list", "--status", "in-elaboration"),
        lambda d: [s["id"] for s in d] == ["FLOW-001"],
    ),
    "story show": (
        ("story", "show", "FLOW-001"),
        lambda d: (
            d["status"] == "in-elaboration"
            and d["artifacts"]["elaboration"]["version"] == 2
            and "next_action" in d
        ),
    ),
    "story history": (
        ("story", "history", "FLOW-001"),
        lambda d: [r["to_status"] for r in d] == ["pending", "generated", "in-elaboration"],
    ),
    "next": (("next",), lambda d: [s["id"] for s in d] == ["FLOW-002"]),
    "board": (("board",), lambda d: d["total"] == 2 and d["counts"]["ready-to-work"] == 1),
    "graph --format json": (("graph", "--format", "json"), lambda d: len(d) == len(EDGES)),
    "budget show story": (
        ("budget", "show", "FLOW-001"),
        lambda d: d["story"] == "FLOW-001" and d["total_used"] == 150,
    ),
    "budget show epic": (("budget", "show", "FLOW"), lambda d: d["epic"] == "FLOW"),
    "artifact list": (
        ("artifact", "list", "FLOW-001"),
        lambda d: (
            [(a["kind"], a["version"]) for a in d]
            == [("elaboration", 1), ("elaboration", 2), ("story", 1)]
        ),
    ),
    "artifact show": (
        ("artifact", "show", "FLOW-001", "elaboration"),
        lambda d: d["version"] == 2 and d["content"]["verdict"] == "PASS",
    ),
    "artifact show --version --raw": (
        ("artifact", "show", "FLOW-001", "elaboration", "--version", "1", "--raw"),
        lambda d: d["version"] == 1 and "too big" in d["raw"],
    ),
    "requirement list": (
        ("requirement", "list"),
        lambda d: (
            d
            == [
                {
                    "name": "db-schema-002",
                    "met": False,
                    "note": None,
                    "updated_at": d[0]["updated_at"],
                    "updated_by": None,
                    "stories": 1,
                }
            ]
        ),
    ),
    "db current": (("db", "current"), lambda d: d["up_to_date"] is True),
    "epic list": (("epic", "list"), lambda d: [e["prefix"] for e in d] == ["FLOW"]),
    "epic show": (("epic", "show", "FLOW"), lambda d: d["stories"] == 2),
    "check": (("check",), lambda d: d["findings"] == [] and d["summary"]["stories"] == 2),
    "models show": (
        ("models", "show"),
        lambda d: "scripted" in {m["model"] for m in d["catalogue"]} and d["findings"] == [],
    ),
    "models check": (("models", "check"), lambda d: d["ok"] is True),
    # --json prints JSONL: one event type makes it one document here
    "trace": (
        ("trace", "FLOW-001", "--type", "tokens"),
        lambda d: d["type"] == "tokens" and len(d["trace_id"]) == 32 and len(d["span_id"]) == 16,
    ),
    "metrics": (
        ("metrics", "--epic", "FLOW"),
        lambda d: d["tokens"]["total"] == 150 and d["stories"]["total"] == 2,
    ),
}


@pytest.mark.parametrize("name", list(READ_COMMANDS))
def test_data_commands_print_valid_json(populated: Workspace, name: str) -> None:
    args, check = READ_COMMANDS[name]
    result = populated.cli(*args) if args[0] == "graph" else populated.cli(*args, "--json")
    assert result.code == 0, result
    data = result.json  # parses, or the test fails here
    assert check(data), data
    human = populated.cli(*args)
    assert human.code == 0, human
    assert human.stdout.strip()


# Commands that change something; test_write_commands_print_valid_json runs each with --json.
WRITERS = {
    ("init",),
    ("approve",),
    ("epic", "new"),
    ("epic", "update"),
    ("story", "new"),
    ("story", "update"),
    ("story", "move"),
    ("story", "block"),
    ("story", "unblock"),
    ("story", "cancel"),
    ("story", "split"),
    ("story", "render"),
    ("artifact", "submit"),
    ("artifact", "validate"),
    ("token", "log"),
    ("requirement", "met"),
    ("requirement", "unmet"),
    ("db", "upgrade"),
    ("docs",),  # tests/cli/test_docs.py
    ("hooks", "install"),  # tests/acceptance/test_hooks.py
    ("plan", "import"),
    ("plan", "export"),
    ("sync",),  # tests/acceptance/test_sync_cli.py
    ("run",),  # tests/acceptance/test_run_cli.py
    ("worker",),  # tests/acceptance/test_workers.py
}


def _command_of(args: tuple[str, ...]) -> tuple[str, ...]:
    return next(path for path in LEAVES if args[: len(path)] == path)


def test_every_command_is_a_covered_reader_or_writer() -> None:
    readers = {_command_of(args) for args, _ in READ_COMMANDS.values()}
    assert not readers & WRITERS
    assert readers | WRITERS | {("artifact", "schema"), ("ci", "github")} == set(LEAVES)


def _json_ok(ws: Workspace, *args: str) -> Any:
    result = ws.cli(*args, "--json")
    assert result.code == 0, (args, result)
    return result.json


def test_write_commands_print_valid_json(workspace: Workspace) -> None:
    ws = workspace
    init = _json_ok(ws, "init")
    assert init["created"] is False and init["schema_revision"] == HEAD_REVISION
    epic = _json_ok(ws, "epic", "new", "FLOW", "--title", "Flow", "--require-approval")
    assert epic["prefix"] == "FLOW" and epic["settings"]["require_approval"] is True
    updated = _json_ok(ws, "epic", "update", "FLOW", "--coverage-threshold", "50")
    assert updated["settings"]["coverage_threshold"] == 50.0
    first = _json_ok(ws, "story", "new", "FLOW", "--title", "First")
    assert first["id"] == "FLOW-001" and first["status"] == "pending"
    assert first["path"] == "plans/flow/backlog/FLOW-001/story.yaml"
    second = _json_ok(ws, "story", "new", "FLOW", "--title", "Second")
    changed = _json_ok(
        ws, "story", "update", second["id"], "--priority", "P0", "--depends-on", "FLOW-001"
    )
    assert changed["priority"] == "P0" and changed["depends_on"] == ["FLOW-001"]
    assert _json_ok(ws, "requirement", "met", "db-1", "--note", "deployed") == {
        "name": "db-1",
        "met": True,
        "note": "deployed",
    }
    assert _json_ok(ws, "requirement", "unmet", "db-1")["met"] is False

    moved = _json_ok(ws, "story", "move", "FLOW-001", "generated")
    assert (moved["from"], moved["to"], moved["forced"]) == ("pending", "generated", False)
    driver = Driver(ws, ws.ctx())
    driver.fill_story("FLOW-001")
    assert _json_ok(ws, "story", "move", "FLOW-001", "in-elaboration")["to"] == "in-elaboration"
    path = ws.write("inbox/elab.yaml", elaboration("PASS", story_id="FLOW-001"))
    valid = _json_ok(ws, "artifact", "validate", str(path), "--kind", "elaboration")
    assert valid["valid"] is True and valid["kind"] == "elaboration"
    submitted = _json_ok(ws, "artifact", "submit", "FLOW-001", "elaboration", str(path))
    assert (submitted["version"], submitted["verdict"], submitted["unchanged"]) == (
        1,
        "PASS",
        False,
    )
    approved = _json_ok(ws, "approve", "FLOW-001", "--by", "pm")
    assert approved == {"story": "FLOW-001", "elaboration_version": 1, "approved_by": "pm"}
    assert _json_ok(ws, "story", "move", "FLOW-001", "ready-to-work")["to"] == "ready-to-work"
    logged = _json_ok(
        ws, "token", "log", "FLOW-001", "elaboration", "--input", "10", "--output", "5"
    )
    assert logged["story"] == "FLOW-001" and logged["tokens"] == 15
    blocked = _json_ok(ws, "story", "block", "FLOW-001", "--reason", "waiting")
    assert blocked["to"] == "blocked"
    assert _json_ok(ws, "story", "unblock", "FLOW-001")["to"] == "ready-to-work"
    assert _json_ok(ws, "story", "render", "FLOW-001") == {
        "story": "FLOW-001",
        "path": "plans/flow/ready-to-work/FLOW-001/story.yaml",
    }

    # FLOW-002 to needs-split, then split through the CLI.
    for status in ("generated", "in-elaboration"):
        if status == "in-elaboration":
            driver.fill_story("FLOW-002")
        _json_ok(ws, "story", "move", "FLOW-002", status)
    split_path = ws.write("inbox/split.yaml", elaboration("SPLIT_REQUIRED"))
    _json_ok(ws, "artifact", "submit", "FLOW-002", "elaboration", str(split_path))
    _json_ok(ws, "story", "move", "FLOW-002", "needs-split")
    split = _json_ok(ws, "story", "split", "FLOW-002", "--into", "Part A", "--into", "Part B")
    assert split["story"]["status"] == "superseded"
    assert [c["id"] for c in split["children"]] == ["FLOW-003", "FLOW-004"]
    cancelled = _json_ok(ws, "story", "cancel", "FLOW-004", "--reason", "not needed")
    assert cancelled["to"] == "cancelled"
    assert _json_ok(ws, "db", "upgrade") == {"revision": HEAD_REVISION}

    # Plan, review: the evidence commands used on the way to code review also speak JSON.
    plan_path = ws.write("inbox/plan.yaml", plan())
    assert _json_ok(ws, "artifact", "submit", "FLOW-001", "plan", str(plan_path))["version"] == 1
    review_path = ws.write("inbox/review.yaml", code_review("PASS", story_id="FLOW-001"))
    assert _json_ok(ws, "artifact", "validate", str(review_path), "--kind", "code_review")["valid"]


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (("story", "show", "FLOW-999"), 6, "STORY_NOT_FOUND"),
        (("story", "show", "../etc"), 7, "INVALID_ID"),
        (("epic", "show", "NOPE"), 6, "EPIC_NOT_FOUND"),
        (("story", "move", "FLOW-001", "completed"), 3, "TRANSITION_NOT_ALLOWED"),
        (("story", "move", "FLOW-001", "finished-ish"), 7, "INVALID_STATUS"),
        (("artifact", "show", "FLOW-001", "plan"), 6, "ARTIFACT_NOT_FOUND"),
        (("budget", "show", "FLOW"), 0, None),
    ],
)
def test_errors_with_json_are_json_on_stdout(
    workspace: Workspace, args: tuple[str, ...], code: int, error: str | None
) -> None:
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow")
    new_story(ctx)
    result = workspace.cli(*args, "--json")
    assert result.code == code, result
    body = result.json
    if error is None:  # the control: the same workspace answers a valid question
        assert "error" not in body
        return
    assert body["error"]["code"] == error
    assert body["error"]["message"] and body["error"]["hint"]
    human = workspace.cli(*args)
    assert human.code == code
    assert human.stdout == ""
    assert f"error[{error}]" in human.stderr


def test_the_installed_executable(workspace: Workspace) -> None:
    version = workspace.run("--version")
    assert version.code == 0 and version.stdout.strip() == f"storyflow, version {__version__}"
    graph = workspace.run("graph", "--format", "json")
    assert graph.code == 0 and len(json.loads(graph.stdout)) == len(EDGES)
    unknown = workspace.run("nosuch")
    assert unknown.code == 2 and "No such command" in unknown.stderr
