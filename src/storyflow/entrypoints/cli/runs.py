"""storyflow run, storyflow worker: agents drive stories through their phases."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import click

from storyflow.entrypoints.cli.common import actor_option, echo, emit_json, json_option, option

if TYPE_CHECKING:
    from storyflow.config import Config
    from storyflow.entrypoints.cli.live import LiveBoard
    from storyflow.services.context import Context
    from storyflow.services.run_context import RunEnv
    from storyflow.services.run_report import RunObserver, RunSummary
    from storyflow.services.runs import PhaseOutcome


def _config() -> Config:
    from pathlib import Path

    from storyflow.bootstrap import load_config

    root = click.get_current_context().find_root().obj or {}
    workspace = root.get("workspace")
    flags = {"database_url": root.get("database_url")}
    return load_config(workspace=Path(workspace) if workspace else None, flags=flags)


def _observer(as_json: bool) -> RunObserver:
    """One line per phase, and a warning per budget limit crossed, on stderr (the live board
    plugs in here)."""
    from storyflow.services.run_report import PrintObserver, SerialObserver

    return SerialObserver(PrintObserver(lambda line: click.echo(line, err=True)))


def _report(summary: RunSummary) -> None:
    """The final report: drawn with Rich on a terminal, plain text otherwise."""
    if sys.stdout.isatty():
        from storyflow.entrypoints.cli.live import render_report

        render_report(summary)
        return
    from storyflow.services.run_report import render_text

    click.echo(render_text(summary), nl=False)


def _board(config: Config, ctx: Context, epic: str | None) -> LiveBoard | None:
    """The live board, when stderr is a terminal (otherwise one line per phase)."""
    if not sys.stderr.isatty():
        return None
    from storyflow.entrypoints.cli.live import LiveBoard

    title = f"storyflow run {epic}" if epic else "storyflow worker"
    return LiveBoard(title=title, counts=ctx.store.status_counts(epic), models=config.models)


def _env(config: Config, observer: RunObserver) -> RunEnv:
    from storyflow.bootstrap import agents
    from storyflow.services.run_context import RunEnv
    from storyflow.services.runs import worker_name

    return RunEnv(
        settings=config.runs, agents=agents(config), worker=worker_name(), observer=observer
    )


@contextmanager
def _signals(env: RunEnv) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish the running phases, take nothing new. Second: interrupt
    the agents, record their runs as abandoned and release the leases."""

    def handle(signum: int, frame: Any) -> None:
        if env.stop.is_set():
            env.abort.set()
            click.echo("storyflow: interrupting the running agents", err=True)
        else:
            env.stop.set()
            click.echo(
                "storyflow: stopping after the running phases (again to interrupt them)", err=True
            )

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_for(outcome: PhaseOutcome) -> None:
    from storyflow.errors import CODES, StoryflowError, error_class

    if outcome.status in ("succeeded", "skipped", "recorded"):
        return
    details = outcome.to_json()
    if outcome.status == "paused" and outcome.error_code == "AWAITING_APPROVAL":
        code = "AWAITING_APPROVAL"
        hint = (
            f"approve the elaboration (storyflow approve {outcome.story_id} --by NAME), "
            f"then storyflow run {outcome.story_id} takes it to ready-to-work"
        )
        message = f"{outcome.story_id}: {outcome.phase} paused: {outcome.message}"
    elif outcome.status == "paused":
        code = "BUDGET_CONFIRMATION_REQUIRED"
        hint = (
            f"soft_gate: confirm the overrun with storyflow story move {outcome.story_id} "
            "STATUS --confirm-budget --reason '...'"
        )
        message = f"{outcome.story_id}: {outcome.phase} paused: the budget needs a confirmation"
    else:
        code = outcome.error_code if outcome.error_code in CODES else "INTERNAL"
        hint = outcome.hint or (
            f"the story is blocked: storyflow story show {outcome.story_id}"
            if outcome.status == "blocked"
            else f"storyflow story show {outcome.story_id}"
        )
        message = f"{outcome.story_id}: {outcome.phase} {outcome.status}: {outcome.message}"
    cls: type[StoryflowError] = error_class(code)
    raise cls(message, code=code, hint=hint, details=details)


