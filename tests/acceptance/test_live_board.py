"""`storyflow run --epic` on a terminal draws the live board on stderr and ends with the
report; piped, it prints one line per phase and the plain report."""

from __future__ import annotations

import os
import pty
import re
import subprocess

from tests.run_support import configure, epic_with, scenario
from tests.support import Workspace, storyflow_command

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _setup(ws: Workspace) -> None:
    scenario(ws, {"defaults": {"delay": 0.1}})
    configure(ws, {"scenario": "scenario.yaml", "lease_seconds": 30})
    ctx = ws.ctx()
    epic_with(ctx, 3)


def test_on_a_terminal_the_run_draws_the_board_and_the_report(workspace: Workspace) -> None:
    _setup(workspace)
    master, slave = pty.openpty()
    env = {**workspace.env, "COLUMNS": "140", "LINES": "40", "TERM": "xterm-256color"}
    process = subprocess.Popen(
        [*storyflow_command(), "run", "--epic", "FLOW", "--workers", "2"],
        cwd=workspace.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert process.wait(timeout=120) == 0
    raw = b"".join(chunks).decode("utf-8", errors="replace")
    assert ANSI.search(raw), "a live display redraws with terminal control sequences"
    screen = ANSI.sub("", raw)
    assert "storyflow run FLOW" in screen
    assert "3/3 stories at rest" in screen  # the last frame stays
    assert "completed 3" in screen
    assert "per phase" in screen and "QA gates: PASS 3 (100% pass)" in screen
    assert "budget overruns: none" in screen


def test_piped_the_run_prints_lines_and_the_plain_report(workspace: Workspace) -> None:
    _setup(workspace)
    result = workspace.run("run", "--epic", "FLOW", "--workers", "2", timeout=120)
    assert result.code == 0, result
    assert "\x1b[" not in result.stderr + result.stdout
    assert "stories at rest" not in result.stderr
    assert "FLOW-001 generate" in result.stderr  # one line per phase
    assert result.stdout.startswith("run report for FLOW:")
