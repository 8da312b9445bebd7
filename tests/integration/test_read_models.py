"""The bulk read path of `story list --json` gives exactly what `story show` models give."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from storyflow.domain.statuses import Status
from storyflow.services import epics, story_reads
from tests.support import Driver, Workspace, new_story


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
    slow = [story_reads.story_json(s) for s in story_reads.list_stories(ctx)]
    fast = json.loads(story_reads.list_stories_json(ctx))
    assert len(slow) == 7
    (whole,) = [s for s in fast if s["id"] == on_the_second]
    assert whole["created_at"] == "2026-12-07T03:00:00.000000+00:00"
    assert fast == slow
    assert [list(row) for row in fast] == [list(row) for row in slow]  # the same key order
    assert fast[3]["depends_on"] == sorted([first, third])
    assert fast[3]["requires"] == ["aa-schema-001", "zz-cache-009"]
    only_blocked = json.loads(
        story_reads.list_stories_json(ctx, epic="FLOW", statuses=[Status.BLOCKED])
    )
    assert [s["id"] for s in only_blocked] == [first]
