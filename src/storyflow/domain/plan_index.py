"""stories.index.md rendered from the stories: deterministic (no clocks), in the format
``plan import`` reads back, so import -> export -> import changes nothing. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from storyflow.domain.model import Story
from storyflow.domain.plan_model import DETAIL_KEYS, INDEX_DOC_TYPE, INDEX_FIELDS, LIST_DETAILS
from storyflow.domain.priorities import PRIORITIES
from storyflow.domain.statuses import Status

_LABELS = dict(INDEX_FIELDS)
NOTE = " <!-- exported: "


def ready_to_start(
    stories: Iterable[Story], statuses: dict[str, Status], met: set[str]
) -> list[Story]:
    """ready-to-work, every dependency completed, every requirement met: by priority, then
    number (the dependency graph's workable set; leases are a run-time matter, left out)."""
    rank = {p: i for i, p in enumerate(PRIORITIES)}
    ready = [
        s
        for s in stories
        if s.status is Status.READY_TO_WORK
        and all(statuses.get(d) is Status.COMPLETED for d in s.depends_on)
        and all(r in met for r in s.requires)
    ]
    return sorted(ready, key=lambda s: (rank.get(s.priority, len(PRIORITIES)), s.number))


def _field(key: str, value: str) -> str:
    return f"**{_LABELS[key]}:** {value}".rstrip() + "\n"


def _story_section(story: Story, *, multipliers: bool) -> str:
    status = story.status.value
    # the note lets the next import tell an edited Status from one the board has moved past
    lines = [
        f"## {story.id}: {story.title}\n",
        "\n",
        _field("status", f"{status}{NOTE}{status} -->"),
    ]
    if story.phase is not None:
        lines.append(_field("phase", str(story.phase)))
    lines.append(_field("depends_on", ", ".join(story.depends_on) or "none"))
    lines.append(_field("priority", story.priority))
    if story.requires:
        lines.append(_field("requires", ", ".join(story.requires)))
    if multipliers and story.token_budget_multiplier != 1.0:
        lines.append(_field("token_budget_multiplier", f"{story.token_budget_multiplier:g}"))
    for key in DETAIL_KEYS:
        value: Any = story.details.get(key)
        if value in (None, "", []):
            continue
        if key in LIST_DETAILS and isinstance(value, list):
            lines.append(_field(key, ""))
            lines += [f"- {' '.join(str(item).split())}\n" for item in value]
        else:
            lines.append(_field(key, " ".join(str(value).split())))
    return "".join(lines)


def render_index(
    *,
    prefix: str,
    stories: Sequence[Story],
    ready: Sequence[Story],
    multipliers: bool,
) -> str:
    """The whole stories.index.md for one epic."""
    title = f"{prefix} — Stories Index"
    counts = {s: sum(1 for story in stories if story.status is s) for s in Status}
    parts = [
        "---\n",
        f"doc_type: {INDEX_DOC_TYPE}\n",
        f"title: {json.dumps(title, ensure_ascii=False)}\n",
        f"story_prefix: {prefix}\n",
        "generated_by: storyflow plan export\n",
        "---\n",
        "\n",
        f"# {title}\n",
        "\n",
        f"<!-- Written by `storyflow plan export {prefix}` from the database. Edit a story's\n"
        f"fields, then `storyflow plan import`: a changed Status is a transition request. -->\n",
        "\n",
        "## Progress Summary\n",
        "\n",
        "| Status | Count |\n",
        "|---|---|\n",
        *(f"| {s.value} | {n} |\n" for s, n in counts.items() if n),
        f"| **total** | **{len(stories)}** |\n",
        "\n",
        "## Ready to Start\n",
        "\n",
        *([f"- {s.id}: {s.title} ({s.priority})\n" for s in ready] or ["None.\n"]),
    ]
    for story in sorted(stories, key=lambda s: s.number):
        parts += ["\n", _story_section(story, multipliers=multipliers)]
    return "".join(parts)
