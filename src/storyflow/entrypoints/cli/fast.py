"""The read commands scripts and agents call most, without Click.

``story show ID --json``, ``story list --json``, ``board --json`` and ``next --json`` are
what an agent polls between steps; importing Click and building the command tree costs a
short-lived process more than the query itself. This module recognises exactly those
command lines (with ``--workspace``, ``--database-url``, ``--epic``, ``--status`` and
``--limit``) and calls the same services and the same output functions as the Click
commands. Anything else -- another option, ``--help``, an option's ``STORYFLOW_*``
variable, a value Click would have to check -- returns ``None`` and Click parses the line
as usual, so the two paths cannot disagree on what a line means.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from storyflow.entrypoints.cli.plain import (
    JsonText,
    guarded,
    json_text,
    open_session,
    split_values,
)

# the option variables Click reads for these commands (auto_envvar_prefix STORYFLOW)
_ENV_PREFIXES = (
    "STORYFLOW_STORY_SHOW_",
    "STORYFLOW_STORY_LIST_",
    "STORYFLOW_BOARD_",
    "STORYFLOW_NEXT_",
)


class _Line:
    """A parsed fast command line (a plain class: a dataclass costs ~1 ms to define)."""

    def __init__(self, command: str, workspace: str | None, database_url: str | None) -> None:
        self.command = command
        self.workspace = workspace
        self.database_url = database_url
        self.story_id: str | None = None
        self.epic: str | None = None
        self.statuses: list[str] = []
        self.limit = 0


# per command: the options that take a value, and whether it repeats
_OPTIONS: dict[str, dict[str, bool]] = {
    "story show": {},
    "story list": {"--epic": False, "--status": True},
    "board": {"--epic": False},
    "next": {"--epic": False, "--limit": False},
}
_ROOT_OPTIONS = ("--workspace", "--database-url")


def _split(token: str) -> tuple[str, str | None]:
    name, eq, value = token.partition("=")
    return (name, value) if eq else (token, None)


def root_options(argv: list[str]) -> tuple[str | None, str | None, list[str]] | None:
    """The workspace and database URL (option, else variable) and the rest of the line; None
    when the root options are not ones this module reads (Click then parses them)."""
    args = list(argv)
    roots: dict[str, str] = {}
    while args and args[0].startswith("--"):
        name, value = _split(args.pop(0))
        if name not in _ROOT_OPTIONS or name in roots:
            return None
        if value is None:
            if not args or args[0].startswith("-"):
                return None
            value = args.pop(0)
        roots[name] = value
    workspace = roots.get("--workspace", os.environ.get("STORYFLOW_WORKSPACE") or None)
    if workspace is not None and os.path.isfile(workspace):
        return None  # Click's own message says why a file is not a workspace
    database_url = roots.get("--database-url", os.environ.get("STORYFLOW_DATABASE_URL") or None)
    return workspace, database_url, args


def parse(argv: list[str]) -> _Line | None:
    """The command line as one of the fast commands, or None to leave it to Click."""
    if any(key.startswith(_ENV_PREFIXES) for key in os.environ):
        return None
    split = root_options(argv)
    if split is None:
        return None
    workspace, database_url, args = split
    command = " ".join(args[:2]) if args[:1] == ["story"] else " ".join(args[:1])
    if command not in _OPTIONS:
        return None
    rest = args[len(command.split()) :]
    line = _Line(command=command, workspace=workspace, database_url=database_url)
    options = _OPTIONS[command]
    seen_json = False
    while rest:
        token = rest.pop(0)
        if token == "--json":
            seen_json = True
            continue
        if not token.startswith("-"):
            if command != "story show" or line.story_id is not None:
                return None
            line.story_id = token
            continue
        name, value = _split(token)
        if name not in options:
            return None
        if value is None:
            if not rest or rest[0].startswith("-"):
                return None
            value = rest.pop(0)
        if not _take(line, name, value, repeats=options[name]):
            return None
    if not seen_json or (command == "story show" and line.story_id is None):
        return None
    return line


def _take(line: _Line, name: str, value: str, *, repeats: bool) -> bool:
    if name == "--status":
        line.statuses.append(value)
        return repeats
    if name == "--limit":
        if not value.strip().isdigit():
            return False  # Click says what is wrong with it (a negative one, say)
        line.limit = int(value)
        return True
    if line.epic is not None:
        return False
    line.epic = value
    return True


def _story_show(line: _Line) -> object:
    from storyflow.services.story_reads import show_story

    with open_session(line.workspace, line.database_url) as ctx:
        return show_story(ctx, line.story_id or "")


def _story_list(line: _Line) -> object:
    from storyflow.domain.statuses import parse_status
    from storyflow.services.story_reads import list_stories_json

    wanted = [parse_status(s)[0] for s in split_values(line.statuses)]
    with open_session(line.workspace, line.database_url) as ctx:
        return JsonText(list_stories_json(ctx, epic=line.epic, statuses=wanted or None))


def _board(line: _Line) -> object:
    from storyflow.services.story_reads import board

    with open_session(line.workspace, line.database_url) as ctx:
        return board(ctx, epic=line.epic)


def _next(line: _Line) -> object:
    from storyflow.services.story_reads import workable_json

    with open_session(line.workspace, line.database_url) as ctx:
        return workable_json(ctx, epic=line.epic, limit=line.limit)


_COMMANDS: dict[str, Callable[[_Line], object]] = {
    "story show": _story_show,
    "story list": _story_list,
    "board": _board,
    "next": _next,
}


def handle(argv: list[str]) -> int | None:
    """Run ``argv`` if it is a fast command and return its exit status; None otherwise."""
    line = parse(argv)
    if line is None:
        return None

    def command() -> int:
        data = _COMMANDS[line.command](line)
        sys.stdout.write(json_text(data) + "\n")
        return 0

    return guarded(command, json_mode=True)
