"""Parallel reviewers: lint, style, syntax, security, typecheck, build side by side, and the
aggregation policy that turns their results into one code review (``runs.reviewers``).

- A reviewer's FAIL fails the review when the policy requires that reviewer (default: all);
  a failing optional reviewer's findings are kept, as medium.
- A timeout counts as a failure, except the first ``allow_timeouts`` timeouts of optional
  reviewers, which are kept as info findings.
- Any other failure of a reviewer (its service down, no verdict in its output, an agent that
  cannot start) says nothing about the change: it fails the phase run with its contract
  code, retried as the contract says, instead of becoming a FAIL verdict that would send the
  story to a fix with nothing to fix.
- Coverage comes from the proof (else the best a reviewer reported); below the epic's
  threshold the review fails whatever the reviewers said.
- Iterations after the first re-run only the reviewers that did not pass last time, plus
  ``rerun_always`` (typecheck and build); the others carry their PASS over. So does the
  retry of a review run that failed: its reviewers' PASSes are in the failed run's outcome.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from storyflow.run_settings import ReviewerPolicy
from storyflow.services.agents import (
    AgentFailure,
    AgentPort,
    AgentRequest,
    AgentResult,
    ToolCall,
    Usage,
)
from storyflow.services.run_context import RunMonitor

# Failures that stop the whole phase rather than count against one reviewer.
PHASE_STOPPERS = frozenset({"BUDGET_HARD_LIMIT", "RUN_INTERRUPTED", "LEASE_LOST"})


@dataclass(frozen=True, kw_only=True)
class ReviewerOutcome:
    name: str
    status: str  # PASS | FAIL | TIMEOUT | ERROR | CARRIED
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    findings: tuple[Mapping[str, Any], ...] = ()
    coverage: float | None = None
    error_code: str | None = None
    message: str | None = None
    duration_ms: int = 0
    tool_calls: tuple[ToolCall, ...] = ()  # each with this reviewer's name


def to_run(
    policy: ReviewerPolicy, previous: Mapping[str, str] | None
) -> tuple[list[str], dict[str, str]]:
    """(reviewers to run now, earlier PASSes carried over)."""
    if not previous:
        return list(policy.names), {}
    again = [n for n in policy.names if previous.get(n) != "PASS" or n in policy.rerun_always]
    carried = {n: "PASS" for n in policy.names if n not in again}
    return again, carried


def run_reviewers(
    agent: AgentPort,
    request: AgentRequest,
    names: Sequence[str],
    monitor: RunMonitor,
    *,
    timeout: float,
    beat_every: float = 0.05,
) -> list[ReviewerOutcome]:
    """Run one agent request per reviewer in threads; the calling (worker) thread keeps the
    lease alive meanwhile. Raises the first phase-stopping failure once all have ended."""
    if not names:
        return []
    outcomes: dict[str, ReviewerOutcome] = {}
    stopper: AgentFailure | None = None
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="reviewer") as pool:
        futures: dict[Future[AgentResult], str] = {
            pool.submit(agent.run, replace(request, reviewer=n, timeout=timeout), monitor): n
            for n in names
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=beat_every, return_when=FIRST_COMPLETED)
            monitor.beat()
            for future in done:
                name = futures[future]
                elapsed = int((time.monotonic() - started) * 1000)
                try:
                    result = future.result()
                except AgentFailure as failure:
                    if failure.code in PHASE_STOPPERS and stopper is None:
                        stopper = failure
                    status = "TIMEOUT" if failure.code == "AGENT_TIMEOUT" else "ERROR"
                    outcomes[name] = ReviewerOutcome(
                        name=name,
                        status=status,
                        usage=failure.usage,
                        error_code=failure.code,
                        message=failure.message,
                        duration_ms=elapsed,
                    )
                    continue
                outcomes[name] = ReviewerOutcome(
                    name=name,
                    status="PASS" if result.verdict == "PASS" else "FAIL",
                    usage=result.usage,
                    model=result.model,
                    findings=result.findings,
                    coverage=result.coverage,
                    duration_ms=elapsed,
                    tool_calls=tuple(replace(c, reviewer=name) for c in result.tool_calls),
                )
    errored = [outcomes[n] for n in names if outcomes[n].status == "ERROR"]
    if stopper is None and errored:
        first = errored[0]
        stopper = AgentFailure(first.error_code or "EXTERNAL_SERVICE_DOWN", "")
        stopper.message = f"reviewer {first.name}: {first.message}"
    if stopper is not None:
        total = Usage()
        for outcome in outcomes.values():
            total = total + outcome.usage
        statuses = {n: outcomes[n].status for n in names if n in outcomes}
        raise AgentFailure(stopper.code, stopper.message, usage=total, reviewers=statuses)
    return [outcomes[n] for n in names]


_SEVERITIES = ("critical", "high", "medium", "low", "info")


def _finding(raw: Mapping[str, Any], reviewer: str, severity: str | None = None) -> dict[str, Any]:
    level = severity or str(raw.get("severity") or "high").lower()
    finding: dict[str, Any] = {
        "severity": level if level in _SEVERITIES else "high",
        "message": str(raw.get("message") or f"{reviewer} failed"),
    }
    if raw.get("file"):
        finding["file"] = str(raw["file"])
    if isinstance(raw.get("line"), int):
        finding["line"] = raw["line"]
    if not finding["message"].startswith(f"{reviewer}:"):
        finding["message"] = f"{reviewer}: {finding['message']}"
    return finding


def aggregate(
    policy: ReviewerPolicy,
    outcomes: Sequence[ReviewerOutcome],
    carried: Mapping[str, str],
    *,
    story_id: str,
    threshold: float,
    proof_coverage: float | None,
) -> dict[str, Any]:
    """The code review the reviewers add up to (its content, ready to submit)."""
    findings: list[dict[str, Any]] = []
    failed: list[str] = []
    forgiven = 0
    for outcome in outcomes:
        required = policy.must_pass(outcome.name)
        if outcome.status == "PASS":
            findings += [
                _finding(f, outcome.name, "low")
                for f in outcome.findings
                if str(f.get("severity")) in ("critical", "high")
            ]
            findings += [
                _finding(f, outcome.name)
                for f in outcome.findings
                if str(f.get("severity")) not in ("critical", "high")
            ]
            continue
        if outcome.status == "TIMEOUT" and not required and forgiven < policy.allow_timeouts:
            forgiven += 1
            findings.append(
                _finding({"message": "timed out (allowed by policy)"}, outcome.name, "info")
            )
            continue
        if not required:
            reported = outcome.findings or ({"message": outcome.message or "failed"},)
            findings += [_finding(f, outcome.name, "medium") for f in reported]
            continue
        failed.append(outcome.name)
        blocking = [f for f in outcome.findings if str(f.get("severity")) in ("critical", "high")]
        others = [f for f in outcome.findings if f not in blocking]
        if not blocking:
            why = {"TIMEOUT": "timed out", "ERROR": outcome.message or "failed"}
            blocking = [{"message": why.get(outcome.status, "failed"), "severity": "high"}]
        findings += [_finding(f, outcome.name) for f in blocking]
        findings += [_finding(f, outcome.name) for f in others]
    covered = [o.coverage for o in outcomes if o.coverage is not None]
    coverage = proof_coverage if proof_coverage is not None else max(covered, default=None)
    if coverage is None or coverage < threshold:
        failed.append("coverage")
        findings.append(
            {
                "severity": "high",
                "message": f"coverage {coverage}% is below the threshold {threshold:g}%",
            }
        )
    statuses = {**carried, **{o.name: o.status for o in outcomes}}
    summary = ", ".join(f"{n} {statuses[n]}" for n in policy.names if n in statuses)
    content: dict[str, Any] = {
        "story_id": story_id,
        "verdict": "FAIL" if failed else "PASS",
        "findings": findings,
        "reviewers": [n for n in policy.names if n in statuses],
        "summary": summary,
    }
    if coverage is not None:
        content["coverage"] = coverage
    return content
