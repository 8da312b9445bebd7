"""The read models of stories (list, show, history, next, board), apart from the write side.

``storyflow story list|show``, ``board`` and ``next`` import this module and not
``stories.py``: the write side's imports (the story file projection, epics, the unit of
work) and the value objects' module (its dataclasses cost ~9 ms to define) are not on a
read command's path. The value objects come in only where a command builds them (``show``,
``next``); ``list`` and ``board`` read rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from storyflow.domain.statuses import Status
from storyflow.errors import StoryflowError

if TYPE_CHECKING:
    from storyflow.domain.model import Story
    from storyflow.services.context import Context


def story_json(story: Story) -> dict[str, Any]:
    return {
        "id": story.id,
        "epic": story.epic,
        "title": story.title,
        "status": story.status.value,
        "priority": story.priority,
        "phase": story.phase,
        "depends_on": list(story.depends_on),
        "requires": list(story.requires),
        "breaking_change": story.breaking_change,
        "graph_integration": story.graph_integration,
        "token_budget_multiplier": story.token_budget_multiplier,
        "enforcement": story.enforcement.value if story.enforcement else None,
        "blocked_reason": story.blocked_reason,
        "blocked_from": story.blocked_from.value if story.blocked_from else None,
        "split_from": story.split_from,
        "superseded_by": list(story.superseded_by),
        "review_iterations": story.review_iterations,
        "qa_iterations": story.qa_iterations,
        # always six digits, as stored: the list's JSON (built by the database) copies them
        "created_at": story.created_at.isoformat(timespec="microseconds"),
        "updated_at": story.updated_at.isoformat(timespec="microseconds"),
        "version": story.version,
    }


def list_stories_json(
    ctx: Context, *, epic: str | None = None, statuses: list[Status] | None = None
) -> str:
    """``story_json`` of every matching story, read in bulk: one JSON array, as text."""
    if epic:
        ctx.epic(epic)
    return ctx.store.story_list_json(epic=epic, statuses=statuses)


def list_stories(
    ctx: Context, *, epic: str | None = None, statuses: list[Status] | None = None
) -> list[Story]:
    if epic:
        ctx.epic(epic)
    return ctx.store.list_stories(epic=epic, statuses=statuses)


def show_story(ctx: Context, story_id: str) -> dict[str, Any]:
    from storyflow.domain.guidance import next_action
    from storyflow.domain.model import parse_story_id
    from storyflow.services.tokens import story_budget

    parse_story_id(story_id)
    story = ctx.story(story_id)
    epic = ctx.epic(story.epic)
    data = story_json(story)
    data["details"] = story.details  # plan metadata: feature, goal, gates, …
    data["next_action"] = _paused_action(ctx, story) or next_action(story.status, story.id)
    folder = ctx.files.rel(ctx.files.locate(epic, story))
    data["path"] = f"{folder}/{ctx.files.layout(epic).story_file_name(story.id)}"
    artifacts: dict[str, dict[str, Any]] = {}
    for artifact in ctx.store.list_artifacts(story.id):
        artifacts[artifact.kind.value] = {
            "version": artifact.version,
            "verdict": artifact.verdict,
            "path": f"{folder}/{artifact.path}",
            "sha256": artifact.sha256,
            "submitted_at": artifact.submitted_at.isoformat(),
            "submitted_by": artifact.submitted_by,
        }
    data["artifacts"] = artifacts
    data["dependencies"] = [
        {"id": dep, "status": status} for dep, status in ctx.store.unmet_dependencies(story.id)
    ]
    data["unmet_requirements"] = ctx.store.unmet_requirements(story.id)
    data["budget"] = story_budget(ctx, epic, story)
    data["lock"] = ctx.store.active_lease(story.id, ctx.now())
    data["last_events"] = ctx.store.recent_events(story.id, 10)
    return data


def _paused_action(ctx: Context, story: Story) -> str | None:
    """For a story whose last phase run finished but paused (a soft_gate budget, or an
    approval the edge needs) and that has not moved since: what the person must do. The
    status's own next action would ask again for the artifact the run already gave."""
    from datetime import datetime

    run = ctx.store.run_store().last_run(story.id)
    if run is None or run["status"] != "paused" or not run["finished_at"]:
        return None
    if story.status_changed_at > datetime.fromisoformat(run["finished_at"]):
        return None  # moved on since (confirmed, approved, or moved by hand)
    # the phase table (and the edge table it checks at import: ~5 ms) only for a paused run
    from storyflow.domain.phases import PHASES, PhaseName

    try:
        target = PHASES[PhaseName(run["phase"])].edge_for(run["verdict"]).value
    except (ValueError, StoryflowError):
        return None
    if run["error_code"] == "AWAITING_APPROVAL":
        return (
            f"the {run['phase']} run is done and waits ({run['error_message']}): storyflow "
            f"approve {story.id} --by NAME, then storyflow run {story.id} takes it to {target}"
        )
    return (
        f"the {run['phase']} run is done and its tokens passed the soft_gate limit: confirm "
        f"to go on: storyflow story move {story.id} {target} --confirm-budget --reason '...'"
    )


