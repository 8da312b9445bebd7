"""Helpers for the bad-input tests: run a refused command in both output modes, and prove
that neither files nor database changed.

``refuse`` runs the command with ``--json`` and without, and checks the error contract of
both: the JSON body on stdout (``{"error": {code, message, details, hint}}``) and one
``storyflow: error[CODE]: …`` line on stderr; the exit status; no traceback anywhere.

``unchanged`` captures the workspace before and after: every file's bytes (``snapshot``),
every row of every table (read through a connection of its own, so a broken storyflow.yaml
does not hide the database), and what the read commands show (story list, history, artifact
list, budget show).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storyflow.adapters.db.connection import connect
from storyflow.adapters.db.schema import metadata
from storyflow.errors import CODES
from tests.support import Result, Workspace, clean_env

ERROR_KEYS = {"code", "message", "details", "hint"}


def executable() -> list[str]:
    exe = Path(sys.executable).with_name("storyflow")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "storyflow"]


def run_in(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """The storyflow executable as a subprocess in ``cwd`` with extra environment."""
    done = subprocess.run(
        [*executable(), *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_env(ws: Workspace, *args: str, env: dict[str, str], timeout: float = 60) -> Result:
    """``ws.run`` with extra STORYFLOW_* variables."""
    return run_in(ws.root, *args, env={**ws.env, **env}, timeout=timeout)


def no_traceback(result: Result) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream, result
        assert 'File "' not in stream, result


def check_json_error(result: Result, code: str, status: int) -> dict[str, Any]:
    assert result.code == status, result
    no_traceback(result)
    body = json.loads(result.stdout)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert isinstance(error["hint"], str) and error["hint"].strip(), error
    assert isinstance(error["details"], dict), error
    assert "storyflow: error[" not in result.stderr, result
    return dict(error)


def check_plain_error(result: Result, code: str, status: int) -> str:
    """One ``storyflow: error[CODE]: …`` line on stderr (warnings aside), nothing on stdout."""
    assert result.code == status, result
    no_traceback(result)
    assert result.stdout == "", result
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("storyflow: error[")]
    assert len(errors) == 1, result
    assert errors[0].startswith(f"storyflow: error[{code}]: "), result
    others = [line for line in lines if line not in errors]
    assert all(line.startswith("storyflow: warning: ") for line in others), result
    return errors[0]


def refuse_with(
    call: Callable[..., Result], *args: str, code: str, status: int | None = None
) -> dict[str, Any]:
    """Run ``call(*args, "--json")`` and ``call(*args)``; both must be refused with ``code``.

    ``status`` defaults to the exit status the code is declared with (and, when given, must
    agree with it). Returns the JSON error."""
    declared = CODES[code].exit_status
    if status is None:
        status = declared
    assert declared == status, f"{code} is declared with exit {declared}"
    error = check_json_error(call(*args, "--json"), code, status)
    line = check_plain_error(call(*args), code, status)
    assert error["message"] in line, (error, line)
    return error


def refuse(
    ws: Workspace,
    *args: str,
    code: str,
    status: int | None = None,
    via: str = "cli",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``refuse_with`` in ``ws``. ``via``: "cli" (in-process), "run" (the executable) or
    "env" (the executable with the extra variables ``env``)."""

    def call(*argv: str) -> Result:
        if via == "cli":
            return ws.cli(*argv)
        if via == "run":
            return ws.run(*argv)
        assert via == "env" and env is not None
        return run_env(ws, *argv, env=env)

    return refuse_with(call, *args, code=code, status=status)


# ---- nothing changed ----------------------------------------------------------------------


def database_url(ws: Workspace) -> str:
    return ws.database_url or f"sqlite:///{ws.root / '.storyflow' / 'storyflow.db'}"


def db_dump(ws: Workspace) -> dict[str, list[str]]:
    """Every row of every storyflow table, order-independent."""
    conn = connect(database_url(ws), ws.root)
    try:
        return {
            table.name: sorted(
                repr(sorted(row.items())) for row in conn.fetchall(f"SELECT * FROM {table.name}")
            )
            for table in metadata.sorted_tables
        }
    finally:
        conn.close()


def _view(ws: Workspace, *args: str) -> tuple[int, Any]:
    result = ws.cli(*args, "--json")
    try:
        return result.code, json.loads(result.stdout)
    except ValueError:
        return result.code, result.stdout


def views(ws: Workspace) -> dict[str, Any]:
    """What the read commands show about every epic and story."""
    shown: dict[str, Any] = {
        "epics": _view(ws, "epic", "list"),
        "stories": _view(ws, "story", "list"),
    }
    code, stories = shown["stories"]
    assert code == 0, stories
    for story in stories:
        sid = story["id"]
        shown[f"{sid} history"] = _view(ws, "story", "history", sid)
        shown[f"{sid} artifacts"] = _view(ws, "artifact", "list", sid)
        shown[f"{sid} budget"] = _view(ws, "budget", "show", sid)
    return shown


@dataclass
class State:
    files: dict[str, bytes]
    db: dict[str, list[str]]
    views: dict[str, Any]


def capture(ws: Workspace, *, with_views: bool = True) -> State:
    return State(
        files=ws.snapshot(),
        db=db_dump(ws),
        views=views(ws) if with_views else {},
    )


def assert_same(before: State, after: State) -> None:
    changed = sorted(
        name
        for name in set(before.files) | set(after.files)
        if before.files.get(name) != after.files.get(name)
    )
    assert not changed, f"files changed: {changed}"
    tables = sorted(name for name in before.db if before.db[name] != after.db.get(name))
    assert not tables, f"tables changed: {tables}: " + repr(
        {name: (before.db[name], after.db.get(name)) for name in tables}
    )
    assert after.views == before.views


@contextmanager
def unchanged(ws: Workspace, *, with_views: bool = True) -> Iterator[State]:
    """Files, database and read views are the same after the block as before it."""
    before = capture(ws, with_views=with_views)
    yield before
    assert_same(before, capture(ws, with_views=with_views))
