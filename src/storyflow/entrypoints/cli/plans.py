"""storyflow plan import|export."""

from __future__ import annotations

from pathlib import Path

import click

from storyflow.entrypoints.cli.common import (
    actor_option,
    echo,
    emit_json,
    json_option,
    option,
    service_context,
)


@click.group()
def plan() -> None:
    """Plans: import a plan folder as an epic with its rules; export its stories index."""


@plan.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@option("--dry-run", is_flag=True, help="Compute and print the report; write nothing.")
@actor_option
@json_option
def plan_import(path: Path, dry_run: bool, actor: str | None, as_json: bool) -> None:
    """Import the plan folder PATH (or its PLAN.exec.md) with PLAN.meta.md and
    stories.index.md beside it: the epic, its rules and its stories, in one transaction.

    Re-importing reports what changed per story and per setting and never duplicates; a
    status changed in the index is a transition request, refused (a warning) when the
    state machine does not allow it.
    """
    from storyflow.bootstrap import plan_files
    from storyflow.services.plans import import_plan

    with service_context(actor) as ctx:
        report = import_plan(ctx, plan_files(ctx.config), path, dry_run=dry_run)
    if as_json:
        emit_json(report.to_json())
        return
    for line in report.lines():
        echo(line)


@plan.command("export")
@click.argument("prefix")
@option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the index here (default: stories.index.md beside the epic's plan).",
)
@option(
    "--force",
    is_flag=True,
    help="Replace the file even when it is not the epic's stories index.",
)
@json_option
def plan_export(prefix: str, output: Path | None, force: bool, as_json: bool) -> None:
    """Regenerate the stories.index.md of epic PREFIX from the database: progress summary,
    Ready to Start, one section per story. Byte-stable; written atomically. A file in the
    way that is not the epic's index (the plan, a story file) is refused (exit 5) unless
    --force."""
    from storyflow.bootstrap import plan_files
    from storyflow.services.plan_export import export_index

    with service_context() as ctx:
        result = export_index(ctx, plan_files(ctx.config), prefix, output=output, force=force)
    if as_json:
        emit_json(result)
        return
    verb = "wrote" if result["written"] else "unchanged:"
    echo(f"{verb} {result['path']} ({result['stories']} stories)")
