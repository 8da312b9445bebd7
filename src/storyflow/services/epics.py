"""Epics: create, list, show, update."""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from storyflow.config import validate_timezone
from storyflow.domain.budgets import Enforcement
from storyflow.domain.layouts import MAX_ROOT_DEPTH, UNWALKED_FOLDERS, LayoutName, default_root
from storyflow.domain.model import (
    STORY_ID_RE,
    Epic,
    EpicSettings,
    check_coverage_threshold,
    clean_title,
    parse_prefix,
)
from storyflow.errors import InvalidInput
from storyflow.services.context import Context
from storyflow.services.projection import render_epic_stories, renders_budgets_anew
from storyflow.services.unit_of_work import change


def _bad_root(text: str, why: str) -> InvalidInput:
    return InvalidInput(
        f"epic root {text!r} {why}",
        hint="a folder inside the workspace of its own, e.g. --root plans/new-epic",
        details={"value": text},
    )


def _root(text: str) -> str:
    """The root as a normalised relative path (``./x/`` is ``x``): inside the workspace,
    not the workspace itself, no hidden folder (``.git``, ``.storyflow``), no folder named
    like a story (a story folder's, which the walks of check and sync do not enter)."""
    path = PurePosixPath(text.strip().replace("\\", "/"))
    if not text.strip() or path.is_absolute() or ".." in path.parts:
        raise _bad_root(text, "must be a relative path inside the workspace")
    if not path.parts:
        raise _bad_root(text, "is the workspace itself")
    if any(part.startswith(".") for part in path.parts):
        raise _bad_root(text, "lies in a hidden folder (git's, storyflow's own, …)")
    if any(STORY_ID_RE.match(part) for part in path.parts):
        raise _bad_root(text, "lies in a story folder")
    if any(not part.isprintable() for part in path.parts):
        raise _bad_root(text, "holds control characters")
    # a fresh clone's sync finds an epic by its file: where it does not look, it is lost
    skipped = [part for part in path.parts if part in UNWALKED_FOLDERS]
    if skipped:
        raise _bad_root(text, f"lies in {skipped[0]}/, a folder sync does not search")
    if len(path.parts) > MAX_ROOT_DEPTH:
        raise _bad_root(text, f"is more than {MAX_ROOT_DEPTH} folders deep (sync stops there)")
    return path.as_posix()


def check_root_free(ctx: Context, epic: Epic) -> None:
    """Refuse a root inside or around another epic's root: the walks would take one epic's
    story folders for misplaced or duplicate stories of the other. Epics of one layout may
    share a root (two flat epics in plans/stories); a symlink may not lead out of the
    workspace."""
    base = ctx.files.root.resolve()
    try:
        (ctx.files.root / epic.root).resolve().relative_to(base)
    except ValueError:
        raise _bad_root(epic.root, "leads out of the workspace (a symbolic link)") from None
    mine = PurePosixPath(epic.root)
    for other in ctx.store.list_epics():
        if other.prefix == epic.prefix:
            continue
        theirs = PurePosixPath(other.root.strip("/"))
        if theirs == mine:
            if other.layout is epic.layout:
                continue
            raise _bad_root(
                epic.root, f"is epic {other.prefix}'s root, which has the {other.layout} layout"
            )
        if mine.is_relative_to(theirs):
            raise _bad_root(epic.root, f"lies inside epic {other.prefix}'s root {other.root}")
        if theirs.is_relative_to(mine):
            raise _bad_root(epic.root, f"holds epic {other.prefix}'s root {other.root}")


def _title(text: str) -> str:
    try:
        return clean_title(text)
    except ValueError as exc:
        problem = str(exc)
        hint = "pass --title 'What it is'" if "empty" in problem else "shorten or fix the title"
        raise InvalidInput(f"a title {problem}", hint=hint) from None


def create_epic(
    ctx: Context,
    prefix: str,
    *,
    title: str,
    layout: LayoutName | None = None,
    root: str | None = None,
    timezone: str | None = None,
    coverage_threshold: float | None = None,
    require_approval: bool | None = None,
    enforcement: Enforcement | None = None,
    reuse_gate: bool = True,
) -> Epic:
    prefix = parse_prefix(prefix)
    chosen = layout or ctx.config.default_layout
    if coverage_threshold is not None:
        check_coverage_threshold(coverage_threshold)
    now = ctx.now()
    epic = Epic(
        prefix=prefix,
        title=_title(title),
        layout=chosen,
        root=_root(root) if root else default_root(chosen, prefix),
        timezone=validate_timezone(timezone or ctx.config.default_timezone),
        settings=EpicSettings(
            coverage_threshold=(
                ctx.config.coverage_threshold if coverage_threshold is None else coverage_threshold
            ),
            require_approval=(
                ctx.config.require_approval if require_approval is None else require_approval
            ),
            enforcement=enforcement or ctx.config.enforcement,
            reuse_gate=reuse_gate,
        ),
        created_at=now,
        updated_at=now,
    )
    with change(ctx) as pending:
        check_root_free(ctx, epic)
        ctx.store.insert_epic(epic)
        ctx.files.write_epic_file(pending, epic)  # a fresh clone rebuilds the epic from it
        ctx.store.insert_event(
            type="epic_created",
            at=now,
            epic=prefix,
            actor=ctx.actor,
            payload={"layout": epic.layout.value, "root": epic.root},
        )
    (ctx.files.epic_root(epic)).mkdir(parents=True, exist_ok=True)
    return epic


def update_epic(
    ctx: Context,
    prefix: str,
    *,
    title: str | None = None,
    timezone: str | None = None,
    coverage_threshold: float | None = None,
    require_approval: bool | None = None,
    enforcement: Enforcement | None = None,
) -> Epic:
    prefix = parse_prefix(prefix)
    with change(ctx) as pending:
        epic = ctx.epic(prefix)
        settings = epic.settings
        if coverage_threshold is not None:
            check_coverage_threshold(coverage_threshold)
            settings = replace(settings, coverage_threshold=coverage_threshold)
        if require_approval is not None:
            settings = replace(settings, require_approval=require_approval)
        if enforcement is not None:
            settings = replace(settings, enforcement=enforcement)
        updated = replace(
            epic,
            title=_title(title) if title else epic.title,
            timezone=validate_timezone(timezone) if timezone else epic.timezone,
            settings=settings,
            updated_at=ctx.now(),
            version=epic.version + 1,
        )
        ctx.store.update_epic(updated, epic.version)
        ctx.files.write_epic_file(pending, updated)
        ctx.store.insert_event(
            type="epic_updated",
            at=ctx.now(),
            epic=prefix,
            actor=ctx.actor,
            payload=updated.settings.to_json(),
        )
    if renders_budgets_anew(epic, updated):
        render_epic_stories(ctx, updated)
    return updated


def epic_json(epic: Epic, counts: dict[str, int] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "prefix": epic.prefix,
        "title": epic.title,
        "layout": epic.layout.value,
        "root": epic.root,
        "timezone": epic.timezone,
        "settings": epic.settings.to_json(),
        "created_at": epic.created_at.isoformat(),
        "updated_at": epic.updated_at.isoformat(),
    }
    if counts is not None:
        data["stories"] = sum(counts.values())
        data["status_counts"] = dict(sorted(counts.items()))
    return data
