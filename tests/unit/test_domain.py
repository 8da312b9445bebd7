"""The pure rules: statuses, the edge table's validation, budgets, gates and layouts."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from typing import Any

import pytest

from storyflow.domain import gates
from storyflow.domain.artifacts import ArtifactKind, Verdict
from storyflow.domain.budgets import (
    DEFAULT_BUDGETS,
    BudgetAction,
    BudgetPhase,
    BudgetState,
    Enforcement,
    PhaseBudget,
    crossing,
    evaluate,
    parse_enforcement,
    parse_phase,
    resolve_budgets,
)
from storyflow.domain.layouts import (
    LAYOUTS,
    STAGE_OF_STATUS,
    LayoutName,
    default_root,
    legacy_kind,
    stage_for,
)
from storyflow.domain.statuses import (
    LEGACY_STATUS_NAMES,
    NON_TERMINAL,
    TERMINAL,
    Status,
    parse_status,
)
from storyflow.domain.transitions import EDGES, Edge, Evidence, Guard, validate_machine
from storyflow.errors import InvalidInput

S = Status

# ---- statuses -----------------------------------------------------------------------------

DESIGN_STATUSES = [
    "pending",
    "generated",
    "in-elaboration",
    "needs-refinement",
    "needs-split",
    "ready-to-work",
    "in-progress",
    "ready-for-code-review",
    "code-review-failed",
    "ready-for-qa",
    "in-qa",
    "needs-work",
    "uat",
    "completed",
    "blocked",
    "cancelled",
    "superseded",
]


def test_seventeen_statuses_with_the_design_spelling() -> None:
    assert len(Status) == 17
    assert [s.value for s in Status] == DESIGN_STATUSES


def test_terminal_statuses() -> None:
    assert {S.COMPLETED, S.CANCELLED, S.SUPERSEDED} == TERMINAL
    assert set(NON_TERMINAL) == set(Status) - TERMINAL
    assert len(NON_TERMINAL) == 14


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_canonical_names_parse_without_warning(status: Status) -> None:
    assert parse_status(status.value) == (status, None)


@pytest.mark.parametrize("name", sorted(LEGACY_STATUS_NAMES))
def test_every_legacy_name_maps_with_a_warning(name: str) -> None:
    status, warning = parse_status(name)
    assert status is LEGACY_STATUS_NAMES[name]
    assert warning is not None
    assert name in warning and status.value in warning


def test_legacy_names_in_other_spellings_map_too() -> None:
    assert parse_status("Ready_For_Dev")[0] is S.READY_TO_WORK
    assert parse_status("  DONE ")[0] is S.COMPLETED
    assert parse_status("wont do")[0] is S.CANCELLED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("in_progress", S.IN_PROGRESS),
        ("IN-PROGRESS", S.IN_PROGRESS),
        ("Ready_For_Code_Review", S.READY_FOR_CODE_REVIEW),
        (" uat ", S.UAT),
        ("needs split", S.NEEDS_SPLIT),
    ],
)
def test_underscores_case_and_spaces_normalise_with_a_warning(text: str, expected: Status) -> None:
    status, warning = parse_status(text)
    assert status is expected
    assert warning is not None
    assert repr(text) in warning and expected.value in warning


@pytest.mark.parametrize("text", ["", "finished-ish", "in progress now", "bogus"])
def test_unknown_status_is_invalid_status(text: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_status(text)
    assert error.value.code == "INVALID_STATUS"
    assert error.value.exit_status == 7
    assert error.value.details == {"value": text}
    assert "in-progress" in (error.value.hint or "")


def test_no_legacy_name_shadows_a_canonical_status() -> None:
    assert not set(LEGACY_STATUS_NAMES) & {s.value for s in Status}


# ---- the edge table -----------------------------------------------------------------------


def _edge(source: Status, target: Status, **kwargs: object) -> Edge:
    return Edge(source=source, target=target, trigger="t", **kwargs)  # type: ignore[arg-type]


def _minimal_machine() -> list[Edge]:
    """A small valid table: a chain through the non-terminal statuses, each of which can be
    cancelled, and blocked (the chain's end) leading to completed and superseded."""
    chain = list(NON_TERMINAL)
    edges = [_edge(a, b) for a, b in itertools.pairwise(chain)]
    edges += [_edge(s, S.CANCELLED) for s in NON_TERMINAL]
    edges += [_edge(chain[-1], S.COMPLETED), _edge(chain[-1], S.SUPERSEDED)]
    return edges


def test_the_real_table_validates_and_indexes_every_edge() -> None:
    index = validate_machine(EDGES)
    assert len(index) == len(EDGES)
    assert all(index[e.key] is e for e in EDGES)


def test_a_minimal_table_validates() -> None:
    edges = _minimal_machine()
    assert len(validate_machine(tuple(edges))) == len(edges)


def test_duplicate_edge_is_rejected() -> None:
    edges = [*_minimal_machine(), _edge(S.PENDING, S.GENERATED)]
    with pytest.raises(ValueError, match="duplicate edge pending -> generated"):
        validate_machine(tuple(edges))


def test_edge_out_of_a_terminal_status_is_rejected() -> None:
    for terminal in TERMINAL:
        edges = [*_minimal_machine(), _edge(terminal, S.IN_PROGRESS)]
        with pytest.raises(ValueError, match=f"edge out of terminal status {terminal}"):
            validate_machine(tuple(edges))


def test_self_edge_is_rejected() -> None:
    edges = [*_minimal_machine(), _edge(S.UAT, S.UAT)]
    with pytest.raises(ValueError, match="self edge on uat"):
        validate_machine(tuple(edges))


def test_trap_state_is_rejected() -> None:
    # needs-work keeps its incoming edge but loses every way out.
    edges = [e for e in _minimal_machine() if e.source is not S.NEEDS_WORK]
    with pytest.raises(ValueError, match="trap state needs-work"):
        validate_machine(tuple(edges))


def test_unreachable_status_is_rejected() -> None:
    edges = [e for e in _minimal_machine() if e.target is not S.SUPERSEDED]
    with pytest.raises(ValueError, match="unreachable statuses") as error:
        validate_machine(tuple(edges))
    assert "superseded" in str(error.value)
    # A non-terminal status nobody leads to is just as unreachable.
    edges = [e for e in _minimal_machine() if e.target is not S.UAT]
    edges.append(_edge(S.NEEDS_WORK, S.BLOCKED))
    with pytest.raises(ValueError, match="unreachable statuses") as error:
        validate_machine(tuple(edges))
    assert "uat" in str(error.value)


def test_loop_with_no_way_to_a_terminal_status_is_rejected() -> None:
    loop = {S.NEEDS_WORK, S.UAT}
    edges = [e for e in _minimal_machine() if e.source not in loop]
    edges += [
        _edge(S.NEEDS_WORK, S.UAT),
        _edge(S.UAT, S.NEEDS_WORK),
        _edge(S.IN_QA, S.BLOCKED),  # blocked was reached through uat
    ]
    with pytest.raises(ValueError, match="no terminal status reachable from needs-work"):
        validate_machine(tuple(edges))


def test_evidence_without_the_evidence_guard_is_rejected() -> None:
    spec = Evidence(kind=ArtifactKind.PLAN, anchor=S.GENERATED)
    edges = _minimal_machine()
    edges[0] = _edge(S.PENDING, S.GENERATED, evidence=spec)
    with pytest.raises(ValueError, match="evidence and guards disagree"):
        validate_machine(tuple(edges))
    edges[0] = _edge(S.PENDING, S.GENERATED, guards=(Guard.EVIDENCE,))
    with pytest.raises(ValueError, match="evidence and guards disagree"):
        validate_machine(tuple(edges))


# ---- budgets ------------------------------------------------------------------------------

LIMITS = PhaseBudget(estimate=50, warning=100, hard=200)
# used -> state, with the boundaries on both sides of each limit.
USAGE = {0: "ok", 99: "ok", 100: "warning", 199: "warning", 200: "over", 10_000: "over"}
EXPECTED_ACTION = {
    (Enforcement.ADVISORY, "ok"): BudgetAction.NONE,
    (Enforcement.ADVISORY, "warning"): BudgetAction.NONE,
    (Enforcement.ADVISORY, "over"): BudgetAction.NONE,
    (Enforcement.WARNING, "ok"): BudgetAction.NONE,
    (Enforcement.WARNING, "warning"): BudgetAction.WARN,
    (Enforcement.WARNING, "over"): BudgetAction.WARN,
    (Enforcement.SOFT_GATE, "ok"): BudgetAction.NONE,
    (Enforcement.SOFT_GATE, "warning"): BudgetAction.WARN,
    (Enforcement.SOFT_GATE, "over"): BudgetAction.CONFIRM,
    (Enforcement.HARD_GATE, "ok"): BudgetAction.NONE,
    (Enforcement.HARD_GATE, "warning"): BudgetAction.WARN,
    (Enforcement.HARD_GATE, "over"): BudgetAction.REFUSE,
}


@pytest.mark.parametrize("level", list(Enforcement), ids=str)
@pytest.mark.parametrize("used", list(USAGE))
def test_evaluate_each_level_in_each_state(level: Enforcement, used: int) -> None:
    decision = evaluate(phase=BudgetPhase.ELABORATION, level=level, used=used, limits=LIMITS)
    assert decision.state is BudgetState(USAGE[used])
    assert decision.action is EXPECTED_ACTION[(level, USAGE[used])]
    assert decision.phase is BudgetPhase.ELABORATION
    assert decision.level is level
    assert decision.used == used
    assert decision.limits == LIMITS


def test_advisory_never_acts() -> None:
    for used in (0, 10**9):
        decision = evaluate(
            phase=BudgetPhase.IMPLEMENTATION, level=Enforcement.ADVISORY, used=used, limits=LIMITS
        )
        assert decision.action is BudgetAction.NONE


@pytest.mark.parametrize("level", list(Enforcement), ids=str)
def test_a_crossing_is_the_first_entry_at_or_past_a_limit(level: Enforcement) -> None:
    def crossed(before: int, after: int) -> str | None:
        decision = crossing(
            phase=BudgetPhase.ELABORATION, level=level, limits=LIMITS, before=before, after=after
        )
        return None if decision is None else decision.state.value

    cases = {
        (0, 99): None,
        (0, 100): "warning",  # at the limit is past it, as evaluate() says
        (99, 150): "warning",
        (100, 150): None,  # already past: not crossed again
        (150, 200): "over",
        (0, 10_000): "over",  # both at once: the hard one
        (200, 10_000): None,
        (150, 150): None,
    }
    for (before, after), state in cases.items():
        expected = None if level is Enforcement.ADVISORY else state  # advisory records only
        assert crossed(before, after) == expected, (level, before, after)


def test_budget_percentages() -> None:
    decision = evaluate(
        phase=BudgetPhase.CODE_REVIEW, level=Enforcement.WARNING, used=150, limits=LIMITS
    )
    assert decision.warning_pct == 150.0
    assert decision.hard_pct == 75.0


def test_phase_budget_scaled() -> None:
    base = PhaseBudget(estimate=5_000, warning=50_000, hard=100_000)
    assert base.scaled(1.5) == PhaseBudget(estimate=7_500, warning=75_000, hard=150_000)
    assert base.scaled(1.0) == base
    assert base.scaled(0.5) == PhaseBudget(estimate=2_500, warning=25_000, hard=50_000)
    # Rounded to whole tokens; the original is unchanged (frozen value object).
    assert PhaseBudget(estimate=3, warning=5, hard=7).scaled(1.5) == PhaseBudget(
        estimate=round(4.5), warning=round(7.5), hard=round(10.5)
    )
    assert base == PhaseBudget(estimate=5_000, warning=50_000, hard=100_000)


def test_default_budgets_are_the_revi_limits() -> None:
    limits = {p: (b.warning, b.hard) for p, b in DEFAULT_BUDGETS.items()}
    assert limits == {
        BudgetPhase.STORY_GENERATION: (50_000, 100_000),
        BudgetPhase.ELABORATION: (30_000, 60_000),
        BudgetPhase.IMPLEMENTATION: (200_000, 500_000),
        BudgetPhase.CODE_REVIEW: (50_000, 100_000),
        BudgetPhase.QA_VERIFICATION: (50_000, 100_000),
    }
    override = PhaseBudget(estimate=1, warning=2, hard=3)
    merged = resolve_budgets({BudgetPhase.CODE_REVIEW: override})
    assert merged[BudgetPhase.CODE_REVIEW] == override
    assert merged[BudgetPhase.ELABORATION] == DEFAULT_BUDGETS[BudgetPhase.ELABORATION]


def test_phase_and_enforcement_names() -> None:
    assert parse_phase("pm_story") is BudgetPhase.STORY_GENERATION
    assert parse_phase("dev_implementation") is BudgetPhase.IMPLEMENTATION
    assert parse_phase("code-review") is BudgetPhase.CODE_REVIEW
    with pytest.raises(InvalidInput) as error:
        parse_phase("lunch")
    assert error.value.code == "UNKNOWN_PHASE"
    assert parse_enforcement("soft-gate") is Enforcement.SOFT_GATE
    assert parse_enforcement(" HARD_GATE ") is Enforcement.HARD_GATE
    with pytest.raises(InvalidInput):
        parse_enforcement("loud")


# ---- gates: the QA gate -------------------------------------------------------------------

TODAY = date(2025, 6, 15)


def _gate(
    decision: str, checks: list[dict[str, Any]], issues: list[dict[str, str]]
) -> dict[str, Any]:
    return {"decision": decision, "checks": checks, "issues": issues}


PASSING_CHECK = {"name": "tests", "status": "pass"}
FAILING_CHECK = {"name": "tests", "status": "fail"}


@pytest.mark.parametrize(
    ("checks", "issues", "expected"),
    [
        ([PASSING_CHECK], [], Verdict.PASS),
        ([], [], Verdict.PASS),
        ([FAILING_CHECK], [], Verdict.FAIL),
        ([{**FAILING_CHECK, "required": True}], [], Verdict.FAIL),
        ([PASSING_CHECK], [{"severity": "high", "description": "x"}], Verdict.FAIL),
        ([PASSING_CHECK], [{"severity": "medium", "description": "x"}], Verdict.CONCERNS),
        ([PASSING_CHECK], [{"severity": "low", "description": "x"}], Verdict.PASS),
        (
            [FAILING_CHECK],
            [{"severity": "medium", "description": "x"}],
            Verdict.FAIL,
        ),
        ([{**FAILING_CHECK, "required": False}], [], Verdict.PASS),
        (
            [{**FAILING_CHECK, "required": False}],
            [{"severity": "medium", "description": "x"}],
            Verdict.CONCERNS,
        ),
        ([{"name": "e2e", "status": "skip"}], [], Verdict.PASS),
    ],
)
def test_computed_gate_decision(
    checks: list[dict[str, Any]], issues: list[dict[str, str]], expected: Verdict
) -> None:
    assert gates.computed_gate_decision(_gate("PASS", checks, issues)) is expected


def test_gate_that_agrees_with_its_evidence_has_no_contradiction() -> None:
    assert gates.gate_contradictions(_gate("PASS", [PASSING_CHECK], []), TODAY) == []
    assert gates.gate_contradictions(_gate("FAIL", [FAILING_CHECK], []), TODAY) == []
    medium = [{"severity": "medium", "description": "docs"}]
    assert gates.gate_contradictions(_gate("CONCERNS", [PASSING_CHECK], medium), TODAY) == []


@pytest.mark.parametrize(
    ("decision", "checks", "issues", "computed"),
    [
        ("PASS", [FAILING_CHECK], [], "FAIL"),
        ("PASS", [PASSING_CHECK], [{"severity": "high", "description": "x"}], "FAIL"),
        ("PASS", [PASSING_CHECK], [{"severity": "medium", "description": "x"}], "CONCERNS"),
        ("CONCERNS", [PASSING_CHECK], [], "PASS"),
        ("FAIL", [PASSING_CHECK], [], "PASS"),
        ("CONCERNS", [FAILING_CHECK], [], "FAIL"),
    ],
)
def test_gate_that_disagrees_with_its_evidence(
    decision: str, checks: list[dict[str, Any]], issues: list[dict[str, str]], computed: str
) -> None:
    problems = gates.gate_contradictions(_gate(decision, checks, issues), TODAY)
    assert len(problems) == 1
    assert decision in problems[0] and computed in problems[0]


def _waived(waiver: object, checks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    content = _gate("WAIVED", checks if checks is not None else [FAILING_CHECK], [])
    if waiver is not None:
        content["waiver"] = waiver
    return content


WAIVER = {"reason": "flaky upstream", "approver": "qa-lead", "expires": "2025-07-01"}


def test_waiver_with_reason_approver_and_unexpired_date_is_accepted() -> None:
    assert gates.gate_contradictions(_waived(WAIVER), TODAY) == []
    # The expiry day itself still counts; a date object works as well as a string.
    assert gates.gate_contradictions(_waived({**WAIVER, "expires": "2025-06-15"}), TODAY) == []
    assert gates.gate_contradictions(_waived({**WAIVER, "expires": date(2025, 6, 15)}), TODAY) == []
    # CONCERNS evidence can be waived too.
    concerns = _gate("WAIVED", [PASSING_CHECK], [{"severity": "medium", "description": "d"}])
    assert gates.gate_contradictions({**concerns, "waiver": WAIVER}, TODAY) == []


def test_waiver_is_required() -> None:
    problems = gates.gate_contradictions(_waived(None), TODAY)
    assert problems == ["WAIVED needs a waiver with reason, approver and expires"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"reason": ""}, "waiver needs reason"),
        ({"reason": None}, "waiver needs reason"),
        ({"approver": ""}, "waiver needs approver"),
        ({"expires": None}, "waiver needs an expires date"),
        ({"expires": "2025-06-14"}, "waiver expired on 2025-06-14"),
    ],
)
def test_incomplete_or_expired_waiver(change: dict[str, Any], problem: str) -> None:
    assert gates.gate_contradictions(_waived({**WAIVER, **change}), TODAY) == [problem]


