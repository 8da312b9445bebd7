"""Metrics: tokens and cost, phase durations, gate pass rates, rework, cycle time and time in
status, for a story, an epic or the workspace; and the story's METRICS.yaml at completion.

Every figure is an aggregate the store computes in SQL (``StorePort.metrics()``) over the
rows committed with the events of the trace: the ledger (tokens, cost), the runs (phase
durations, verdicts, errors, retries; for a scope without run rows, the ``phase_start`` /
``phase_complete`` / ``error`` events instead), the transitions (rework, cycle time, time in
status) and the verdict tables (gate pass rates). Token figures are sums over the ledger, so
they always agree with ``storyflow budget show``. Budget phases (the ledger's) and run phases
(the run engine's) are reported separately: ``tokens.by_phase`` vs ``durations_ms``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from storyflow.domain import metrics as rules
from storyflow.domain.metrics import Scope
from storyflow.domain.model import Epic, Story, file_stamp, parse_prefix, parse_story_id
from storyflow.errors import StoryflowError
from storyflow.services.context import Context

log = logging.getLogger(__name__)

METRICS_FILE = "METRICS.yaml"
# Run statuses whose agent finished its work (a paused run waits for a budget confirmation).
FINISHED = ("succeeded", "paused")


def resolve_scope(ctx: Context, target: str | None, epic: str | None) -> Scope:
    """A story ID, ``--epic PREFIX``, or nothing (the workspace); each must exist."""
    if target is not None and epic is not None:
        from storyflow.errors import UsageError

        raise UsageError(
            "give a story ID or --epic, not both", hint="storyflow metrics [ID | --epic PREFIX]"
        )
    if target is not None:
        text = target.strip()
        if "-" not in text:  # a prefix given as the argument: the epic
            return Scope(epic=ctx.epic(parse_prefix(text)).prefix)
        parse_story_id(text)
        return Scope(story=ctx.story(text).id)
    if epic is not None:
        return Scope(epic=ctx.epic(parse_prefix(epic)).prefix)
    return Scope()


def _keyed(rows: Iterable[Mapping[str, Any]], key: str) -> dict[str, Any]:
    """Ledger roll-up rows added up per ``key`` (None: "(none)"), as token figures."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault("(none)" if row[key] is None else str(row[key]), []).append(row)
    return {
        name: rules.tokens(group[0] if len(group) == 1 else rules.add_up(group))
        for name, group in sorted(groups.items())
    }


def collect(ctx: Context, scope: Scope) -> dict[str, Any]:
    """The metrics document for ``scope`` (see the module docstring)."""
    q = ctx.store.metrics()
    now = ctx.now()
    # One read transaction: on SQLite one snapshot for every figure (PostgreSQL reads
    # committed rows statement by statement).
    with ctx.store.transaction(write=False):
        ledger = q.ledger_by(scope, ("epic", "phase", "model"))
        by_story = q.ledger_by(scope, ("story",)) if scope.story is None else []
        runs = q.runs(scope)
        if runs:  # the engine's record of every phase run and attempt: typed, no JSON
            durations = phase_verdicts = [r for r in runs if r["status"] in FINISHED]
            errors = [r for r in runs if r["error_code"] is not None]
        else:  # phase events without run rows (an imported or hand-written trace)
            durations = q.event_durations(scope)
            phase_verdicts = q.event_verdicts(scope)
            errors = q.errors(scope)
        verdicts = q.verdicts(scope)
        edges = q.transitions(scope)
        iterations = q.iterations(scope)
        statuses = q.status_counts(scope)
        cycles = q.cycle_times(scope)
    tokens: dict[str, Any] = rules.tokens(rules.add_up(ledger))
    tokens["by_phase"] = _keyed(ledger, "phase")
    tokens["by_model"] = _keyed(ledger, "model")
    if scope.story is None:
        tokens["by_epic"] = _keyed(ledger, "epic")
        tokens["by_story"] = _keyed(by_story, "story")
    cycle_seconds = [float(r["ms"]) / 1000 for r in cycles if r["ms"] is not None]
    document: dict[str, Any] = {
        "scope": {"story": scope.story, "epic": scope.epic, "label": scope.label},
        "generated_at": file_stamp(now),
        "stories": {"total": sum(statuses.values()), "by_status": dict(sorted(statuses.items()))},
        "tokens": tokens,
        "durations_ms": _phase_order(rules.durations(durations)),
        "durations_from": "runs" if runs else "events",
        "phase_verdicts": _phase_verdicts(phase_verdicts),
        "errors": _errors(errors),
        "gates": rules.pass_rates(verdicts),
        "rework": rules.rework(edges, iterations),
        "cycle_time_seconds": rules.stats(cycle_seconds),
        "time_in_status_seconds": rules.time_in_status(edges, statuses, now),
        "runs": _runs(runs),
    }
    return document


