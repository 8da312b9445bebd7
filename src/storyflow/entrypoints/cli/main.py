"""The ``storyflow`` command: parse, call a service, render, exit with the error's status.

Subcommands are imported only when invoked, so ``storyflow --help`` and read-only commands
start fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from storyflow import __version__
from storyflow.entrypoints.cli import fast
from storyflow.entrypoints.cli.plain import guarded

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


def _click_main(args: list[str], prepared: dict[str, Any] | None = None) -> int:
    """Click parses and runs the command; its own exceptions become our exit statuses.
    ``prepared``: what the launcher started for the command (the root context's obj)."""
    try:
        cli.main(args=args, prog_name="storyflow", standalone_mode=False, obj=dict(prepared or {}))
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.Abort:
        click.echo("storyflow: aborted", err=True)
        return 130
    except click.ClickException as error:
        from storyflow.errors import UsageError

        where = getattr(error, "ctx", None)
        command = where.command_path if where is not None else "storyflow COMMAND"
        hint = _extra_argument_hint(error, where, args) or f"{command} --help shows usage"
        raise UsageError(error.format_message(), hint=hint) from error
    return 0


# Options whose value is words (a title, a reason, a name): extra arguments after one are
# most likely the rest of an unquoted value.
_PROSE = frozenset({"--title", "--reason", "--into", "--by", "--actor"})


def _extra_argument_hint(
    error: click.ClickException, where: click.Context | None, args: list[str]
) -> str | None:
    """For extra arguments right after an option's value, what was probably meant: several
    values for a repeatable option, or a value with spaces that was not quoted."""
    message = error.format_message()
    if where is None or not message.startswith("Got unexpected extra argument"):
        return None
    extras = message.partition("(")[2].rstrip(")").split(" ")
    first = next((i for i, arg in enumerate(args) if arg == extras[0]), None)
    if first is None or args[first : first + len(extras)] != extras:
        return None
    before = first - 1  # back to the option whose value the extras follow
    while before >= 0 and not args[before].startswith("-"):
        before -= 1
    if before < 0:
        return None
    name, eq, inline = args[before].partition("=")
    option = next(
        (p for p in where.command.params if isinstance(p, click.Option) and name in p.opts),
        None,
    )
    values = ([inline] if eq else []) + args[before + 1 : first + len(extras)]
    if option is None or option.is_flag or len(values) != 1 + len(extras):
        return None  # not one option value followed by the extras
    if name in _PROSE:
        return f"quote a value with spaces: {name} '{' '.join(values)}'"
    if option.multiple:
        return f"give several values with commas ({name} A,B) or repeat {name}"
    return None


def main(
    argv: list[str] | None = None,
    *,
    prepared: dict[str, Any] | None = None,
    fast_path: bool = True,
) -> None:
    """Run one command line and exit with its status: the fast read path first (unless the
    caller, the console script, already tried it), else Click."""
    args = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("STORYFLOW_DEBUG"):
        import logging  # ~8 ms: only when asked for

        logging.basicConfig(
            level=logging.DEBUG, format="storyflow: %(levelname)s %(name)s: %(message)s"
        )
    code = fast.handle(args) if fast_path else None
    if code is None:
        code = guarded(lambda: _click_main(args, prepared), _json_mode(args))
    sys.exit(code)


def run() -> None:  # pragma: no cover - the console script is storyflow.entrypoints.cli.launch
    from storyflow.entrypoints.cli.launch import run as launch

    launch()


if __name__ == "__main__":  # pragma: no cover
    run()