def test_waiver_missing_keys_lists_every_problem() -> None:
    problems = gates.gate_contradictions(_waived({}), TODAY)
    assert problems == [
        "waiver needs reason",
        "waiver needs approver",
        "waiver needs an expires date",
    ]


def test_nothing_to_waive_when_the_evidence_passes() -> None:
    problems = gates.gate_contradictions(_waived(WAIVER, checks=[PASSING_CHECK]), TODAY)
    assert len(problems) == 1
    assert "nothing to waive" in problems[0]
    # A failed check that is not required does not make anything to waive either.
    optional = [{**FAILING_CHECK, "required": False}]
    assert "nothing to waive" in gates.gate_contradictions(_waived(WAIVER, optional), TODAY)[0]


# ---- gates: code review, verification, proof ----------------------------------------------


def _review(verdict: str, coverage: float | None, *severities: str) -> dict[str, Any]:
    return {
        "verdict": verdict,
        "coverage": coverage,
        "findings": [{"severity": s, "message": "m"} for s in severities],
    }


def test_review_pass_at_or_above_threshold_is_consistent() -> None:
    assert gates.review_contradictions(_review("PASS", 45, "medium", "low"), 45) == []
    assert gates.review_contradictions(_review("PASS", 100), 45) == []


def test_review_pass_below_threshold() -> None:
    problems = gates.review_contradictions(_review("PASS", 44.9), 45)
    assert len(problems) == 1
    assert "44.9" in problems[0] and "45" in problems[0]


