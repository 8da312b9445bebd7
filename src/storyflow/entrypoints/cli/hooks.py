"""storyflow hooks install, storyflow ci github."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from storyflow.entrypoints.cli.common import echo, emit_json, json_option, option


@click.group()
def hooks() -> None:
    """Git hooks that run storyflow check before every commit."""


@hooks.command("install")
@option(
    "--force",
    is_flag=True,
    help="Replace a pre-commit hook storyflow did not write (it is kept as a backup).",
)
@json_option
@click.pass_context
def hooks_install(click_ctx: click.Context, force: bool, as_json: bool) -> None:
    """Install a pre-commit hook in the workspace's git repository that runs storyflow check
    on the staged files: a commit with a finding fails, and shows it."""
    from storyflow.bootstrap import git_repository, load_config
    from storyflow.services.hooks import install

    root = click_ctx.find_root().obj or {}
    workspace = root.get("workspace")
    config = load_config(
        workspace=Path(workspace) if workspace else None,
        flags={"database_url": root.get("database_url")},
    )
    result = install(
        git_repository(config.root), workspace=config.root, python=sys.executable, force=force
    )
    if as_json:
        emit_json(result)
        return
    echo(f"pre-commit hook {result['status']}: {result['hook']}")
    if result["backup"]:
        echo(f"the previous hook is kept as {result['backup']}")


@click.group()
def ci() -> None:
    """Continuous integration that runs storyflow check and storyflow docs --check."""


@ci.command("github")
@option("--python-version", default="3.12", show_default=True, help="Python for the job.")
@option("--install", help="The command that installs storyflow (default: pip, this version).")
@option(
    "--branch",
    default="main",
    show_default=True,
    help="Branch whose pushes run the workflow (pull requests always do).",
)
@option(
    "--database-secret",
    help="A GitHub secret holding STORYFLOW_DATABASE_URL: check against a team database.",
)
@option(
    "--working-directory",
    default=".",
    show_default=True,
    help="The workspace's folder within the repository.",
)
def ci_github(
    python_version: str,
    install: str | None,
    branch: str,
    database_secret: str | None,
    working_directory: str,
) -> None:
    """Print a GitHub Actions workflow (save it as .github/workflows/storyflow.yml) that
    installs storyflow and fails when storyflow check finds anything or the generated docs
    are stale."""
    from storyflow.services.ci import github_workflow

    click.echo(
        github_workflow(
            python_version=python_version,
            install=install,
            branch=branch,
            database_secret=database_secret,
            working_directory=working_directory,
        ),
        nl=False,
    )
