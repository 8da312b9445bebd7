"""storyflow plan export: stories.index.md regenerated from the database.

Written beside the epic's plan (the folder ``plan import`` read, so the next import reads it
back) or, for an epic that was not imported, at its story root; ``--output`` names another
file. Byte-stable: the same board gives the same bytes, and an unchanged file is not
rewritten. A file already there is replaced only when it is the epic's index (a previous
export, or one edited by hand): never the plan, a story file or another epic's index, unless
``force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storyflow.domain.model import Epic
from storyflow.domain.plan_index import ready_to_start, render_index
from storyflow.domain.plan_model import INDEX_DOC_TYPE, INDEX_FILE
from storyflow.errors import ConflictError
from storyflow.services.context import Context
from storyflow.services.ports import PlanFilesPort


def index_text(ctx: Context, prefix: str) -> tuple[str, int]:
    """The epic's stories.index.md, and how many stories it lists."""
    with ctx.store.transaction(write=False):
        epic = ctx.epic(prefix)
        stories = ctx.store.list_stories(epic=epic.prefix)
        statuses = ctx.store.story_status_map()
        met = {r["name"] for r in ctx.store.requirements() if r["met"]}
    text = render_index(
        prefix=epic.prefix,
        stories=stories,
        ready=ready_to_start(stories, statuses, met),
        multipliers=epic.settings.per_story_multiplier,
    )
    return text, len(stories)


def default_path(ctx: Context, epic: Epic) -> Path:
    return ctx.files.root / (epic.settings.plan_dir or epic.root) / INDEX_FILE


def check_replaceable(files: PlanFilesPort, path: Path, prefix: str) -> None:
    """Refuse to replace a file that is not the epic's stories index."""
    front = files.front_matter(path)
    if front is None:
        return
    shown = files.display(path)
    doc_type, stated = front.get("doc_type"), front.get("story_prefix")
    if doc_type != INDEX_DOC_TYPE:
        what = f"doc_type {doc_type!r}" if doc_type else "no doc_type"
        problem = f"{shown} exists and is not a stories index ({what})"
    elif stated is not None and str(stated).strip() != prefix:
        problem = f"{shown} is the stories index of epic {stated}, not {prefix}"
    else:
        return
    raise ConflictError(
        problem,
        code="FILE_EXISTS",
        hint="name another file with --output, or replace this one with --force",
        details={"file": shown, "doc_type": doc_type, "story_prefix": stated},
    )


def export_index(
    ctx: Context,
    files: PlanFilesPort,
    prefix: str,
    *,
    output: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the epic's stories.index.md atomically; say where, and whether it changed. A
    file in the way that is not the epic's index is refused unless ``force``."""
    text, count = index_text(ctx, prefix)
    epic = ctx.epic(prefix)
    path = output if output is not None else default_path(ctx, epic)
    if not force:
        check_replaceable(files, path, epic.prefix)
    written = files.write(path, text)
    return {
        "epic": prefix,
        "path": files.display(path),
        "written": written,
        "bytes": len(text.encode("utf-8")),
        "stories": count,
    }
