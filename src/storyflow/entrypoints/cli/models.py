"""storyflow models show, models check: the model catalogue and its assignments.

Both read storyflow.yaml (and models.yaml beside it). They open the database only when
they need it: ``models show --epic|--story`` to refuse an epic or story that does not exist,
and both when an assignment names an epic or story, to say when that one does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from storyflow.config import Config
from storyflow.entrypoints.cli.common import echo, emit_json, json_option, option, table

if TYPE_CHECKING:
    from storyflow.services.models import Scopes


def _config() -> Config:
    """The workspace's config with assignment problems kept as findings, so both commands
    can show them instead of stopping at the first."""
    from storyflow import config as config_module

    root = click.get_current_context().find_root().obj or {}
    workspace = root.get("workspace")
    return config_module.load(
        cwd=Path.cwd(),
        workspace=Path(workspace) if workspace else None,
        flags={"database_url": root.get("database_url")},
        strict_assignments=False,
    )


def _warn(message: str) -> None:
    click.echo(f"storyflow: warning: {message}", err=True)


def _workspace(config: Config, epic: str | None = None, story: str | None = None) -> Scopes | None:
    """Open the database when the command needs it: refuse an unknown ``epic`` or ``story``
    (exit 6) as every other command does, and read the epics and stories the overrides are
    held against. A database that cannot be opened or read only leaves the overrides
    unchecked (a warning), unless ``epic`` or ``story`` needs it."""
    from storyflow.bootstrap import open_context
    from storyflow.errors import StoryflowError
    from storyflow.services.models import NOT_CHECKED, has_overrides, workspace_scopes

    required = epic is not None or story is not None
    if not required and not has_overrides(config):
        return None
    try:
        # the lenient config: an assignment problem is shown as a finding, not refused here
        ctx = open_context(config)
        try:
            if story is not None:
                ctx.story(story)
            if epic is not None:
                ctx.epic(epic)
            return workspace_scopes(ctx) if has_overrides(config) else None
        finally:
            ctx.store.close()
            for warning in ctx.warnings:
                _warn(warning)
    except StoryflowError as error:
        if required:
            raise
        _warn(
            NOT_CHECKED.format(
                reason=f"the database cannot be opened ({error.code}): {error.message}"
            )
        )
        return None


@click.group()
def models() -> None:
    """The model catalogue (prices) and which model runs each phase."""


def _price(value: float) -> str:
    return f"{value:g}"


@models.command("show")
@option("--epic", help="Show the assignments in effect for this epic.")
@option("--story", help="Show the assignments in effect for this story.")
@json_option
def models_show(epic: str | None, story: str | None, as_json: bool) -> None:
    """The catalogue and the effective assignment table (per phase: the agent that runs it,
    its model, and the key that decided it). Precedence: story > epic > workspace; phases >
    roles > agents > default."""
    from storyflow.domain.model import parse_prefix, parse_story_id
    from storyflow.services.models import show

    if epic is not None:
        epic = parse_prefix(epic)
    if story is not None:
        parse_story_id(story)
        story = story.strip()
    config = _config()
    data = show(config, epic=epic, story=story, scopes=_workspace(config, epic, story))
    if as_json:
        emit_json(data)
        return
    table(
        ["model", "provider", "model id", "input", "output", "cache read", "cache write"],
        [
            [
                m["model"],
                m["provider"],
                m["model_id"],
                _price(m["input"]),
                _price(m["output"]),
                _price(m["cache_read"]),
                _price(m["cache_write"]),
            ]
            for m in data["catalogue"]
        ],
        title="catalogue (USD per million tokens):",
    )
    echo()
    table(
        ["scope", "phase", "role", "agent", "model", "decided by"],
        [
            [
                r["scope"],
                r["phase"],
                r["role"] or "-",
                f"{r['agent']} ({r['agent_type']})",
                r["model"] or "(agent default)",
                r["decided_by"] or "-",
            ]
            for r in data["effective"]
        ],
        title="effective assignments:",
    )
    for finding in data["findings"]:
        click.echo(
            f"storyflow: warning: {finding['key']}: {finding['problem']} ({finding['hint']})",
            err=True,
        )


@models.command("check")
@json_option
def models_check(as_json: bool) -> None:
    """Exit 3, listing every finding, when an assignment names an unknown model, phase,
    role, agent, or an epic or story the database does not have (its hint names the
    closest one); exit 0 otherwise. Without a database to read (it cannot be opened, or
    has no epic yet) the epic and story overrides are not checked: a warning says so."""
    from storyflow.errors import StoryflowError
    from storyflow.services.models import check

    config = _config()
    try:
        data = check(config, _workspace(config))
    except StoryflowError as error:
        if not as_json and error.code == "MODEL_ASSIGNMENT_INVALID":  # else: no findings
            findings = error.details.get("findings", [])
            table(
                ["key", "problem", "hint"],
                [[f["key"], f["problem"], f["hint"]] for f in findings],
                title=f"{len(findings)} finding(s):",
            )
        raise
    if as_json:
        emit_json(data)
        return
    echo(f"ok: {data['assignments']} assignment(s) over {data['models']} catalogue model(s)")
