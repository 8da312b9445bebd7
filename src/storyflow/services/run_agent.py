"""A run's agent at work: the request it gets, the monitor it reports to, and the parallel
reviewers of the review phase (their code review is written here, then submitted)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.model import Story
from storyflow.domain.phases import PhaseName
from storyflow.services.agents import AgentFailure, AgentPort, AgentRequest, Usage
from storyflow.services.context import Context
from storyflow.services.reviewers import aggregate, run_reviewers, to_run
from storyflow.services.run_context import RunEnv, RunMonitor
from storyflow.services.run_plan import Action
from storyflow.services.run_types import Started, Work


def heartbeat(ctx: Context, env: RunEnv, story_id: str) -> bool:
    now = ctx.now()
    with ctx.store.transaction():
        return ctx.store.run_store().heartbeat(
            story_id, owner=env.worker, now=now, expires=env.lease_until(now)
        )


def _request(ctx: Context, env: RunEnv, s: Started, monitor_timeout: float) -> AgentRequest:
    story, epic, phase = s.story, s.epic, s.phase
    folder = ctx.files.locate(epic, story)
    layout = ctx.files.layout(epic)
    local = ctx.now().astimezone(ZoneInfo(epic.timezone))
    # A name no stored version has: an earlier version written in the same minute (a failed
    # review, then the review after the fix) keeps its file. A file no version has (a failed
    # attempt's) is written over, as the retry replaces that attempt. Fixed names (the
    # staged layout's) need no look at the versions.
    kinds = [k for k in phase.produces if k is not ArtifactKind.STORY]
    stored = (
        [a.path for a in ctx.store.list_artifacts(story.id)]
        if any(layout.is_timestamped(k) for k in kinds)
        else []
    )
    files = {
        k.value: folder / layout.new_artifact_file_name(k, story.id, local, stored) for k in kinds
    }
    return AgentRequest(
        run_id=s.run_id,
        story_id=story.id,
        epic=epic.prefix,
        title=story.title,
        phase=phase.name.value,
        role=phase.role.value,
        iteration=s.iteration,
        attempt=s.attempt,
        model=s.model,
        workspace=ctx.config.root,
        story_dir=folder,
        story_file=ctx.files.story_file(epic, story),
        produces=tuple(k.value for k in phase.produces if k is not ArtifactKind.STORY),
        artifact_files=files,
        timeout=monitor_timeout,
        resume=s.resume,
        writes_story=ArtifactKind.STORY in phase.produces,
        context={
            "number": story.number,
            "split_from": story.split_from,
            "breaking_change": story.breaking_change,
            "graph_integration": story.graph_integration,
            "coverage_threshold": epic.settings.coverage_threshold,
            "priority": story.priority,
            "depends_on": list(story.depends_on),
            "findings": _open_findings(ctx, story) if phase.name is PhaseName.FIX else [],
        },
    )


def _open_findings(ctx: Context, story: Story) -> list[str]:
    found: list[str] = []
    for kind in (ArtifactKind.CODE_REVIEW, ArtifactKind.VERIFICATION, ArtifactKind.QA_GATE):
        latest = ctx.store.latest_artifact(story.id, kind)
        if latest is None or latest.verdict not in ("FAIL",):
            continue
        for item in latest.content.get("findings") or latest.content.get("issues") or []:
            text = item.get("message") or item.get("description")
            if text:
                found.append(str(text))
    return found


def invoke(ctx: Context, env: RunEnv, s: Started) -> Work:
    """Let the agent(s) work; raises AgentFailure."""
    work = Work()
    s.spawned_at = ctx.now()
    if s.action is Action.REUSE:
        return work
    phase = s.phase
    if phase.name is PhaseName.SPLIT:
        elaboration = ctx.store.latest_artifact(s.story.id, ArtifactKind.ELABORATION)
        titles = (elaboration.content.get("split_into") if elaboration else None) or []
        if len(titles) < 2:
            raise AgentFailure(
                "PRECONDITION_FAILED",
                "the elaboration asks for a split but proposes fewer than two split_into titles",
            )
        work.titles = [str(t) for t in titles]
        return work
    spec = env.settings.agents[s.agent]
    agent = env.agents(s.agent)
    limits = s.budget.limits
    monitor = RunMonitor(
        heartbeat=lambda: heartbeat(ctx, env, s.story.id),
        interval=env.settings.heartbeat_seconds,
        abort=env.abort,
        enforcement=s.budget.level,
        used_before=s.used_before,
        hard_limit=limits.hard,
        on_tool=lambda call: env.observer.on_tool_call(s.story.id, s.run_id, call),
    )
    timeout = env.settings.timeout_of(spec)
    request = _request(ctx, env, s, timeout)
    try:
        _work(ctx, env, s, agent, request, monitor, timeout, work)
    except OSError:
        # The agent could not write in the story folder: when another worker took the story
        # over meanwhile (this one's lease expired), its stage move took the folder away.
        # That is a lost lease, not an error that ends this worker's run.
        if heartbeat(ctx, env, s.story.id):
            raise
        raise AgentFailure("LEASE_LOST", "the lease expired and another worker took over") from None
    work.ended_at = ctx.now()
    return work


def _work(
    ctx: Context,
    env: RunEnv,
    s: Started,
    agent: AgentPort,
    request: AgentRequest,
    monitor: RunMonitor,
    timeout: float,
    work: Work,
) -> None:
    """The agent (or the parallel reviewers) at work; what they did goes into ``work``."""
    policy = env.settings.reviewers
    if s.phase.name is PhaseName.REVIEW and policy.names:
        previous = _previous_reviewers(ctx, s)
        names, carried = to_run(policy, previous)
        try:
            outcomes = run_reviewers(
                agent, request, names, monitor, timeout=policy.timeout or timeout
            )
        except AgentFailure as failure:  # what carried over still does, for the retry
            failure.reviewers = {**carried, **(failure.reviewers or {})}
            raise
        for outcome in outcomes:
            key = outcome.model or s.model
            work.usage[key] = work.usage.get(key, Usage()) + outcome.usage
            work.ran.setdefault(key, []).append(outcome.name)
        proof = ctx.store.latest_artifact(s.story.id, ArtifactKind.PROOF)
        content = aggregate(
            policy,
            outcomes,
            carried,
            story_id=s.story.id,
            threshold=s.epic.settings.coverage_threshold,
            proof_coverage=proof.content.get("coverage") if proof else None,
        )
        work.reviewers = {**carried, **{o.name: o.status for o in outcomes}}
        work.tool_calls = [call for o in outcomes for call in o.tool_calls]
        path = request.artifact_files[ArtifactKind.CODE_REVIEW.value]
        from storyflow.adapters.agents.artifact_text import write_artifact

        write_artifact(path, content)
    else:
        result = agent.run(request, monitor)
        work.usage[result.model or s.model] = result.usage
        work.verdict = result.verdict
        work.tool_calls = list(result.tool_calls)


def _previous_reviewers(ctx: Context, s: Started) -> dict[str, str] | None:
    """How each reviewer ended in the latest review run that got that far: a succeeded
    one, or a failed one whose reviewers ran (one of them down, say)."""
    rows = ctx.store.run_store().runs_of(s.story.id, PhaseName.REVIEW.value)
    done = [
        r
        for r in rows
        if r["id"] != s.run_id
        and (
            r["status"] == "succeeded"
            or (r["status"] == "failed" and isinstance(r["outcome"].get("reviewers"), dict))
        )
    ]
    if not done:
        return None
    reviewers = done[-1]["outcome"].get("reviewers")
    return dict(reviewers) if isinstance(reviewers, dict) else None
