"""The token ledger: logging usage, and budgets read against it."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from storyflow.domain.budgets import (
    MAX_TOKENS,
    BudgetAction,
    BudgetPhase,
    BudgetState,
    LedgerSource,
    evaluate,
    parse_phase,
)
from storyflow.domain.model import Epic, LedgerEntry, Story, file_stamp, parse_story_id
from storyflow.errors import InvalidInput
from storyflow.services.context import Context
from storyflow.services.projection import (
    check_story_file,
    effective_budgets,
    enforcement_of,
    render_after_commit,
)
from storyflow.services.unit_of_work import change


def _count(name: str, value: int | None) -> int:
    if value is None:
        return 0
    if value < 0 or value > MAX_TOKENS:
        raise InvalidInput(
            f"--{name} must be between 0 and {MAX_TOKENS:,}",
            hint="token counts are non-negative integers",
            details={"option": name, "value": value},
        )
    return int(value)


def log_tokens(
    ctx: Context,
    story_id: str,
    phase_name: str,
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read: int | None = None,
    cache_write: int | None = None,
    before: int | None = None,
    after: int | None = None,
    model: str | None = None,
    agent: str | None = None,
    cost_usd: float | None = None,
    estimated: bool = False,
    run_id: str | None = None,
    note: str | None = None,
    used_at: datetime | None = None,
) -> dict[str, Any]:
    """Append one ledger entry: reported counts, or a /cost before/after delta (measured).
    ``used_at``: when the tokens were used, if not now (a measurement a person wrote down
    with its date); the Agent Log row and the event are dated now."""
    parse_story_id(story_id)
    phase = parse_phase(phase_name)
    counts = (input_tokens, output_tokens, cache_read, cache_write)
    measured = before is not None or after is not None
    if measured and any(c is not None for c in counts):
        raise InvalidInput(
            "use either --input/--output (reported) or --before/--after (/cost delta), not both",
            hint="the /cost method: --before N --after M",
        )
    if measured:
        if before is None or after is None:
            raise InvalidInput("--before and --after go together", hint="--before N --after M")
        start, end = _count("before", before), _count("after", after)
        if end < start:
            raise InvalidInput(
                f"--after {end} is below --before {start}",
                hint="--after is the session total after the phase, so at least --before",
            )
        inp = out = cr = cw = 0
        total = end - start
        source = LedgerSource.MEASURED
    else:
        if input_tokens is None and output_tokens is None:
            raise InvalidInput(
                "give --input and --output (or --before/--after)",
                hint="storyflow token log ID PHASE --input N --output M",
            )
        inp, out = _count("input", input_tokens), _count("output", output_tokens)
        cr, cw = _count("cache-read", cache_read), _count("cache-write", cache_write)
        total = inp + out + cr + cw
        source = LedgerSource.ESTIMATED if estimated else LedgerSource.REPORTED
    if model is not None and model not in ctx.config.models:
        raise InvalidInput(
            f"unknown model {model!r}",
            code="UNKNOWN_MODEL",
            hint="add it under models: in storyflow.yaml, or use one of: "
            + ", ".join(sorted(ctx.config.models)),
            details={"model": model},
        )
    if cost_usd is not None and not (math.isfinite(cost_usd) and cost_usd >= 0):
        # NaN or infinity would poison every sum over the ledger (budget show, metrics)
        raise InvalidInput(
            f"--cost-usd must be a non-negative number, not {cost_usd}",
            hint="the cost the agent reported, in USD",
            details={"option": "cost-usd", "value": str(cost_usd)},
        )
    if cost_usd is None and model is not None and not measured:
        cost_usd = ctx.config.models[model].cost(
            input=inp, output=out, cache_read=cr, cache_write=cw
        )
    now = ctx.now()
    if used_at is not None and used_at > now + timedelta(minutes=1):
        raise InvalidInput(
            f"the tokens cannot have been used at {file_stamp(used_at)}: that is in the future",
            hint="give the time they were used (ISO-8601, UTC unless it says otherwise)",
            details={"used_at": file_stamp(used_at)},
        )
    with change(ctx):
        story = ctx.story(story_id)
        epic = ctx.epic(story.epic)
        check_story_file(ctx, epic, story)
        entry = LedgerEntry(
            story_id=story.id,
            phase=phase,
            agent=agent or ctx.actor,
            model=model,
            input_tokens=inp,
            output_tokens=out,
            cache_read_tokens=cr,
            cache_write_tokens=cw,
            total_tokens=total,
            cost_usd=cost_usd,
            source=source.value,
            created_at=used_at or now,
            run_id=run_id,
            note=note,
        )
        ctx.store.insert_tokens(entry, epic=epic.prefix)
        ctx.store.touch_story(story.id, now)
        limits = effective_budgets(ctx, epic)[phase].scaled(story.token_budget_multiplier)
        decision = evaluate(
            phase=phase,
            level=enforcement_of(epic, story),
            used=ctx.store.phase_total(story.id, phase),
            limits=limits,
        )
        ctx.store.insert_event(
            type="budget" if decision.state is not BudgetState.OK else "tokens",
            at=now,
            story_id=story.id,
            epic=epic.prefix,
            actor=ctx.actor,
            payload={
                "phase": phase.value,
                "tokens": total,
                "source": source.value,
                "model": model,
                "used": decision.used,
                "state": decision.state.value,
            },
        )
        row = ctx.log_row(
            epic,
            f"tokens: {phase.value} +{total:,} ({source.value}"
            + (f", {model}" if model else "")
            + ")",
            "Token Budget",
            agent=agent,
        )
        ctx.store.append_log(story.id, [row])
    render_after_commit(ctx, epic, story.id)
    if decision.action is not BudgetAction.NONE:
        ctx.warn(
            f"{story.id}: {phase.value} has used {decision.used:,} tokens "
            f"({decision.warning_pct:.0f}% of the warning limit, {decision.hard_pct:.0f}% of "
            f"the hard limit; {decision.level.value})",
            budget=True,
        )
    return {
        "story": story.id,
        "phase": phase.value,
        "tokens": total,
        "input": inp,
        "output": out,
        "cache_read": cr,
        "cache_write": cw,
        "source": source.value,
        "model": model,
        "cost_usd": cost_usd,
        "phase_used": decision.used,
        "state": decision.state.value,
    }


def parse_used_at(text: str) -> datetime:
    """``--used-at``: an ISO-8601 date or time, UTC unless it gives an offset."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"--used-at {text!r} is not an ISO-8601 date or time",
            hint="e.g. --used-at 2026-02-05 or --used-at 2026-02-05T14:30:00-07:00",
            details={"option": "used-at", "value": text},
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def story_budget(ctx: Context, epic: Epic, story: Story) -> dict[str, Any]:
    budgets = effective_budgets(ctx, epic)
    level = enforcement_of(epic, story)
    ledger = ctx.store.ledger(story.id)
    used: dict[BudgetPhase, int] = defaultdict(int)
    cost: dict[BudgetPhase, float] = defaultdict(float)
    unpriced = 0
    for entry in ledger:
        used[entry.phase] += entry.total_tokens
        if entry.cost_usd is None:
            unpriced += 1
        else:
            cost[entry.phase] += entry.cost_usd
    phases = {}
    for phase in BudgetPhase:
        limits = budgets[phase].scaled(story.token_budget_multiplier)
        decision = evaluate(phase=phase, level=level, used=used[phase], limits=limits)
        phases[phase.value] = {
            "estimate": limits.estimate,
            "used": used[phase],
            "warning_limit": limits.warning,
            "hard_limit": limits.hard,
            "warning_pct": round(decision.warning_pct, 1),
            "hard_pct": round(decision.hard_pct, 1),
            "state": decision.state.value,
            "cost_usd": round(cost[phase], 6),
        }
    return {
        "story": story.id,
        "enforcement": level.value,
        "multiplier": story.token_budget_multiplier,
        "phases": phases,
        "total_estimated": sum(p["estimate"] for p in phases.values()),
        "total_used": sum(used.values()),
        "cost_usd": round(sum(cost.values()), 6),
        "unpriced_entries": unpriced,
        "entries": len(ledger),
        "measurements": [_measurement(entry) for entry in ledger],
    }


