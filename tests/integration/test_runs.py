"""The run engine on a real database: phases, idempotency, takeovers, failures, budgets,
parallel reviewers -- through the services, with the scripted agent."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from storyflow.adapters.db.store import ts
from storyflow.domain.phases import PHASE_OF_STATUS, PHASES, validate_phases
from storyflow.domain.statuses import NON_TERMINAL, TERMINAL, Status
from storyflow.services import transitions
from storyflow.services.agents import AgentPort, AgentRequest, AgentResult, Monitor
from storyflow.services.context import Context
from storyflow.services.run_context import RunEnv
from storyflow.services.runs import run_phase, start, worker_name
from storyflow.services.workers import (
    Claimed,
    claim_next,
    recover_expired,
    run_pool,
    run_story,
    work_loop,
)
from tests.run_support import configure, env, epic_with, ledger_rows, runs_of, scenario
from tests.support import Workspace

ZERO: dict[str, Any] = {"defaults": {"delay": 0, "usage": {"input": 100, "output": 20}}}


def drive(ctx: Context, story_id: str, run_env: Any, limit: int = 40) -> Status:
    """Run phases of one story until it rests (terminal, blocked, or paused)."""
    for _ in range(limit):
        outcome = run_story(ctx, run_env, story_id)
        status = ctx.story(story_id).status
        if status in TERMINAL or status is Status.BLOCKED or outcome.status == "paused":
            return status
    raise AssertionError(f"{story_id} did not come to rest")


class Counting:
    """Wraps an agent and counts its invocations."""

    def __init__(self, inner: AgentPort) -> None:
        self.inner = inner
        self.name = inner.name
        self.default_model = inner.default_model
        self.calls: list[tuple[str, str | None]] = []

    def run(self, request: AgentRequest, monitor: Monitor) -> AgentResult:
        self.calls.append((request.phase, request.reviewer))
        return self.inner.run(request, monitor)


def counting_env(ctx: Context, index: int = 0) -> tuple[Any, Counting]:
    run_env = env(ctx, index)
    agent = Counting(run_env.agents("scripted"))
    run_env.agents = lambda name: agent
    return run_env, agent


# ---- the phase table ------------------------------------------------------------------------


def test_every_non_terminal_status_has_a_way_on() -> None:
    assert set(PHASE_OF_STATUS) | {Status.BLOCKED} == set(NON_TERMINAL)
    assert validate_phases(PHASES) == PHASE_OF_STATUS


def test_a_table_with_a_dead_end_is_refused_at_import() -> None:
    from dataclasses import replace

    from storyflow.domain.phases import PhaseName

    broken = dict(PHASES)
    broken[PhaseName.REFINE] = replace(PHASES[PhaseName.REFINE], starts=(Status.NEEDS_SPLIT,))
    with pytest.raises(ValueError, match="no way on from needs-refinement"):
        validate_phases(broken)
    broken[PhaseName.GATE] = replace(PHASES[PhaseName.GATE], starts=(Status.IN_QA,))
    with pytest.raises(ValueError, match="no edge in-qa -> completed"):
        validate_phases(broken)


# ---- whole stories --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["staged", "flat"])
def test_default_scenario_drives_stories_to_completed(workspace: Workspace, layout: str) -> None:
    scenario(
        workspace,
        {
            **ZERO,
            "rules": [
                {
                    "stories": ["FLOW-002"],
                    "phase": "review",
                    "iteration": 1,
                    "reviewers": {"security": "FAIL"},
                },
                {"stories": ["FLOW-001"], "phase": "gate", "verdict": "CONCERNS"},
            ],
        },
    )
    configure(workspace, {"scenario": "scenario.yaml"})
    ctx = workspace.ctx()
    from storyflow.services import epics

    epics.create_epic(
        ctx,
        "FLOW",
        title="Flow",
        layout=__import__("storyflow.domain.layouts", fromlist=["LayoutName"]).LayoutName(layout),
    )
    from tests.support import new_story

    first, second = new_story(ctx, title="One"), new_story(ctx, title="Two")
    run_env = env(ctx)
    assert drive(ctx, first, run_env) is Status.COMPLETED
    assert drive(ctx, second, run_env) is Status.COMPLETED
    phases = [r["phase"] for r in runs_of(ctx, second)]
    assert phases == [
        "generate",
        "elaborate",
        "plan",
        "implement",
        "review",
        "fix",
        "review",
        "verify",
        "gate",
    ]
    assert all(r["status"] == "succeeded" for r in runs_of(ctx, second))
    gate = ctx.store.latest_artifact(
        first,
        __import__("storyflow.domain.artifacts", fromlist=["ArtifactKind"]).ArtifactKind.QA_GATE,
    )
    assert gate is not None and gate.verdict == "CONCERNS"
    # every run logged its tokens, with its run id
    for row in runs_of(ctx, second):
        assert any(e["run_id"] == row["id"] for e in ledger_rows(ctx, second)), row["phase"]
    events = ctx.store.recent_events(second, 200)
    types = {e["type"] for e in events}
    assert {"phase_start", "phase_complete", "agent_spawn", "agent_complete"} <= types


def test_split_creates_children_and_supersedes(workspace: Workspace) -> None:
    scenario(
        workspace,
        {
            **ZERO,
            "rules": [
                {
                    "stories": ["FLOW-001"],
                    "phase": "elaborate",
                    "iteration": 1,
                    "verdict": "SPLIT_REQUIRED",
                    "split_into": ["{title} A", "{title} B"],
                },
            ],
        },
    )
    configure(workspace, {"scenario": "scenario.yaml"})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    assert drive(ctx, story, env(ctx)) is Status.SUPERSEDED
    assert ctx.story(story).superseded_by == ("FLOW-002", "FLOW-003")
    assert ctx.story("FLOW-002").title == "Story 1 A"


# ---- idempotency and leases -------------------------------------------------------------------


def test_repeated_dispatch_returns_the_recorded_outcome(workspace: Workspace) -> None:
    scenario(workspace, ZERO)
    configure(workspace, {"scenario": "scenario.yaml"})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    run_env, agent = counting_env(ctx)
    run_story(ctx, run_env, story)  # generate
    first = run_story(ctx, run_env, story, phase="elaborate")
    assert first.status == "succeeded" and ctx.story(story).status is Status.READY_TO_WORK
    calls = len(agent.calls)
    again = run_story(ctx, run_env, story, phase="elaborate")
    assert again.status == "skipped" and again.run_id == first.run_id
    assert again.verdict == "PASS"
    assert len(agent.calls) == calls  # the agent did not run again
    assert [r["phase"] for r in runs_of(ctx, story)] == ["generate", "elaborate"]


def test_story_show_lists_a_runs_events_newest_first(workspace: Workspace) -> None:
    """The agent's events of a phase run are written at its finish with the times they
    happened; story show lists the last events by those times, not by the order of writing."""
    scenario(workspace, {"defaults": {"delay": 0.05, "usage": {"input": 100, "output": 20}}})
    configure(workspace, {"scenario": "scenario.yaml"})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    ran = workspace.cli("run", story)
    assert ran.code == 0, ran
    shown = workspace.cli("story", "show", story, "--json")
    events = shown.json["last_events"]
    types = [e["type"] for e in events]
    assert {"agent_spawn", "agent_complete", "tokens", "transition"} <= set(types), types
    times = [e["created_at"] for e in events]
    assert times == sorted(times, reverse=True), list(zip(types, times, strict=True))
    assert types.index("agent_complete") < types.index("agent_spawn")
    human = workspace.cli("story", "show", story)
    lines = human.stdout.split("last events", 1)[1].split()
    assert lines.index("agent_complete") < lines.index("agent_spawn"), human.stdout


def test_a_paused_run_is_recorded_not_rerun(workspace: Workspace) -> None:
    scenario(workspace, {**ZERO, "phases": {"implement": {"usage": {"input": 900}}}})
    configure(
        workspace,
        {"scenario": "scenario.yaml"},
        budgets={"implementation": {"estimate": 100, "warning": 200, "hard": 500}},
    )
    ctx = workspace.ctx()
    (story,) = epic_with(
        ctx,
        1,
        enforcement=__import__(
            "storyflow.domain.budgets", fromlist=["Enforcement"]
        ).Enforcement.SOFT_GATE,
    )
    run_env, agent = counting_env(ctx)
    assert drive(ctx, story, run_env) is Status.IN_PROGRESS
    paused = runs_of(ctx, story)[-1]
    assert (paused["phase"], paused["status"]) == ("implement", "paused")
    calls = len(agent.calls)
    again = run_story(ctx, run_env, story)
    assert (again.status, again.run_id, again.recorded) == ("paused", paused["id"], True)
    assert len(agent.calls) == calls
    # nothing to claim: the paused story waits for a person
    assert claim_next(ctx, run_env, epic="FLOW") is True
    budget = [e for e in ctx.store.recent_events(story, 50) if e["type"] == "budget"]
    assert any(e["payload"].get("action") == "paused" for e in budget)
    transitions.move(ctx, story, "ready-for-code-review", confirm_budget=True, reason="worth it")
    claimed = claim_next(ctx, run_env, epic="FLOW")
    assert isinstance(claimed, Claimed) and claimed.story_id == story


def test_an_expired_lease_is_taken_over_and_its_run_adopted(workspace: Workspace) -> None:
    scenario(workspace, ZERO)
    configure(workspace, {"scenario": "scenario.yaml"})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    dead = env(ctx, 0)
    claimed = claim_next(ctx, dead, epic="FLOW")
    assert isinstance(claimed, Claimed) and not claimed.takeover
    started = start(ctx, dead, story, named=None, force=False)  # ...then the worker dies
    run_id = started.run_id  # type: ignore[union-attr]
    live = env(ctx, 1)
    assert claim_next(ctx, live, epic="FLOW") is False  # leased: not idle, nothing claimable
    past = ts(ctx.now() - timedelta(seconds=1))
    with ctx.store.transaction():
        ctx.store.conn.execute("UPDATE story_leases SET expires_at = :t", {"t": past})
    # The lease ran out after the claim above looked: the recovery of leases no claim takes
    # leaves a claimable story to the claim (it would abandon the run, and the phase would
    # start again as attempt 2).
    assert recover_expired(ctx, live, epic="FLOW") == []
    taken = claim_next(ctx, live, epic="FLOW")
    assert isinstance(taken, Claimed) and taken.takeover
    outcome = run_phase(ctx, live, story)
    assert (outcome.status, outcome.run_id) == ("succeeded", run_id)
    rows = runs_of(ctx, story)
    assert [(r["phase"], r["status"]) for r in rows] == [("generate", "succeeded")]
    assert len(ledger_rows(ctx, story)) == 1
    locks = [e for e in ctx.store.recent_events(story, 50) if e["type"] == "lock"]
    assert locks and locks[0]["payload"]["action"] == "takeover"
    lease = ctx.store.lease(story)
    assert lease is not None and lease["owner"] == live.worker  # released by the caller


# ---- failures ---------------------------------------------------------------------------------


def test_a_failed_attempt_is_retried_and_its_tokens_logged(workspace: Workspace) -> None:
    scenario(
        workspace,
        {
            **ZERO,
            "rules": [
                {"phase": "elaborate", "attempt": 1, "fail": "malformed"},
            ],
        },
    )
    configure(workspace, {"scenario": "scenario.yaml"})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    run_env = env(ctx)
    run_story(ctx, run_env, story)
    outcome = run_story(ctx, run_env, story)
    rows = runs_of(ctx, story)[1:]
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "failed"), (2, "succeeded")]
    assert rows[0]["error_code"] == "MALFORMED_OUTPUT"
    assert rows[0]["idempotency_key"] != rows[1]["idempotency_key"]
    assert outcome.status == "succeeded" and ctx.story(story).status is Status.READY_TO_WORK
    assert [e["run_id"] for e in ledger_rows(ctx, story)][1:] == [r["id"] for r in rows]
    assert (
        ctx.store.latest_artifact(
            story,
            __import__(
                "storyflow.domain.artifacts", fromlist=["ArtifactKind"]
            ).ArtifactKind.ELABORATION,
        ).version
        == 1
    )  # the malformed one was never registered


def test_the_circuit_breaker_blocks_after_consecutive_failures(workspace: Workspace) -> None:
    scenario(workspace, {**ZERO, "phases": {"generate": {"fail": "unavailable"}}})
    configure(
        workspace,
        {
            "scenario": "scenario.yaml",
            "circuit_breaker": 3,
            "retries": {"EXTERNAL_SERVICE_DOWN": {"retries": 9, "backoff": 0.01}},
        },
    )
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    outcome = run_story(ctx, env(ctx), story)
    assert outcome.status == "blocked" and outcome.error_code == "EXTERNAL_SERVICE_DOWN"
    shown = ctx.story(story)
    assert shown.status is Status.BLOCKED and shown.blocked_from is Status.PENDING
    assert shown.blocked_reason is not None and "circuit breaker: 3" in shown.blocked_reason
    assert [r["status"] for r in runs_of(ctx, story)] == ["failed"] * 3
    errors = [e for e in ctx.store.recent_events(story, 50) if e["type"] == "error"]
    assert len(errors) == 3


def test_a_failure_without_retries_blocks_at_once(workspace: Workspace) -> None:
    scenario(workspace, {**ZERO, "phases": {"generate": {"fail": "spawn"}}})
    configure(workspace, {"scenario": "scenario.yaml"})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    outcome = run_story(ctx, env(ctx), story)
    assert outcome.status == "blocked" and outcome.error_code == "AGENT_SPAWN_FAILED"
    assert "AGENT_SPAWN_FAILED after 1 attempt" in (ctx.story(story).blocked_reason or "")


def stops_when_idle(run_env: Any, loop: Any, *args: Any, **kwargs: Any) -> bool:
    """Run a worker loop (or pool) told to stop when idle, in a thread: whether it did stop
    within a minute. A loop that does not is stopped, so the test fails instead of hanging."""
    thread = threading.Thread(target=loop, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    thread.join(timeout=60)
    stopped = not thread.is_alive()
    run_env.stop.set()
    thread.join(timeout=30)
    return stopped


def test_a_phase_its_start_edge_refuses_blocks_the_story_instead_of_looping(
    workspace: Workspace,
) -> None:
    """A hand edit empties the Reuse Plan of a story storyflow generated: the elaborate
    phase cannot enter in-elaboration. The story is blocked with the guard's reason (no
    agent runs), and a worker told to stop when idle does stop, instead of claiming it
    again and again."""
    configure(workspace, {"scenario": "scenario.yaml"})
    scenario(workspace, ZERO)
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    run_env, agent = counting_env(ctx)
    assert run_story(ctx, run_env, story).status == "succeeded"  # generate
    path = ctx.files.story_file(ctx.epic("FLOW"), ctx.story(story))
    text = path.read_text(encoding="utf-8")
    emptied = re.sub(r"(?m)^reuse_plan:.*$", "reuse_plan: ''", text)
    assert emptied != text
    path.write_text(emptied, encoding="utf-8")

    assert stops_when_idle(run_env, work_loop, ctx, run_env, epic="FLOW", until_idle=True)
    shown = ctx.story(story)
    assert shown.status is Status.BLOCKED and shown.blocked_from is Status.GENERATED
    assert "elaborate cannot start" in (shown.blocked_reason or "")
    assert "reuse_plan" in (shown.blocked_reason or "")
    assert agent.calls == [("generate", None)]
    assert [r["phase"] for r in runs_of(ctx, story)] == ["generate"]
    errors = [e for e in ctx.store.recent_events(story, 50) if e["type"] == "error"]
    assert [e["payload"]["error_code"] for e in errors] == ["GUARD_FAILED"]


def test_a_story_file_a_bad_merge_broke_is_left_alone_and_the_run_ends(
    workspace: Workspace,
) -> None:
    """Conflict markers in a generated story's file: its phase cannot even be refused by a
    move (every move re-reads the file), so the pool leaves that story alone for the rest of
    the run, finishes the others, and stops when idle instead of claiming it forever."""
    configure(workspace, {"scenario": "scenario.yaml"})
    scenario(workspace, ZERO)
    ctx = workspace.ctx()
    broken, other = epic_with(ctx, 2)
    run_env, agent = counting_env(ctx)
    assert run_story(ctx, run_env, broken).status == "succeeded"  # generate
    path = ctx.files.story_file(ctx.epic("FLOW"), ctx.story(broken))
    with path.open("a", encoding="utf-8") as out:
        out.write("<<<<<<< HEAD\nx: 1\n=======\nx: 2\n>>>>>>> theirs\n")
    before = ctx.story(broken)

    assert stops_when_idle(
        run_env,
        run_pool,
        workspace.ctx,
        run_env,
        workers=2,
        epic="FLOW",
        until_idle=True,
        name=worker_name,
    )
    assert ctx.story(other).status is Status.COMPLETED
    after = ctx.story(broken)
    assert (after.status, after.version) == (before.status, before.version)
    assert set(run_env.refused) == {broken}
    assert [phase for phase, _ in agent.calls].count("elaborate") == 1  # the other story's
    assert [r["phase"] for r in runs_of(ctx, broken)] == ["generate"]


def test_a_worker_whose_story_was_taken_over_meanwhile_gives_it_up(
    workspace: Workspace,
) -> None:
    """An agent that does not tick for longer than the lease (a slow SDK import, say): the
    lease expires, another worker takes the story over and its phase moves the folder. The
    first agent's write into the folder that is gone is a lost lease -- that worker gives the
    story up, its pool goes on -- not an error that ends the whole run; the phase is
    recorded once, by the worker that took it over."""
    scenario(workspace, ZERO)
    configure(workspace, {"scenario": "scenario.yaml", "lease_seconds": 0.3})
    ctx, other = workspace.ctx(), workspace.ctx()
    (story,) = epic_with(ctx, 1)
    first, rescuer = env(ctx, 0), env(other, 1)
    assert run_story(ctx, first, story).status == "succeeded"  # generate
    took_over: list[str] = []

    class Stalls:
        name, default_model = "scripted", "scripted"

        def run(self, request: AgentRequest, monitor: Monitor) -> AgentResult:
            time.sleep(0.6)  # no tick: the lease runs out
            took_over.append(run_story(other, rescuer, story).status)
            (request.story_dir / "elaboration.yaml").write_text("verdict: PASS\n")
            raise AssertionError("the folder was still there")

    first.agents = lambda name: Stalls()
    outcome = run_story(ctx, first, story)

    assert took_over == ["succeeded"]
    assert (outcome.status, outcome.error_code) == ("lost", "LEASE_LOST"), outcome
    assert ctx.story(story).status is Status.READY_TO_WORK
    assert [(r["phase"], r["status"]) for r in runs_of(ctx, story)] == [
        ("generate", "succeeded"),
        ("elaborate", "succeeded"),
    ]
    assert ctx.store.lease(story) is None


def test_the_review_loop_cap_blocks_the_story(workspace: Workspace) -> None:
    scenario(workspace, {**ZERO, "phases": {"review": {"reviewers": {"security": "FAIL"}}}})
    configure(workspace, {"scenario": "scenario.yaml", "review_loop_cap": 2})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    assert drive(ctx, story, env(ctx)) is Status.BLOCKED
    shown = ctx.story(story)
    assert shown.review_iterations == 2 and shown.blocked_from is Status.CODE_REVIEW_FAILED
    assert "review loop cap: 2 failed code reviews" in (shown.blocked_reason or "")
    assert [r["phase"] for r in runs_of(ctx, story)].count("review") == 2


# ---- budgets during runs ----------------------------------------------------------------------


def _hard_gated_at_implement(
    workspace: Workspace, implement: dict[str, Any]
) -> tuple[Context, RunEnv, str]:
    """A hard_gate story (implementation hard limit 10,000) run up to its implement phase,
    whose scripted step is ``implement``."""
    scenario(workspace, {**ZERO, "phases": {"implement": implement}})
    configure(
        workspace,
        {"scenario": "scenario.yaml"},
        budgets={"implementation": {"estimate": 1000, "warning": 5000, "hard": 10000}},
    )
    ctx = workspace.ctx()
    from storyflow.domain.budgets import Enforcement

    (story,) = epic_with(ctx, 1, enforcement=Enforcement.HARD_GATE)
    run_env = env(ctx)
    for _ in range(3):
        run_story(ctx, run_env, story)  # generate, elaborate, plan
    return ctx, run_env, story


def test_hard_gate_stops_a_running_agent(workspace: Workspace) -> None:
    ctx, run_env, story = _hard_gated_at_implement(
        workspace, {"delay": 5, "stream": True, "usage": {"input": 100000}}
    )
    began = time.monotonic()
    outcome = run_story(ctx, run_env, story)
    assert time.monotonic() - began < 4  # stopped long before its 5 s of work
    assert outcome.status == "blocked" and outcome.error_code == "BUDGET_HARD_LIMIT"
    assert "hard_gate" in (ctx.story(story).blocked_reason or "")
    assert (outcome.message or "").endswith("; the agent was stopped")
    row = runs_of(ctx, story)[-1]
    assert (row["phase"], row["status"], row["error_code"]) == (
        "implement",
        "failed",
        "BUDGET_HARD_LIMIT",
    )
    spent = [e for e in ledger_rows(ctx, story) if e["run_id"] == row["id"]]
    assert len(spent) == 1 and 10000 <= spent[0]["total_tokens"] < 100000
    stops = [e for e in ctx.store.recent_events(story, 50) if e["type"] == "budget"]
    assert any(e["payload"].get("action") == "stopped" for e in stops)


def test_hard_gate_on_usage_reported_at_the_end_does_not_say_it_stopped_the_agent(
    workspace: Workspace,
) -> None:
    """An agent that reports its usage only in its final result has finished when the hard
    limit is seen: its output is not taken, and the reason does not claim it was stopped."""
    ctx, run_env, story = _hard_gated_at_implement(workspace, {"usage": {"input": 100000}})
    outcome = run_story(ctx, run_env, story)
    assert outcome.status == "blocked" and outcome.error_code == "BUDGET_HARD_LIMIT"
    assert (outcome.message or "").endswith(
        "; the agent had already finished: its output is not taken"
    )
    assert "was stopped" not in (ctx.story(story).blocked_reason or "")


# ---- parallel reviewers -----------------------------------------------------------------------


def test_later_reviews_rerun_only_failed_reviewers_plus_typecheck_and_build(
    workspace: Workspace,
) -> None:
    scenario(
        workspace,
        {
            **ZERO,
            "rules": [
                {
                    "phase": "review",
                    "iteration": 1,
                    "reviewers": {"security": "FAIL", "lint": "FAIL"},
                },
            ],
        },
    )
    configure(workspace, {"scenario": "scenario.yaml"})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    run_env, agent = counting_env(ctx)
    assert drive(ctx, story, run_env) is Status.COMPLETED
    reviewers = [r for p, r in agent.calls if p == "review"]
    first, second = reviewers[:6], reviewers[6:]
    assert sorted(first) == sorted(["lint", "style", "syntax", "security", "typecheck", "build"])
    assert sorted(second) == ["build", "lint", "security", "typecheck"]
    review = [r for r in runs_of(ctx, story) if r["phase"] == "review"]
    assert [r["verdict"] for r in review] == ["FAIL", "PASS"]
    assert review[1]["outcome"]["reviewers"]["style"] == "PASS"  # carried over
    # The ledger notes name whose tokens each review's entry holds: those that ran.
    notes = [e.note for e in ctx.store.ledger(story) if e.phase.value == "code_review"]
    assert notes == [
        "review attempt 1 (reviewers: build, lint, security, style, syntax, typecheck)",
        "review attempt 1 (reviewers: build, lint, security, typecheck)",
    ]


@pytest.mark.parametrize(
    ("policy", "verdict"),
    [
        ({}, "FAIL"),
        (
            {"required": ["lint", "style", "syntax", "security", "typecheck"], "allow_timeouts": 1},
            "PASS",
        ),
    ],
    ids=["timeout-fails", "timeout-allowed"],
)
def test_a_reviewer_timeout_counts_as_failure_unless_allowed(
    workspace: Workspace, policy: dict[str, Any], verdict: str
) -> None:
    scenario(workspace, {**ZERO, "phases": {"review": {"reviewers": {"build": "timeout"}}}})
    configure(workspace, {"scenario": "scenario.yaml", "reviewers": policy})
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    run_env = env(ctx)
    for _ in range(5):
        outcome = run_story(ctx, run_env, story)
    assert outcome.phase == "review" and outcome.verdict == verdict


@pytest.mark.parametrize(
    "step",
    [
        {"delay": float("inf")},
        {"delay": float("nan")},
        {"coverage": float("nan")},
        {"coverage": 101},
    ],
    ids=["delay inf", "delay nan", "coverage nan", "coverage 101"],
)
def test_a_scenario_number_outside_its_range_is_refused(step: dict[str, float]) -> None:
    """NaN passed the old `value < 0` check: a NaN coverage compared with the threshold
    passes every review, an infinite delay never ends."""
    from storyflow.adapters.agents.scenario import parse_scenario
    from storyflow.errors import InvalidInput

    with pytest.raises(InvalidInput) as error:
        parse_scenario({**ZERO, "phases": {"review": step}}, "scenario.yaml")
    assert error.value.code == "CONFIG_INVALID"
    assert next(iter(step)) in error.value.message


def test_a_worker_passes_on_the_warnings_of_a_turn_that_ran_no_phase(
    workspace: Workspace,
) -> None:
    """Warnings left by a turn with nothing to claim reach the observer when the worker
    stops; budget figures are left out (the run's crossing lines say them)."""
    from storyflow.services.run_report import NullObserver

    class Heard(NullObserver):
        def __init__(self) -> None:
            self.warnings: list[str] = []

        def on_warning(self, message: str) -> None:
            self.warnings.append(message)

    configure(workspace)
    ctx = workspace.ctx()
    epic_with(ctx, 0)
    heard = Heard()
    ctx.warn("FLOW-001: a warning of the worker's own")
    ctx.warn("FLOW-001: plan has used 9,000 tokens", budget=True)
    work_loop(ctx, env(ctx, observer=heard), epic="FLOW", until_idle=True)
    assert heard.warnings == ["FLOW-001: a warning of the worker's own"]
    assert ctx.warnings == [] and ctx.budget_warnings == []