def test_review_pass_needs_coverage() -> None:
    assert gates.review_contradictions(_review("PASS", None), 45) == [
        "a PASS review must state coverage"
    ]


@pytest.mark.parametrize("severity", ["high", "critical"])
def test_review_pass_with_a_blocking_finding(severity: str) -> None:
    problems = gates.review_contradictions(_review("PASS", 90, severity, "low"), 45)
    assert problems == ["PASS with 1 critical/high finding(s)"]


def test_review_pass_below_threshold_and_with_high_finding_lists_both() -> None:
    assert len(gates.review_contradictions(_review("PASS", 10, "high"), 45)) == 2


def test_review_fail_needs_a_finding() -> None:
    assert gates.review_contradictions(_review("FAIL", 90), 45) == [
        "a FAIL review must list the finding that fails it"
    ]
    assert gates.review_contradictions(_review("FAIL", 90, "low"), 45) == []
    # Coverage below the threshold is itself a reason to fail.
    assert gates.review_contradictions(_review("FAIL", 30), 45) == []


def _verification(verdict: str, **extra: object) -> dict[str, Any]:
    data: dict[str, Any] = {
        "verdict": verdict,
        "acceptance_criteria": [{"criterion": "works", "status": "pass"}],
        "tests": {"unit": "pass", "e2e": "not_run"},
        "scenarios": [],
        "regressions": [],
    }
    data.update(extra)
    return data


