"""The run summary, read back from the database: the runs, their ledger rows, the stories
they touched, the gate and review verdicts, and the budget overruns of this run: the phases
over a limit whose tokens its runs logged, with what the run did about them."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime

from storyflow.domain.budgets import BudgetState
from storyflow.domain.phases import PHASES, PhaseName
from storyflow.services.agents import Usage
from storyflow.services.context import Context
from storyflow.services.run_report import Overrun, RunRecord, RunSummary, StoryResult
from storyflow.services.tokens import story_budget


def _action(level: str, state: str, runs: Sequence[RunRecord], resting: bool) -> str:
    """What this run did about a phase over a limit, from how its runs of that phase ended:
    a hard_gate stop fails a run (BUDGET_HARD_LIMIT); a soft_gate overrun pauses the story
    (still paused), or was confirmed and the story went on; below the hard limit a gate only
    warns."""
    if level == "advisory":
        return "recorded"
    if level == "warning" or state != BudgetState.OVER.value:
        return "warned"
    if level == "hard_gate":
        stopped = any(r.error_code == "BUDGET_HARD_LIMIT" for r in runs)
        return "stopped" if stopped else "over the hard limit"
    paused = any(r.status == "paused" and r.error_code != "AWAITING_APPROVAL" for r in runs)
    if paused and resting:
        return "paused for confirmation"
    return "confirmed" if paused else "over the hard limit"


def build_summary(
    ctx: Context,
    run_ids: Sequence[str],
    *,
    epic: str | None,
    started_at: datetime,
    finished_at: datetime,
    workers: int,
    interrupted: bool = False,
    story_ids: Sequence[str] = (),
) -> RunSummary:
    runs_port = ctx.store.run_store()
    ids = list(dict.fromkeys(run_ids))
    rows = runs_port.runs_by_id(ids)
    tokens = runs_port.run_tokens(ids)
    records: list[RunRecord] = []
    phase_ms: dict[str, int] = defaultdict(int)
    total = Usage()
    cost = 0.0
    for row in rows:
        t = tokens.get(row["id"]) or {}
        usage = Usage(
            input_tokens=int(t.get("input") or 0),
            output_tokens=int(t.get("output") or 0),
            cache_read_tokens=int(t.get("cache_read") or 0),
            cache_write_tokens=int(t.get("cache_write") or 0),
        )
        run_cost = float(t.get("cost") or 0.0)
        duration = 0
        if row["finished_at"]:
            delta = datetime.fromisoformat(row["finished_at"]) - datetime.fromisoformat(
                row["started_at"]
            )
            duration = int(delta.total_seconds() * 1000)
        phase_ms[row["phase"]] += duration
        total = total + usage
        cost += run_cost
        records.append(
            RunRecord(
                run_id=row["id"],
                story_id=row["story_id"],
                phase=row["phase"],
                attempt=int(row["attempt"]),
                status=row["status"],
                verdict=row["verdict"],
                agent=row["agent"],
                model=row["model"],
                worker=row["worker"],
                error_code=row["error_code"],
                duration_ms=duration,
                tokens=usage,
                cost_usd=run_cost,
            )
        )
    touched = list(dict.fromkeys([*story_ids, *(r.story_id for r in records)]))
    stories: list[StoryResult] = []
    overruns: list[Overrun] = []
    for story_id in touched:
        story = ctx.store.get_story(story_id)
        if story is None:
            continue
        mine = [r for r in records if r.story_id == story_id]
        last = mine[-1] if mine else None
        reason = story.blocked_reason
        if reason is None and last is not None and last.status == "paused":
            reason = (
                "paused: awaiting PM/UX approval (storyflow approve ID --by NAME)"
                if last.error_code == "AWAITING_APPROVAL"
                else "paused: budget confirmation needed"
            )
        stories.append(
            StoryResult(
                story_id=story_id,
                title=story.title,
                status=story.status.value,
                reason=reason,
                runs=len(mine),
                tokens=sum(r.tokens.total for r in mine),
                cost_usd=sum(r.cost_usd for r in mine),
            )
        )
        spent: dict[str, list[RunRecord]] = defaultdict(
            list
        )  # budget phase -> this run's runs of it that logged tokens
        for r in mine:
            if r.tokens.total:
                spent[PHASES[PhaseName(r.phase)].budget_phase.value].append(r)
        if not spent:
            continue  # an overrun from before this run is not this run's
        budget = story_budget(ctx, ctx.epic(story.epic), story)
        paused = last is not None and last.status == "paused"
        for phase, data in budget["phases"].items():
            if data["state"] == BudgetState.OK.value or phase not in spent:
                continue
            level = budget["enforcement"]
            action = _action(level, data["state"], spent[phase], paused)
            overruns.append(
                Overrun(
                    story_id=story_id,
                    phase=phase,
                    enforcement=level,
                    used=data["used"],
                    warning_limit=data["warning_limit"],
                    hard_limit=data["hard_limit"],
                    state=data["state"],
                    action=action,
                )
            )
    gates = Counter(r.verdict for r in records if r.phase == "gate" and r.verdict)
    reviews = Counter(r.verdict for r in records if r.phase == "review" and r.verdict)
    since = started_at.isoformat()
    takeovers = sum(
        1
        for story_id in touched
        for event in ctx.store.recent_events(story_id, 200)
        if event["type"] == "lock"
        and event["payload"].get("action") == "takeover"
        and datetime.fromisoformat(event["created_at"]).isoformat() >= since
    )
    return RunSummary(
        epic=epic,
        started_at=started_at.isoformat(),
        finished_at=finished_at.isoformat(),
        wall_ms=int((finished_at - started_at).total_seconds() * 1000),
        workers=workers,
        runs=tuple(records),
        stories=tuple(sorted(stories, key=lambda s: s.story_id)),
        tokens=total,
        cost_usd=cost,
        phase_ms=dict(phase_ms),
        gates=dict(sorted(gates.items())),
        reviews=dict(sorted(reviews.items())),
        overruns=tuple(overruns),
        takeovers=takeovers,
        interrupted=interrupted,
    )
