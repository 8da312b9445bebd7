"""Deciding a run before it starts: which phase, whether the agent runs, the run's key.

``choose`` applies the phase table and its re-run modes (DESIGN §4): the next phase of the
story's status, or a named one -- generate refuses unless forced once the story exists;
elaborate and plan are skipped once done; verify is skipped once the story is in uat.
``run_key`` is the idempotency key: story, phase, iteration, attempt and the versions of
the artifacts the phase reads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum

from storyflow.domain.model import Story
from storyflow.domain.phases import (
    PHASES,
    Phase,
    PhaseName,
    RerunMode,
    parse_phase_name,
    phase_for,
)
from storyflow.domain.statuses import Status
from storyflow.errors import RuleViolation


class Action(StrEnum):
    RUN = "run"  # invoke the agent
    REUSE = "reuse"  # a fresh artifact is already there: take its edge, no agent
    SKIP = "skip"  # the phase is done: return its recorded outcome


def choose(story: Story, named: str | None, *, force: bool) -> tuple[Phase, Action]:
    if named is None:
        phase = phase_for(story.status)
        if phase is None:
            raise RuleViolation(
                f"{story.id} is {story.status.value}: no phase runs from there",
                code="NOTHING_TO_RUN",
                hint=(
                    f"storyflow story unblock {story.id}"
                    if story.status is Status.BLOCKED
                    else "the story is finished"
                ),
                details={"story": story.id, "status": story.status.value},
            )
        return phase, Action.RUN
    phase = PHASES[parse_phase_name(named)]
    if story.status in phase.starts:
        return phase, Action.RUN
    if phase.rerun is RerunMode.ERROR_UNLESS_FORCE and story.status is Status.GENERATED:
        if force:
            return phase, Action.RUN
        raise RuleViolation(
            f"{story.id} is already generated; generate runs once",
            code="PHASE_NOT_APPLICABLE",
            hint=f"storyflow run {story.id} --phase generate --force rewrites the story",
            details={"story": story.id, "phase": phase.name.value, "status": story.status.value},
        )
    if story.status in phase.done_after:
        return phase, Action.SKIP
    current = phase_for(story.status)
    raise RuleViolation(
        f"{story.id} is {story.status.value}: {phase.name.value} starts from "
        + " or ".join(s.value for s in phase.starts),
        code="PHASE_NOT_APPLICABLE",
        hint=(
            f"its next phase is {current.name.value}: storyflow run {story.id}"
            if current
            else f"storyflow story show {story.id}"
        ),
        details={"story": story.id, "phase": phase.name.value, "status": story.status.value},
    )


def reuses_fresh(phase: Phase) -> bool:
    """Whether a fresh artifact of the phase's kind stands in for running the agent."""
    return phase.rerun in (RerunMode.SKIP_IF_DONE, RerunMode.RESUME, RerunMode.SKIP_IF_UAT)


def loop_cap_reason(story: Story, phase: Phase, cap: int) -> str | None:
    """Review/fix loops are capped: the reason to block, when the cap is reached."""
    if phase.name not in (PhaseName.FIX, PhaseName.IMPLEMENT):
        return None
    if story.review_iterations >= cap:
        return f"review loop cap: {story.review_iterations} failed code reviews (cap {cap})"
    if story.qa_iterations >= cap:
        return f"QA loop cap: {story.qa_iterations} failed QA rounds (cap {cap})"
    return None


def run_key(
    story_id: str, phase: PhaseName, iteration: int, attempt: int, inputs: Mapping[str, int]
) -> str:
    text = json.dumps(
        [story_id, phase.value, iteration, attempt, sorted(inputs.items())],
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()[:40]
