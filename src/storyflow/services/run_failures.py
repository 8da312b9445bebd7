"""What a failed attempt leads to: retry after a backoff, or block the story.

Per failure type (``runs.retries``): how many retries, and the first backoff (doubling,
capped at ``runs.backoff_max``). Across types, the circuit breaker: ``runs.circuit_breaker``
consecutive failed runs of a story block it with the last error as the reason. A hard
budget stop blocks at once; an interrupted run is abandoned, not failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storyflow.errors import (
    ConflictError,
    InvalidInput,
    NotFoundError,
    RuleViolation,
    StoryflowError,
)
from storyflow.run_settings import RunSettings
from storyflow.services.agents import AgentFailure


@dataclass(frozen=True, kw_only=True)
class FailurePlan:
    status: str  # failed | abandoned
    retry_in: float | None  # seconds; None: no retry
    block_reason: str | None


def failure_plan(
    settings: RunSettings, code: str, message: str, *, attempt: int, recent: Sequence[str]
) -> FailurePlan:
    """``recent``: the story's latest finished run statuses, newest first (before this one)."""
    if code == "RUN_INTERRUPTED":
        return FailurePlan(status="abandoned", retry_in=None, block_reason=None)
    if code == "BUDGET_HARD_LIMIT":
        return FailurePlan(status="failed", retry_in=None, block_reason=message)
    in_a_row = 1
    for status in recent:
        if status != "failed":
            break
        in_a_row += 1
    if in_a_row >= settings.circuit_breaker:
        return FailurePlan(
            status="failed",
            retry_in=None,
            block_reason=f"circuit breaker: {in_a_row} consecutive failed runs; last {code}: "
            f"{message}",
        )
    policy = settings.retries.get(code)
    if policy is None or attempt > policy.retries:
        tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
        return FailurePlan(
            status="failed", retry_in=None, block_reason=f"{code} after {tries}: {message}"
        )
    delay = min(policy.backoff * 2 ** (attempt - 1), settings.backoff_max)
    return FailurePlan(status="failed", retry_in=delay, block_reason=None)


def from_error(error: StoryflowError) -> AgentFailure | None:
    """An engine refusal of the agent's outcome, as a failure of the contract; None for
    errors that are not the attempt's to record (a lost lease)."""
    if isinstance(error, ConflictError):
        return None
    if isinstance(error, InvalidInput | NotFoundError) or error.code == "GATE_CONTRADICTION":
        return AgentFailure("MALFORMED_OUTPUT", error.message)
    if isinstance(error, RuleViolation):
        return AgentFailure("PRECONDITION_FAILED", error.message)
    if error.code == "BUDGET_HARD_LIMIT":
        return AgentFailure("BUDGET_HARD_LIMIT", error.message)
    return None
