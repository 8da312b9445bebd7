"""The ``storyflow`` command: parse, call a service, render, exit with the error's status.

Subcommands are imported only when invoked, so ``storyflow --help`` and read-only commands
start fast.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import click

from storyflow import __version__
from storyflow.errors import StoryflowError

# name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": (
        "storyflow.entrypoints.cli.workspace",
        "init",
        "Create storyflow.yaml, .storyflow/ and the database.",
    ),
    "epic": ("storyflow.entrypoints.cli.epics", "epic", "Create, list, show and update epics."),
    "story": (
        "storyflow.entrypoints.cli.stories",
        "story",
        "Create stories and move them through the lifecycle.",
    ),
    "approve": (
        "storyflow.entrypoints.cli.stories",
        "approve",
        "Record the PM/UX approval of a story's elaboration.",
    ),
    "next": (
        "storyflow.entrypoints.cli.stories",
        "next_",
        "Workable stories, by priority then age.",
    ),
    "board": ("storyflow.entrypoints.cli.stories", "board", "Counts and stories per status."),
    "graph": (
        "storyflow.entrypoints.cli.workspace",
        "graph",
        "The state machine (mermaid, table or JSON).",
    ),
    "artifact": (
        "storyflow.entrypoints.cli.artifacts",
        "artifact",
        "Submit, list, show and validate artifacts.",
    ),
    "token": ("storyflow.entrypoints.cli.tokens", "token", "Log token usage to the ledger."),
    "budget": ("storyflow.entrypoints.cli.tokens", "budget", "Token budgets against the ledger."),
    "requirement": (
        "storyflow.entrypoints.cli.workspace",
        "requirement",
        "Requirements stories wait for (e.g. a DB schema).",
    ),
    "db": ("storyflow.entrypoints.cli.workspace", "db", "Database schema: upgrade, current."),
    "run": (
        "storyflow.entrypoints.cli.runs",
        "run",
        "Run a story's next phase with its agent, or a whole epic with workers.",
    ),
    "worker": (
        "storyflow.entrypoints.cli.runs",
        "worker",
        "Claim actionable stories and run their phases until stopped (or idle).",
    ),
    "plan": ("storyflow.entrypoints.cli.plans", "plan", "Import a plan folder; export its index."),
    "check": (
        "storyflow.entrypoints.cli.check",
        "check",
        "Validate the workspace (exit 3 on findings).",
    ),
    "docs": (
        "storyflow.entrypoints.cli.check",
        "docs",
        "Generate the reference docs (--check: drift).",
    ),
    "hooks": ("storyflow.entrypoints.cli.hooks", "hooks", "Install the git pre-commit hook."),
    "ci": ("storyflow.entrypoints.cli.hooks", "ci", "Print a CI workflow (GitHub Actions)."),
    "models": (
        "storyflow.entrypoints.cli.models",
        "models",
        "The model catalogue and which model runs each phase.",
    ),
    "trace": ("storyflow.entrypoints.cli.observe", "trace", "A story's or the workspace's trace."),
    "metrics": (
        "storyflow.entrypoints.cli.observe",
        "metrics",
        "Tokens, cost, durations, gate pass rates, rework, cycle time.",
    ),
    "sync": (
        "storyflow.entrypoints.cli.sync",
        "sync",
        "Reconcile story files and database both ways (rebuilds an empty database).",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command: click.Command = getattr(module, entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"auto_envvar_prefix": "STORYFLOW", "help_option_names": ["-h", "--help"]},
)
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, readable=False),  # unreadable: WORKSPACE_UNREADABLE
    envvar="STORYFLOW_WORKSPACE",
    show_envvar=True,
    help="Workspace root (default: the nearest directory above with storyflow.yaml).",
)
@click.option(
    "--database-url",
    envvar="STORYFLOW_DATABASE_URL",
    show_envvar=True,
    help="Database URL (default: sqlite in .storyflow/; postgresql+psycopg://… for teams).",
)
@click.version_option(__version__, prog_name="storyflow")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None, database_url: str | None) -> None:
    """storyflow: a gated story lifecycle for AI coding agents and the people who steer them.

    Exit status: 0 ok, 1 internal, 2 usage, 3 refused by a rule, 4 refused by a budget,
    5 conflict or locked, 6 not found, 7 invalid input.
    """
    ctx.ensure_object(dict)
    ctx.obj["workspace"] = workspace
    ctx.obj["database_url"] = database_url


def _json_mode(argv: list[str]) -> bool:
    return "--json" in argv


def _print_error(error: StoryflowError, json_mode: bool) -> None:
    if json_mode:
        click.echo(json.dumps(error.to_json(), ensure_ascii=False))
        return
    hint = f" (hint: {error.hint})" if error.hint else ""
    click.echo(f"storyflow: error[{error.code}]: {error.message}{hint}", err=True)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    json_mode = _json_mode(args)
    if os.environ.get("STORYFLOW_DEBUG"):
        import logging  # ~8 ms: only when asked for

        logging.basicConfig(
            level=logging.DEBUG, format="storyflow: %(levelname)s %(name)s: %(message)s"
        )
    try:
        cli.main(args=args, prog_name="storyflow", standalone_mode=False)
    except StoryflowError as error:
        _print_error(error, json_mode)
        sys.exit(error.exit_status)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        click.echo("storyflow: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        from storyflow.errors import UsageError

        where = getattr(error, "ctx", None)
        command = where.command_path if where is not None else "storyflow COMMAND"
        usage = UsageError(error.format_message(), hint=f"{command} --help shows usage")
        _print_error(usage, json_mode)  # one line, as for every other error
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("storyflow: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        if os.environ.get("STORYFLOW_DEBUG"):
            raise
        from storyflow.errors import StoryflowError as Root

        internal = Root(
            f"internal error: {type(exc).__name__}: {exc}",
            hint="rerun with STORYFLOW_DEBUG=1 for the traceback, and report it",
        )
        _print_error(internal, json_mode)
        sys.exit(1)
    sys.exit(0)


def run() -> None:
    """The console script: ``main`` without the 20-30 ms of interpreter teardown a
    short-lived process does not need (the database is closed and output flushed first)."""
    import gc

    gc.disable()  # a CLI run allocates little and exits: collection is wasted work
    try:
        main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    else:
        code = 0
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
