"""The stories of a plan import: what each should become, the checks that refuse bad input
before anything is written, and the writes (inside the import's transaction)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

from storyflow.domain import guards
from storyflow.domain.model import Epic, Story, format_story_id
from storyflow.domain.plan_model import PlannedStory
from storyflow.domain.statuses import TERMINAL, Status
from storyflow.domain.transitions import find_edge, successors
from storyflow.errors import ConflictError, InvalidInput, StoryflowError
from storyflow.services.context import Context
from storyflow.services.epics import _title
from storyflow.services.plan_report import MoveRequest
from storyflow.services.ports import PendingWritesPort, PlanFilesPort
from storyflow.services.projection import check_story_file, new_story_file
from storyflow.services.stories import find_cycle, parse_requirement

# Story fields a plan states (besides the status, which only moves by the rules).
PLANNED_FIELDS = (
    "title",
    "priority",
    "phase",
    "depends_on",
    "requires",
    "breaking_change",
    "graph_integration",
    "token_budget_multiplier",
    "details",
)
_SETS = frozenset({"depends_on", "requires"})


@dataclass(frozen=True, kw_only=True)
class Target:
    """A planned story resolved against the database: ``story`` is what it should be."""

    planned: PlannedStory
    story: Story
    exists: bool
    status: Status | None  # the status the plan states (a move request when it exists)

    def changed(self, current: Story) -> list[str]:
        changed = []
        for name in PLANNED_FIELDS:
            new, old = getattr(self.story, name), getattr(current, name)
            if name in _SETS:
                new, old = sorted(new), sorted(old)
            if new != old:
                changed.append(name)
        return changed

    def requests_move(self, current: Story) -> bool:
        """The index states another status than the story's, and its line was edited since
        ``plan export`` wrote it (an unedited line only shows the board has moved on)."""
        stated = self.status
        if stated is None or stated is current.status:
            return False
        return stated is not self.planned.exported_status

    @property
    def file(self) -> str:
        return PurePosixPath(self.planned.source).name


def _where(planned: PlannedStory, line: int | None = None) -> str:
    return f"{planned.source}:{line or planned.line}"


def _requires(planned: PlannedStory) -> tuple[str, ...] | None:
    if planned.requires is None:
        return None
    names = []
    for name in planned.requires:
        try:
            names.append(parse_requirement(name))
        except InvalidInput as error:
            raise InvalidInput(
                f"{_where(planned)}: {planned.id}: {error.message}",
                hint=error.hint,
                details={"file": planned.source, "line": planned.line, "value": name},
            ) from None
    return tuple(sorted(set(names)))


def target_story(ctx: Context, epic: Epic, planned: PlannedStory, current: Story | None) -> Target:
    """The story as the plan wants it: what the plan states, else the current value, else
    the default. The harness (PREFIX-000) becomes a dependency of every other story."""
    deps = planned.depends_on
    if deps is None:
        deps = current.depends_on if current else ()
    harness = format_story_id(epic.prefix, 0)
    if epic.settings.harness and planned.id != harness and harness not in deps:
        deps = (harness, *deps)
    requires = _requires(planned)
    phase = planned.phase
    if phase is None and current is not None:
        phase = current.phase
    try:
        title = _title(planned.title)
    except InvalidInput as error:
        raise InvalidInput(
            f"{_where(planned)}: {planned.id}: {error.message}",
            hint=error.hint,
            details={"file": planned.source, "line": planned.line},
        ) from None
    values: dict[str, Any] = {
        "title": title,
        "phase": phase,
        "depends_on": tuple(deps),
        "details": planned.details if planned.details is not None else {},
    }
    if current is not None:
        values.update(
            priority=planned.priority or current.priority,
            requires=requires if requires is not None else current.requires,
            breaking_change=planned.breaking_change or current.breaking_change,
            graph_integration=planned.graph_integration or current.graph_integration,
            token_budget_multiplier=planned.multiplier or current.token_budget_multiplier,
        )
        if planned.details is None:
            values["details"] = current.details
        return Target(
            planned=planned,
            story=replace(current, **values),
            exists=True,
            status=planned.status,
        )
    now = ctx.now()
    status = planned.status or Status.PENDING
    story = Story(
        id=planned.id,
        epic=epic.prefix,
        number=planned.number,
        status=status,
        priority=planned.priority or "P2",
        requires=requires or (),
        breaking_change=planned.breaking_change,
        graph_integration=planned.graph_integration,
        token_budget_multiplier=planned.multiplier or 1.0,
        blocked_reason=(
            f"imported as blocked from {PurePosixPath(planned.source).name}"
            if status is Status.BLOCKED
            else None
        ),
        created_at=now,
        updated_at=now,
        status_changed_at=now,
        **values,
    )
    return Target(planned=planned, story=story, exists=False, status=status)


# ---- checks: all before the first write -----------------------------------------------------


def check_graph(ctx: Context, targets: list[Target]) -> None:
    """Dependencies name stories that exist (or are planned) and form no cycle."""
    planned = {t.story.id: t for t in targets}
    known = set(ctx.store.story_status_map()) | set(planned)
    for target in targets:
        story, where = target.story, target.planned
        for dep in story.depends_on:
            line = where.depends_line or where.line
            if dep == story.id:
                raise InvalidInput(
                    f"{_where(where, line)}: {dep} depends on itself",
                    code="DEPENDENCY_CYCLE",
                    hint="remove it from Depends On",
                    details={"file": where.source, "line": line, "cycle": [dep, dep]},
                )
            if dep not in known:
                raise InvalidInput(
                    f"{_where(where, line)}: {story.id} depends on {dep}, which does not exist",
                    code="UNKNOWN_DEPENDENCY",
                    hint=f"add a ## {dep} section, or fix the ID in Depends On",
                    details={"file": where.source, "line": line, "dependency": dep},
                )
    graph = ctx.store.all_dependencies()
    for target in targets:
        graph[target.story.id] = list(target.story.depends_on)
    cycle = find_cycle(graph)
    if cycle:
        first = next((planned[i].planned for i in cycle if i in planned), targets[0].planned)
        line = first.depends_line or first.line
        raise InvalidInput(
            f"{_where(first, line)}: dependency cycle: " + " -> ".join(cycle),
            code="DEPENDENCY_CYCLE",
            hint="drop one of those dependencies",
            details={"file": first.source, "line": line, "cycle": cycle},
        )


def check_story_files(
    ctx: Context, files: PlanFilesPort, epic: Epic, targets: list[Target], existing: list[Story]
) -> None:
    """Existing story files must be readable and free of merge-conflict markers (they may be
    re-rendered); a new story must not find a folder already there."""
    for story in existing:
        path = ctx.files.story_file(epic, story)
        if path.exists():
            files.check_text(path)
    for target in targets:
        if target.exists:
            continue
        folder = ctx.files.locate(epic, target.story)
        if folder.is_dir():
            raise ConflictError(
                f"a folder for {target.story.id} already exists: {ctx.files.rel(folder)}",
                code="DUPLICATE_ID",
                hint="remove or rename the stray folder (or rebuild it with storyflow sync)",
                details={"story": target.story.id, "folder": ctx.files.rel(folder)},
            )


# ---- writes ---------------------------------------------------------------------------------


def insert_story(
    ctx: Context, pending: PendingWritesPort | None, epic: Epic, target: Target
) -> None:
    """A new story at the status the plan states, recorded as imported (not walked)."""
    story, now = target.story, ctx.now()
    ctx.store.insert_story(story)
    ctx.store.insert_transition(
        story_id=story.id,
        source=None,
        target=story.status,
        actor=ctx.actor,
        reason=f"imported from {target.file}",
        forced=False,
        budget_confirmed=False,
        story_version=story.version,
        at=now,
    )
    ctx.store.insert_event(
        type="story_created",
        at=now,
        story_id=story.id,
        epic=epic.prefix,
        actor=ctx.actor,
        payload={
            "title": story.title,
            "status": story.status.value,
            "depends_on": list(story.depends_on),
            "requires": list(story.requires),
            "imported_from": target.planned.source,
        },
    )
    file_name = ctx.files.layout(epic).story_file_name(story.id)
    row = ctx.log_row(epic, f"story imported from {target.file} ({story.status.value})", file_name)
    ctx.store.append_log(story.id, [row])
    if pending is not None:
        new_story_file(ctx, pending, epic, story, [row])


def update_story(
    ctx: Context, epic: Epic, current: Story, wanted: Story, fields: list[str]
) -> None:
    now = ctx.now()
    check_story_file(ctx, epic, current)
    updated = replace(wanted, version=current.version + 1, updated_at=now)
    ctx.store.cas_update_story(updated, current.version)
    if _SETS & set(fields):
        ctx.store.set_links(current.id, updated.depends_on, updated.requires)
    shown = {name: _json_value(getattr(updated, name)) for name in fields}
    ctx.store.insert_event(
        type="story_updated",
        at=now,
        story_id=current.id,
        epic=epic.prefix,
        actor=ctx.actor,
        payload={**shown, "imported_from": epic.settings.plan_dir},
    )
    row = ctx.log_row(epic, "plan import: updated " + ", ".join(fields), "")
    ctx.store.append_log(current.id, [row])


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def preview_move(ctx: Context, epic: Epic, current: Story, target: Target) -> MoveRequest:
    """Would transitions.move take the story to the status the index states? The same
    edge table and guards, read inside the import's transaction; nothing is written."""
    from storyflow.services.transitions import StoreFacts

    assert target.status is not None
    request = MoveRequest(
        story=current.id,
        source=current.status.value,
        target=target.status.value,
        file=target.planned.source,
        line=target.planned.status_line or target.planned.line,
    )
    edge = find_edge(current.status, target.status)
    if current.status in TERMINAL:
        request.refuse(_refused("TERMINAL_STATUS", f"{current.status.value} is terminal"))
    elif edge is None:
        allowed = ", ".join(s.value for s in successors(current.status))
        request.refuse(
            _refused("TRANSITION_NOT_ALLOWED", f"no such edge (allowed from there: {allowed})")
        )
    else:
        facts = StoreFacts(ctx, epic, current, ctx.now().date())
        facts.prefetch(edge)
        failures = guards.check(edge, facts, reason="requested by the stories index")
        if failures:
            request.refuse(_refused("GUARD_FAILED", "; ".join(f.message for f in failures)))
    return request


def _refused(code: str, message: str) -> StoryflowError:
    from storyflow.errors import RuleViolation

    return RuleViolation(message, code=code)
