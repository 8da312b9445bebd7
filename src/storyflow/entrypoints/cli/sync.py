"""storyflow sync."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from storyflow.entrypoints.cli.common import actor_option, echo, emit_json, json_option, option

if TYPE_CHECKING:
    from storyflow.services.sync_ports import SyncFilesPort

PROGRESS_MIN_FILES = 200


class _Bar:
    """A Rich progress bar on stderr, for long runs in a terminal only (Rich loads lazily)."""

    def __init__(self) -> None:
        self._progress: Any = None

    def start(self, total: int) -> Callable[[int], None] | None:
        if total <= PROGRESS_MIN_FILES or not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=True,
            auto_refresh=False,  # no refresh thread: a rebuild may fork reader processes
        )
        self._progress.start()
        task = self._progress.add_task("sync", total=total)
        progress = self._progress
        last = [0.0]

        def advance(files: int) -> None:
            progress.advance(task, files)
            now = time.monotonic()
            if now - last[0] >= 0.1:
                last[0] = now
                progress.refresh()

        return advance

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@click.command("sync")
@option("--dry-run", is_flag=True, help="Report what sync would do; write nothing.")
@option(
    "--prefer",
    type=click.Choice(["files", "db"]),
    help="Resolve conflicts: the file's value wins (applied through the rules) or the "
    "database's (the file is re-rendered). Each choice is recorded as an event. On an "
    "edited or diverged Agent Log, files rebuilds that story from its folder (refused "
    "unless its log is one valid history), db re-renders the log.",
)
@option(
    "--jobs",
    type=click.IntRange(1, 64),
    help="Processes that read story folders in a rebuild (default: one; for a rebuild of "
    "400+ stories on more than two CPUs, one per CPU but one).",
)
@actor_option
@json_option
def sync(
    dry_run: bool, prefer: str | None, jobs: int | None, actor: str | None, as_json: bool
) -> None:
    """Reconcile the story files and the database, both ways.

    An empty database is rebuilt from the epic files (<root>/<PREFIX>.epic.yaml) and story
    folders: stories, statuses, history (the Agent Log), artifact versions and the token
    ledger. After that, a file changed since the last sync is applied through the rules (a
    hand-edited status is a transition request, measurements added at the end of a Token
    Budget are logged as token log would), story files the database moved on from are
    re-rendered, and a datum changed on both sides is a conflict, left alone unless
    --prefer says which side wins. Unchanged files are skipped by size and mtime.

    Exit status: 0 all applied (or nothing to do); 5 conflicts left; 7 files that cannot
    be read (or measurements that cannot be logged); 6 files missing (an artifact file an
    Agent Log row submits: the story waits for it); 3 changes the rules refused. The
    report (--json) says which.
    """
    from storyflow.bootstrap import sync_ports
    from storyflow.entrypoints.cli.common import service_context
    from storyflow.services.sync import sync as run_sync

    root = click.get_current_context().find_root().obj or {}
    walked: SyncFilesPort | None = root.get("sync_files")  # launch.py's walk ahead
    bar = _Bar()
    try:
        with service_context(actor, new_database_ok=True) as ctx:
            report = run_sync(
                ctx,
                sync_ports(ctx, walked if walked and walked.root == ctx.config.root else None),
                dry_run=dry_run,
                prefer=prefer,
                progress=bar.start,
                jobs=jobs,
            )
    finally:
        bar.stop()
    status = report.exit_status()
    if as_json:
        emit_json(report.to_json())
    else:
        _human(report.to_json())
    if status:
        sys.exit(status)  # after the report; not an error, so no error body


def _human(data: dict[str, Any]) -> None:
    files = data["files"]
    echo(
        f"{files['found']} files: {files['unchanged']} unchanged, {files['read']} read, "
        f"{files['parsed']} parsed"
    )
    if data["rebuilt"]:
        echo(
            "rebuilt: "
            + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in data["rebuilt"].items())
        )
    for change in data["changes"]:
        if change["action"] == "imported":
            continue  # counted in "rebuilt"
        what = change.get("story") or change.get("epic") or ""
        extra = change.get("reason") or ""
        if change["action"] == "moved":
            extra = f"{change['from']} -> {change['to']}"
        elif change["action"] == "updated":
            extra = ", ".join(f"{k}={v}" for k, v in change.get("fields", {}).items())
        elif change["action"] == "submitted":
            extra = f"{change.get('kind')} v{change.get('version')}"
        elif change["action"] == "tokens_logged":
            extra = ", ".join(
                f"{m['phase']} +{m['tokens']:,} ({m['source']})" for m in change["measurements"]
            )
        where = f" ({change['file']})" if change.get("file") else ""
        echo(f"{change['direction']:<10} {change['action']} {what} {extra}".rstrip() + where)
    for conflict in data["conflicts"]:
        outcome = f"-> {conflict['resolution']} wins" if conflict["resolution"] else "(left alone)"
        echo(
            f"conflict   {conflict['file']}: {conflict['field']}: file {conflict['file_value']!r}"
            f", database {conflict['db_value']!r} {outcome}"
        )
    for problem in data["problems"]:
        where = problem["file"] or ""
        if problem["line"]:
            where += f":{problem['line']}"
        label = "warning" if problem["level"] == "warning" else "error"
        echo(f"{label}[{problem['code']}] {problem['message']} (hint: {problem['hint']})")
    for path in files["removed"]:
        echo(f"removed    {path} (the database keeps what it recorded)")
    if data["conflicts"] and not data["prefer"]:
        echo("conflicts are left as they are: storyflow sync --prefer files|db decides them")
    if data["nothing_to_do"]:
        echo("nothing to do: files and database agree")
    if data["dry_run"]:
        echo("dry run: nothing was written")
