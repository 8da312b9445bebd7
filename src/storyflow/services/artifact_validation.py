"""storyflow artifact validate: judge a file as ``artifact submit`` would, storing nothing.

With its story known (named, or the story whose folder holds the file) a file goes through
``submit``'s own preparation: ownership, its ``story_id`` against the story, the evidence
against the story's epic's coverage threshold. Without one it is judged alone, and a missing
``story_id`` is no error: submit fills it in from the story it is submitted for.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.model import STORY_ID_RE
from storyflow.services.artifacts import check_content, prepare
from storyflow.services.context import Context

# Stands in for the story_id submit would fill in, so the schema checks every other field;
# it never reaches the output.
_ANY_STORY = "STORY-000"


def folder_story_id(path: Path, root: Path) -> str | None:
    """The story ID the file's folder is named for, when that folder lies in the workspace
    at ``root`` (a story folder is ``<epic root>[/<stage>]/<ID>``): cheap, no database."""
    folder = Path(os.path.realpath(path)).parent
    if not STORY_ID_RE.fullmatch(folder.name):
        return None
    if not folder.is_relative_to(Path(os.path.realpath(root))):
        return None
    return folder.name


def owner_by_location(ctx: Context, path: Path) -> str | None:
    """The story whose folder holds ``path``: its folder is named for a story the database
    knows and is one the engine finds that story in (``storyflow check`` walks the same
    places). Anything else (a copy elsewhere, a story not synced yet) is not inferred."""
    story_id = folder_story_id(path, ctx.files.root)
    if story_id is None:
        return None
    story = ctx.store.get_story(story_id)
    epic = ctx.store.get_epic(story.epic) if story is not None else None
    if story is None or epic is None:
        ctx.warn(
            f"{story_id} is not a story in the database: the file was judged on its own "
            "(storyflow sync records the story; --story names it)"
        )
        return None
    folder = Path(os.path.realpath(path)).parent
    if all(Path(os.path.realpath(c)) != folder for c in ctx.files.candidates(epic, story_id)):
        ctx.warn(
            f"{ctx.files.rel(folder)} is not {story_id}'s story folder: the file was judged "
            "on its own (--story names the story)"
        )
        return None
    return story_id


def validate_for_story(
    ctx: Context, story_id: str, kind: ArtifactKind, path: Path, *, threshold: float | None
) -> dict[str, Any]:
    """The normalised content ``submit`` would store for ``story_id``, or its refusal;
    ``threshold`` (None: the epic's) replaces the epic's coverage threshold."""
    # realpath, as submit's command line does: ownership looks at the real folders
    source = Path(os.path.realpath(path))
    return prepare(ctx, story_id, kind.value, source, threshold=threshold).content


def validate_alone(
    kind: ArtifactKind, data: Any, *, source: str, threshold: float, today: date
) -> dict[str, Any]:
    """Schema and evidence of a file no story is known for (``check_content``, except that
    a missing ``story_id`` is left for submit to fill in)."""
    unclaimed = (
        kind is not ArtifactKind.STORY and isinstance(data, dict) and data.get("story_id") is None
    )
    if not unclaimed:
        return check_content(kind, data, source=source, threshold=threshold, today=today)
    content = check_content(
        kind, {**data, "story_id": _ANY_STORY}, source=source, threshold=threshold, today=today
    )
    content.pop("story_id", None)
    return content
