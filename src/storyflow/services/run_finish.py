"""A run's end, as one transaction: its artifacts submitted, its tokens logged, the verdict's
edge taken, the run closed -- or the failure recorded, with the story blocked when the
failure is final (DESIGN §4's error contract). The caller releases the lease only after the
commit's projection has moved the story folder, so the next worker finds it in place."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from storyflow.domain.artifacts import VERDICT_FIELD, ArtifactKind
from storyflow.domain.budgets import BudgetAction, BudgetDecision, crossing, evaluate
from storyflow.domain.phases import DONE, PhaseName
from storyflow.domain.statuses import TERMINAL, Status
from storyflow.domain.transitions import reads_story_file
from storyflow.services import artifacts as artifact_service
from storyflow.services import tokens as token_service
from storyflow.services import transitions
from storyflow.services.agents import AgentFailure, ToolCall
from storyflow.services.context import Context
from storyflow.services.run_context import RunEnv, composed, traced
from storyflow.services.run_failures import failure_plan
from storyflow.services.run_plan import Action
from storyflow.services.run_types import (
    PhaseOutcome,
    Started,
    Work,
    budget_event,
    event,
    lost,
    phase_event,
)

if TYPE_CHECKING:
    from storyflow.domain.model import Story

# The error_code of a paused run that waits for an approval (not a failure: what it waits for).
AWAITING_APPROVAL = "AWAITING_APPROVAL"
_STALE_NS = 50_000_000  # a file older than the run (by more than this) is not its output


def _collect(ctx: Context, s: Started, story: Story, since_ns: int) -> dict[ArtifactKind, Path]:
    """The artifacts the agent wrote, found by the layout's names in the story folder."""
    files: dict[ArtifactKind, Path] = {}
    for kind in s.phase.produces:
        if kind is ArtifactKind.STORY:
            _check_story_file(ctx, s, story)
            continue
        path = ctx.files.discover(s.epic, story, kind)
        if path is None:
            raise AgentFailure(
                "MALFORMED_OUTPUT", f"the agent wrote no {kind.value} in the story folder"
            )
        stale = path.stat().st_mtime_ns < since_ns - _STALE_NS
        latest = ctx.store.latest_artifact(story.id, kind) if stale else None
        if latest is not None and latest.path == path.name:
            from storyflow.adapters.files.story_files import sha256_text

            if sha256_text(path.read_text(encoding="utf-8", errors="replace")) == latest.sha256:
                raise AgentFailure(
                    "MALFORMED_OUTPUT", f"the agent did not write a new {kind.value}"
                )
        files[kind] = path
    return files


def _check_story_file(ctx: Context, s: Started, story: Story) -> None:
    facts = transitions.StoreFacts(ctx, s.epic, story, ctx.now().date())
    problems = facts.story_file_problems()
    if problems:
        raise AgentFailure(
            "MALFORMED_OUTPUT", "the story file does not validate: " + "; ".join(problems[:3])
        )


