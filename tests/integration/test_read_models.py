"""The bulk read path of `story list --json` gives exactly what `story show` models give."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from storyflow.domain.statuses import Status
from storyflow.services import epics, stories, story_reads
from storyflow.services.context import Context
from tests.support import Driver, Workspace, assert_story_list_agrees_with_show, new_story


def _agree(ctx: Context) -> list[dict[str, Any]]:
    """The objects ``list_json`` keeps equal the models' ``story_json``, in order."""
    slow = [story_reads.story_json(s) for s in story_reads.list_stories(ctx)]
    fast: list[dict[str, Any]] = json.loads(story_reads.list_stories_json(ctx))
    assert fast == slow
    assert [list(row) for row in fast] == [list(row) for row in slow]  # the same key order
    return fast


def test_bulk_list_equals_story_json_for_every_kind_of_story(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow")
    driver = Driver(workspace, ctx)
    first = new_story(ctx, priority="P1")
    second = new_story(ctx, depends_on=[first], requires=["db-schema-002"], breaking_change=True)
    third = new_story(ctx, budget_multiplier=1.5)
    assert json.loads(story_reads.list_stories_json(ctx, statuses=[Status.COMPLETED])) == []
    new_story(  # several of each, given out of order; text JSON must escape
        ctx,
        title='Café "quoted" \\ back\nslash \u2603',
        depends_on=[third, first],
        requires=["zz-cache-009", "aa-schema-001"],
    )
    clock = ctx.clock
    ctx.clock = lambda: datetime(2026, 12, 7, 3, 0, 0, tzinfo=UTC)  # on the second
    on_the_second = new_story(ctx)
    ctx.clock = clock
    driver.drive_to(second, Status.SUPERSEDED)  # split: children with split_from
    driver.drive_to(first, Status.BLOCKED)
    driver.drive_to(third, Status.CODE_REVIEW_FAILED)
    fast = _agree(ctx)
    assert len(fast) == 7
    (whole,) = [s for s in fast if s["id"] == on_the_second]
    assert whole["created_at"] == "2026-12-07T03:00:00.000000+00:00"
    assert fast[3]["depends_on"] == sorted([first, third])
    assert fast[3]["requires"] == ["aa-schema-001", "zz-cache-009"]
    only_blocked = json.loads(
        story_reads.list_stories_json(ctx, epic="FLOW", statuses=[Status.BLOCKED])
    )
    assert [s["id"] for s in only_blocked] == [first]


def test_the_kept_objects_follow_every_change_of_a_row_or_its_links(
    workspace: Workspace,
) -> None:
    """``list_json`` is written by triggers: links replaced, removed and added, fields
    updated, and a write no service makes (SQL by hand) all show in the next list."""
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow")
    first, second = new_story(ctx), new_story(ctx)
    third = new_story(ctx, depends_on=[first], requires=["db-schema-002"])
    stories.update_story(ctx, third, depends_on=[second, first], requires=["aa-cache-001"])
    assert _agree(ctx)[2]["depends_on"] == [first, second]
    stories.update_story(ctx, third, depends_on=[], requires=[], title="Renamed", priority="P0")
    fast = _agree(ctx)[2]
    assert (fast["depends_on"], fast["requires"], fast["title"]) == ([], [], "Renamed")
    stories.update_story(ctx, first, requires=["zz-one-009"], breaking_change=True)
    assert _agree(ctx)[0]["breaking_change"] is True
    with ctx.store.conn.transaction():
        ctx.store.conn.execute(
            "UPDATE workflow_stories SET title = :title WHERE id = :id",
            {"title": "Edited in SQL", "id": second},
        )
        ctx.store.conn.execute("DELETE FROM story_requirements WHERE story_id = :id", {"id": first})
    fast = _agree(ctx)
    assert fast[1]["title"] == "Edited in SQL" and fast[0]["requires"] == []
    assert_story_list_agrees_with_show(workspace)
