"""Property: random sequences of commands never take an edge DESIGN §3 forbids, and the
story file always agrees with the database (status, stage folder, Agent Log)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyflow.domain.layouts import stage_for
from storyflow.domain.statuses import Status
from storyflow.errors import StoryflowError
from storyflow.services import epics, story_reads, tokens
from storyflow.services.transitions import move
from tests.integration.test_state_machine import ALLOWED, LIFECYCLE, NON_TERMINAL
from tests.support import Driver, Workspace, new_story

REENTRY = {Status.IN_PROGRESS, Status.READY_TO_WORK, Status.IN_ELABORATION}
PHASES = ["story_generation", "elaboration", "implementation", "code_review", "qa_verification"]

actions = st.lists(
    st.one_of(
        st.tuples(st.just("move"), st.sampled_from(list(Status))),
        st.tuples(st.just("evidence"), st.sampled_from(list(Status))),
        st.tuples(st.just("force"), st.sampled_from(list(Status))),
        st.tuples(st.just("tokens"), st.sampled_from(PHASES)),
    ),
    min_size=1,
    max_size=25,
)


def _legal(source: Status, target: Status, blocked_from: Status | None) -> bool:
    if (source, target) in LIFECYCLE:
        return True
    if source in NON_TERMINAL and target in (Status.BLOCKED, Status.CANCELLED):
        return source is not target
    if source is Status.BLOCKED:
        return target is blocked_from or target in REENTRY
    return False


def _check_agreement(driver: Driver, story_id: str) -> None:
    ctx = driver.ctx
    story = ctx.story(story_id)
    epic = ctx.epic(story.epic)
    path, _text, parsed = ctx.files.read_story(epic, story)
    assert parsed.meta["status"] == story.status.value
    if ctx.files.layout(epic).staged:
        assert path.parent.parent.name == stage_for(story.status, story.blocked_from)
    file_rows = [
        (r["timestamp"], r["agent"], r["action"], r["outputs"]) for r in parsed.agent_log or []
    ]
    db_rows = [(r.timestamp, r.agent, r.action, r.outputs) for r in ctx.store.log_rows(story_id)]
    if path.suffix == ".md":  # Markdown cells are whitespace-normalised
        db_rows = [tuple(" ".join(c.split()) for c in row) for row in db_rows]
    assert file_rows == db_rows
    budget = parsed.token_budget
    assert budget["total_used"] == sum(e.total_tokens for e in ctx.store.ledger(story_id))
    assert not list(path.parent.glob(".*.tmp"))


def _check_history(driver: Driver, story_id: str) -> None:
    blocked_from: Status | None = None
    for row in story_reads.history(driver.ctx, story_id)[1:]:
        source, target = Status(row["from_status"]), Status(row["to_status"])
        if not row["forced"]:
            assert _legal(source, target, blocked_from), (source, target)
            assert (source, target) in ALLOWED or source is Status.BLOCKED
        if target is Status.BLOCKED:
            blocked_from = source


@pytest.mark.parametrize("layout", ["staged", "flat"])
def test_random_commands_keep_the_rules_and_files_in_step(
    layout: str, workspace: Workspace
) -> None:
    from storyflow.domain.layouts import LayoutName

    ctx = workspace.ctx()
    epics.create_epic(
        ctx, "PROP", title="Properties", layout=LayoutName(layout), timezone="America/Denver"
    )
    driver = Driver(workspace, ctx)

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(actions)
    def run(sequence: list[tuple[str, object]]) -> None:
        story_id = new_story(ctx, "PROP")
        for action, arg in sequence:
            try:
                if action == "move":
                    move(ctx, story_id, str(arg), reason="r")
                elif action == "evidence":
                    target = Status(str(arg))
                    driver.evidence_for(story_id, target)
                    move(ctx, story_id, target.value, reason="r")
                elif action == "force":
                    move(ctx, story_id, str(arg), force=True, reason="override")
                else:
                    tokens.log_tokens(ctx, story_id, str(arg), input_tokens=10, output_tokens=5)
            except StoryflowError:
                pass
            _check_agreement(driver, story_id)
        _check_history(driver, story_id)

    run()