def finish(ctx: Context, env: RunEnv, s: Started, work: Work, since_ns: int) -> PhaseOutcome:
    """The finish transaction of a run whose agent succeeded (raises AgentFailure)."""
    work.files = {}
    story = s.story
    if s.action is Action.RUN:
        story = ctx.story(s.story.id)  # as the agent left it: where its files are
        work.files = _collect(ctx, s, story, since_ns)
    epic = ctx.epic(story.epic) if work.files else s.epic  # its rules as they are now
    usage = work.total
    decision = evaluate(
        phase=s.budget.phase,
        level=s.budget.level,
        used=s.used_before + usage.total,
        limits=s.budget.limits,
    )
    if decision.action is BudgetAction.REFUSE:
        raise AgentFailure(
            "BUDGET_HARD_LIMIT",
            f"hard_gate: {s.phase.budget_phase.value} reached {decision.used:,} tokens "
            f"(hard limit {decision.limits.hard:,})",
            usage=usage,
        )
    paused = decision.action is BudgetAction.CONFIRM
    awaiting: str | None = None  # why a finished run waits for a person (an approval)
    now = ctx.now()
    runs = ctx.store.run_store()
    verdict = work.verdict
    target: Status | None = None
    # Read, validate and hash the artifacts before the write transaction: on SQLite that
    # transaction holds the database's write lock, which every other worker waits for.
    submissions = [
        artifact_service.prepare(ctx, s.story.id, kind.value, path, read=(story, epic))
        for kind, path in work.files.items()
    ]
    if reads_story_file(story.status, s.phase.edges.values()):
        ctx.files.warm(epic, story)  # and so is the story file a guard will read
    with traced(ctx, s.trace_id), composed(ctx) as nctx:
        if not runs.holds(s.story.id, env.worker):
            raise lost(s.story.id)
        for submission in submissions:
            result = artifact_service.record(nctx, submission)
            if submission.kind in VERDICT_FIELD:
                verdict = result["verdict"]
        if s.action is Action.REUSE:
            verdict = _fresh_verdict(nctx, s)
        crossed = _log_tokens(nctx, s, work)
        _agent_events(nctx, s, work)
        if not paused and s.take_edge:
            awaiting = _awaiting_approval(nctx, s, verdict)
        if paused:
            event(
                nctx,
                "budget",
                s.story,
                s.span_id,
                phase=s.phase,
                run_id=s.run_id,
                action="paused",
                used=decision.used,
                hard_limit=decision.limits.hard,
                enforcement=decision.level.value,
            )
        if paused or awaiting:
            event(
                nctx,
                "checkpoint",
                s.story,
                s.span_id,
                phase=s.phase,
                run_id=s.run_id,
                state="paused: " + (awaiting or "soft_gate needs a confirmation"),
            )
        elif s.phase.name is PhaseName.SPLIT:
            from storyflow.services.stories import split_story

            split_story(nctx, s.story.id, work.titles)
            target = Status.SUPERSEDED
        elif s.take_edge:
            target = s.phase.edge_for(None if DONE in s.phase.edges else verdict)
            transitions.move(nctx, s.story.id, target, lease_owner=env.worker)
        status = "paused" if paused or awaiting else "succeeded"
        outcome = {
            "from": s.source.value,
            "to": target.value if target else None,
            "tokens": {**usage.to_json(), "total": usage.total},
            "reviewers": work.reviewers or None,
            "artifacts": sorted(k.value for k in work.files),
            "reused": s.action is Action.REUSE,
            "split_into": work.titles or None,
        }
        event(
            nctx,
            "phase_complete",
            s.story,
            s.span_id,
            phase=s.phase,
            run_id=s.run_id,
            attempt=s.attempt,
            agent=s.agent,
            model=s.model,
            verdict=verdict,
            status=status,
            duration_ms=int((time.monotonic() - s.started) * 1000),
            tokens=usage.to_json(),
            to=outcome["to"],
        )
        if not runs.finish_run(
            s.run_id,
            worker=env.worker,
            status=status,
            verdict=verdict,
            outcome={k: v for k, v in outcome.items() if v is not None},
            model=s.model,
            error_code=AWAITING_APPROVAL if awaiting else None,
            error_message=awaiting,
            now=now,
        ):
            raise lost(s.story.id)
    if crossed is not None:  # committed: said before the phase's line, as its cause
        env.observer.on_budget(budget_event(s, env, crossed))
    ended = phase_event(
        s,
        env,
        status=status,
        verdict=verdict,
        target=target.value if target else None,
        usage=usage,
        message="paused: " + awaiting
        if awaiting
        else "paused: soft_gate budget needs storyflow story move --confirm-budget"
        if paused
        else None,
    )
    env.observer.on_phase_end(ended)
    if awaiting:
        env.observer.on_story_done(s.story.id, s.story.status.value, "paused: " + awaiting)
    elif paused:
        env.observer.on_story_done(
            s.story.id, s.story.status.value, "paused: budget confirmation needed"
        )
    elif target is not None and (target in TERMINAL or target is Status.BLOCKED):
        env.observer.on_story_done(s.story.id, target.value, None)
    return PhaseOutcome(
        story_id=s.story.id,
        phase=s.phase.name.value,
        status=status,
        run_id=s.run_id,
        attempt=s.attempt,
        verdict=verdict,
        source=s.source.value,
        target=target.value if target else None,
        usage=usage,
        error_code=AWAITING_APPROVAL if awaiting else None,
        message=awaiting or ended.message,
    )