def _measurement(entry: LedgerEntry) -> dict[str, Any]:
    """One ledger entry as the story file's ``actual_measurements`` keep it (whole
    seconds, cost to six places; the run is this database's only)."""
    return {
        "phase": entry.phase.value,
        "date": file_stamp(entry.created_at),
        "tokens": entry.total_tokens,
        "input": entry.input_tokens,
        "output": entry.output_tokens,
        "cache_read": entry.cache_read_tokens,
        "cache_write": entry.cache_write_tokens,
        "source": entry.source,
        "model": entry.model,
        "agent": entry.agent,
        "cost_usd": None if entry.cost_usd is None else round(entry.cost_usd, 6),
        "note": entry.note,
    }


def budget_show(ctx: Context, target: str) -> dict[str, Any]:
    """A story's budget (ID) or an epic's roll-up (PREFIX)."""
    text = target.strip()
    if "-" in text:
        parse_story_id(text)
        story = ctx.story(text)
        return story_budget(ctx, ctx.epic(story.epic), story)
    epic = ctx.epic(text)
    stories = [story_budget(ctx, epic, s) for s in ctx.store.list_stories(epic=epic.prefix)]
    phase_totals = {
        phase.value: sum(s["phases"][phase.value]["used"] for s in stories) for phase in BudgetPhase
    }
    overruns = [
        {
            "story": s["story"],
            "phase": name,
            "state": p["state"],
            "used": p["used"],
            "hard_limit": p["hard_limit"],
        }
        for s in stories
        for name, p in s["phases"].items()
        if p["state"] != BudgetState.OK.value
    ]
    return {
        "epic": epic.prefix,
        "enforcement": epic.settings.enforcement.value,
        "stories": [
            {
                k: s[k]
                for k in (
                    "story",
                    "total_estimated",
                    "total_used",
                    "cost_usd",
                    "enforcement",
                    "multiplier",
                )
            }
            for s in stories
        ],
        "phases": phase_totals,
        "total_estimated": sum(s["total_estimated"] for s in stories),
        "total_used": sum(s["total_used"] for s in stories),
        "cost_usd": round(sum(s["cost_usd"] for s in stories), 6),
        "unpriced_entries": sum(s["unpriced_entries"] for s in stories),
        "overruns": overruns,
    }


__all__ = ["LedgerEntry", "budget_show", "log_tokens", "parse_used_at", "story_budget"]
