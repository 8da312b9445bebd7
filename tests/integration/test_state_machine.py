"""Every one of the 17 x 17 status pairs through the service, against DESIGN §3 written out
here independently of the engine's own table."""

from __future__ import annotations

import pytest

from storyflow.domain.statuses import Status
from storyflow.errors import ConflictError, RuleViolation
from storyflow.services import epics, stories, story_reads
from storyflow.services.transitions import move
from tests.support import Driver, Workspace, code_review, new_story, proof

S = Status
NON_TERMINAL = [s for s in Status if s not in (S.COMPLETED, S.CANCELLED, S.SUPERSEDED)]

# DESIGN §3, the lifecycle edges.
LIFECYCLE = {
    (S.PENDING, S.GENERATED),
    (S.GENERATED, S.IN_ELABORATION),
    (S.IN_ELABORATION, S.READY_TO_WORK),
    (S.IN_ELABORATION, S.NEEDS_REFINEMENT),
    (S.IN_ELABORATION, S.NEEDS_SPLIT),
    (S.NEEDS_REFINEMENT, S.GENERATED),
    (S.NEEDS_SPLIT, S.GENERATED),
    (S.NEEDS_SPLIT, S.SUPERSEDED),
    (S.READY_TO_WORK, S.IN_PROGRESS),
    (S.IN_PROGRESS, S.READY_FOR_CODE_REVIEW),
    (S.IN_PROGRESS, S.READY_FOR_QA),
    (S.READY_FOR_CODE_REVIEW, S.READY_FOR_QA),
    (S.READY_FOR_CODE_REVIEW, S.CODE_REVIEW_FAILED),
    (S.CODE_REVIEW_FAILED, S.IN_PROGRESS),
    (S.READY_FOR_QA, S.IN_QA),
    (S.IN_QA, S.UAT),
    (S.IN_QA, S.NEEDS_WORK),
    (S.NEEDS_WORK, S.IN_PROGRESS),
    (S.UAT, S.COMPLETED),
    (S.UAT, S.IN_PROGRESS),
}
ESCAPES = {(s, S.BLOCKED) for s in NON_TERMINAL if s is not S.BLOCKED} | {
    (s, S.CANCELLED) for s in NON_TERMINAL
}
# The test drives blocked stories from ready-to-work: they may return there, or re-enter.
BLOCKED_FROM = S.READY_TO_WORK
UNBLOCK = {(S.BLOCKED, t) for t in (BLOCKED_FROM, S.IN_PROGRESS, S.IN_ELABORATION)}
ALLOWED = LIFECYCLE | ESCAPES | UNBLOCK

# Pairs whose guard needs evidence the walk to the source status did not already provide.
NEEDS_EVIDENCE = {
    (S.GENERATED, S.IN_ELABORATION),
    (S.IN_ELABORATION, S.READY_TO_WORK),
    (S.IN_ELABORATION, S.NEEDS_REFINEMENT),
    (S.IN_ELABORATION, S.NEEDS_SPLIT),
    (S.NEEDS_SPLIT, S.SUPERSEDED),
    (S.READY_TO_WORK, S.IN_PROGRESS),
    (S.IN_PROGRESS, S.READY_FOR_CODE_REVIEW),
    (S.IN_PROGRESS, S.READY_FOR_QA),
    (S.READY_FOR_CODE_REVIEW, S.READY_FOR_QA),
    (S.READY_FOR_CODE_REVIEW, S.CODE_REVIEW_FAILED),
    (S.IN_QA, S.UAT),
    (S.IN_QA, S.NEEDS_WORK),
    (S.UAT, S.COMPLETED),
    (S.UAT, S.IN_PROGRESS),
    (S.BLOCKED, S.IN_PROGRESS),
    *ESCAPES,  # a reason
}


@pytest.fixture
def driver(workspace: Workspace) -> Driver:
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow")
    return Driver(workspace, ctx)


def _history_len(driver: Driver, story_id: str) -> int:
    return len(story_reads.history(driver.ctx, story_id))