def _awaiting_approval(ctx: Context, s: Started, verdict: str | None) -> str | None:
    """Why the verdict's edge waits for a person: an elaboration that passed in an epic that
    asks for PM/UX approval, not approved yet. The run pauses (it did its work); workers
    leave the story until ``storyflow approve`` records the approval."""
    if s.phase.name is not PhaseName.ELABORATE or not s.epic.settings.require_approval:
        return None
    if s.phase.edge_for(verdict) is not Status.READY_TO_WORK:
        return None
    if transitions.elaboration_approved(ctx, s.story.id):
        return None
    return f"the elaboration awaits PM/UX approval: storyflow approve {s.story.id} --by NAME"


def _fresh_verdict(ctx: Context, s: Started) -> str | None:
    for kind in s.phase.produces:
        latest = ctx.store.latest_artifact(s.story.id, kind)
        if latest is not None and latest.verdict:
            return latest.verdict
    return None


def _log_tokens(ctx: Context, s: Started, work: Work) -> BudgetDecision | None:
    """Log the run's tokens, one ledger entry per model; the decision at the phase's new
    total when those entries crossed a budget limit its level acts on (one for all the
    entries: a run that crosses both limits at once crossed the hard one)."""
    totals: list[int] = []  # the budget phase's total before the first entry, then after each
    for model, usage in work.usage.items():
        if not usage.total:
            continue
        known = model if model in ctx.config.models else None
        ran = ", ".join(sorted(work.ran.get(model, [])))  # whose tokens these are
        logged = token_service.log_tokens(
            ctx,
            s.story.id,
            s.phase.budget_phase.value,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read=usage.cache_read_tokens,
            cache_write=usage.cache_write_tokens,
            model=known,
            agent=s.agent,
            cost_usd=usage.cost_usd,
            run_id=s.run_id,
            note=f"{s.phase.name.value} attempt {s.attempt}"
            + (f" (reviewers: {ran})" if ran else ""),
        )
        if not totals:
            totals.append(logged["phase_used"] - logged["tokens"])
        totals.append(logged["phase_used"])
    if not totals:
        return None
    return crossing(
        phase=s.budget.phase,
        level=s.budget.level,
        limits=s.budget.limits,
        before=totals[0],
        after=totals[-1],
    )


def _agent_events(ctx: Context, s: Started, work: Work) -> None:
    from storyflow.adapters.db.store import new_span_id

    if s.action is not Action.RUN or s.phase.name is PhaseName.SPLIT:
        return
    span = new_span_id()
    common = {
        "run_id": s.run_id,
        "attempt": s.attempt,
        "agent": s.agent,
        "parent_span_id": s.span_id,
    }
    event(
        ctx,
        "agent_spawn",
        s.story,
        span,
        phase=s.phase,
        at=s.spawned_at,
        model=s.model,
        reviewers=sorted(work.reviewers) or None,
        **common,
    )
    _tool_call_events(ctx, s, work.tool_calls, parent=span, ended_at=work.ended_at)
    usage = work.total
    event(
        ctx,
        "agent_complete",
        s.story,
        span,
        phase=s.phase,
        at=work.ended_at,
        model=s.model,
        duration_ms=_ms(s.spawned_at, work.ended_at),
        tokens=usage.to_json(),
        cost_usd=usage.cost_usd,
        verdict=work.verdict,
        reviewers=work.reviewers or None,
        tool_calls=len(work.tool_calls) or None,
        **common,
    )


