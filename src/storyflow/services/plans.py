"""storyflow plan import: a plan folder becomes an epic, its rules and its stories.

Everything but status changes happens in one transaction: the epic, its settings, the
requirements, every new or changed story with its links, history, events and Agent Log
rows, and the new story files (staged, published after the commit). Bad input raises before
anything is written. ``--dry-run`` runs the same transaction and rolls it back.

Statuses. A new story starts at the status its index entry states: that status has no
history behind it, so it is recorded as an import (a transition from None, reason
"imported from stories.index.md"), not as a walk through the lifecycle. The guards treat
the import as the story's entry into that status: evidence for its next edge must be
submitted after the import, and phases before the import are not counted as run (no tokens
are demanded for them). An existing story whose index status differs is moved through the
state machine (transitions.move, one edge, every guard) after the import commits; a move
that is illegal or refused is reported as a warning and not applied.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from storyflow.config import validate_timezone
from storyflow.domain.checks import story_file_is_draft
from storyflow.domain.model import Epic, EpicSettings, Story
from storyflow.domain.plan_model import INDEX_FILE, DerivedPlan, PlanWarning
from storyflow.domain.plan_rules import derive
from storyflow.domain.statuses import TERMINAL
from storyflow.errors import InvalidInput, StoryflowError
from storyflow.services.context import Context
from storyflow.services.epics import _root, _title, check_root_free
from storyflow.services.plan_report import Change, ImportReport, MoveRequest, StoryChange
from storyflow.services.plan_targets import (
    Target,
    check_graph,
    check_story_files,
    insert_story,
    preview_move,
    target_story,
    update_story,
)
from storyflow.services.ports import PendingWritesPort, PlanFilesPort
from storyflow.services.projection import (
    EVERY_FIELD,
    render_after_commit,
    render_epic_stories,
    renders_budgets_anew,
)
from storyflow.services.unit_of_work import change

EPIC_FIELDS = ("title", "layout", "root", "timezone")


class _DryRun(Exception):
    """Raised at the end of a dry run's transaction so that it rolls back."""


def import_plan(
    ctx: Context, files: PlanFilesPort, path: Path, *, dry_run: bool = False
) -> ImportReport:
    """Import (or re-import) the plan folder at ``path``; see the module docstring."""
    source = files.read(path)
    derived = derive(source, default_layout=ctx.config.default_layout, budgets=ctx.config.budgets)
    warnings = list(derived.warnings)
    timezone = _timezone(derived, source.plan.source, warnings)
    report = ImportReport(
        epic=derived.prefix, plan=derived.settings["plan_dir"], dry_run=dry_run, warnings=warnings
    )
    renders: list[str] = []
    try:
        with change(ctx) as pending:
            writes = None if dry_run else pending
            current_epic = ctx.store.get_epic(derived.prefix)
            epic = _plan_epic(ctx, current_epic, derived, timezone, report)
            existing = {s.id: s for s in ctx.store.list_stories(epic=epic.prefix)}
            if not derived.stories and not existing:
                report.warnings.append(_no_stories_warning(source.plan.source, epic.prefix))
            targets = [
                target_story(ctx, epic, planned, existing.get(planned.id))
                for planned in derived.stories
            ]
            # every check before the first write: a refused import leaves no trace
            if current_epic is None:
                check_root_free(ctx, epic)
            check_graph(ctx, targets)
            check_story_files(ctx, files, epic, targets, list(existing.values()))
            _write_epic(ctx, writes, current_epic, epic, report.plan)
            _apply_requirements(ctx, derived, report)
            for target in targets:
                if not target.exists:
                    insert_story(ctx, writes, epic, target)
                    report.stories.append(StoryChange(id=target.story.id, change="added"))
                    if _needs_reuse_plan(target.story):
                        report.warnings.append(_reuse_plan_warning(target))
                    continue
                current = existing[target.story.id]
                fields = target.changed(current)
                if fields:
                    update_story(ctx, epic, current, target.story, fields)
                    renders.append(current.id)
                report.stories.append(
                    StoryChange(
                        id=current.id, change="updated" if fields else "unchanged", fields=fields
                    )
                )
                if target.requests_move(current):
                    request = preview_move(ctx, epic, ctx.story(current.id), target)
                    report.moves.append(request)
                    if request.result == "refused":
                        report.warnings.append(_move_warning(request))
            if dry_run:
                raise _DryRun
    except _DryRun:
        return report
    ctx.files.epic_root(epic).mkdir(parents=True, exist_ok=True)
    for story_id in renders:
        render_after_commit(ctx, epic, story_id, written=EVERY_FIELD)
    if renders_budgets_anew(current_epic, epic):
        render_epic_stories(ctx, epic, skip=renders)
    _apply_moves(ctx, report)
    return report


def _needs_reuse_plan(story: Story) -> bool:
    """Imported past the draft statuses: its story file needs a Reuse Plan the index
    cannot give (``storyflow check`` flags it from then on), unless nothing more happens to
    it (a terminal status)."""
    if story.status in TERMINAL:
        return False
    return not story_file_is_draft(story.status, story.blocked_from, None)


def _reuse_plan_warning(target: Target) -> PlanWarning:
    planned, story = target.planned, target.story
    return PlanWarning(
        file=planned.source,
        line=planned.status_line or planned.line,
        message=f"{story.id}: imported at {story.status.value} with an empty Reuse Plan: write "
        "it in the story file (storyflow check flags it, and storyflow run blocks the story "
        "until it is there)",
    )


