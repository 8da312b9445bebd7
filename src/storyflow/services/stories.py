"""Stories: create, update, split (the read models: story_reads.py)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from storyflow.domain.budgets import Enforcement
from storyflow.domain.model import (
    Epic,
    Story,
    check_free_numbers,
    check_phase,
    format_story_id,
    parse_story_id,
)
from storyflow.domain.priorities import parse_priority
from storyflow.domain.statuses import Status
from storyflow.errors import InvalidInput, RuleViolation, StoryflowError
from storyflow.services.context import Context
from storyflow.services.epics import _title
from storyflow.services.projection import (
    EVERY_FIELD,
    check_story_file,
    new_story_file,
    render_after_commit,
)
from storyflow.services.unit_of_work import change

REQUIREMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
HARNESS_NUMBER = 0


def parse_requirement(text: str) -> str:
    name = text.strip()
    if not REQUIREMENT_RE.match(name) or ".." in name:
        raise InvalidInput(
            f"invalid requirement name {text!r}",
            hint="a requirement is a short name like db-schema-002",
            details={"value": text},
        )
    return name


def _multiplier(value: float) -> float:
    if not 0 < value <= 100:
        raise InvalidInput(
            f"token budget multiplier {value} must be above 0 and at most 100",
            hint="e.g. --budget-multiplier 1.5",
        )
    return float(value)


def _dependencies(ctx: Context, story_id: str | None, epic: str, ids: list[str]) -> list[str]:
    deps: list[str] = []
    for raw in ids:
        dep = raw.strip()
        parse_story_id(dep)
        if dep == story_id:
            raise InvalidInput(
                f"{dep} cannot depend on itself",
                code="DEPENDENCY_CYCLE",
                hint="remove it from --depends-on",
            )
        if ctx.store.get_story(dep) is None:
            raise InvalidInput(
                f"dependency {dep} does not exist",
                code="UNKNOWN_DEPENDENCY",
                hint="create it first, or fix the ID (storyflow story list)",
                details={"dependency": dep},
            )
        if dep not in deps:
            deps.append(dep)
    return deps


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A dependency cycle in ``graph`` (story -> its dependencies), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def create_story(
    ctx: Context,
    prefix: str,
    *,
    title: str,
    priority: str = "P2",
    phase: int | None = None,
    depends_on: list[str] | None = None,
    requires: list[str] | None = None,
    breaking_change: bool = False,
    graph_integration: bool = False,
    budget_multiplier: float = 1.0,
    enforcement: Enforcement | None = None,
    harness: bool = False,
    body: dict[str, str] | None = None,
) -> Story:
    epic = ctx.epic(prefix.strip())
    title = _title(title)
    priority = parse_priority(priority)
    if phase is not None:
        check_phase(phase)
    reqs = sorted({parse_requirement(r) for r in requires or []})
    multiplier = _multiplier(budget_multiplier)
    now = ctx.now()
    with change(ctx) as pending:
        deps = _dependencies(ctx, None, epic.prefix, depends_on or [])
        harness_id = format_story_id(epic.prefix, HARNESS_NUMBER)
        if harness:
            number = HARNESS_NUMBER
        else:
            number = ctx.store.next_number(epic.prefix)
            number = max(number, 1)
            check_free_numbers(epic.prefix, number)
            if harness_id not in deps and ctx.store.get_story(harness_id) is not None:
                deps.insert(0, harness_id)  # the harness story validates the workflow first
        story_id = format_story_id(epic.prefix, number)
        story = Story(
            id=story_id,
            epic=epic.prefix,
            number=number,
            title=title,
            status=Status.PENDING,
            priority=priority,
            phase=phase,
            # the plan's special-handling lists apply to stories created after the import too
            breaking_change=breaking_change or story_id in epic.settings.breaking_change_stories,
            graph_integration=(
                graph_integration or story_id in epic.settings.graph_integration_stories
            ),
            token_budget_multiplier=multiplier,
            enforcement=enforcement,
            depends_on=tuple(deps),
            requires=tuple(reqs),
            created_at=now,
            updated_at=now,
            status_changed_at=now,
        )
        ctx.store.insert_story(story)
        ctx.store.insert_transition(
            story_id=story.id,
            source=None,
            target=Status.PENDING,
            actor=ctx.actor,
            reason="created",
            forced=False,
            budget_confirmed=False,
            story_version=1,
            at=now,
        )
        ctx.store.insert_event(
            type="story_created",
            at=now,
            story_id=story.id,
            epic=epic.prefix,
            actor=ctx.actor,
            payload={"title": title, "depends_on": deps, "requires": reqs},
        )
        file_name = ctx.files.layout(epic).story_file_name(story.id)
        row = ctx.log_row(epic, "story created (pending)", file_name)
        ctx.store.append_log(story.id, [row])
        new_story_file(ctx, pending, epic, story, [row], body)
    return story


def update_story(
    ctx: Context,
    story_id: str,
    *,
    title: str | None = None,
    priority: str | None = None,
    phase: int | None = None,
    depends_on: list[str] | None = None,
    requires: list[str] | None = None,
    breaking_change: bool | None = None,
    graph_integration: bool | None = None,
    budget_multiplier: float | None = None,
    enforcement: Enforcement | None = None,
) -> Story:
    parse_story_id(story_id)
    now = ctx.now()
    with change(ctx):
        story = ctx.story(story_id)
        epic = ctx.epic(story.epic)
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = _title(title)
        if priority is not None:
            changes["priority"] = parse_priority(priority)
        if phase is not None:
            changes["phase"] = check_phase(phase)
        if breaking_change is not None:
            changes["breaking_change"] = breaking_change
        if graph_integration is not None:
            changes["graph_integration"] = graph_integration
        if budget_multiplier is not None:
            changes["token_budget_multiplier"] = _multiplier(budget_multiplier)
        if enforcement is not None:
            changes["enforcement"] = enforcement
        if depends_on is not None:
            deps = _dependencies(ctx, story.id, epic.prefix, depends_on)
            graph = ctx.store.all_dependencies()
            graph[story.id] = deps
            cycle = find_cycle(graph)
            if cycle:
                raise InvalidInput(
                    "dependency cycle: " + " -> ".join(cycle),
                    code="DEPENDENCY_CYCLE",
                    hint="drop one of those dependencies",
                    details={"cycle": cycle},
                )
            changes["depends_on"] = tuple(deps)
        if requires is not None:
            changes["requires"] = tuple(sorted({parse_requirement(r) for r in requires}))
        if not changes:
            raise InvalidInput(
                "nothing to update", hint="pass at least one option, e.g. --priority P1"
            )
        check_story_file(ctx, epic, story)
        updated = replace(story, **changes, version=story.version + 1, updated_at=now)
        _warn_replaced_edits(ctx, epic, story, updated, changes)
        ctx.store.cas_update_story(updated, story.version)
        if "depends_on" in changes or "requires" in changes:
            ctx.store.set_links(story.id, updated.depends_on, updated.requires)
        shown = {k: (list(v) if isinstance(v, tuple) else str(v)) for k, v in changes.items()}
        ctx.store.insert_event(
            type="story_updated",
            at=now,
            story_id=story.id,
            epic=epic.prefix,
            actor=ctx.actor,
            payload=shown,
        )
        row = ctx.log_row(epic, "updated " + ", ".join(sorted(changes)), "")
        ctx.store.append_log(story.id, [row])
    render_after_commit(ctx, epic, updated.id, written=changes)
    return updated


def _warn_replaced_edits(
    ctx: Context, epic: Epic, story: Story, updated: Story, changes: dict[str, Any]
) -> None:
    """The command's values win over the story file's. Say so when the file held another
    value for a field the command sets, one the database does not have either: a hand edit
    that storyflow sync has not applied yet is replaced."""
    from storyflow.services.sync_fields import editable_fields, story_fields

    try:
        path, text, parsed = ctx.files.read_story(epic, story)
        in_file = editable_fields(parsed.meta, text, ctx.files.rel(path))
    except StoryflowError:
        return  # no file, or one sync could not read: nothing pending to lose
    before, after = story_fields(story), story_fields(updated)
    for key in sorted(changes):
        value = in_file.get(key, before[key])
        if value != before[key] and value != after[key]:
            ctx.warn(
                f"{story.id}: the story file had {key} {value!r}, not yet synced; the "
                f"update replaced it with {after[key]!r}"
            )


def split_story(ctx: Context, story_id: str, titles: list[str]) -> tuple[Story, list[Story]]:
    """needs-split -> superseded, with children that inherit the story's links."""
    parse_story_id(story_id)
    clean = [_title(t) for t in titles]
    if len(clean) < 2:
        raise InvalidInput(
            "a split needs at least two --into titles", hint="--into 'Part A' --into 'Part B'"
        )
    now = ctx.now()
    with change(ctx) as pending:
        story = ctx.story(story_id)
        epic = ctx.epic(story.epic)
        if story.status is not Status.NEEDS_SPLIT:
            raise RuleViolation(
                f"{story.id} is {story.status.value}; only a story in needs-split can be split",
                code="SPLIT_NOT_ALLOWED",
                hint="an elaboration with verdict SPLIT_REQUIRED moves it to needs-split",
                details={"story": story.id, "status": story.status.value},
            )
        children: list[Story] = []
        number = ctx.store.next_number(epic.prefix)
        check_free_numbers(epic.prefix, number, len(clean))
        for offset, title in enumerate(clean):
            child = Story(
                id=format_story_id(epic.prefix, number + offset),
                epic=epic.prefix,
                number=number + offset,
                title=title,
                status=Status.PENDING,
                priority=story.priority,
                phase=story.phase,
                breaking_change=story.breaking_change,
                graph_integration=story.graph_integration,
                token_budget_multiplier=story.token_budget_multiplier,
                enforcement=story.enforcement,
                split_from=story.id,
                depends_on=story.depends_on,
                requires=story.requires,
                created_at=now,
                updated_at=now,
                status_changed_at=now,
            )
            ctx.store.insert_story(child)
            ctx.store.insert_transition(
                story_id=child.id,
                source=None,
                target=Status.PENDING,
                actor=ctx.actor,
                reason=f"split from {story.id}",
                forced=False,
                budget_confirmed=False,
                story_version=1,
                at=now,
            )
            children.append(child)
        child_ids = [c.id for c in children]
        superseded = replace(
            story,
            status=Status.SUPERSEDED,
            superseded_by=tuple(child_ids),
            version=story.version + 1,
            updated_at=now,
            status_changed_at=now,
        )
        check_story_file(ctx, epic, story, moving_to=superseded)
        ctx.store.cas_update_story(superseded, story.version)
        ctx.store.insert_transition(
            story_id=story.id,
            source=story.status,
            target=Status.SUPERSEDED,
            actor=ctx.actor,
            reason="split into " + ", ".join(child_ids),
            forced=False,
            budget_confirmed=False,
            story_version=superseded.version,
            at=now,
        )
        ctx.store.insert_event(
            type="story_split",
            at=now,
            story_id=story.id,
            epic=epic.prefix,
            actor=ctx.actor,
            payload={"children": child_ids},
        )
        rewired = _rewire_dependents(ctx, story.id, child_ids, now)
        file_name = ctx.files.layout(epic).story_file_name(story.id)
        row = ctx.log_row(
            epic,
            "status: needs-split -> superseded (split into " + ", ".join(child_ids) + ")",
            file_name,
        )
        ctx.store.append_log(story.id, [row])
        for child in children:
            child_row = ctx.log_row(
                epic,
                f"story created (split from {story.id})",
                ctx.files.layout(epic).story_file_name(child.id),
            )
            ctx.store.append_log(child.id, [child_row])
            new_story_file(ctx, pending, epic, child, [child_row])
        dependent_rows = {}
        for dependent in rewired:
            dependent_rows[dependent.id] = ctx.log_row(
                epic, f"depends_on: {story.id} replaced by " + ", ".join(child_ids), ""
            )
            ctx.store.append_log(dependent.id, [dependent_rows[dependent.id]])
    render_after_commit(ctx, epic, superseded.id, budget=False)
    for dependent in rewired:
        dep_epic = epic if dependent.epic == epic.prefix else ctx.epic(dependent.epic)
        render_after_commit(ctx, dep_epic, dependent.id, budget=False, written=("depends_on",))
    return superseded, children


def _rewire_dependents(ctx: Context, old: str, new: list[str], now: Any) -> list[Story]:
    """Stories that depended on a split story now depend on all of its children."""
    rewired = []
    for dependent_id in ctx.store.dependents(old):
        dependent = ctx.story(dependent_id)
        check_story_file(ctx, ctx.epic(dependent.epic), dependent)
        deps = [d for d in dependent.depends_on if d != old]
        deps += [n for n in new if n not in deps]
        updated = replace(
            dependent, depends_on=tuple(deps), version=dependent.version + 1, updated_at=now
        )
        ctx.store.cas_update_story(updated, dependent.version)
        ctx.store.set_links(dependent.id, updated.depends_on, updated.requires)
        rewired.append(updated)
    return rewired


def render_story(ctx: Context, story_id: str) -> str:
    """Re-render a story file from the database (after a failed write, or a hand edit)."""
    parse_story_id(story_id)
    story = ctx.story(story_id)
    epic: Epic = ctx.epic(story.epic)
    # Refused whole what the projection could not write (the folder may move to its stage).
    check_story_file(ctx, epic, story, moving_to=story)
    render_after_commit(ctx, epic, story.id, written=EVERY_FIELD)
    return ctx.files.rel(ctx.files.story_file(epic, story))