def history(ctx: Context, story_id: str) -> list[dict[str, Any]]:
    from storyflow.domain.model import parse_story_id

    parse_story_id(story_id)
    ctx.story(story_id)
    return ctx.store.history(story_id)


def workable(ctx: Context, *, epic: str | None = None) -> list[Story]:
    """ready-to-work, dependencies completed, requirements met, not leased; by priority
    then age."""
    if epic:
        ctx.epic(epic)
    candidates = ctx.store.list_stories(epic=epic, statuses=[Status.READY_TO_WORK])
    return _workable(
        ctx,
        candidates,
        lambda s: (s.id, s.depends_on, s.requires, s.priority, s.created_at, s.number),
    )


def workable_json(ctx: Context, *, epic: str | None = None, limit: int = 0) -> list[dict[str, Any]]:
    """``storyflow next --json``: ``story_json`` of the workable stories (the first ``limit``
    when > 0). The objects come encoded by the database, as for ``story list``: the command
    defines no value object (domain.model's dataclasses cost ~9 ms of its start-up)."""
    if epic:
        ctx.epic(epic)
    candidates = [
        (number, json.loads(text))
        for number, text in ctx.store.story_json_rows(epic, [Status.READY_TO_WORK])
    ]
    # created_at is stored in one fixed-width UTC form: its text sorts as its time does
    ready = _workable(
        ctx,
        candidates,
        lambda c: (
            c[1]["id"],
            c[1]["depends_on"],
            c[1]["requires"],
            c[1]["priority"],
            c[1]["created_at"],
            c[0],
        ),
    )
    if limit > 0:
        ready = ready[:limit]
    stories = [data for _, data in ready]
    for data in stories:  # PostgreSQL's JSON writes a whole float 1.0 as 1; story_json: 1.0
        data["token_budget_multiplier"] = float(data["token_budget_multiplier"])
    return stories


# a candidate's ID, dependencies, requirements, priority, creation time and number
_Facts = tuple[str, Sequence[str], Sequence[str], str, Any, int]
_C = TypeVar("_C")


def _workable(ctx: Context, candidates: list[_C], facts: Callable[[_C], _Facts]) -> list[_C]:
    """The candidates whose dependencies are completed, requirements met and that no lease
    holds, by priority, then creation time, then number."""
    if not candidates:
        return []
    from storyflow.domain.priorities import PRIORITIES

    statuses = ctx.store.story_status_map()
    met = {r["name"] for r in ctx.store.requirements() if r["met"]}
    leased = ctx.store.leased_story_ids(ctx.now())
    rank = {p: i for i, p in enumerate(PRIORITIES)}
    ready: list[tuple[tuple[int, Any, int], _C]] = []
    for candidate in candidates:
        story_id, depends_on, requires, priority, created_at, number = facts(candidate)
        if (
            all(statuses.get(d) is Status.COMPLETED for d in depends_on)
            and all(r in met for r in requires)
            and story_id not in leased
        ):
            ready.append(((rank.get(priority, 9), created_at, number), candidate))
    ready.sort(key=lambda pair: pair[0])
    return [candidate for _, candidate in ready]


def board(ctx: Context, *, epic: str | None = None) -> dict[str, Any]:
    if epic:
        ctx.epic(epic)
    rows = ctx.store.board_rows(epic)
    columns: dict[str, list[dict[str, Any]]] = {s.value: [] for s in Status}
    for row in rows:
        columns[row["status"]].append(
            {"id": row["id"], "title": row["title"], "priority": row["priority"]}
        )
    return {
        "epic": epic,
        "total": len(rows),
        "counts": {k: len(v) for k, v in columns.items()},
        "statuses": columns,
    }