def _tool_call_events(
    ctx: Context, s: Started, calls: Sequence[ToolCall], *, parent: str, ended_at: datetime | None
) -> None:
    """A ``tool_call`` event per call, inside the span ``parent`` (the agent's, or the phase's
    when the agent failed), stamped when the call ended as a span's last line is."""
    from storyflow.adapters.db.store import new_span_id

    for call in calls:
        at = ended_at
        if call.started is not None and s.spawned_at is not None:
            seconds = call.started + (call.duration_ms or 0) / 1000
            at = s.spawned_at + timedelta(seconds=seconds)
        event(
            ctx,
            "tool_call",
            s.story,
            new_span_id(),
            phase=s.phase,
            at=at,
            run_id=s.run_id,
            attempt=s.attempt,
            agent=s.agent,
            parent_span_id=parent,
            **call.to_json(),
        )


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() * 1000)


def fail(ctx: Context, env: RunEnv, s: Started, failure: AgentFailure) -> PhaseOutcome:
    """Record a failed attempt: tokens, error event, run row; block when it is final."""
    runs = ctx.store.run_store()
    now = ctx.now()
    usage = failure.usage
    if failure.code == "LEASE_LOST":
        return failed_outcome(s, failure, "lost", None)
    with traced(ctx, s.trace_id), composed(ctx) as nctx:
        if not runs.holds(s.story.id, env.worker):
            return failed_outcome(s, failure, "lost", None)
        recent = runs.last_statuses(s.story.id, env.settings.circuit_breaker)
        plan = failure_plan(
            env.settings, failure.code, failure.message, attempt=s.attempt, recent=recent
        )
        crossed = _log_tokens(nctx, s, Work(usage={s.model: usage})) if usage.total else None
        _tool_call_events(nctx, s, failure.tool_calls, parent=s.span_id, ended_at=now)
        event(
            nctx,
            "error",
            s.story,
            s.span_id,
            phase=s.phase,
            run_id=s.run_id,
            attempt=s.attempt,
            agent=s.agent,
            error_code=failure.code,
            message=failure.message,
            retry_in=plan.retry_in,
            blocked=plan.block_reason,
            tokens=usage.to_json() if usage.total else None,
        )
        if failure.code == "BUDGET_HARD_LIMIT":
            event(
                nctx,
                "budget",
                s.story,
                s.span_id,
                phase=s.phase,
                run_id=s.run_id,
                action="stopped",
                enforcement=s.budget.level.value,
                used=s.used_before + usage.total,
                hard_limit=s.budget.limits.hard,
            )
        if plan.block_reason:
            transitions.move(
                nctx, s.story.id, Status.BLOCKED, reason=plan.block_reason, lease_owner=env.worker
            )
        runs.finish_run(
            s.run_id,
            worker=env.worker,
            status=plan.status,
            verdict=None,
            outcome={
                "tokens": {**usage.to_json(), "total": usage.total},
                "retry_in": plan.retry_in,
                "blocked": plan.block_reason,
                **({"reviewers": failure.reviewers} if failure.reviewers else {}),
            },
            model=s.model,
            error_code=failure.code,
            error_message=failure.message,
            now=now,
        )
    outcome = failed_outcome(
        s, failure, "blocked" if plan.block_reason else plan.status, plan.retry_in
    )
    if crossed is not None and failure.code != "BUDGET_HARD_LIMIT":
        # a hard_gate stop is the crossing: its error line below says so, with the figures
        env.observer.on_budget(budget_event(s, env, crossed))
    env.observer.on_error(
        phase_event(
            s,
            env,
            status=outcome.status,
            error_code=failure.code,
            message=failure.message,
            usage=usage,
        )
    )
    if plan.block_reason:
        env.observer.on_story_done(s.story.id, Status.BLOCKED.value, plan.block_reason)
    return outcome


def failed_outcome(
    s: Started, failure: AgentFailure, status: str, retry_in: float | None
) -> PhaseOutcome:
    return PhaseOutcome(
        story_id=s.story.id,
        phase=s.phase.name.value,
        status=status,
        run_id=s.run_id,
        attempt=s.attempt,
        source=s.source.value,
        target=Status.BLOCKED.value if status == "blocked" else None,
        usage=failure.usage,
        error_code=failure.code,
        message=failure.message,
        retry_in=retry_in,
    )
