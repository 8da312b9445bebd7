"""Metrics fold from the ledger, the events, the transitions and the verdicts: token and cost
figures equal sums over the ledger, durations and times come from known timestamps, and a
completed story gets its METRICS.yaml."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from storyflow.domain.metrics import Scope
from storyflow.domain.model import LedgerEntry
from storyflow.domain.statuses import Status
from storyflow.errors import NotFoundError, UsageError
from storyflow.services import epics
from storyflow.services import metrics as metrics_service
from storyflow.services import tokens as token_service
from storyflow.services.context import Context
from tests.support import Driver, Workspace, code_review, new_story, qa_gate, verification

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves: every event of a step gets the same known timestamp."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def _ctx(ws: Workspace, clock: Clock | None = None) -> Context:
    ctx = ws.ctx()
    if clock is not None:
        ctx.clock = clock
    return ctx


def _log(ctx: Context, sid: str, phase: str, n: int, model: str | None, cache: int = 0) -> None:
    token_service.log_tokens(
        ctx,
        sid,
        phase,
        input_tokens=n,
        output_tokens=n // 3,
        cache_read=cache,
        cache_write=cache // 2,
        model=model,
        agent="dev-agent",
    )


def _walk_epics(ws: Workspace, ctx: Context) -> dict[str, list[str]]:
    """Two epics; stories down different paths, each with priced and unpriced usage."""
    epics.create_epic(ctx, "FLOW", title="Flow")
    epics.create_epic(ctx, "OPS", title="Ops")
    driver = Driver(ws, ctx)
    happy = new_story(ctx, title="Happy")
    driver.drive_to(happy, Status.COMPLETED)
    _log(ctx, happy, "implementation", 40_000, "claude-sonnet-4", cache=9_000)

    bumpy = new_story(ctx, title="Bumpy")
    driver.drive_to(bumpy, Status.READY_FOR_CODE_REVIEW)
    _log(ctx, bumpy, "implementation", 55_000, "claude-opus-4", cache=12_000)
    driver.submit(bumpy, "code_review", code_review("FAIL"))
    driver.move(bumpy, "code-review-failed")
    _log(ctx, bumpy, "code_review", 8_000, "gpt-4o")
    driver.step(bumpy, Status.IN_PROGRESS)
    driver.step(bumpy, Status.READY_FOR_CODE_REVIEW)
    driver.step(bumpy, Status.READY_FOR_QA)
    driver.step(bumpy, Status.IN_QA)
    driver.submit(bumpy, "verification", verification("FAIL"))
    driver.move(bumpy, "needs-work")
    driver.step(bumpy, Status.IN_PROGRESS)
    driver.step(bumpy, Status.READY_FOR_CODE_REVIEW)
    driver.step(bumpy, Status.READY_FOR_QA)
    driver.step(bumpy, Status.IN_QA)
    driver.step(bumpy, Status.UAT)
    driver.submit(bumpy, "qa_gate", qa_gate("CONCERNS"))
    driver.tokens(bumpy)
    driver.move(bumpy, "completed")

    blocked = new_story(ctx, title="Blocked")
    driver.drive_to(blocked, Status.BLOCKED)
    _log(ctx, blocked, "elaboration", 3_000, "claude-haiku-3-5")

    refined = new_story(ctx, title="Refined")
    driver.drive_to(refined, Status.NEEDS_REFINEMENT)
    driver.step(refined, Status.GENERATED)

    ops = new_story(ctx, "OPS", title="Ops work")
    driver.drive_to(ops, Status.COMPLETED)
    _log(ctx, ops, "qa_verification", 7_000, "gpt-4o-mini", cache=1_000)
    return {"FLOW": [happy, bumpy, blocked, refined], "OPS": [ops]}


def _expected(entries: Iterable[LedgerEntry], key: Any) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        groups[key(entry)].append(entry)
    return {name: _sums(group) for name, group in groups.items()}


def _sums(entries: list[LedgerEntry]) -> dict[str, Any]:
    costs = [e.cost_usd for e in entries if e.cost_usd is not None]
    return {
        "total": sum(e.total_tokens for e in entries),
        "input": sum(e.input_tokens for e in entries),
        "output": sum(e.output_tokens for e in entries),
        "cache_read": sum(e.cache_read_tokens for e in entries),
        "cache_write": sum(e.cache_write_tokens for e in entries),
        "cost_usd": round(math.fsum(costs), 6),
        "entries": len(entries),
        "unpriced_entries": len(entries) - len(costs),
    }


def _figures(tokens: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tokens.items() if not k.startswith("by_")}


def test_token_figures_equal_sums_over_the_ledger(workspace: Workspace) -> None:
    ctx = _ctx(workspace)
    stories = _walk_epics(workspace, ctx)
    ledger = {sid: ctx.store.ledger(sid) for ids in stories.values() for sid in ids}
    every = [e for entries in ledger.values() for e in entries]
    assert len({e.model for e in every}) >= 5 and any(e.cost_usd is None for e in every)

    epic_of = {sid: epic for epic, sids in stories.items() for sid in sids}
    for scope, ids in [("FLOW", stories["FLOW"]), ("OPS", stories["OPS"]), (None, list(ledger))]:
        entries = [e for sid in ids for e in ledger[sid]]
        data = metrics_service.metrics(ctx, epic=scope)
        tokens = data["tokens"]
        assert _figures(tokens) == _sums(entries), scope
        assert tokens["by_phase"] == _expected(entries, lambda e: e.phase.value)
        assert tokens["by_story"] == _expected(entries, lambda e: e.story_id)
        assert tokens["by_model"] == _expected(entries, lambda e: e.model or "(none)")
        assert tokens["by_epic"] == _expected(entries, lambda e: epic_of[e.story_id])
        assert data["stories"]["total"] == len(ids)

    for sid, entries in ledger.items():
        data = metrics_service.metrics(ctx, sid)
        assert _figures(data["tokens"]) == _sums(entries)
        assert data["tokens"]["by_phase"] == _expected(entries, lambda e: e.phase.value)
        assert "by_story" not in data["tokens"]
        # the same figures as storyflow budget show
        budget = token_service.budget_show(ctx, sid)
        assert data["tokens"]["total"] == budget["total_used"]
        assert data["tokens"]["cost_usd"] == pytest.approx(budget["cost_usd"], abs=1e-6)


def test_gate_pass_rates_and_rework_loops(workspace: Workspace) -> None:
    ctx = _ctx(workspace)
    stories = _walk_epics(workspace, ctx)
    data = metrics_service.metrics(ctx, epic="FLOW")
    gates = data["gates"]
    # happy: review PASS; bumpy: FAIL, PASS, PASS (two trips through review)
    assert gates["code_review"]["verdicts"] == {"FAIL": 1, "PASS": 3}
    assert gates["code_review"]["pass_rate"] == 0.75
    assert gates["code_review"]["first_pass_rate"] == 0.5  # happy's v1 passed, bumpy's failed
    assert gates["verification"]["verdicts"] == {"FAIL": 1, "PASS": 2}
    assert gates["qa_gate"]["verdicts"] == {"CONCERNS": 1, "PASS": 1}
    assert gates["qa_gate"]["pass_rate"] == 1.0  # CONCERNS lets the story through
    assert gates["elaboration"]["verdicts"] == {"NEEDS_REFINEMENT": 1, "PASS": 3}
    rework = data["rework"]
    assert rework["loops"] == {
        "review_failed": 1,
        "fix_after_review": 1,
        "qa_failed": 1,
        "fix_after_qa": 1,
        "gate_failed": 0,
        "refinement": 1,
        "blocked": 1,
    }
    assert rework["review_iterations"] == {"total": 1, "max": 1, "stories": 1}
    assert rework["qa_iterations"] == {"total": 1, "max": 1, "stories": 1}
    assert data["stories"]["by_status"] == {
        "blocked": 1,
        "completed": 2,
        "generated": 1,
    }
    ops = metrics_service.metrics(ctx, epic="OPS")
    assert ops["rework"]["loops"]["review_failed"] == 0
    assert ops["gates"]["qa_gate"]["verdicts"] == {"PASS": 1}
    assert metrics_service.metrics(ctx, stories["FLOW"][1])["rework"]["loops"]["qa_failed"] == 1


def test_cycle_time_and_time_in_status_from_known_timestamps(workspace: Workspace) -> None:
    clock = Clock(T0)
    ctx = _ctx(workspace, clock)
    epics.create_epic(ctx, "FLOW", title="Flow")
    driver = Driver(workspace, ctx)
    sid = new_story(ctx, title="Timed")  # pending at T0
    steps = [
        (Status.GENERATED, 60),
        (Status.IN_ELABORATION, 120),
        (Status.READY_TO_WORK, 600),
        (Status.IN_PROGRESS, 30),
        (Status.READY_FOR_CODE_REVIEW, 3_600),
        (Status.READY_FOR_QA, 900),
        (Status.IN_QA, 45),
        (Status.UAT, 1_800),
        (Status.COMPLETED, 300),
    ]
    stays: dict[str, float] = defaultdict(float)
    current = Status.PENDING
    for target, seconds in steps:
        clock.advance(seconds)
        stays[current.value] += seconds
        driver.step(sid, target)
        current = target
    other = new_story(ctx, title="Still open")  # created at the completion time
    clock.advance(100)
    driver.step(other, Status.GENERATED)
    clock.advance(250)  # 'other' has been generated for 250 s now

    story = metrics_service.metrics(ctx, sid)
    total = sum(s for _, s in steps)
    assert story["cycle_time_seconds"]["count"] == 1
    assert story["cycle_time_seconds"]["total"] == pytest.approx(total, abs=1e-3)
    assert {k: v["seconds"] for k, v in story["time_in_status_seconds"].items()} == pytest.approx(
        dict(stays), abs=1e-3
    )
    assert all(
        v["visits"] == 1 and v["open"] == 0 for v in story["time_in_status_seconds"].values()
    )
    assert "completed" not in story["time_in_status_seconds"]  # terminal: no end

    epic = metrics_service.metrics(ctx, epic="FLOW")
    in_status = epic["time_in_status_seconds"]
    assert in_status["pending"] == {"visits": 2, "seconds": pytest.approx(60 + 100), "open": 0}
    assert in_status["generated"] == {"visits": 2, "seconds": pytest.approx(120 + 250), "open": 1}
    assert epic["cycle_time_seconds"]["count"] == 1
    assert epic["cycle_time_seconds"]["p50"] == pytest.approx(total, abs=1e-3)

    # METRICS.yaml was written when the story completed, with the same figures
    document = _metrics_file(workspace, ctx, sid)
    assert document["cycle_time_seconds"] == pytest.approx(total, abs=1e-3)
    assert document["status"] == "completed"
    assert document["created_at"] == "2026-03-01T09:00:00Z"
    entries = ctx.store.ledger(sid)
    assert _figures(document["tokens"]) == _sums(entries)
    assert document["time_in_status_seconds"]["ready-for-code-review"]["seconds"] == (
        pytest.approx(900, abs=1e-3)
    )


def _metrics_file(ws: Workspace, ctx: Context, sid: str) -> dict[str, Any]:
    story = ctx.story(sid)
    folder = ctx.files.locate(ctx.epic(story.epic), story)
    data: dict[str, Any] = yaml.safe_load((folder / "METRICS.yaml").read_text("utf-8"))
    return data


def test_metrics_yaml_is_written_only_at_completion(workspace: Workspace) -> None:
    ctx = _ctx(workspace)
    stories = _walk_epics(workspace, ctx)
    written = sorted(p.parent.name for p in workspace.root.rglob("METRICS.yaml"))
    happy, bumpy = stories["FLOW"][:2]
    assert written == sorted([happy, bumpy, stories["OPS"][0]])
    document = _metrics_file(workspace, ctx, bumpy)
    # written at the move to completed: later ledger entries are not in it
    entries = ctx.store.ledger(bumpy)
    assert _figures(document["tokens"]) == _sums(entries)
    assert document["gates"]["qa_gate"]["verdicts"] == {"CONCERNS": 1}
    assert document["rework"]["loops"]["review_failed"] == 1
    happy_doc = _metrics_file(workspace, ctx, happy)
    later = ctx.store.ledger(happy)[-1]  # logged after completion
    assert happy_doc["tokens"]["total"] == sum(e.total_tokens for e in ctx.store.ledger(happy)) - (
        later.total_tokens
    )


def _event(ctx: Context, kind: str, sid: str, at: datetime, **payload: Any) -> None:
    ctx.clock = lambda: at
    with ctx.store.transaction():
        ctx.store.insert_event(
            type=kind, at=at, story_id=sid, epic="FLOW", actor="worker-1", payload=payload
        )


def test_phase_durations_verdicts_and_errors_from_run_events(workspace: Workspace) -> None:
    ctx = _ctx(workspace)
    epics.create_epic(ctx, "FLOW", title="Flow")
    one, two = new_story(ctx, title="One"), new_story(ctx, title="Two")
    usage = {"input": 10, "output": 5, "cache_read": 0, "cache_write": 0}
    t = T0
    # reported durations
    for sid, run, ms, verdict in [
        (one, "r1", 1_500, "FAIL"),
        (one, "r2", 2_500, "PASS"),
        (two, "r3", 4_000, "PASS"),
    ]:
        _event(ctx, "phase_start", sid, t, phase="review", run_id=run, attempt=1)
        _event(
            ctx,
            "phase_complete",
            sid,
            t + timedelta(milliseconds=ms),
            phase="review",
            run_id=run,
            attempt=1,
            duration_ms=ms,
            verdict=verdict,
            tokens=usage,
        )
        t += timedelta(seconds=10)
    # no duration reported: the time since the run's phase_start
    _event(ctx, "phase_start", two, t, phase="implement", run_id="r4", attempt=1)
    _event(ctx, "agent_spawn", two, t, phase="implement", run_id="r4", agent="scripted")
    _event(ctx, "phase_complete", two, t + timedelta(seconds=7.25), phase="implement", run_id="r4")
    _event(ctx, "error", two, t, phase="implement", run_id="r5", error_code="AGENT_TIMEOUT")
    _event(ctx, "error", two, t, phase="implement", run_id="r6", error_code="AGENT_TIMEOUT")
    _event(ctx, "error", one, t, phase="review", run_id="r7", error_code="MALFORMED_OUTPUT")

    data = metrics_service.metrics(ctx, epic="FLOW")
    review = data["durations_ms"]["review"]
    assert review == {
        "count": 3,
        "total": 8_000.0,
        "mean": pytest.approx(8_000 / 3, abs=1e-3),
        "min": 1_500.0,
        "p50": 2_500.0,
        "p90": 4_000.0,
        "max": 4_000.0,
    }
    assert data["durations_ms"]["implement"]["total"] == pytest.approx(7_250, abs=1)
    assert list(data["durations_ms"]) == ["implement", "review"]  # lifecycle order
    assert data["phase_verdicts"] == {"implement": {"DONE": 1}, "review": {"FAIL": 1, "PASS": 2}}
    assert data["errors"] == {
        "total": 3,
        "by_code": {"AGENT_TIMEOUT": 2, "MALFORMED_OUTPUT": 1},
        "by_phase": {"implement": 2, "review": 1},
    }
    single = metrics_service.metrics(ctx, one)
    assert single["durations_ms"]["review"]["count"] == 2
    assert single["errors"]["by_code"] == {"MALFORMED_OUTPUT": 1}


def test_scope_errors(workspace: Workspace) -> None:
    ctx = _ctx(workspace)
    epics.create_epic(ctx, "FLOW", title="Flow")
    sid = new_story(ctx, title="One")
    with pytest.raises(NotFoundError):
        metrics_service.metrics(ctx, "FLOW-099")
    with pytest.raises(NotFoundError):
        metrics_service.metrics(ctx, epic="NOPE")
    with pytest.raises(UsageError):
        metrics_service.metrics(ctx, sid, epic="FLOW")
    assert metrics_service.resolve_scope(ctx, "FLOW", None) == Scope(epic="FLOW")
    empty = metrics_service.metrics(ctx)
    assert empty["tokens"]["total"] == 0 and empty["cycle_time_seconds"] == {"count": 0}


def test_the_cli_prints_the_same_figures(workspace: Workspace) -> None:
    ctx = _ctx(workspace)
    stories = _walk_epics(workspace, ctx)
    result = workspace.cli("metrics", "--epic", "FLOW", "--json")
    assert result.code == 0, result
    assert result.json["tokens"] == metrics_service.metrics(ctx, epic="FLOW")["tokens"]
    human = workspace.cli("metrics", stories["FLOW"][1])
    assert human.code == 0, human
    assert "gate pass rates:" in human.stdout and "code_review" in human.stdout
    missing = workspace.cli("metrics", "FLOW-404", "--json")
    assert missing.code == 6 and missing.json["error"]["code"] == "STORY_NOT_FOUND"


def _run_row(
    ctx: Context,
    sid: str,
    phase: str,
    attempt: int,
    status: str,
    started: datetime,
    ms: int | None,
    verdict: str | None = None,
    error_code: str | None = None,
) -> None:
    """A runs row as the run engine records it (the engine itself is tested elsewhere)."""
    from storyflow.adapters.db.store import ts

    run_id = f"{sid}-{phase}-{attempt}-{status}-{started.timestamp()}"
    finished = None if ms is None else ts(started + timedelta(milliseconds=ms))
    with ctx.store.transaction():
        ctx.store.conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO runs (id, story_id, phase, attempt, idempotency_key, status, verdict, "
            "agent, model, worker, error_code, started_at, finished_at) VALUES (:id, :story, "
            ":phase, :attempt, :id, :status, :verdict, 'scripted', 'scripted', 'w1', :code, "
            ":started, :finished)",
            {
                "id": run_id,
                "story": sid,
                "phase": phase,
                "attempt": attempt,
                "status": status,
                "verdict": verdict,
                "code": error_code,
                "started": ts(started),
                "finished": finished,
            },
        )


def test_durations_verdicts_and_errors_from_run_rows(workspace: Workspace) -> None:
    ctx = _ctx(workspace)
    epics.create_epic(ctx, "FLOW", title="Flow")
    one, two = new_story(ctx, title="One"), new_story(ctx, title="Two")
    for i, ms in enumerate([1_000, 2_000, 3_000, 4_000, 10_000]):
        sid = one if i % 2 else two
        _run_row(ctx, sid, "implement", 1, "succeeded", T0 + timedelta(minutes=i), ms)
    _run_row(ctx, one, "review", 1, "succeeded", T0, 500, verdict="FAIL")
    _run_row(ctx, one, "review", 2, "succeeded", T0, 700, verdict="PASS")
    _run_row(ctx, two, "review", 1, "paused", T0, 900, verdict="PASS")  # soft_gate pause
    _run_row(ctx, two, "verify", 1, "failed", T0, 60_000, error_code="AGENT_TIMEOUT")
    _run_row(ctx, two, "verify", 2, "failed", T0, 100, error_code="MALFORMED_OUTPUT")
    _run_row(ctx, two, "verify", 3, "running", T0, None)
    # events alone are not counted twice: with run rows, the runs are the record
    _event(ctx, "error", two, T0, phase="verify", error_code="AGENT_TIMEOUT")

    data = metrics_service.metrics(ctx, epic="FLOW")
    assert data["durations_from"] == "runs"
    assert data["durations_ms"]["implement"] == {
        "count": 5,
        "total": 20_000.0,
        "mean": 4_000.0,
        "min": 1_000.0,
        "p50": 3_000.0,
        "p90": 10_000.0,
        "max": 10_000.0,
    }
    assert data["durations_ms"]["review"]["count"] == 3  # failed and running runs are not
    assert "verify" not in data["durations_ms"]
    assert data["phase_verdicts"] == {"implement": {"DONE": 5}, "review": {"FAIL": 1, "PASS": 2}}
    assert data["errors"] == {
        "total": 2,
        "by_code": {"AGENT_TIMEOUT": 1, "MALFORMED_OUTPUT": 1},
        "by_phase": {"verify": 2},
    }
    assert data["runs"] == {
        "total": 11,
        "by_phase": {
            "implement": {"succeeded": 5, "retries": 0},
            "review": {"succeeded": 2, "paused": 1, "retries": 1},
            "verify": {"failed": 2, "running": 1, "retries": 2},
        },
    }
    assert metrics_service.metrics(ctx, one)["durations_ms"]["implement"]["count"] == 2


def test_a_scripted_run_of_an_epic_adds_up(workspace: Workspace) -> None:
    """The run engine drives an epic with the scripted agent (a failed review, a QA gate
    CONCERNS); every metric is a sum over the ledger or a count of the recorded runs."""
    from tests.run_support import configure, epic_with, scenario

    scenario(
        workspace,
        {
            "rules": [
                {
                    "every": 3,
                    "offset": 1,
                    "phase": "review",
                    "iteration": 1,
                    "reviewers": {"security": "FAIL"},
                },
                {"every": 2, "offset": 0, "phase": "gate", "verdict": "CONCERNS"},
            ]
        },
    )
    configure(workspace, {"scenario": "scenario.yaml", "lease_seconds": 30})
    ctx = _ctx(workspace)
    ids = epic_with(ctx, 6)
    result = workspace.cli("run", "--epic", "FLOW", "--workers", "2", "--json")
    assert result.code == 0, result
    summary = result.json
    assert all(ctx.story(sid).status is Status.COMPLETED for sid in ids)

    data = metrics_service.metrics(ctx, epic="FLOW")
    ledger = {sid: ctx.store.ledger(sid) for sid in ids}
    entries = [e for rows in ledger.values() for e in rows]
    assert _figures(data["tokens"]) == _sums(entries)
    assert data["tokens"]["total"] == summary["tokens"]["total"]
    assert data["tokens"]["by_story"] == _expected(entries, lambda e: e.story_id)
    assert data["tokens"]["by_phase"] == _expected(entries, lambda e: e.phase.value)
    assert data["tokens"]["by_model"] == _expected(entries, lambda e: e.model or "(none)")
    runs = summary["runs"]
    assert data["durations_from"] == "runs"
    assert data["runs"]["total"] == len(runs)
    per_phase = {p: sum(1 for r in runs if r["phase"] == p) for p in {r["phase"] for r in runs}}
    assert {p: d["count"] for p, d in data["durations_ms"].items()} == per_phase
    assert data["phase_verdicts"]["review"] == summary["reviews"] == {"FAIL": 2, "PASS": 6}
    assert data["phase_verdicts"]["gate"] == summary["gates"]
    assert data["gates"]["qa_gate"]["verdicts"] == summary["gates"]
    assert data["rework"]["loops"]["review_failed"] == 2
    assert data["cycle_time_seconds"]["count"] == 6
    for sid in ids:  # METRICS.yaml, written as each story completed
        document = _metrics_file(workspace, ctx, sid)
        assert _figures(document["tokens"]) == _sums(ledger[sid])
        assert document["runs"]["total"] == sum(1 for r in runs if r["story"] == sid)


def test_workspace_aggregates_read_their_covering_indexes(workspace: Workspace) -> None:
    """Revision 0003's indexes hold every column the ledger, runs and transitions aggregates
    read: SQLite scans them in order instead of sorting each table (1M events: ~1.4 ->
    ~1.0 s, bench/metrics.py). PostgreSQL picks its own plan from its statistics; there
    the test checks that the indexes exist."""
    from storyflow.adapters.db.metrics_queries import MetricsQueries

    ctx = workspace.ctx()
    conn = ctx.store.conn
    sent: list[tuple[str, Any]] = []

    class Recording:
        dialect = conn.dialect

        def fetchall(self, sql: str, params: Any = None) -> list[Any]:
            sent.append((sql, params))
            return conn.fetchall(sql, params)

    queries = MetricsQueries(Recording(), conn.dialect)  # type: ignore[arg-type]
    queries.ledger_by(Scope(), ("epic", "phase", "model"))
    queries.runs(Scope())
    queries.transitions(Scope())
    expected = [
        "ix_workflow_token_logs_metrics",
        "ix_runs_metrics",
        "ix_workflow_transitions_metrics",
    ]
    if conn.dialect == "postgresql":
        rows = conn.fetchall("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%_metrics'")
        assert sorted(r["indexname"] for r in rows) == sorted(expected)
        return
    for (sql, params), index in zip(sent, expected, strict=True):
        plan = " ".join(r["detail"] for r in conn.fetchall("EXPLAIN QUERY PLAN " + sql, params))
        assert f"COVERING INDEX {index}" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
