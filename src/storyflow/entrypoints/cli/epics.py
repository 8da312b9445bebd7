"""storyflow epic new|list|show|update."""

from __future__ import annotations

from typing import Any

import click

from storyflow.entrypoints.cli.common import (
    actor_option,
    echo,
    emit_json,
    json_option,
    option,
    service_context,
    table,
)


@click.group()
def epic() -> None:
    """Epics: a prefix, a layout, a time zone, and the plan's gate settings."""


def _enforcement(value: str | None) -> Any:
    if value is None:
        return None
    from storyflow.domain.budgets import parse_enforcement

    return parse_enforcement(value)


@epic.command("new")
@click.argument("prefix")
@option("--title", required=True, help="The epic's title.")
@option("--layout", type=click.Choice(["staged", "flat"]), help="staged (FLOW) or flat (REVI).")
@option("--root", help="Folder for the epic's stories, relative to the workspace.")
@option("--tz", "timezone", help="IANA time zone for Agent Log and file-name stamps.")
@option("--coverage-threshold", type=float, help="Code review coverage minimum (percent).")
@option(
    "--require-approval/--no-require-approval",
    default=None,
    help="PM/UX approval of elaborations before ready-to-work.",
)
@option("--enforcement", help="Budget enforcement: advisory, warning, soft_gate, hard_gate.")
@option("--reuse-gate/--no-reuse-gate", default=True, help="Enforce the reuse gate.")
@actor_option
@json_option
def epic_new(
    prefix: str,
    title: str,
    layout: str | None,
    root: str | None,
    timezone: str | None,
    coverage_threshold: float | None,
    require_approval: bool | None,
    enforcement: str | None,
    reuse_gate: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """Create the epic PREFIX (e.g. FLOW)."""
    from storyflow.domain.layouts import LayoutName
    from storyflow.services.epics import create_epic, epic_json

    with service_context(actor) as ctx:
        created = create_epic(
            ctx,
            prefix,
            title=title,
            layout=LayoutName(layout) if layout else None,
            root=root,
            timezone=timezone,
            coverage_threshold=coverage_threshold,
            require_approval=require_approval,
            enforcement=_enforcement(enforcement),
            reuse_gate=reuse_gate,
        )
    if as_json:
        emit_json(epic_json(created))
        return
    echo(
        f"created epic {created.prefix} ({created.layout.value} layout in {created.root}, "
        f"{created.timezone})"
    )
    echo(f"next: storyflow story new {created.prefix} --title 'First story'")


@epic.command("list")
@json_option
def epic_list(as_json: bool) -> None:
    """All epics with their story counts."""
    from storyflow.services.epics import epic_json

    with service_context() as ctx:
        rows = [epic_json(e, ctx.store.status_counts(e.prefix)) for e in ctx.store.list_epics()]
    if as_json:
        emit_json(rows)
        return
    table(
        ["prefix", "title", "layout", "stories", "root"],
        [[r["prefix"], r["title"], r["layout"], r["stories"], r["root"]] for r in rows],
    )


@epic.command("show")
@click.argument("prefix")
@json_option
def epic_show(prefix: str, as_json: bool) -> None:
    """One epic: settings and counts per status."""
    from storyflow.services.epics import epic_json

    with service_context() as ctx:
        found = ctx.epic(prefix.strip())
        data = epic_json(found, ctx.store.status_counts(found.prefix))
    if as_json:
        emit_json(data)
        return
    echo(f"{data['prefix']}: {data['title']}")
    echo(f"  layout {data['layout']} in {data['root']}, time zone {data['timezone']}")
    settings = data["settings"]
    echo(
        f"  coverage >= {settings['coverage_threshold']}%, approval "
        f"{'required' if settings['require_approval'] else 'not required'}, budget "
        f"{settings['enforcement']}, reuse gate {'on' if settings['reuse_gate'] else 'off'}"
    )
    echo(
        f"  {data['stories']} stories: "
        + ", ".join(f"{k} {v}" for k, v in data["status_counts"].items())
    )


@epic.command("update")
@click.argument("prefix")
@option("--title", help="New title.")
@option("--tz", "timezone", help="New time zone.")
@option("--coverage-threshold", type=float, help="Code review coverage minimum (percent).")
@option("--require-approval/--no-require-approval", default=None, help="Approval gate.")
@option("--enforcement", help="Budget enforcement level.")
@actor_option
@json_option
def epic_update(
    prefix: str,
    title: str | None,
    timezone: str | None,
    coverage_threshold: float | None,
    require_approval: bool | None,
    enforcement: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Change an epic's title, time zone or gate settings."""
    from storyflow.services.epics import epic_json, update_epic

    with service_context(actor) as ctx:
        updated = update_epic(
            ctx,
            prefix,
            title=title,
            timezone=timezone,
            coverage_threshold=coverage_threshold,
            require_approval=require_approval,
            enforcement=_enforcement(enforcement),
        )
    if as_json:
        emit_json(epic_json(updated))
    else:
        echo(f"updated epic {updated.prefix}")