def test_verification_pass_with_all_passing_is_consistent() -> None:
    assert gates.verification_contradictions(_verification("PASS")) == []


@pytest.mark.parametrize(
    ("extra", "mentions"),
    [
        ({"acceptance_criteria": [{"criterion": "works", "status": "fail"}]}, "works"),
        ({"tests": {"unit": "fail", "e2e": "pass"}}, "unit"),
        ({"scenarios": [{"name": "graph-a", "status": "fail"}]}, "graph-a"),
        ({"regressions": ["login broke"]}, "1 regression"),
    ],
)
def test_verification_pass_with_a_failure(extra: dict[str, Any], mentions: str) -> None:
    problems = gates.verification_contradictions(_verification("PASS", **extra))
    assert len(problems) == 1
    assert problems[0].startswith("PASS while") and mentions in problems[0]
    # The same evidence makes a consistent FAIL.
    assert gates.verification_contradictions(_verification("FAIL", **extra)) == []


def test_verification_fail_needs_a_failure() -> None:
    assert gates.verification_contradictions(_verification("FAIL")) == [
        "a FAIL verification must record the criterion, test or scenario that fails"
    ]


def test_passing_scenarios_need_evidence() -> None:
    content = _verification(
        "PASS",
        scenarios=[
            {"name": "a", "status": "pass", "evidence": "run 12"},
            {"name": "b", "status": "pass", "evidence": ""},
            {"name": "c", "status": "fail", "evidence": "run 13"},
        ],
    )
    assert gates.passing_scenarios(content) == ["a"]


