"""Running one phase of one story (DESIGN §4): the run engine's core.

    lease held -> start (one transaction: choose the phase by its re-run mode, key the run,
    record it, move to the running status) -> the agent works (run_agent.py: heartbeats,
    budget watch, parallel reviewers) -> finish (run_finish.py, one transaction: submit its
    artifacts, log its tokens, take the verdict's edge, close the run) -- or record the
    failure, retry with backoff, block the story when the failure is final. The caller
    releases the lease once the story file and folder are projected.

The idempotency key (story, phase, iteration, attempt, input artifact versions) is unique:
a dispatch whose key already has an outcome returns that outcome and never runs the agent;
a key whose run was left running by a dead worker is adopted by the next one.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from storyflow.domain import guards
from storyflow.domain import transitions as transitions_domain
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.budgets import BudgetDecision, evaluate
from storyflow.domain.model import Epic, Story
from storyflow.domain.phases import Phase, PhaseName, phases_ahead
from storyflow.domain.statuses import Status
from storyflow.errors import ConflictError, RuleViolation, StoryflowError
from storyflow.services import transitions
from storyflow.services.agents import AgentFailure
from storyflow.services.context import Context
from storyflow.services.projection import effective_budgets, enforcement_of, render_after_commit
from storyflow.services.run_agent import heartbeat, invoke
from storyflow.services.run_context import RunEnv, composed, traced
from storyflow.services.run_failures import from_error
from storyflow.services.run_finish import AWAITING_APPROVAL, fail, failed_outcome, finish
from storyflow.services.run_plan import Action, choose, loop_cap_reason, reuses_fresh, run_key
from storyflow.services.run_ports import RunStorePort
from storyflow.services.run_types import (
    PhaseOutcome,
    Started,
    event,
    lost,
    new_run_id,
    phase_event,
)

__all__ = ["PhaseOutcome", "run_phase", "start", "worker_name"]


def _iteration(ctx: Context, story: Story, phase: Phase) -> int:
    entered = ctx.store.run_store().entries(story.id, phase.anchor)
    return entered if story.status is phase.anchor else entered + 1


def _recorded(story: Story, phase: Phase, row: dict[str, Any], status: str) -> PhaseOutcome:
    outcome = row.get("outcome") or {}
    return PhaseOutcome(
        story_id=story.id,
        phase=phase.name.value,
        status="paused" if row["status"] == "paused" else status,
        recorded=True,
        run_id=row["id"],
        attempt=int(row["attempt"]),
        verdict=row.get("verdict"),
        source=outcome.get("from"),
        target=outcome.get("to"),
        error_code=row.get("error_code"),
        message="paused: " + row["error_message"]
        if row.get("error_code") == AWAITING_APPROVAL and row.get("error_message")
        else "recorded outcome returned; the agent did not run again",
    )


def start(
    ctx: Context, env: RunEnv, story_id: str, *, named: str | None, force: bool
) -> Started | PhaseOutcome:
    """The start transaction. Returns what to run, or the outcome when nothing runs. A
    story file behind a shared database gets its moment (``_await_story_file``) and one
    more try."""
    _warm_story_file(ctx, story_id, named, force)
    try:
        return _start(ctx, env, story_id, named=named, force=force)
    except ConflictError as behind:
        if behind.code != "STORY_FILES_BEHIND" or not _await_story_file(ctx, env, story_id):
            raise
    return _start(ctx, env, story_id, named=named, force=force)


def _start(
    ctx: Context, env: RunEnv, story_id: str, *, named: str | None, force: bool
) -> Started | PhaseOutcome:
    from storyflow.adapters.db.store import new_span_id, new_trace_id

    runs = ctx.store.run_store()
    now = ctx.now()
    trace_id, span_id = new_trace_id(), new_span_id()
    with traced(ctx, trace_id), composed(ctx) as nctx:
        loaded = nctx.load(story_id)
        story, epic = loaded.story, loaded.epic
        if not runs.holds(story_id, env.worker):
            raise lost(story_id)
        phase, action = choose(story, named, force=force)
        reason = loop_cap_reason(story, phase, env.settings.review_loop_cap)
        if reason and action is Action.RUN:
            hint = f"storyflow story unblock {story_id} once the reviews can pass"
            return _block(nctx, env, story, phase, span_id, "REVIEW_LOOP_CAP", [(reason, hint)])
        if action is Action.RUN and phase.name is PhaseName.REFINE:
            capped = _refine_cap(runs, story, env.settings.review_loop_cap)
            if capped:
                return _block(nctx, env, story, phase, span_id, "REFINE_LOOP_CAP", [capped])
        rows = runs.runs_of(story_id, phase.name.value)
        if action is Action.SKIP:
            done = [r for r in rows if r["status"] in ("succeeded", "paused")]
            if done:
                return _recorded(story, phase, done[-1], "skipped")
            return PhaseOutcome(
                story_id=story_id,
                phase=phase.name.value,
                status="skipped",
                message=f"{story.id} is already {story.status.value}",
            )
        _check_files_current(nctx, epic, story)
        if action is Action.RUN and reuses_fresh(phase) and _fresh_outputs(nctx, story, phase):
            action = Action.REUSE
        source = story.status
        if action is Action.RUN:
            blockers = _completion_blockers(nctx, epic, story)
            if blockers:
                return _block(nctx, env, story, phase, span_id, "PRECONDITION_FAILED", blockers)
        if action is Action.RUN and phase.running and story.status is not phase.running:
            # Into the running status first: a retry then keys the run the same way.
            try:
                transitions.move(nctx, story_id, phase.running, lease_owner=env.worker)
            except RuleViolation as refused:
                # The phase cannot start, and would not on a retry: the story waits for a
                # person, with the guard's reason, instead of being claimed again.
                message = f"{phase.name.value} cannot start: {refused.message}"
                hint = refused.hint or f"storyflow story show {story_id}"
                return _block(nctx, env, story, phase, span_id, refused.code, [(message, hint)])
            story = nctx.story(story_id)
        iteration = _iteration(nctx, story, phase)
        versions = runs.artifact_versions(story_id)
        inputs = {k.value: versions.get(k.value, 0) for k in phase.reads}
        by_key = {r["idempotency_key"]: r for r in rows}
        attempt, existing = 1, None
        while True:
            key = run_key(story_id, phase.name, iteration, attempt, inputs)
            existing = by_key.get(key)
            if existing is None or existing["status"] == "running":
                break
            if existing["status"] in ("failed", "abandoned") or _approved_since(
                nctx, story, existing
            ):
                attempt += 1
                continue
            return _recorded(story, phase, existing, "recorded")
        spec = env.settings.agent_for(phase.name.value)
        agent_name = spec.name if action is Action.RUN else "storyflow"
        model = _model(nctx, env, epic, story, phase, agent_name)
        run_id = existing["id"] if existing is not None else new_run_id()
        if existing is not None:
            runs.adopt_run(
                run_id, worker=env.worker, agent=agent_name, model=model, trace_id=trace_id, now=now
            )
        elif not runs.insert_run(
            run_id=run_id,
            story_id=story_id,
            phase=phase.name.value,
            attempt=attempt,
            key=key,
            agent=agent_name,
            model=model,
            worker=env.worker,
            trace_id=trace_id,
            started_at=now,
        ):
            raise ConflictError(
                f"{story_id}: a run with the same key started meanwhile",
                code="STORY_LOCKED",
                hint="another worker runs this phase",
                details={"story": story_id, "phase": phase.name.value},
            )
        runs.abandon_running(
            story_id,
            keep=run_id,
            now=now,
            message=f"its worker died; {env.worker} took the story over",
        )
        runs.set_lease_run(story_id, owner=env.worker, run_id=run_id, phase=phase.name.value)
        event(
            nctx,
            "phase_start",
            story,
            span_id,
            phase=phase,
            run_id=run_id,
            attempt=attempt,
            agent=agent_name,
            model=model,
            iteration=iteration,
            worker=env.worker,
            adopted=existing is not None,
        )
        used = nctx.store.phase_total(story_id, phase.budget_phase)
        budget = _decide_budget(nctx, epic, story, phase, used)
    env.run_ids.append(run_id)
    started = Started(
        story=story,
        epic=epic,
        phase=phase,
        action=action,
        run_id=run_id,
        attempt=attempt,
        iteration=iteration,
        trace_id=trace_id,
        span_id=span_id,
        agent=agent_name,
        model=model,
        source=source,
        resume=attempt > 1 or existing is not None,
        take_edge=story.status in phase.starts or story.status is phase.running,
        used_before=used,
        budget=budget,
    )
    env.observer.on_phase_start(phase_event(started, env, status="running"))
    return started


def _block(
    ctx: Context,
    env: RunEnv,
    story: Story,
    phase: Phase,
    span_id: str,
    code: str,
    problems: list[tuple[str, str]],
) -> PhaseOutcome:
    """Block the story before its phase runs: the reason is the problems, the first hint
    says what a person does; the error event and the outcome carry both."""
    reason = "; ".join(message for message, _ in problems)
    hint = problems[0][1]
    if "unblock" not in hint:
        hint += f"; then: storyflow story unblock {story.id}"
    transitions.move(ctx, story.id, Status.BLOCKED, reason=reason, lease_owner=env.worker)
    event(ctx, "error", story, span_id, phase=phase, error_code=code, message=reason, hint=hint)
    return PhaseOutcome(
        story_id=story.id,
        phase=phase.name.value,
        status="blocked",
        source=story.status.value,
        target=Status.BLOCKED.value,
        error_code=code,
        message=reason,
        hint=hint,
    )


# How long a phase waits for a story file behind a shared database to catch up before it
# is refused (a projection of this clone's runs its course in milliseconds).
FILES_CATCH_UP_SECONDS = 2.0


def _check_files_current(ctx: Context, epic: Epic, story: Story) -> None:
    """A story file behind the database, before its phase runs. Every change the engine
    commits appends one Agent Log row, so a file with fewer rows than the story's version
    is behind; one line scan per run.

    A database in this clone's ``.storyflow/`` (the SQLite default) is this clone's own: the
    rows the file lacks were committed here (a worker killed between its commit and the
    file's projection, a file checked out from an older commit), so the projection after
    this transaction brings it up to date exactly and the phase runs. On a database other
    clones share (PostgreSQL, a SQLite file elsewhere) another clone may have run the
    story's earlier phases, whose files (a Reuse Plan, artifacts) are not here: the agent
    would work from stale files and a later gate refuse its outcome, so the phase is
    refused (the story is not blocked; a clone whose files are current runs it), once
    ``_await_story_file`` gave a projection of this clone in flight its moment."""
    rows = ctx.files.log_count(epic, story)
    if _files_current(rows, story):
        return
    # a file the projection could not write, or a folder renamed by hand (no file here, its
    # text in another folder): refused as such, whoever committed the rows it lacks
    ctx.files.check_renderable(epic, story)
    if _database_is_this_clones(ctx):
        render_after_commit(ctx, epic, story.id)
        return
    where = "has no story file" if rows is None else f"has {rows} of its {story.version} rows"
    raise ConflictError(
        f"{story.id}: this clone's story files are behind the database (its Agent Log "
        f"{where}): the phase would run on stale files",
        code="STORY_FILES_BEHIND",
        hint="if another clone ran it, pull its commits and run storyflow sync here (or run "
        "the story there); if a worker of this clone died after its commit, storyflow sync "
        "here renders the file again",
        details={"story": story.id, "file_rows": rows, "database_rows": story.version},
    )


def _files_current(rows: int | None, story: Story) -> bool:
    """Whether a story file with ``rows`` Agent Log rows (None: no file) has every change
    the database committed (each appends one row: the story's version)."""
    return rows is not None and rows >= story.version


def _await_story_file(ctx: Context, env: RunEnv, story_id: str) -> bool:
    """On a database other clones share, a story file behind it may be one a worker of this
    clone is writing right now: its projection follows its commit (the children of a split
    are claimable before their files exist). Wait for it a moment
    (``FILES_CATCH_UP_SECONDS``) outside any transaction, keeping the lease alive; True
    when it caught up. Waiting inside the start transaction kept the story's rows locked
    and let the lease expire (a heartbeat there is not seen before the commit): another
    worker took the story over and rendered its file from the database, stale files and
    all."""
    try:
        loaded = ctx.load(story_id)
    except StoryflowError:
        return False
    story, epic = loaded.story, loaded.epic
    deadline = time.monotonic() + FILES_CATCH_UP_SECONDS
    beat = time.monotonic() + env.settings.heartbeat_seconds
    while not _files_current(ctx.files.log_count(epic, story), story):
        if time.monotonic() >= deadline or env.abort.is_set() or env.stop.is_set():
            return False
        env.sleep(0.02)
        if time.monotonic() >= beat:
            if not heartbeat(ctx, env, story_id):
                return False  # the lease is gone
            beat = time.monotonic() + env.settings.heartbeat_seconds
    return True


def _warm_story_file(ctx: Context, story_id: str, named: str | None, force: bool) -> None:
    """Parse the story file before the start transaction when the move into the phase's
    running status reads it: on SQLite that transaction holds the database's write lock,
    which every other worker waits for (on PostgreSQL it locks one story's rows, and the
    extra round trip would cost more than it saves). The transaction decides again on what
    it reads."""
    if ctx.store.dialect != "sqlite":
        return
    try:
        loaded = ctx.load(story_id)
        phase, action = choose(loaded.story, named, force=force)
    except StoryflowError:
        return
    story, running = loaded.story, phase.running
    if action is not Action.RUN or running is None or story.status is running:
        return
    if transitions_domain.reads_story_file(story.status, (running,)):
        ctx.files.warm(loaded.epic, story)


def _refine_cap(runs: RunStorePort, story: Story, cap: int) -> tuple[str, str] | None:
    """Elaborate/refine loops are capped as review/fix loops are: an elaboration that keeps
    asking for refinement would otherwise run (and spend) forever. Counted since the story
    was last unblocked: a person who reworked it and unblocked it gets ``cap`` rounds more."""
    asked = runs.entries_since_unblock(story.id, Status.NEEDS_REFINEMENT)
    if asked < cap:
        return None
    return (
        f"refinement loop cap: the elaboration asked for refinement {asked} times (cap {cap})",
        f"rework the story (description, acceptance criteria, scope) by hand, then storyflow "
        f"story unblock {story.id}",
    )


def _database_is_this_clones(ctx: Context) -> bool:
    from storyflow.adapters.db.connection import sqlite_path

    config = ctx.config
    path = sqlite_path(config.effective_database_url, config.root)
    return path is not None and path.resolve().is_relative_to(config.state_dir.resolve())


def _completion_blockers(ctx: Context, epic: Epic, story: Story) -> list[tuple[str, str]]:
    """Before a story's first phase: what stops it completing that no phase ahead can
    provide (a plan imported mid-flight: no Reuse Plan, no proof). Stories storyflow has run
    before were checked then, so the story file is read at most once per story."""
    ahead = phases_ahead(story.status)
    if ahead is None:
        return []
    produced = {kind for phase in ahead for kind in phase.produces}
    if {ArtifactKind.STORY, ArtifactKind.PROOF} <= produced:
        return []  # every later demand is made fresh by a phase ahead
    if ctx.store.run_store().succeeded_once(story.id):
        return []
    facts = transitions.StoreFacts(ctx, epic, story, ctx.now().date())
    return [(f.message, f.hint) for f in guards.completion_blockers(facts, ahead)]


def _approved_since(ctx: Context, story: Story, row: dict[str, Any]) -> bool:
    """A run paused for an approval that has since been given: the next attempt takes the
    edge (the elaboration is reused, the agent does not run again)."""
    if row["status"] != "paused" or row.get("error_code") != AWAITING_APPROVAL:
        return False
    return transitions.elaboration_approved(ctx, story.id)


def _model(
    ctx: Context, env: RunEnv, epic: Epic, story: Story, phase: Phase, agent: str
) -> str | None:
    from storyflow.services.models import resolve_model

    model = resolve_model(ctx.config, epic, story, phase.name, phase.role, agent)
    if model is None and agent != "storyflow":
        model = env.agents(agent).default_model
    return model


def _fresh_outputs(ctx: Context, story: Story, phase: Phase) -> bool:
    """Whether this iteration's outputs exist already (a run that died after its agent
    wrote them, or a person submitted them): only inside the iteration's anchor status."""
    if story.status is not phase.anchor or not phase.produces:
        return False
    if ArtifactKind.STORY in phase.produces:
        return False
    entered = ctx.store.entered_version(story.id, phase.anchor)
    for kind in phase.produces:
        latest = ctx.store.latest_artifact(story.id, kind)
        if latest is None or latest.story_version <= entered:
            return False
    return True


def _decide_budget(
    ctx: Context, epic: Epic, story: Story, phase: Phase, used: int
) -> BudgetDecision:
    limits = effective_budgets(ctx, epic)[phase.budget_phase].scaled(story.token_budget_multiplier)
    return evaluate(
        phase=phase.budget_phase, level=enforcement_of(epic, story), used=used, limits=limits
    )


def attempt(ctx: Context, env: RunEnv, s: Started) -> PhaseOutcome:
    """One attempt: the agent, then the finish transaction -- or the failure recorded, with
    the tokens the agent spent either way."""
    since = time.time_ns()
    work = None
    try:
        work = invoke(ctx, env, s)
        return finish(ctx, env, s, work, since)
    except AgentFailure as failure:
        if work is not None and not failure.usage.total:
            failure.usage = work.total
        if work is not None and not failure.tool_calls:  # its output was refused
            failure.tool_calls = tuple(work.tool_calls)
        return fail(ctx, env, s, failure)
    except StoryflowError as error:  # the outcome was refused: an agent's fault, or lost
        refused = from_error(error)
        if refused is None and isinstance(error, ConflictError):
            return failed_outcome(s, AgentFailure(error.code, error.message), "lost", None)
        if refused is None:
            raise
        if work is not None:
            refused.usage = work.total
            refused.tool_calls = tuple(work.tool_calls)
        return fail(ctx, env, s, refused)


def run_phase(
    ctx: Context, env: RunEnv, story_id: str, *, named: str | None = None, force: bool = False
) -> PhaseOutcome:
    """Run the story's next (or named) phase; the caller holds the story's lease."""
    while True:
        started = start(ctx, env, story_id, named=named, force=force)
        if isinstance(started, PhaseOutcome):
            if started.status == "blocked":  # before its phase ran: say so, as a failure does
                note = f"{started.message} (hint: {started.hint})"
                env.observer.on_story_done(story_id, started.status, note)
            return started
        outcome = attempt(ctx, env, started)
        if outcome.status != "failed" or outcome.retry_in is None:
            return outcome
        if not _backoff(ctx, env, story_id, outcome.retry_in):
            _release(ctx, env, story_id)
            return outcome
        force = False


def _backoff(ctx: Context, env: RunEnv, story_id: str, seconds: float) -> bool:
    """Wait before a retry, keeping the lease alive; False when told to stop."""
    deadline = time.monotonic() + seconds
    beat = max(min(env.settings.heartbeat_seconds, seconds), 0.01)
    while True:
        left = deadline - time.monotonic()
        if env.abort.is_set() or env.stop.is_set():
            return False
        if left <= 0:
            return True
        env.sleep(min(beat, left, 0.2))
        if not heartbeat(ctx, env, story_id):
            return False


def _release(ctx: Context, env: RunEnv, story_id: str) -> None:
    with ctx.store.transaction():
        ctx.store.run_store().release(story_id, owner=env.worker)


def worker_name(index: int = 0) -> str:
    """A lease owner unique to this process and thread slot."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{index}:{threading.get_ident() % 10_000}"
