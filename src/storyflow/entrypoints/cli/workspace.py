"""storyflow init, graph, requirement, db."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from storyflow.config import Config
from storyflow.entrypoints.cli.common import (
    actor_option,
    echo,
    emit_json,
    json_option,
    option,
    service_context,
    table,
)


@click.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@option("--database-url", "database_url", help="Write this database URL into storyflow.yaml.")
@option(
    "--layout",
    type=click.Choice(["staged", "flat"]),
    default="staged",
    help="Default layout for new epics.",
)
@option("--tz", "timezone", default="UTC", help="Default time zone for new epics (IANA name).")
@json_option
@click.pass_context
def init(
    ctx: click.Context,
    directory: str | None,
    database_url: str | None,
    layout: str,
    timezone: str,
    as_json: bool,
) -> None:
    """Create storyflow.yaml and .storyflow/ in DIRECTORY (default: here) and migrate the
    database. Safe to repeat."""
    from storyflow.bootstrap import init_workspace
    from storyflow.domain.layouts import LayoutName

    root_obj = ctx.find_root().obj or {}
    url = database_url or root_obj.get("database_url")
    target = Path(directory or root_obj.get("workspace") or ".")
    result = init_workspace(target, database_url=url, layout=LayoutName(layout), timezone=timezone)
    if as_json:
        emit_json(result)
        return
    verb = "initialised" if result["created"] else "already initialised"
    echo(
        f"{verb}: {result['workspace']} (database {result['database']}, schema "
        f"{result['schema_revision']})"
    )
    if result["created"]:
        echo("next: storyflow epic new PREFIX --title 'Epic title'")
    elif result["new_database"]:  # a clone: the files are there, the local database is not
        echo("next: storyflow sync rebuilds the new database from the workspace's story files")


@click.command()
@option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "table", "json"]),
    default="mermaid",
    help="Output format.",
)
def graph(fmt: str) -> None:
    """The state machine: 17 statuses, their edges and guards."""
    from storyflow.domain.transitions import EDGES, mermaid

    if fmt == "mermaid":
        click.echo(mermaid(), nl=False)
        return
    rows: list[dict[str, Any]] = [
        {
            "from": e.source.value,
            "to": e.target.value,
            "trigger": e.trigger,
            "guards": [g.value for g in e.guards],
            "evidence": None
            if e.evidence is None
            else {
                "kind": e.evidence.kind.value,
                "verdicts": [v.value for v in e.evidence.verdicts],
                "anchor": e.evidence.anchor.value,
            },
            "budget_phase": e.budget_phase.value if e.budget_phase else None,
        }
        for e in EDGES
    ]
    if fmt == "json":
        emit_json(rows)
        return
    table(
        ["from", "to", "trigger", "guards", "budget"],
        [
            [r["from"], r["to"], r["trigger"], ",".join(r["guards"]), r["budget_phase"] or ""]
            for r in rows
        ],
    )


@click.group()
def requirement() -> None:
    """Requirements stories can wait for (e.g. db-schema-002)."""


@requirement.command("list")
@json_option
def requirement_list(as_json: bool) -> None:
    """Every requirement, whether it is met, and how many stories wait for it."""
    from storyflow.services.requirements import list_requirements

    with service_context() as ctx:
        rows = list_requirements(ctx)
    if as_json:
        emit_json(rows)
        return
    table(
        ["name", "met", "stories", "note"],
        [[r["name"], "yes" if r["met"] else "no", r["stories"], r["note"]] for r in rows],
    )


def _set(name: str, met: bool, note: str | None, actor: str | None, as_json: bool) -> None:
    from storyflow.services.requirements import set_requirement

    with service_context(actor) as ctx:
        result = set_requirement(ctx, name, met=met, note=note)
    if as_json:
        emit_json(result)
    else:
        echo(f"{result['name']}: {'met' if met else 'not met'}")


@requirement.command("met")
@click.argument("name")
@option("--note", help="What makes it met (e.g. the migration that deployed it).")
@actor_option
@json_option
def requirement_met(name: str, note: str | None, actor: str | None, as_json: bool) -> None:
    """Mark NAME as met: stories that require it may start."""
    _set(name, True, note, actor, as_json)


@requirement.command("unmet")
@click.argument("name")
@option("--note", help="Why it is not met any more.")
@actor_option
@json_option
def requirement_unmet(name: str, note: str | None, actor: str | None, as_json: bool) -> None:
    """Mark NAME as not met: stories that require it cannot start."""
    _set(name, False, note, actor, as_json)


@click.group()
def db() -> None:
    """The database schema (Alembic migrations shipped in the package)."""


@db.command("upgrade")
@option(
    "--revision",
    default="head",
    help="Target revision: head, or one this storyflow ships (never behind the database's).",
)
@json_option
def db_upgrade(revision: str, as_json: bool) -> None:
    """Migrate the database to REVISION (head by default)."""
    from storyflow.adapters.db.connection import connect
    from storyflow.adapters.db.migrate import (
        refuse_unknown,
        schema_revision,
        upgrade,
        upgrade_target,
    )

    config = _config()
    conn = connect(config.effective_database_url, config.root)
    try:
        # Alembic cannot place a revision it has never seen: refuse with the error contract.
        before = schema_revision(conn)
        refuse_unknown(before)
        upgrade(conn.url, upgrade_target(revision, before))
        current = schema_revision(conn)
    finally:
        conn.close()
    if as_json:
        emit_json({"revision": current})
    else:
        echo(f"database at revision {current}")


@db.command("current")
@json_option
def db_current(as_json: bool) -> None:
    """The database's schema revision, and this storyflow's head."""
    from storyflow.adapters.db.connection import connect
    from storyflow.adapters.db.migrate import HEAD_REVISION, schema_revision

    config = _config()
    conn = connect(config.effective_database_url, config.root)
    try:
        current = schema_revision(conn)
    finally:
        conn.close()
    data = {"revision": current, "head": HEAD_REVISION, "up_to_date": current == HEAD_REVISION}
    if as_json:
        emit_json(data)
    else:
        echo(
            f"revision {current or '(none)'}; head {HEAD_REVISION}"
            + ("" if data["up_to_date"] else " (run storyflow db upgrade)")
        )


def _config() -> Config:
    from storyflow.bootstrap import load_config

    root = click.get_current_context().find_root().obj or {}
    workspace = root.get("workspace")
    return load_config(
        workspace=Path(workspace) if workspace else None,
        flags={"database_url": root.get("database_url")},
    )
