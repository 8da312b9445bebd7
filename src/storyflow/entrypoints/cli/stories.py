"""storyflow story …, approve, next, board."""

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
from storyflow.entrypoints.cli.plain import JsonText, split_values


@click.group()
def story() -> None:
    """Stories: create, inspect and move them through the 17 statuses."""


def _enforcement(value: str | None) -> Any:
    if value is None:
        return None
    from storyflow.domain.budgets import parse_enforcement

    return parse_enforcement(value)


@story.command("new")
@click.argument("prefix")
@option("--title", required=True, help="The story's title.")
@option("--priority", default="P2", show_default=True, help="P0 (highest) to P4.")
@option("--phase", type=int, help="The plan's phase number.")
@option("--depends-on", multiple=True, help="Story IDs this one waits for (repeat or comma).")
@option("--requires", multiple=True, help="Requirements this one waits for (e.g. db-schema-002).")
@option("--breaking-change", is_flag=True, help="The plan must state a migration path.")
@option("--graph-integration", is_flag=True, help="Verification needs scenario evidence.")
@option(
    "--budget-multiplier",
    type=float,
    default=1.0,
    show_default=True,
    help="Scales the token budget (token_budget_multiplier).",
)
@option("--enforcement", help="Override the epic's budget enforcement for this story.")
@option("--harness", is_flag=True, help="Create PREFIX-000, the harness story.")
@actor_option
@json_option
def story_new(
    prefix: str,
    title: str,
    priority: str,
    phase: int | None,
    depends_on: tuple[str, ...],
    requires: tuple[str, ...],
    breaking_change: bool,
    graph_integration: bool,
    budget_multiplier: float,
    enforcement: str | None,
    harness: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """Create the next story of epic PREFIX (status pending) and its story file."""
    from storyflow.services.stories import create_story
    from storyflow.services.story_reads import story_json

    with service_context(actor) as ctx:
        created = create_story(
            ctx,
            prefix,
            title=title,
            priority=priority,
            phase=phase,
            depends_on=split_values(depends_on),
            requires=split_values(requires),
            breaking_change=breaking_change,
            graph_integration=graph_integration,
            budget_multiplier=budget_multiplier,
            enforcement=_enforcement(enforcement),
            harness=harness,
        )
        path = ctx.files.rel(ctx.files.story_file(ctx.epic(created.epic), created))
    if as_json:
        emit_json({**story_json(created), "path": path})
        return
    echo(f"created {created.id}: {created.title} ({path})")


@story.command("list")
@option("--epic", help="Only this epic.")
@option("--status", "statuses", multiple=True, help="Only these statuses (repeat).")
@json_option
def story_list(epic: str | None, statuses: tuple[str, ...], as_json: bool) -> None:
    """Stories, by epic and number."""
    from storyflow.domain.statuses import parse_status
    from storyflow.services.story_reads import list_stories, list_stories_json

    wanted = [parse_status(s)[0] for s in split_values(statuses)]
    if as_json:
        with service_context() as ctx:
            text = list_stories_json(ctx, epic=epic, statuses=wanted or None)
        emit_json(JsonText(text))
        return
    with service_context() as ctx:
        stories = list_stories(ctx, epic=epic, statuses=wanted or None)
    table(
        ["id", "status", "priority", "title"],
        [[s.id, s.status.value, s.priority, s.title] for s in stories],
    )


@story.command("show")
@click.argument("story_id")
@json_option
def story_show(story_id: str, as_json: bool) -> None:
    """Status, next action, artifacts, budget, lock and the last events."""
    from storyflow.services.story_reads import show_story

    with service_context() as ctx:
        data = show_story(ctx, story_id)
    if as_json:
        emit_json(data)
        return
    echo(f"{data['id']}: {data['title']}")
    echo(
        f"  status    {data['status']}"
        + (
            f" (from {data['blocked_from']}: {data['blocked_reason']})"
            if data["blocked_from"]
            else ""
        )
    )
    echo(f"  next      {data['next_action']}")
    echo(f"  priority  {data['priority']}   file {data['path']}")
    if data["depends_on"]:
        unmet = {d["id"]: d["status"] for d in data["dependencies"]}
        echo(
            "  depends   "
            + ", ".join(
                f"{d} ({unmet[d]})" if d in unmet else f"{d} (completed)"
                for d in data["depends_on"]
            )
        )
    if data["requires"]:
        echo(
            "  requires  "
            + ", ".join(
                r + (" (unmet)" if r in data["unmet_requirements"] else " (met)")
                for r in data["requires"]
            )
        )
    lock = data["lock"]
    echo("  lock      " + (f"{lock['owner']} until {lock['expires_at']}" if lock else "none"))
    budget = data["budget"]
    echo(
        f"  budget    {budget['total_used']:,} of ~{budget['total_estimated']:,} tokens, "
        f"${budget['cost_usd']:.4f} ({budget['enforcement']}, x{budget['multiplier']})"
    )
    if data["artifacts"]:
        echo("  artifacts")
        for kind, art in data["artifacts"].items():
            verdict = f" {art['verdict']}" if art["verdict"] else ""
            echo(f"    {kind:<13} v{art['version']}{verdict}  {art['path']}")
    if data["last_events"]:
        echo("  last events")
        for event in data["last_events"][:5]:
            echo(f"    {event['created_at']}  {event['type']:<12} {event['actor'] or ''}")


@story.command("history")
@click.argument("story_id")
@json_option
def story_history(story_id: str, as_json: bool) -> None:
    """Every status change: when, who, why, forced or not."""
    from storyflow.services.story_reads import history

    with service_context() as ctx:
        rows = history(ctx, story_id)
    if as_json:
        emit_json(rows)
        return
    table(
        ["when", "from", "to", "actor", "note"],
        [
            [
                r["created_at"],
                r["from_status"] or "-",
                r["to_status"],
                r["actor"],
                ("FORCED " if r["forced"] else "")
                + ("budget confirmed " if r["budget_confirmed"] else "")
                + (r["reason"] or ""),
            ]
            for r in rows
        ],
    )


def _print_move(result: Any, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_json())
        return
    forced = " (forced)" if result.forced else ""
    echo(f"{result.story.id}: {result.source.value} -> {result.target.value}{forced}")


@story.command("move")
@click.argument("story_id")
@click.argument("status")
@option("--reason", help="Why (required for blocked, cancelled, --force, --confirm-budget).")
@option("--force", is_flag=True, help="Audited override of edges and guards (needs --reason).")
@option(
    "--confirm-budget", is_flag=True, help="soft_gate: accept a budget overrun (needs --reason)."
)
@option("--from", "expect_from", help="Refuse (exit 5) unless the story is in this status now.")
@actor_option
@json_option
def story_move(
    story_id: str,
    status: str,
    reason: str | None,
    force: bool,
    confirm_budget: bool,
    expect_from: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Move STORY_ID to STATUS through the state machine's edge and guards."""
    from storyflow.services.transitions import move

    with service_context(actor) as ctx:
        result = move(
            ctx,
            story_id,
            status,
            reason=reason,
            force=force,
            confirm_budget=confirm_budget,
            expect_from=expect_from,
        )
    _print_move(result, as_json)


@story.command("block")
@click.argument("story_id")
@option("--reason", required=True, help="What blocks it.")
@actor_option
@json_option
def story_block(story_id: str, reason: str, actor: str | None, as_json: bool) -> None:
    """Block a story (it remembers where it was)."""
    from storyflow.services.transitions import move

    with service_context(actor) as ctx:
        result = move(ctx, story_id, "blocked", reason=reason)
    _print_move(result, as_json)


@story.command("unblock")
@click.argument("story_id")
@option(
    "--to",
    "target",
    help="in-progress, ready-to-work or in-elaboration instead of where it was blocked from.",
)
@option("--reason", help="What resolved the blocker.")
@actor_option
@json_option
def story_unblock(
    story_id: str, target: str | None, reason: str | None, actor: str | None, as_json: bool
) -> None:
    """Return a blocked story to the status it was blocked from (or --to a re-entry status)."""
    from storyflow.domain.statuses import Status
    from storyflow.errors import RuleViolation
    from storyflow.services.transitions import move

    with service_context(actor) as ctx:
        current = ctx.story(story_id)
        if current.status is not Status.BLOCKED:
            raise RuleViolation(
                f"{current.id} is {current.status.value}, not blocked",
                code="TRANSITION_NOT_ALLOWED",
                hint=f"storyflow story show {current.id}",
            )
        destination = target or (current.blocked_from.value if current.blocked_from else "")
        result = move(ctx, story_id, destination, reason=reason)
    _print_move(result, as_json)


@story.command("cancel")
@click.argument("story_id")
@option("--reason", required=True, help="Why the story is dropped.")
@actor_option
@json_option
def story_cancel(story_id: str, reason: str, actor: str | None, as_json: bool) -> None:
    """Cancel a story (terminal)."""
    from storyflow.services.transitions import move

    with service_context(actor) as ctx:
        result = move(ctx, story_id, "cancelled", reason=reason)
    _print_move(result, as_json)


@story.command("split")
@click.argument("story_id")
@option("--into", "titles", multiple=True, required=True, help="A child story's title (repeat).")
@actor_option
@json_option
def story_split(story_id: str, titles: tuple[str, ...], actor: str | None, as_json: bool) -> None:
    """Split a needs-split story into children; it becomes superseded."""
    from storyflow.services.stories import split_story
    from storyflow.services.story_reads import story_json

    with service_context(actor) as ctx:
        original, children = split_story(ctx, story_id, list(titles))
    if as_json:
        emit_json({"story": story_json(original), "children": [story_json(c) for c in children]})
        return
    echo(f"{original.id}: split into " + ", ".join(c.id for c in children) + " (superseded)")


@story.command("update")
@click.argument("story_id")
@option("--title", help="New title.")
@option("--priority", help="P0 to P4.")
@option("--phase", type=int, help="Plan phase number.")
@option(
    "--depends-on", multiple=True, help="Replace the dependencies (repeat or comma; '' clears)."
)
@option("--requires", multiple=True, help="Replace the requirements.")
@option("--breaking-change/--no-breaking-change", default=None, help="Breaking-change flag.")
@option("--graph-integration/--no-graph-integration", default=None, help="Graph-integration flag.")
@option("--budget-multiplier", type=float, help="token_budget_multiplier.")
@option("--enforcement", help="Budget enforcement override.")
@actor_option
@json_option
def story_update(
    story_id: str,
    title: str | None,
    priority: str | None,
    phase: int | None,
    depends_on: tuple[str, ...],
    requires: tuple[str, ...],
    breaking_change: bool | None,
    graph_integration: bool | None,
    budget_multiplier: float | None,
    enforcement: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Change a story's metadata (dependencies are checked for cycles)."""
    from storyflow.services.stories import update_story
    from storyflow.services.story_reads import story_json

    with service_context(actor) as ctx:
        updated = update_story(
            ctx,
            story_id,
            title=title,
            priority=priority,
            phase=phase,
            depends_on=split_values(depends_on) if depends_on else None,
            requires=split_values(requires) if requires else None,
            breaking_change=breaking_change,
            graph_integration=graph_integration,
            budget_multiplier=budget_multiplier,
            enforcement=_enforcement(enforcement),
        )
    if as_json:
        emit_json(story_json(updated))
    else:
        echo(f"updated {updated.id}")


@story.command("render")
@click.argument("story_id")
@json_option
def story_render(story_id: str, as_json: bool) -> None:
    """Re-render the story file's engine-owned parts from the database."""
    from storyflow.services.stories import render_story

    with service_context() as ctx:
        path = render_story(ctx, story_id)
    if as_json:
        emit_json({"story": story_id, "path": path})
    else:
        echo(f"rendered {path}")


@click.command()
@click.argument("story_id")
@option("--by", required=True, help="Who approves (PM / UX).")
@option("--note", help="Anything worth keeping with the approval.")
@actor_option
@json_option
def approve(story_id: str, by: str, note: str | None, actor: str | None, as_json: bool) -> None:
    """Approve STORY_ID's latest passing elaboration (the PM and UX review gate)."""
    from storyflow.services.transitions import approve as approve_service

    with service_context(actor) as ctx:
        result = approve_service(ctx, story_id, by=by, note=note)
    if as_json:
        emit_json(result)
    else:
        echo(f"{story_id}: elaboration v{result['elaboration_version']} approved by {by}")


@click.command("next")
@option("--epic", help="Only this epic.")
@option("--limit", type=click.IntRange(min=0), default=0, help="At most this many (0: all).")
@json_option
def next_(epic: str | None, limit: int, as_json: bool) -> None:
    """Workable stories: ready-to-work, dependencies completed, requirements met, by
    priority then age."""
    from storyflow.services.story_reads import workable, workable_json

    if as_json:
        with service_context() as ctx:
            rows = workable_json(ctx, epic=epic, limit=limit)
        emit_json(rows)
        return
    with service_context() as ctx:
        stories = workable(ctx, epic=epic)
    if limit > 0:
        stories = stories[:limit]
    table(["id", "priority", "title"], [[s.id, s.priority, s.title] for s in stories])


@click.command()
@option("--epic", help="Only this epic.")
@json_option
def board(epic: str | None, as_json: bool) -> None:
    """Counts and stories per status."""
    from storyflow.services.story_reads import board as board_service

    with service_context() as ctx:
        data = board_service(ctx, epic=epic)
    if as_json:
        emit_json(data)
        return
    for status, stories in data["statuses"].items():
        if not stories:
            continue
        echo(f"{status} ({len(stories)})")
        for item in stories:
            echo(f"  {item['id']}  {item['priority']}  {item['title']}")
    echo(f"total {data['total']}")
