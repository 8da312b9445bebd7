"""Elaborate/refine loops are capped like review/fix loops: an elaboration that keeps asking
for refinement blocks the story with the reason after ``review_loop_cap`` rounds, instead of
running (and spending) forever; unblocking gives it that many rounds again."""

from __future__ import annotations

from storyflow.domain.statuses import Status
from tests.run_support import configure, epic_with, runs_of, scenario
from tests.support import Workspace


def test_an_elaboration_that_keeps_asking_for_refinement_is_blocked(
    workspace: Workspace,
) -> None:
    scenario(workspace, {"phases": {"elaborate": {"verdict": "NEEDS_REFINEMENT"}}})
    configure(workspace, {"scenario": "scenario.yaml", "review_loop_cap": 2})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)

    result = workspace.run("run", "--epic", "FLOW", "--workers", "2", "--json", timeout=120)

    assert result.code == 0, result
    shown = ctx.story(story)
    assert shown.status is Status.BLOCKED and shown.blocked_from is Status.NEEDS_REFINEMENT
    assert "refinement loop cap: the elaboration asked for refinement 2 times (cap 2)" in (
        shown.blocked_reason or ""
    )
    phases = [r["phase"] for r in runs_of(ctx, story)]
    assert phases.count("elaborate") == 2 and phases.count("refine") == 1
    single = workspace.run("run", story, "--json")
    assert single.code == 3 and single.json["error"]["code"] == "NOTHING_TO_RUN"

    # a person reworked it: unblocked, it gets the rounds again, then is blocked again
    assert workspace.run("story", "unblock", story).code == 0
    again = workspace.run("run", "--epic", "FLOW", "--json", timeout=120)
    assert again.code == 0, again
    phases = [r["phase"] for r in runs_of(ctx, story)]
    assert phases.count("refine") == 3 and phases.count("elaborate") == 4
    assert ctx.story(story).status is Status.BLOCKED