@pytest.mark.parametrize(
    ("reuse", "ok"),
    [
        ("Reused @repo/shared for the client.", True),
        ({"packages_used": ["@repo/shared"]}, True),
        ({"packages_used": [], "justification": "nothing fits: new protocol"}, True),
        ("   ", False),
        ({"packages_used": [], "justification": " "}, False),
        ({}, False),
        (None, False),
    ],
)
def test_reuse_problems(reuse: object, ok: bool) -> None:
    content = {} if reuse is None else {"reuse_verification": reuse}
    problems = gates.reuse_problems(content)
    assert (problems == []) is ok
    if not ok:
        assert len(problems) == 1 and "Reuse Verification" in problems[0]


def test_failing_checks() -> None:
    passing = {"checks": {"lint": "pass", "typecheck": "pass", "tests": "pass"}}
    assert gates.failing_checks(passing) == []
    assert gates.failing_checks({"checks": {"lint": "fail", "tests": "pass"}}) == [
        "lint is fail",
        "typecheck is not recorded",
    ]
    assert gates.failing_checks({}) == [
        "lint is not recorded",
        "typecheck is not recorded",
        "tests is not recorded",
    ]
    assert gates.failing_checks({"checks": {"lint": "pass", "typecheck": "pass"}}) == [
        "tests is not recorded"
    ]
    not_run = {"checks": {"lint": "pass", "typecheck": "pass", "tests": "not_run"}}
    assert gates.failing_checks(not_run) == ["tests is not_run"]