@click.command()
@click.argument("story_id", required=False)
@option("--epic", help="Drive every workable story of this epic (instead of one STORY_ID).")
@option(
    "--workers",
    type=int,
    help="With --epic: parallel worker processes (default: runs.workers).",
)
@option("--phase", help="With STORY_ID: run this phase instead of the next one.")
@option("--force", is_flag=True, help="Re-run a phase that runs once (generate).")
@option("--wait", is_flag=True, help="Wait for another run's lease instead of exit 5.")
@actor_option
@json_option
def run(
    story_id: str | None,
    epic: str | None,
    workers: int | None,
    phase: str | None,
    force: bool,
    wait: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """Run STORY_ID's next phase with its agent, or every workable story of --epic.

    A second run of a leased story exits 5 (STORY_LOCKED) unless --wait. With --epic the
    workers go on until nothing is left to do, then print the report. A phase whose tokens
    cross its budget's warning or hard limit says so on stderr as they are committed.
    """
    from storyflow.errors import UsageError

    if (story_id is None) == (epic is None):
        raise UsageError("give a STORY_ID or --epic PREFIX", hint="storyflow run --help")
    if story_id is not None and workers is not None:
        raise UsageError("--workers goes with --epic", hint="storyflow run --epic PREFIX -w N")
    if epic is not None and (phase or force or wait):
        raise UsageError("--phase, --force and --wait go with a STORY_ID", hint="storyflow run ID")
    config = _config()
    if epic is not None:
        summary = _pool(config, actor, epic=epic, workers=workers, until_idle=True)
        if as_json:
            emit_json(summary.to_json())
        else:
            _report(summary)
        if summary.interrupted:
            sys.exit(130)
        return
    assert story_id is not None
    from storyflow.bootstrap import open_context
    from storyflow.services.workers import run_story

    env = _env(config, _observer(as_json))
    ctx = open_context(config, actor=actor)
    try:
        with _signals(env):
            outcome = run_story(ctx, env, story_id, phase=phase, force=force, wait=wait)
    finally:
        ctx.store.close()
        for warning in ctx.take_warnings():  # budget figures: the crossing line says them
            click.echo(f"storyflow: warning: {warning}", err=True)
    _raise_for(outcome)
    if as_json:
        emit_json(outcome.to_json())
        return
    move = f" {outcome.source} -> {outcome.target}" if outcome.target else ""
    verdict = f" {outcome.verdict}" if outcome.verdict else ""
    echo(f"{outcome.story_id}: {outcome.phase} {outcome.status}{verdict}{move}")


def _pool(
    config: Config,
    actor: str | None,
    *,
    epic: str | None,
    workers: int | None,
    until_idle: bool,
    flag: str = "--workers",
) -> RunSummary:
    """The workers: one in this process, or more in processes of their own (with fast
    agents the work is CPU-bound, and threads of one process share one interpreter)."""
    from storyflow.bootstrap import open_context
    from storyflow.errors import UsageError
    from storyflow.services.run_report import SerialObserver
    from storyflow.services.run_summary import build_summary
    from storyflow.services.runs import worker_name
    from storyflow.services.workers import run_pool

    count = workers if workers is not None else config.runs.workers
    if count < 1 or count > 64:
        raise UsageError(
            f"{flag} must be between 1 and 64"
            + ("" if workers is not None else " (runs.workers in storyflow.yaml)"),
            hint=f"e.g. {flag} 4",
        )
    ctx = open_context(config, actor=actor)
    try:
        if epic:
            ctx.epic(epic)
        story_ids = [s.id for s in ctx.store.list_stories(epic=epic)] if epic else []
        board = _board(config, ctx, epic)
        env = _env(config, SerialObserver(board) if board else _observer(False))
        started = ctx.now()  # the runs' own clock (the database server's, when it is off)
        with _signals(env), board or nullcontext():
            if count > 1:
                from storyflow.worker_processes import run_processes

                run_ids = run_processes(
                    config, env, actor=actor, workers=count, epic=epic, until_idle=until_idle
                )
            else:
                run_ids = run_pool(
                    lambda: open_context(config, actor=actor),
                    env,
                    workers=count,
                    epic=epic,
                    until_idle=until_idle,
                    name=worker_name,
                )
        touched = [s.id for s in ctx.store.list_stories(epic=epic)] if epic else story_ids
        return build_summary(
            ctx,
            run_ids,
            epic=epic,
            started_at=started,
            finished_at=ctx.now(),
            workers=count,
            interrupted=env.stop.is_set(),
            story_ids=touched,
        )
    finally:
        ctx.store.close()


@click.command()
@option(
    "--concurrency",
    type=int,
    help="Parallel worker processes (default: runs.workers); 1 works in this process.",
)
@option("--epic", help="Only stories of this epic.")
@option("--until-idle", is_flag=True, help="Exit once nothing is claimable and nothing runs.")
@actor_option
@json_option
def worker(
    concurrency: int | None, epic: str | None, until_idle: bool, actor: str | None, as_json: bool
) -> None:
    """Claim the next actionable story, run its phase, repeat (one line per phase, and one
    per budget limit a phase crosses).

    Runs until SIGINT/SIGTERM (the first lets running phases finish, the second interrupts
    them) or, with --until-idle, until there is nothing left to do; then prints the report.
    With --concurrency N > 1 the workers are processes under this one, as run --epic's are.
    """
    config = _config()
    summary = _pool(
        config, actor, epic=epic, workers=concurrency, until_idle=until_idle, flag="--concurrency"
    )
    if as_json:
        emit_json(summary.to_json())
    else:
        _report(summary)