@pytest.mark.parametrize("source", list(Status), ids=lambda s: s.value)
def test_every_pair_from(source: Status, driver: Driver) -> None:
    ctx = driver.ctx
    for target in Status:
        story_id = new_story(ctx, title=f"{source.value} to {target.value}")
        driver.drive_to(story_id, source)
        before = _history_len(driver, story_id)
        pair = (source, target)

        if target is source:
            with pytest.raises(ConflictError) as same:
                move(ctx, story_id, target.value, reason="r")
            assert same.value.code == "ALREADY_IN_STATUS"
            continue

        if pair in ALLOWED and pair not in NEEDS_EVIDENCE:
            move(ctx, story_id, target.value)
            assert ctx.story(story_id).status is target, pair
            assert _history_len(driver, story_id) == before + 1
            continue

        # Without its evidence (or without any edge), the move is refused and nothing changes.
        with pytest.raises(RuleViolation) as refused:
            move(ctx, story_id, target.value)
        expected = (
            {"GUARD_FAILED", "REASON_REQUIRED"}
            if pair in ALLOWED
            else {"TRANSITION_NOT_ALLOWED", "TERMINAL_STATUS", "GUARD_FAILED"}
        )
        assert refused.value.code in expected, (pair, refused.value.code)
        assert ctx.story(story_id).status is source
        assert _history_len(driver, story_id) == before

        driver.evidence_for(story_id, target)
        reason = "because" if target in (S.BLOCKED, S.CANCELLED) else None
        if pair == (S.NEEDS_SPLIT, S.SUPERSEDED):
            stories.split_story(ctx, story_id, ["a", "b"])
            assert ctx.story(story_id).status is S.SUPERSEDED
        elif pair in ALLOWED:
            move(ctx, story_id, target.value, reason=reason)
            assert ctx.story(story_id).status is target, pair
            assert _history_len(driver, story_id) == before + 1
        else:
            with pytest.raises(RuleViolation):
                move(ctx, story_id, target.value, reason=reason)
            assert ctx.story(story_id).status is source


def test_force_overrides_edges_but_not_terminal_statuses(driver: Driver) -> None:
    ctx = driver.ctx
    story_id = new_story(ctx)
    with pytest.raises(RuleViolation) as no_reason:
        move(ctx, story_id, "uat", force=True)
    assert no_reason.value.code == "REASON_REQUIRED"
    result = move(ctx, story_id, "uat", force=True, reason="imported mid-flight")
    assert result.forced and ctx.story(story_id).status is S.UAT
    last = story_reads.history(ctx, story_id)[-1]
    assert last["forced"] is True and last["reason"] == "imported mid-flight"
    move(ctx, story_id, "cancelled", reason="dropped")
    with pytest.raises(RuleViolation) as terminal:
        move(ctx, story_id, "in-progress", force=True, reason="try")
    assert terminal.value.code == "TERMINAL_STATUS"


def test_evidence_read_with_the_story_serves_only_the_edge_it_was_read_for(
    driver: Driver,
) -> None:
    """A move reads the facts of the likeliest evidence edge into its target together with
    the story (in-progress -> ready-for-qa, for ready-for-qa). From ready-for-code-review
    the edge is another one: its code review must postdate the entry into review, so the
    review written during implementation, which the guessed edge would accept, is stale."""
    ctx = driver.ctx
    story_id = new_story(ctx)
    driver.drive_to(story_id, S.IN_PROGRESS)
    driver.submit(story_id, "proof", proof())
    driver.submit(story_id, "code_review", code_review("PASS"))
    driver.move(story_id, S.READY_FOR_CODE_REVIEW.value)
    before = _history_len(driver, story_id)

    with pytest.raises(RuleViolation) as stale:
        move(ctx, story_id, S.READY_FOR_QA.value)
    assert stale.value.code == "GUARD_FAILED"
    assert ctx.story(story_id).status is S.READY_FOR_CODE_REVIEW
    assert _history_len(driver, story_id) == before

    driver.submit(story_id, "code_review", code_review("PASS"))
    assert move(ctx, story_id, S.READY_FOR_QA.value).target is S.READY_FOR_QA
    assert _history_len(driver, story_id) == before + 1