def test_contradictions_dispatch_by_kind() -> None:
    def check(kind: ArtifactKind, content: dict[str, Any]) -> list[str]:
        return gates.contradictions(kind, content, threshold=45, today=TODAY)

    assert check(ArtifactKind.CODE_REVIEW, _review("PASS", 10)) != []
    assert check(ArtifactKind.VERIFICATION, _verification("FAIL")) != []
    assert check(ArtifactKind.QA_GATE, _gate("PASS", [FAILING_CHECK], [])) != []
    assert check(ArtifactKind.ELABORATION, {"verdict": "CONDITIONAL_PASS"}) == [
        "CONDITIONAL_PASS must list its conditions"
    ]
    assert (
        check(ArtifactKind.ELABORATION, {"verdict": "CONDITIONAL_PASS", "conditions": ["x"]}) == []
    )
    assert check(ArtifactKind.PLAN, {"approach": "a"}) == []


# ---- layouts ------------------------------------------------------------------------------

AT = datetime(2025, 1, 2, 3, 4)
STAGED = LAYOUTS[LayoutName.STAGED]
FLAT = LAYOUTS[LayoutName.FLAT]

STAGED_NAMES = {
    ArtifactKind.STORY: "story.yaml",
    ArtifactKind.ELABORATION: "elaboration.yaml",
    ArtifactKind.PLAN: "plan.yaml",
    ArtifactKind.PROOF: "proof.yaml",
    ArtifactKind.CODE_REVIEW: "code-review.yaml",
    ArtifactKind.VERIFICATION: "verification.yaml",
    ArtifactKind.QA_GATE: "qa-gate.yaml",
}
FLAT_NAMES = {
    ArtifactKind.STORY: "REVI-007.md",
    ArtifactKind.ELABORATION: "ELAB-REVI-007-20250102-0304.md",
    ArtifactKind.PLAN: "PLAN-REVI-007-20250102-0304.md",
    ArtifactKind.PROOF: "PROOF-REVI-007-20250102-0304.md",
    ArtifactKind.CODE_REVIEW: "CODE-REVIEW-REVI-007-20250102-0304.md",
    ArtifactKind.VERIFICATION: "QA-VERIFY-REVI-007-20250102-0304.md",
    ArtifactKind.QA_GATE: "QA-GATE-REVI-007.yaml",
}


@pytest.mark.parametrize("kind", list(ArtifactKind), ids=str)
def test_staged_names(kind: ArtifactKind) -> None:
    name = STAGED.artifact_file_name(kind, "FLOW-001", AT)
    assert name == STAGED_NAMES[kind]
    assert STAGED.match(name, "FLOW-001") is kind
    assert STAGED.stamp_of(name, "FLOW-001") is None
    assert not STAGED.is_timestamped(kind)


@pytest.mark.parametrize("kind", list(ArtifactKind), ids=str)
def test_flat_names(kind: ArtifactKind) -> None:
    name = FLAT.artifact_file_name(kind, "REVI-007", AT)
    assert name == FLAT_NAMES[kind]
    assert FLAT.match(name, "REVI-007") is kind
    stamped = kind not in (ArtifactKind.STORY, ArtifactKind.QA_GATE)
    assert FLAT.is_timestamped(kind) is stamped
    assert FLAT.stamp_of(name, "REVI-007") == ("20250102-0304" if stamped else None)


