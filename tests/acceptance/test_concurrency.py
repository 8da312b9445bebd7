"""Two storyflow processes move the same story at once: exactly one wins (exit 0), the other
loses with exit 5, and history, story file and database agree on a single move."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.acceptance._helpers import Flow, history, logged_moves, read_story, show
from tests.support import Workspace, storyflow_command

STORIES = 5


def race(ws: Workspace, *args: str, copies: int = 2) -> list[tuple[int, str, str]]:
    """Start the same command ``copies`` times, back to back, and wait for all."""
    procs = [
        subprocess.Popen(
            [*storyflow_command(), *args],
            cwd=ws.root,
            env=ws.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(copies)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out, err))
    return results


@pytest.fixture(params=["staged", "flat"])
def flow(request: pytest.FixtureRequest, workspace: Workspace) -> Flow:
    flow = Flow(workspace)
    flow.epic("FLOW", "--layout", request.param)
    return flow


@pytest.mark.parametrize(
    ("expect_from", "loser_codes"),
    [
        (True, {"VERSION_CONFLICT"}),
        (False, {"ALREADY_IN_STATUS", "VERSION_CONFLICT"}),
    ],
    ids=["with-from", "without-from"],
)
def test_two_processes_move_the_same_story(
    workspace: Workspace, flow: Flow, expect_from: bool, loser_codes: set[str]
) -> None:
    ids = [flow.story() for _ in range(STORIES)]
    for sid in ids:
        args = ["story", "move", sid, "generated", "--json"]
        if expect_from:
            args += ["--from", "pending"]
        results = race(workspace, *args)
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 5], results
        (_, won, _), (_, lost, _) = sorted(results)
        assert (json.loads(won)["from"], json.loads(won)["to"]) == ("pending", "generated")
        error = json.loads(lost)["error"]
        assert error["code"] in loser_codes, error
        assert error["details"]["story"] == sid, error

        rows = history(workspace, sid)
        pairs = [(r["from_status"], r["to_status"]) for r in rows]
        assert pairs == [(None, "pending"), ("pending", "generated")]
        shown = show(workspace, sid)
        assert (shown["status"], shown["version"]) == ("generated", 2)
        story = read_story(workspace.root / shown["path"])
        assert story["meta"]["status"] == "generated"
        assert logged_moves(story["agent_log"]) == [("pending", "generated")]


WRITERS = 8


def test_concurrent_writers_lose_no_agent_log_row_in_the_file(
    workspace: Workspace, flow: Flow
) -> None:
    """Eight processes log tokens to one story at once: every one commits, and the story file
    ends with every Agent Log row and every ledger entry the database has."""
    sid = flow.story()
    results = race(
        workspace,
        "token",
        "log",
        sid,
        "elaboration",
        "--input",
        "7",
        "--output",
        "3",
        copies=WRITERS,
    )
    assert [code for code, _, _ in results] == [0] * WRITERS, results
    shown = show(workspace, sid)
    assert shown["budget"]["entries"] == WRITERS
    story = read_story(workspace.root / shown["path"])
    token_rows = [r for r in story["agent_log"] if r["action"].startswith("tokens:")]
    assert len(token_rows) == WRITERS
    measurements = story["token_budget"]["actual_measurements"]
    assert len(measurements) == WRITERS
    assert story["token_budget"]["total_used"] == 10 * WRITERS
