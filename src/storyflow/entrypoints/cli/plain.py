"""CLI plumbing that needs no Click: the workspace session, JSON text, error lines and the
guard that turns every failure into one line and an exit status.

Both the Click commands and the fast read path (``fast.py``) go through these, so a command
prints the same bytes and exits with the same status whichever way it was parsed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyflow.errors import StoryflowError

if TYPE_CHECKING:
    from storyflow.services.context import Context


@contextmanager
def open_session(
    workspace: str | None,
    database_url: str | None,
    actor: str | None = None,
    *,
    new_database_ok: bool = False,
) -> Iterator[Context]:
    """Open the workspace (the nearest one above the current directory unless named);
    close the database afterwards and print the warnings the command collected."""
    from storyflow.bootstrap import load_config, open_context

    config = load_config(
        workspace=Path(workspace) if workspace else None, flags={"database_url": database_url}
    )
    ctx = open_context(config, actor=actor, new_database_ok=new_database_ok)
    try:
        yield ctx
    finally:
        ctx.store.close()
        for warning in ctx.warnings:
            sys.stderr.write(f"storyflow: warning: {warning}\n")


class JsonText(str):
    """A document already encoded as JSON (by the database, say): printed as it is."""


def json_text(data: Any) -> str:
    """Indented for a terminal; compact (and ~3x faster: the C encoder) for a pipe."""
    indent = 2 if sys.stdout.isatty() else None
    if isinstance(data, JsonText):
        if indent is None:
            return str(data)
        data = json.loads(data)
    return json.dumps(data, ensure_ascii=False, indent=indent, default=str)


def split_values(values: Sequence[str]) -> list[str]:
    """``--depends-on A B`` and ``--depends-on A,B`` and repeated flags all mean [A, B]."""
    out: list[str] = []
    for value in values:
        out.extend(part for part in value.replace(",", " ").split() if part)
    return out


def print_error(error: StoryflowError, json_mode: bool) -> None:
    """With ``--json`` the error body on stdout; otherwise one line on stderr."""
    if json_mode:
        sys.stdout.write(json.dumps(error.to_json(), ensure_ascii=False) + "\n")
        return
    hint = f" (hint: {error.hint})" if error.hint else ""
    sys.stderr.write(f"storyflow: error[{error.code}]: {error.message}{hint}\n")


def guarded(command: Callable[[], int], json_mode: bool) -> int:
    """Run ``command`` and return its exit status; a refusal prints its code and hint and
    exits with its status, an unexpected error prints one line (a traceback only with
    ``STORYFLOW_DEBUG``) and exits 1."""
    try:
        return command()
    except StoryflowError as error:
        print_error(error, json_mode)
        return error.exit_status
    except KeyboardInterrupt:
        sys.stderr.write("storyflow: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("STORYFLOW_DEBUG"):
            raise
        internal = StoryflowError(
            f"internal error: {type(exc).__name__}: {exc}",
            hint="rerun with STORYFLOW_DEBUG=1 for the traceback, and report it",
        )
        print_error(internal, json_mode)
        return 1