def test_layout_story_file_names_and_staging() -> None:
    assert STAGED.story_file_name("FLOW-001") == "story.yaml"
    assert FLAT.story_file_name("REVI-007") == "REVI-007.md"
    assert STAGED.staged and not FLAT.staged


@pytest.mark.parametrize(
    "name",
    [
        "ELAB-REVI-008-20250102-0304.md",  # another story
        "ELAB-REVI-007-2025010-0304.md",  # a malformed stamp
        "ELAB-REVI-007-20250102-0304.yaml",  # the wrong extension
        "elab-REVI-007-20250102-0304.md",  # the wrong case
        "REVI-008.md",
        "notes.md",
        "QA-GATE-REVI-007.yml",
    ],
)
def test_flat_match_refuses_names_that_do_not_follow_the_convention(name: str) -> None:
    assert FLAT.match(name, "REVI-007") is None
    assert FLAT.stamp_of(name, "REVI-007") is None


def test_staged_match_refuses_other_names() -> None:
    for name in ("REVIEW.yaml", "story.yml", "Elaboration.yaml", "proof.md"):
        assert STAGED.match(name, "FLOW-001") is None


def test_flat_match_does_not_treat_the_story_id_as_a_pattern() -> None:
    # A dot-free ID is safe, but the regex must escape everything around the stamp.
    assert FLAT.match("PROOF-REVI-007-20250102-0304.md", "REVI-007") is ArtifactKind.PROOF
    assert FLAT.match("PROOF-REVI-007-20250102-0304xmd", "REVI-007") is None


REVIEW = ArtifactKind.CODE_REVIEW


def test_a_second_version_in_the_same_minute_gets_a_name_of_its_own() -> None:
    def new(*existing: str) -> str:
        return FLAT.new_artifact_file_name(REVIEW, "REVI-007", AT, existing)

    plain = "CODE-REVIEW-REVI-007-20250102-0304.md"
    assert new() == plain
    assert new(plain) == "CODE-REVIEW-REVI-007-20250102-0304-2.md"
    assert new(plain, "CODE-REVIEW-REVI-007-20250102-0304-2.md") == (
        "CODE-REVIEW-REVI-007-20250102-0304-3.md"
    )
    # past the highest serial of the minute, so the new file still sorts last
    assert new("CODE-REVIEW-REVI-007-20250102-0304-9.md") == (
        "CODE-REVIEW-REVI-007-20250102-0304-10.md"
    )
    # other minutes, kinds and stories do not count
    others = (
        "CODE-REVIEW-REVI-007-20250102-0303.md",
        "PROOF-REVI-007-20250102-0304.md",
        "CODE-REVIEW-REVI-008-20250102-0304.md",
        "REVI-007.md",
    )
    assert new(*others) == plain
    for name in (new(plain), new("CODE-REVIEW-REVI-007-20250102-0304-9.md")):
        assert FLAT.match(name, "REVI-007") is REVIEW


def test_fixed_names_are_reused_by_every_version() -> None:
    taken = ("QA-GATE-REVI-007.yaml",)
    gate = FLAT.new_artifact_file_name(ArtifactKind.QA_GATE, "REVI-007", AT, taken)
    assert gate == "QA-GATE-REVI-007.yaml"
    staged = STAGED.new_artifact_file_name(REVIEW, "FLOW-001", AT, ("code-review.yaml",))
    assert staged == "code-review.yaml"


def test_stamped_names_sort_in_the_order_they_were_written() -> None:
    written = [
        "CODE-REVIEW-REVI-007-20250102-0259-3.md",
        "CODE-REVIEW-REVI-007-20250102-0304.md",
        "CODE-REVIEW-REVI-007-20250102-0304-2.md",
        "CODE-REVIEW-REVI-007-20250102-0304-9.md",
        "CODE-REVIEW-REVI-007-20250102-0304-10.md",
        "CODE-REVIEW-REVI-007-20250102-0305.md",
    ]
    assert sorted(written) != written  # by the name alone, "-2.md" sorts before ".md"
    shuffled = list(reversed(written))
    assert sorted(shuffled, key=lambda n: FLAT.stamp_key(n, "REVI-007")) == written
    assert sorted(shuffled, key=lambda n: FLAT.written_order(REVIEW, n, "REVI-007")) == written
    assert FLAT.stamp_key(written[3], "REVI-007") == ("20250102-0304", 9)
    # kind by kind: a proof's files stay together, after the code review's
    proof = "PROOF-REVI-007-20250102-0300.md"
    files = [(ArtifactKind.PROOF, proof), *((REVIEW, n) for n in shuffled)]
    ordered = sorted(files, key=lambda f: FLAT.written_order(f[0], f[1], "REVI-007"))
    assert [n for _, n in ordered] == [*written, proof]


