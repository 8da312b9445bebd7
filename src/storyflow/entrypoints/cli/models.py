"""storyflow models show, models check: the model catalogue and its assignments.

Both read storyflow.yaml (and models.yaml beside it); only ``models show --epic|--story``
opens the database, to refuse an epic or story that does not exist.
"""

from __future__ import annotations

from pathlib import Path

import click

from storyflow.config import Config
from storyflow.entrypoints.cli.common import echo, emit_json, json_option, option, table


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


def _require(config: Config, epic: str | None, story: str | None) -> None:
    """Refuse an unknown epic or story (exit 6) as every other command does."""
    from storyflow.bootstrap import open_context

    # the lenient config: an assignment problem is shown as a finding, not refused here
    ctx = open_context(config)
    try:
        if story is not None:
            ctx.story(story)
        if epic is not None:
            ctx.epic(epic)
    finally:
        ctx.store.close()
        for warning in ctx.warnings:
            click.echo(f"storyflow: warning: {warning}", err=True)


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
    if epic is not None or story is not None:
        _require(config, epic, story)
    data = show(config, epic=epic, story=story)
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
    role or agent; exit 0 otherwise."""
    from storyflow.errors import StoryflowError
    from storyflow.services.models import check

    try:
        data = check(_config())
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
