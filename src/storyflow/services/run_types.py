"""The values a phase run passes between its steps, and the events it writes."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.budgets import BudgetDecision
from storyflow.domain.model import Epic, Story
from storyflow.domain.phases import Phase
from storyflow.domain.statuses import Status
from storyflow.errors import ConflictError
from storyflow.services.agents import ToolCall, Usage
from storyflow.services.context import Context
from storyflow.services.run_context import RunEnv
from storyflow.services.run_plan import Action
from storyflow.services.run_report import BudgetEvent, PhaseEvent


@dataclass(frozen=True, kw_only=True)
class PhaseOutcome:
    story_id: str
    phase: str
    status: str  # succeeded | paused | skipped | recorded | failed | blocked | abandoned | lost
    run_id: str | None = None
    attempt: int = 0
    verdict: str | None = None
    source: str | None = None
    target: str | None = None
    usage: Usage = field(default_factory=Usage)
    error_code: str | None = None
    message: str | None = None
    hint: str | None = None  # what a person does next (a story blocked before it ran)
    retry_in: float | None = None  # failed, to be retried after this many seconds
    recorded: bool = False  # an earlier run's outcome, returned without running the agent

    def to_json(self) -> dict[str, Any]:
        return {
            "story": self.story_id,
            "phase": self.phase,
            "status": self.status,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "verdict": self.verdict,
            "from": self.source,
            "to": self.target,
            "tokens": {**self.usage.to_json(), "total": self.usage.total},
            "error_code": self.error_code,
            "message": self.message,
            "hint": self.hint,
            "recorded": self.recorded,
        }


@dataclass(kw_only=True)
class Started:
    story: Story  # as it stands once in the running status
    epic: Epic
    phase: Phase
    action: Action
    run_id: str
    attempt: int
    iteration: int
    trace_id: str
    span_id: str
    agent: str
    model: str | None
    source: Status
    resume: bool
    take_edge: bool
    used_before: int
    budget: BudgetDecision
    started: float = field(default_factory=time.monotonic)
    spawned_at: datetime | None = None


@dataclass(kw_only=True)
class Work:
    """What the agent(s) did."""

    usage: dict[str | None, Usage] = field(default_factory=dict)  # per model
    verdict: str | None = None
    reviewers: dict[str, str] = field(default_factory=dict)  # with the PASSes carried over
    ran: dict[str | None, list[str]] = field(default_factory=dict)  # reviewers run, per model
    titles: list[str] = field(default_factory=list)
    files: dict[ArtifactKind, Path] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)
    ended_at: datetime | None = None

    @property
    def total(self) -> Usage:
        total = Usage()
        for usage in self.usage.values():
            total = total + usage
        return total


def new_run_id() -> str:
    return uuid.uuid4().hex


def lost(story_id: str) -> ConflictError:
    return ConflictError(
        f"{story_id}: this worker no longer holds the story's lease",
        code="LEASE_LOST",
        hint="another worker took the story over after the lease expired",
        details={"story": story_id},
    )


def event(
    ctx: Context,
    type: str,
    story: Story,
    span_id: str,
    *,
    phase: Phase,
    at: datetime | None = None,
    **payload: Any,
) -> None:
    ctx.store.insert_event(
        type=type,
        at=at or ctx.now(),
        story_id=story.id,
        epic=story.epic,
        actor=ctx.actor,
        payload={"phase": phase.name.value, **{k: v for k, v in payload.items() if v is not None}},
        span_id=span_id,
    )


def phase_event(s: Started, env: RunEnv, *, status: str, **extra: Any) -> PhaseEvent:
    return PhaseEvent(
        story_id=s.story.id,
        epic=s.epic.prefix,
        title=s.story.title,
        phase=s.phase.name.value,
        run_id=s.run_id,
        attempt=s.attempt,
        worker=env.worker,
        agent=s.agent,
        model=s.model,
        status=status,
        source=s.source.value,
        duration_ms=int((time.monotonic() - s.started) * 1000),
        **extra,
    )


def budget_event(s: Started, env: RunEnv, decision: BudgetDecision) -> BudgetEvent:
    return BudgetEvent(
        story_id=s.story.id,
        epic=s.epic.prefix,
        phase=s.phase.name.value,
        budget_phase=decision.phase.value,
        run_id=s.run_id,
        attempt=s.attempt,
        worker=env.worker,
        enforcement=decision.level.value,
        used=decision.used,
        warning_limit=decision.limits.warning,
        hard_limit=decision.limits.hard,
        state=decision.state.value,
        action=decision.action.value,
    )
