"""The fast read path (``story show|list``, ``board``, ``next`` with ``--json``, parsed
without Click) prints exactly what the Click commands print, exits the same way, and leaves
every other command line to Click."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from storyflow.domain.layouts import LayoutName
from storyflow.domain.statuses import Status
from storyflow.entrypoints.cli import fast
from storyflow.entrypoints.cli.main import _click_main
from storyflow.entrypoints.cli.plain import guarded
from storyflow.services import epics
from tests.cli.helpers import executable
from tests.support import Driver, Result, Workspace, clean_env, new_story


@pytest.fixture
def board_ws(workspace: Workspace) -> Workspace:
    """Two epics; stories pending, ready (one waiting on a dependency), blocked."""
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow")
    epics.create_epic(ctx, "REVI", title="Review", layout=LayoutName.FLAT)
    first = new_story(ctx, "FLOW", title="First", priority="P1")
    second = new_story(ctx, "FLOW", title="Second — ünïcode", depends_on=[first])
    third = new_story(ctx, "FLOW", title="Third", requires=["db-schema-002"])
    new_story(ctx, "REVI", title="Other epic")
    driver = Driver(workspace, ctx)
    for story_id in (first, second):
        driver.drive_to(story_id, Status.READY_TO_WORK)
    workspace.cli("story", "block", third, "--reason", "waiting on infra")
    return workspace


def _in_process(ws: Workspace, args: list[str], *, click_only: bool) -> Result:
    line = ["--workspace", str(ws.root)]
    if ws.database_url:
        line += ["--database-url", ws.database_url]
    line += args
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if click_only:
            code = guarded(lambda: _click_main(line), json_mode=True)
        else:
            handled = fast.handle(line)
            assert handled is not None, f"{args} was not taken by the fast path"
            code = handled
    return Result(code, out.getvalue(), err.getvalue())


SAME_AS_CLICK = [
    ["story", "show", "FLOW-002", "--json"],
    ["story", "show", "--json", "FLOW-003"],
    ["story", "list", "--json"],
    ["story", "list", "--json", "--epic", "FLOW"],
    ["story", "list", "--json", "--epic=REVI"],
    ["story", "list", "--status", "ready-to-work", "--status", "blocked", "--json"],
    ["story", "list", "--status", "ready_to_work,pending", "--json"],
    ["board", "--json"],
    ["board", "--json", "--epic", "FLOW"],
    ["next", "--json"],
    ["next", "--json", "--epic", "FLOW", "--limit", "1"],
    # refusals: the same error body and exit status
    ["story", "show", "FLOW-999", "--json"],
    ["story", "show", "../FLOW-001", "--json"],
    ["story", "list", "--status", "nope", "--json"],
    ["board", "--json", "--epic", "NOPE"],
]


@pytest.mark.parametrize("args", SAME_AS_CLICK, ids=" ".join)
def test_the_fast_path_prints_what_click_prints(board_ws: Workspace, args: list[str]) -> None:
    fast_result = _in_process(board_ws, args, click_only=False)
    click_result = _in_process(board_ws, args, click_only=True)
    assert fast_result == click_result
    assert fast_result.stdout.endswith("\n") and fast_result.json is not None


def test_the_fast_path_serves_real_data(board_ws: Workspace) -> None:
    """Not only equal to Click: the board and the queue are the ones the fixture built."""
    shown = board_ws.run("story", "show", "FLOW-003", "--json")
    assert shown.code == 0, shown
    assert shown.json["status"] == "blocked"
    assert shown.json["blocked_reason"] == "waiting on infra"
    listed = board_ws.run("story", "list", "--json", "--epic", "FLOW")
    assert [s["id"] for s in listed.json] == ["FLOW-001", "FLOW-002", "FLOW-003"]
    assert listed.json[1]["depends_on"] == ["FLOW-001"]
    assert listed.json[2]["requires"] == ["db-schema-002"]
    board = board_ws.run("board", "--json")
    assert board.json["counts"]["ready-to-work"] == 2 and board.json["total"] == 4
    queue = board_ws.run("next", "--json")
    assert [s["id"] for s in queue.json] == ["FLOW-001"]  # FLOW-002 waits for FLOW-001


def _on_a_terminal(ws: Workspace, *args: str) -> str:
    """What the executable prints with a pseudo-terminal as its stdout."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [*executable(), *args],
            cwd=ws.root,
            env=clean_env(ws.env),
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
        os.close(follower)
        chunks = []
        with contextlib.suppress(OSError):  # EIO once the written output is drained
            while chunk := os.read(leader, 65536):
                chunks.append(chunk)
    finally:
        os.close(leader)
    assert done.returncode == 0, done.stderr
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("args", [["story", "list", "--json"], ["board", "--json"]], ids=" ".join)
def test_json_is_indented_on_a_terminal_and_compact_in_a_pipe(
    board_ws: Workspace, args: list[str]
) -> None:
    piped = board_ws.run(*args)
    shown = _on_a_terminal(board_ws, *args)
    assert json.loads(shown) == piped.json
    assert shown.startswith(("[\n  {\n", "{\n  ")), shown[:40]
    assert piped.stdout.count("\n") == 1  # one line for a pipe
    assert "ünïcode" in shown and "ünïcode" in piped.stdout  # not \u-escaped


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (["story", "show", "FLOW-999", "--json"], 6, "STORY_NOT_FOUND"),
        (["story", "show", "../FLOW-001", "--json"], 7, None),
        (["story", "list", "--status", "nope", "--json"], 7, None),
    ],
)
def test_refusals_from_the_executable(
    board_ws: Workspace, args: list[str], code: int, error: str | None
) -> None:
    result = board_ws.run(*args)
    assert result.code == code, result
    body = result.json["error"]
    assert body["hint"]
    if error:
        assert body["code"] == error
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["story", "show", "FLOW-001"],  # human output: Click
        ["story", "show", "FLOW-001", "FLOW-002", "--json"],
        ["story", "list", "--json", "--help"],
        ["story", "list", "--json", "--epic"],
        ["board", "--json", "--epic", "A", "--epic", "B"],
        ["board", "--json", "--status", "blocked"],
        ["next", "--json", "--limit", "abc"],
        ["next", "--json", "--limit", "-1"],
        ["story", "--json", "list"],
        ["story", "history", "FLOW-001", "--json"],
        ["--version"],
        ["--workspace", "a", "--workspace", "b", "board", "--json"],
        ["--actor", "x", "board", "--json"],
        ["board", "--json", "--", "x"],
        [],
    ],
    ids=lambda a: " ".join(a) or "(none)",
)
def test_other_lines_are_left_to_click(args: list[str]) -> None:
    assert fast.parse(args) is None


def test_an_option_variable_leaves_the_line_to_click(
    board_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every option reads a STORYFLOW_* variable; the fast path does not read those, so it
    steps aside when one is set, and Click applies it."""
    monkeypatch.setenv("STORYFLOW_STORY_LIST_EPIC", "REVI")
    assert fast.parse(["story", "list", "--json"]) is None
    env = clean_env({"STORYFLOW_STORY_LIST_EPIC": "REVI"})
    if board_ws.database_url:
        env["STORYFLOW_DATABASE_URL"] = board_ws.database_url
    import subprocess

    from tests.support import storyflow_command

    done = subprocess.run(
        [*storyflow_command(), "story", "list", "--json"],
        cwd=board_ws.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"REVI-001"' in done.stdout and '"FLOW-001"' not in done.stdout


def test_a_file_as_workspace_is_left_to_click(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert fast.parse(["--workspace", str(not_a_dir), "board", "--json"]) is None
    assert fast.parse(["--workspace", str(tmp_path), "board", "--json"]) is not None