def _no_stories_warning(plan_file: str, prefix: str) -> PlanWarning:
    """A plan that states no story (no stories.index.md beside it, no harness section, no
    phase breakdown) makes an empty epic: say so, and how its stories come."""
    return PlanWarning(
        file=plan_file,
        line=None,
        message=f"the plan states no stories (no stories.index.md beside it, no harness or "
        f"phase breakdown section): {prefix} has none yet; create them with storyflow story "
        f"new {prefix} --title ... (the plan's rules apply to them), or write stories.index.md "
        "beside the plan and import it again",
    )


def _timezone(derived: DerivedPlan, plan_file: str, warnings: list[PlanWarning]) -> str | None:
    if derived.timezone is None:
        return None
    try:
        return validate_timezone(derived.timezone)
    except InvalidInput:
        warnings.append(
            PlanWarning(
                file=plan_file,
                line=None,
                message=f"time zone {derived.timezone!r} is not an IANA name; ignored",
            )
        )
        return None


def _settings(ctx: Context, derived: DerivedPlan, base: EpicSettings | None) -> EpicSettings:
    if base is None:
        base = EpicSettings(
            coverage_threshold=ctx.config.coverage_threshold,
            require_approval=ctx.config.require_approval,
            enforcement=ctx.config.enforcement,
        )
    return EpicSettings.from_json({**base.to_json(), **derived.settings})


def _plan_epic(
    ctx: Context,
    current: Epic | None,
    derived: DerivedPlan,
    timezone: str | None,
    report: ImportReport,
) -> Epic:
    """The epic as the plan wants it (reported field by field); nothing is written yet.
    Layout and root stay as they are on a re-import: the story folders live there."""
    now = ctx.now()
    settings = _settings(ctx, derived, current.settings if current else None)
    wanted = {
        "title": _title(derived.title),
        "layout": derived.layout.value,
        "root": _root(derived.root),
        "timezone": timezone or (current.timezone if current else ctx.config.default_timezone),
    }
    if current is None:
        report.created = True
        report.epic_fields = [Change(name=k, change="added", value=v) for k, v in wanted.items()]
        report.settings = [
            Change(name=k, change="added", value=v, stated=k in derived.settings)
            for k, v in settings.to_json().items()
        ]
        return Epic(
            prefix=derived.prefix,
            title=wanted["title"],
            layout=derived.layout,
            root=wanted["root"],
            timezone=wanted["timezone"],
            settings=settings,
            created_at=now,
            updated_at=now,
        )
    have = {name: str(getattr(current, name)) for name in EPIC_FIELDS}
    for name in ("layout", "root"):
        if wanted[name] != have[name]:
            report.warnings.append(
                PlanWarning(
                    file=report.plan,
                    line=None,
                    message=f"the plan gives {derived.prefix} {name} {wanted[name]!r}; the epic "
                    f"keeps {have[name]!r} (its story folders live there)",
                )
            )
            wanted[name] = have[name]
    report.epic_fields = [Change.of(k, have[k], wanted[k]) for k in EPIC_FIELDS]
    old_settings = current.settings.to_json()
    report.settings = [
        Change.of(k, old_settings.get(k), v, stated=k in derived.settings)
        for k, v in settings.to_json().items()
    ]
    if all(c.change == "unchanged" for c in [*report.epic_fields, *report.settings]):
        return current
    return replace(
        current,
        title=wanted["title"],
        timezone=wanted["timezone"],
        settings=settings,
        updated_at=now,
        version=current.version + 1,
    )


def _write_epic(
    ctx: Context, pending: PendingWritesPort | None, current: Epic | None, epic: Epic, plan: str
) -> None:
    if current is not None and epic is current:
        return
    if current is None:
        ctx.store.insert_epic(epic)
    else:
        ctx.store.update_epic(epic, current.version)
    if pending is not None:
        ctx.files.write_epic_file(pending, epic)  # a fresh clone rebuilds the epic from it
    ctx.store.insert_event(
        type="epic_created" if current is None else "epic_updated",
        at=epic.updated_at,
        epic=epic.prefix,
        actor=ctx.actor,
        payload={"plan": plan, "layout": epic.layout.value, "root": epic.root}
        | epic.settings.to_json(),
    )


def _apply_requirements(ctx: Context, derived: DerivedPlan, report: ImportReport) -> None:
    known = {r["name"]: r for r in ctx.store.requirements()}
    for requirement in derived.requirements:
        row = known.get(requirement.name)
        if row is None:
            ctx.store.set_requirement(
                requirement.name, met=False, note=requirement.note, by=ctx.actor, at=ctx.now()
            )
            report.requirements.append(
                Change(name=requirement.name, change="added", value={"met": False})
            )
        else:
            report.requirements.append(
                Change(name=requirement.name, change="unchanged", value={"met": row["met"]})
            )


def _apply_moves(ctx: Context, report: ImportReport) -> None:
    """Take each previewed move through transitions.move; a refusal becomes a warning."""
    from storyflow.services.transitions import move

    for request in report.moves:
        if request.result != "allowed":
            continue
        try:
            move(
                ctx,
                request.story,
                request.target,
                reason=f"requested by {INDEX_FILE}",
                expect_from=request.source,
            )
        except StoryflowError as error:
            request.refuse(error)
            report.warnings.append(_move_warning(request))
        else:
            request.result = "applied"


def _move_warning(request: MoveRequest) -> PlanWarning:
    return PlanWarning(
        file=request.file,
        line=request.line,
        message=f"{request.story}: {request.source} -> {request.target} not applied "
        f"[{request.code}]: {request.message}",
    )