def _phase_order(data: dict[str, Any]) -> dict[str, Any]:
    """Run phases in lifecycle order, anything else after them."""
    from storyflow.domain.phases import PhaseName

    order = {p.value: i for i, p in enumerate(PhaseName)}
    return dict(sorted(data.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def _phase_verdicts(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        verdicts = out.setdefault(str(row["phase"] or "(none)"), {})
        verdict = str(row["verdict"] or "DONE")
        verdicts[verdict] = verdicts.get(verdict, 0) + int(row["n"])
    return _phase_order({k: dict(sorted(v.items())) for k, v in out.items()})


def _errors(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    by_code: dict[str, int] = {}
    by_phase: dict[str, int] = {}
    for row in rows:
        n = int(row["n"])
        code = str(row["error_code"] or "(none)")
        by_code[code] = by_code.get(code, 0) + n
        phase = str(row["phase"] or "(none)")
        by_phase[phase] = by_phase.get(phase, 0) + n
    return {
        "total": sum(by_code.values()),
        "by_code": dict(sorted(by_code.items())),
        "by_phase": _phase_order(by_phase),
    }


def _runs(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    phases: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = phases.setdefault(str(row["phase"]), {"retries": 0})
        entry[str(row["status"])] = entry.get(str(row["status"]), 0) + int(row["n"])
        entry["retries"] += int(row["retries"] or 0)
    return {
        "total": sum(n for p in phases.values() for k, n in p.items() if k != "retries"),
        "by_phase": _phase_order(phases),
    }


def metrics(ctx: Context, target: str | None = None, epic: str | None = None) -> dict[str, Any]:
    """``storyflow metrics [ID | --epic PREFIX]``."""
    return collect(ctx, resolve_scope(ctx, target, epic))


# ---- METRICS.yaml -------------------------------------------------------------------------


def story_metrics_document(ctx: Context, story: Story) -> dict[str, Any]:
    """What METRICS.yaml holds: the story's metrics, its status and review counters."""
    document = collect(ctx, Scope(story=story.id))
    document.pop("stories", None)
    document.pop("scope", None)
    cycle = document.pop("cycle_time_seconds")
    return {
        "story": story.id,
        "epic": story.epic,
        "status": story.status.value,
        "created_at": file_stamp(story.created_at),
        "cycle_time_seconds": cycle.get("total"),
        **document,
    }


def write_story_metrics(ctx: Context, epic: Epic, story_id: str) -> str | None:
    """Write METRICS.yaml into the story's folder (after the move to completed commits).
    Returns its workspace-relative path; a failure is a warning, never a failed move."""
    from storyflow.adapters.files.yamlio import dump_yaml  # serialising only, like the docs

    try:
        with ctx.files.lock(story_id):
            story = ctx.story(story_id)
            text = dump_yaml(story_metrics_document(ctx, story))
            target = ctx.files.locate(epic, story) / METRICS_FILE
            pending = ctx.files.pending()
            pending.add(target, text)
            pending.publish()
    except (OSError, StoryflowError) as exc:
        log.warning("METRICS.yaml for %s not written: %s", story_id, exc)
        ctx.warn(f"{story_id}: METRICS.yaml not written: {exc}")
        return None
    return ctx.files.rel(target)