@pytest.mark.parametrize(
    ("status", "stage"),
    [
        (S.PENDING, "backlog"),
        (S.GENERATED, "backlog"),
        (S.NEEDS_REFINEMENT, "backlog"),
        (S.NEEDS_SPLIT, "backlog"),
        (S.IN_ELABORATION, "elaboration"),
        (S.READY_TO_WORK, "ready-to-work"),
        (S.IN_PROGRESS, "in-progress"),
        (S.READY_FOR_CODE_REVIEW, "in-progress"),
        (S.CODE_REVIEW_FAILED, "in-progress"),
        (S.NEEDS_WORK, "in-progress"),
        (S.READY_FOR_QA, "UAT"),
        (S.IN_QA, "UAT"),
        (S.UAT, "UAT"),
        (S.COMPLETED, "done"),
        (S.CANCELLED, "archive"),
        (S.SUPERSEDED, "archive"),
    ],
)
def test_stage_for_each_status(status: Status, stage: str) -> None:
    assert stage_for(status, None) == stage
    # blocked_from matters only for a blocked story.
    assert stage_for(status, S.UAT) == stage


def test_a_blocked_story_stays_in_the_stage_it_was_blocked_from() -> None:
    assert S.BLOCKED not in STAGE_OF_STATUS
    for source, stage in STAGE_OF_STATUS.items():
        assert stage_for(S.BLOCKED, source) == stage
    assert stage_for(S.BLOCKED, S.IN_QA) == "UAT"
    assert stage_for(S.BLOCKED, None) == "backlog"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("REVIEW.yaml", ArtifactKind.CODE_REVIEW),
        ("REVIEW.yml", ArtifactKind.CODE_REVIEW),
        ("CODE-REVIEW.yaml", ArtifactKind.CODE_REVIEW),
        ("code_review.yaml", ArtifactKind.CODE_REVIEW),
        ("EVIDENCE.yaml", ArtifactKind.PROOF),
        ("PROOF.yml", ArtifactKind.PROOF),
        ("PROOF-anything.md", ArtifactKind.PROOF),
        ("ELAB.yaml", ArtifactKind.ELABORATION),
        ("ELABORATION.yaml", ArtifactKind.ELABORATION),
        ("ELAB-X-1.md", ArtifactKind.ELABORATION),
        ("PLAN.yaml", ArtifactKind.PLAN),
        ("IMPLEMENTATION-PLAN.md", ArtifactKind.PLAN),
        ("VERIFICATION.yaml", ArtifactKind.VERIFICATION),
        ("QA-VERIFY-old.md", ArtifactKind.VERIFICATION),
        ("QA-GATE.yaml", ArtifactKind.QA_GATE),
        ("gate.yml", ArtifactKind.QA_GATE),
        ("qa_gate.yaml", ArtifactKind.QA_GATE),
    ],
)
def test_legacy_kind(name: str, kind: ArtifactKind) -> None:
    assert legacy_kind(name) is kind


@pytest.mark.parametrize(
    "name",
    ["README.md", "story.yaml", "REVIEW.yaml.bak", "xREVIEW.yaml", "PROOF-.md", "review.yaml"],
)
def test_legacy_kind_unknown_names(name: str) -> None:
    assert legacy_kind(name) is None


def test_default_roots() -> None:
    assert default_root(LayoutName.STAGED, "FLOW") == "plans/flow"
    assert default_root(LayoutName.FLAT, "REVI") == "plans/stories"


def test_the_phases_ahead_of_each_status_are_the_passing_path_to_completed() -> None:
    from storyflow.domain.phases import PHASE_OF_STATUS, PhaseName, phases_ahead

    names = {s: [p.name for p in phases_ahead(s) or ()] for s in Status}
    assert names[Status.PENDING] == [
        PhaseName.GENERATE,
        PhaseName.ELABORATE,
        PhaseName.PLAN,
        PhaseName.IMPLEMENT,
        PhaseName.REVIEW,
        PhaseName.VERIFY,
        PhaseName.GATE,
    ]
    assert names[Status.CODE_REVIEW_FAILED][:2] == [PhaseName.FIX, PhaseName.REVIEW]
    assert names[Status.UAT] == [PhaseName.GATE]
    # a split supersedes the story; blocked and terminal statuses run nothing
    for status in (Status.NEEDS_SPLIT, Status.BLOCKED, Status.COMPLETED, Status.SUPERSEDED):
        assert phases_ahead(status) is None
    for status in set(PHASE_OF_STATUS) - {Status.NEEDS_SPLIT}:
        assert names[status][-1] is PhaseName.GATE, status
