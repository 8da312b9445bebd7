"""A seeded workspace for the CLI tests: two epics (staged FLOW, flat REVI) and stories in a
few statuses, with history, artifacts, tokens and dependencies to leave untouched."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from storyflow.domain.layouts import LayoutName
from storyflow.domain.statuses import Status
from storyflow.services import epics
from tests.support import Driver, Workspace, new_story


@dataclass
class Seeded:
    ws: Workspace
    driver: Driver

    def story_file(self, story_id: str) -> str:
        """The story file's path relative to the workspace."""
        ctx = self.driver.ctx
        story = ctx.story(story_id)
        return ctx.files.rel(ctx.files.story_file(ctx.epic(story.epic), story))

    def folder(self, story_id: str) -> str:
        return self.story_file(story_id).rsplit("/", 1)[0]


@pytest.fixture
def seeded(workspace: Workspace) -> Seeded:
    """FLOW-001 in-elaboration (story snapshot, tokens); FLOW-002 generated, depends on
    FLOW-001, Reuse Plan written; FLOW-003 pending, depends on FLOW-002; REVI-001 generated
    (flat layout, Markdown story file, America/Denver), Reuse Plan written."""
    ctx = workspace.ctx()
    driver = Driver(workspace, ctx)
    epics.create_epic(ctx, "FLOW", title="Flow")
    epics.create_epic(ctx, "REVI", title="Revi", layout=LayoutName.FLAT, timezone="America/Denver")
    first = new_story(ctx, "FLOW", title="First")
    driver.drive_to(first, Status.IN_ELABORATION)
    driver.tokens(first, "story_generation")
    second = new_story(ctx, "FLOW", title="Second", depends_on=[first])
    driver.drive_to(second, Status.GENERATED)
    driver.fill_story(second)
    new_story(ctx, "FLOW", title="Third", depends_on=[second])
    flat = new_story(ctx, "REVI", title="Flat one")
    driver.drive_to(flat, Status.GENERATED)
    driver.fill_story(flat)
    assert [first, second, flat] == ["FLOW-001", "FLOW-002", "REVI-001"]
    return Seeded(workspace, driver)
