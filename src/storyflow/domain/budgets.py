"""Token budget phases, limits and the four enforcement levels (DESIGN §5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from storyflow.errors import InvalidInput

# The most tokens one ledger entry or one budget limit may count: far above any real phase,
# well within a BIGINT and exact as a float.
MAX_TOKENS = 10**12


class BudgetPhase(StrEnum):
    STORY_GENERATION = "story_generation"
    ELABORATION = "elaboration"
    IMPLEMENTATION = "implementation"
    CODE_REVIEW = "code_review"
    QA_VERIFICATION = "qa_verification"


class Enforcement(StrEnum):
    ADVISORY = "advisory"
    WARNING = "warning"
    SOFT_GATE = "soft_gate"
    HARD_GATE = "hard_gate"


class LedgerSource(StrEnum):
    REPORTED = "reported"
    MEASURED = "measured"
    ESTIMATED = "estimated"


# REVI calls the phases by the role that runs them; the run engine by the verb.
PHASE_ALIASES: dict[str, BudgetPhase] = {
    "pm_story": BudgetPhase.STORY_GENERATION,
    "generation": BudgetPhase.STORY_GENERATION,
    "generate": BudgetPhase.STORY_GENERATION,
    "refine": BudgetPhase.STORY_GENERATION,
    "split": BudgetPhase.STORY_GENERATION,
    "elaborate": BudgetPhase.ELABORATION,
    "elab": BudgetPhase.ELABORATION,
    "dev_implementation": BudgetPhase.IMPLEMENTATION,
    "development": BudgetPhase.IMPLEMENTATION,
    "implement": BudgetPhase.IMPLEMENTATION,
    "plan": BudgetPhase.IMPLEMENTATION,
    "fix": BudgetPhase.IMPLEMENTATION,
    "review": BudgetPhase.CODE_REVIEW,
    "qa": BudgetPhase.QA_VERIFICATION,
    "verify": BudgetPhase.QA_VERIFICATION,
    "verification": BudgetPhase.QA_VERIFICATION,
    "gate": BudgetPhase.QA_VERIFICATION,
    "qa_gate": BudgetPhase.QA_VERIFICATION,
}


@dataclass(frozen=True, kw_only=True)
class PhaseBudget:
    estimate: int
    warning: int
    hard: int

    def scaled(self, multiplier: float) -> PhaseBudget:
        return PhaseBudget(
            estimate=round(self.estimate * multiplier),
            warning=round(self.warning * multiplier),
            hard=round(self.hard * multiplier),
        )


# Estimates: the FLOW budget template. Warning / hard limits: the REVI defaults.
DEFAULT_BUDGETS: dict[BudgetPhase, PhaseBudget] = {
    BudgetPhase.STORY_GENERATION: PhaseBudget(estimate=5_000, warning=50_000, hard=100_000),
    BudgetPhase.ELABORATION: PhaseBudget(estimate=15_000, warning=30_000, hard=60_000),
    BudgetPhase.IMPLEMENTATION: PhaseBudget(estimate=50_000, warning=200_000, hard=500_000),
    BudgetPhase.CODE_REVIEW: PhaseBudget(estimate=20_000, warning=50_000, hard=100_000),
    BudgetPhase.QA_VERIFICATION: PhaseBudget(estimate=15_000, warning=50_000, hard=100_000),
}


def _validate_budgets() -> None:
    if set(DEFAULT_BUDGETS) != set(BudgetPhase):
        raise ValueError("every budget phase needs a default budget")
    for phase, budget in DEFAULT_BUDGETS.items():
        if not 0 < budget.warning <= budget.hard:
            raise ValueError(f"{phase}: warning must be positive and at most hard")
    for alias in PHASE_ALIASES:
        if alias in {p.value for p in BudgetPhase}:
            raise ValueError(f"alias {alias} shadows a phase")


_validate_budgets()


def parse_phase(text: str) -> BudgetPhase:
    key = text.strip().lower().replace("-", "_")
    try:
        return BudgetPhase(key)
    except ValueError:
        pass
    if key in PHASE_ALIASES:
        return PHASE_ALIASES[key]
    raise InvalidInput(
        f"unknown budget phase {text!r}",
        code="UNKNOWN_PHASE",
        hint="use one of: " + ", ".join(p.value for p in BudgetPhase),
        details={"value": text},
    )


def parse_enforcement(text: str) -> Enforcement:
    key = text.strip().lower().replace("-", "_")
    try:
        return Enforcement(key)
    except ValueError:
        raise InvalidInput(
            f"unknown enforcement level {text!r}",
            hint="use one of: " + ", ".join(e.value for e in Enforcement),
            details={"value": text},
        ) from None


class BudgetState(StrEnum):
    OK = "ok"
    WARNING = "warning"
    OVER = "over"


class BudgetAction(StrEnum):
    NONE = "none"
    WARN = "warn"
    CONFIRM = "confirm"
    REFUSE = "refuse"


@dataclass(frozen=True, kw_only=True)
class BudgetDecision:
    phase: BudgetPhase
    level: Enforcement
    used: int
    limits: PhaseBudget
    state: BudgetState
    action: BudgetAction

    @property
    def warning_pct(self) -> float:
        return 100.0 * self.used / self.limits.warning if self.limits.warning else 0.0

    @property
    def hard_pct(self) -> float:
        return 100.0 * self.used / self.limits.hard if self.limits.hard else 0.0


def evaluate(
    *, phase: BudgetPhase, level: Enforcement, used: int, limits: PhaseBudget
) -> BudgetDecision:
    """Decide what the enforcement level does with ``used`` tokens against scaled limits.

    advisory records only; warning warns at the warning limit; soft_gate asks for a
    confirmation at the hard limit; hard_gate refuses at the hard limit.
    """
    if used >= limits.hard:
        state = BudgetState.OVER
    elif used >= limits.warning:
        state = BudgetState.WARNING
    else:
        state = BudgetState.OK
    action = BudgetAction.NONE
    if level is not Enforcement.ADVISORY and state is not BudgetState.OK:
        action = BudgetAction.WARN
        if state is BudgetState.OVER and level is Enforcement.SOFT_GATE:
            action = BudgetAction.CONFIRM
        elif state is BudgetState.OVER and level is Enforcement.HARD_GATE:
            action = BudgetAction.REFUSE
    return BudgetDecision(
        phase=phase, level=level, used=used, limits=limits, state=state, action=action
    )


# How far past its limits a phase is: a crossing goes up this order, never down (the ledger
# only grows).
_REACHED = {BudgetState.OK: 0, BudgetState.WARNING: 1, BudgetState.OVER: 2}


def crossing(
    *, phase: BudgetPhase, level: Enforcement, limits: PhaseBudget, before: int, after: int
) -> BudgetDecision | None:
    """The decision at ``after`` tokens when going from ``before`` to ``after`` crossed a
    limit the level acts on (the hard one, when both were crossed at once); None when no
    limit was crossed, or under advisory, which records only."""
    was = evaluate(phase=phase, level=level, used=before, limits=limits)
    now = evaluate(phase=phase, level=level, used=after, limits=limits)
    if now.action is BudgetAction.NONE or _REACHED[now.state] <= _REACHED[was.state]:
        return None
    return now


def resolve_budgets(
    overrides: Mapping[BudgetPhase, PhaseBudget] | None = None,
) -> dict[BudgetPhase, PhaseBudget]:
    merged = dict(DEFAULT_BUDGETS)
    merged.update(overrides or {})
    return merged
