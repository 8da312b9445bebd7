"""Epics: create, list, show, update."""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from storyflow.config import validate_timezone
from storyflow.domain.budgets import Enforcement
from storyflow.domain.layouts import LayoutName, default_root
from storyflow.domain.model import Epic, EpicSettings, parse_prefix
from storyflow.errors import InvalidInput
from storyflow.services.context import Context
from storyflow.services.projection import render_epic_stories, renders_budgets_anew
from storyflow.services.unit_of_work import change


def _root(text: str) -> str:
    path = PurePosixPath(text.strip().replace("\\", "/"))
    if not text.strip() or path.is_absolute() or ".." in path.parts:
        raise InvalidInput(
            f"epic root {text!r} must be a relative path inside the workspace",
            hint="e.g. --root plans/future/flow-sync",
            details={"value": text},
        )
    return path.as_posix()


def _title(text: str) -> str:
    title = " ".join(text.split())
    if not title:
        raise InvalidInput("a title cannot be empty", hint="pass --title 'What it is'")
    if len(title) > 200:
        raise InvalidInput("a title is at most 200 characters", hint="shorten the title")
    return title


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
    if coverage_threshold is not None and not 0 <= coverage_threshold <= 100:
        raise InvalidInput(
            "coverage threshold must be between 0 and 100", hint="e.g. --coverage-threshold 45"
        )
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
            if not 0 <= coverage_threshold <= 100:
                raise InvalidInput("coverage threshold must be between 0 and 100", hint="0-100")
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
