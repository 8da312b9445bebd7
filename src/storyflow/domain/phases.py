"""The phases an agent runs, as data (DESIGN §4), validated when this module is imported.

A phase starts from one of its start statuses, moves the story to its running status (if it
has one) while the agent works, expects the artifact kinds it produces, and takes the edge
its verdict maps to. Its re-run mode says what a second request for the phase does. The
table is checked against the state machine: every edge it names exists, every non-terminal
status has a way on (a phase that starts there, or a person: ``HUMAN_STATUSES``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from storyflow.domain.artifacts import VERDICTS, ArtifactKind, Verdict
from storyflow.domain.budgets import BudgetPhase
from storyflow.domain.statuses import NON_TERMINAL, TERMINAL, Status
from storyflow.domain.transitions import find_edge
from storyflow.errors import InvalidInput


class PhaseName(StrEnum):
    GENERATE = "generate"
    ELABORATE = "elaborate"
    REFINE = "refine"
    SPLIT = "split"
    PLAN = "plan"
    IMPLEMENT = "implement"
    REVIEW = "review"
    FIX = "fix"
    VERIFY = "verify"
    GATE = "gate"


class Role(StrEnum):
    PM = "pm"
    ANALYST = "analyst"
    DEVELOPER = "developer"
    REVIEWER = "reviewer"
    QA = "qa"


class RerunMode(StrEnum):
    """What running a phase again does (DESIGN §4)."""

    ERROR_UNLESS_FORCE = "error-unless-force"  # generate
    SKIP_IF_DONE = "skip-if-done"  # elaborate: a fresh artifact is reused, its edge taken
    RESUME = "resume"  # implement: reuse a fresh proof, else run told it resumes
    RERUN = "rerun"  # review, gate: the agent runs again
    SKIP_IF_UAT = "skip-if-uat"  # verify: nothing to do once the story is in uat


# The verdict key of phases whose outcome has no verdict (the story file, a plan, a proof).
DONE = "DONE"


@dataclass(frozen=True, kw_only=True)
class Phase:
    name: PhaseName
    starts: tuple[Status, ...]
    running: Status | None  # the status while the agent works (None: stays where it is)
    role: Role
    reads: tuple[ArtifactKind, ...]  # inputs: their versions are part of the run's key
    produces: tuple[ArtifactKind, ...]
    edges: Mapping[str, Status]  # verdict (or DONE) -> target status
    rerun: RerunMode
    budget_phase: BudgetPhase
    done_after: tuple[Status, ...] = field(default=())  # statuses that mean "already ran"

    @property
    def anchor(self) -> Status:
        """The status whose entries count the phase's iterations."""
        return self.running or self.starts[0]

    def edge_for(self, verdict: str | None) -> Status:
        key = verdict or DONE
        if key not in self.edges:
            raise InvalidInput(
                f"{self.name.value}: verdict {verdict!r} leads nowhere",
                code="MALFORMED_OUTPUT",
                hint="the verdict must be one of " + ", ".join(self.edges),
                details={"phase": self.name.value, "verdict": verdict},
            )
        return self.edges[key]


S = Status
K = ArtifactKind
V = Verdict
_STORY_INPUTS = (K.STORY, K.ELABORATION, K.PLAN)
_LATER = (S.READY_TO_WORK, S.IN_PROGRESS, S.READY_FOR_CODE_REVIEW, S.CODE_REVIEW_FAILED)
_QA_LATER = (S.READY_FOR_QA, S.IN_QA, S.NEEDS_WORK, S.UAT, S.COMPLETED)

PHASES: dict[PhaseName, Phase] = {
    p.name: p
    for p in (
        Phase(
            name=PhaseName.GENERATE,
            starts=(S.PENDING,),
            running=None,
            role=Role.PM,
            reads=(),
            produces=(K.STORY,),
            edges={DONE: S.GENERATED},
            rerun=RerunMode.ERROR_UNLESS_FORCE,
            budget_phase=BudgetPhase.STORY_GENERATION,
        ),
        Phase(
            name=PhaseName.ELABORATE,
            starts=(S.GENERATED, S.IN_ELABORATION),
            running=S.IN_ELABORATION,
            role=Role.ANALYST,
            reads=(K.STORY,),
            produces=(K.ELABORATION,),
            edges={
                V.PASS: S.READY_TO_WORK,
                V.CONDITIONAL_PASS: S.READY_TO_WORK,
                V.NEEDS_REFINEMENT: S.NEEDS_REFINEMENT,
                V.FAIL: S.NEEDS_REFINEMENT,
                V.SPLIT_REQUIRED: S.NEEDS_SPLIT,
            },
            rerun=RerunMode.SKIP_IF_DONE,
            budget_phase=BudgetPhase.ELABORATION,
            done_after=(*_LATER, *_QA_LATER),
        ),
        Phase(
            name=PhaseName.REFINE,
            starts=(S.NEEDS_REFINEMENT,),
            running=None,
            role=Role.PM,
            reads=(K.STORY, K.ELABORATION),
            produces=(K.STORY,),
            edges={DONE: S.GENERATED},
            rerun=RerunMode.RERUN,
            budget_phase=BudgetPhase.STORY_GENERATION,
        ),
        Phase(
            name=PhaseName.SPLIT,
            starts=(S.NEEDS_SPLIT,),
            running=None,
            role=Role.PM,
            reads=(K.STORY, K.ELABORATION),
            produces=(),
            edges={DONE: S.SUPERSEDED},
            rerun=RerunMode.SKIP_IF_DONE,
            budget_phase=BudgetPhase.STORY_GENERATION,
        ),
        Phase(
            name=PhaseName.PLAN,
            starts=(S.READY_TO_WORK,),
            running=None,
            role=Role.DEVELOPER,
            reads=(K.STORY, K.ELABORATION),
            produces=(K.PLAN,),
            edges={DONE: S.IN_PROGRESS},
            rerun=RerunMode.SKIP_IF_DONE,
            budget_phase=BudgetPhase.IMPLEMENTATION,
            done_after=_LATER[1:] + _QA_LATER,
        ),
        Phase(
            name=PhaseName.IMPLEMENT,
            starts=(S.IN_PROGRESS,),
            running=None,
            role=Role.DEVELOPER,
            reads=_STORY_INPUTS,
            produces=(K.PROOF,),
            edges={DONE: S.READY_FOR_CODE_REVIEW},
            rerun=RerunMode.RESUME,
            budget_phase=BudgetPhase.IMPLEMENTATION,
            done_after=(S.READY_FOR_CODE_REVIEW, *_QA_LATER),
        ),
        Phase(
            name=PhaseName.REVIEW,
            starts=(S.READY_FOR_CODE_REVIEW,),
            running=None,
            role=Role.REVIEWER,
            reads=(*_STORY_INPUTS, K.PROOF),
            produces=(K.CODE_REVIEW,),
            edges={V.PASS: S.READY_FOR_QA, V.FAIL: S.CODE_REVIEW_FAILED},
            rerun=RerunMode.RERUN,
            budget_phase=BudgetPhase.CODE_REVIEW,
        ),
        Phase(
            name=PhaseName.FIX,
            starts=(S.CODE_REVIEW_FAILED, S.NEEDS_WORK),
            running=S.IN_PROGRESS,
            role=Role.DEVELOPER,
            reads=(*_STORY_INPUTS, K.PROOF, K.CODE_REVIEW, K.VERIFICATION, K.QA_GATE),
            produces=(K.PROOF,),
            edges={DONE: S.READY_FOR_CODE_REVIEW},
            rerun=RerunMode.RESUME,
            budget_phase=BudgetPhase.IMPLEMENTATION,
        ),
        Phase(
            name=PhaseName.VERIFY,
            starts=(S.READY_FOR_QA, S.IN_QA),
            running=S.IN_QA,
            role=Role.QA,
            reads=(*_STORY_INPUTS, K.PROOF, K.CODE_REVIEW),
            produces=(K.VERIFICATION,),
            edges={V.PASS: S.UAT, V.FAIL: S.NEEDS_WORK},
            rerun=RerunMode.SKIP_IF_UAT,
            budget_phase=BudgetPhase.QA_VERIFICATION,
            done_after=(S.UAT, S.COMPLETED),
        ),
        Phase(
            name=PhaseName.GATE,
            starts=(S.UAT,),
            running=None,
            role=Role.QA,
            reads=(*_STORY_INPUTS, K.PROOF, K.CODE_REVIEW, K.VERIFICATION),
            produces=(K.QA_GATE,),
            edges={
                V.PASS: S.COMPLETED,
                V.CONCERNS: S.COMPLETED,
                V.WAIVED: S.COMPLETED,
                V.FAIL: S.IN_PROGRESS,
            },
            rerun=RerunMode.RERUN,
            budget_phase=BudgetPhase.QA_VERIFICATION,
        ),
    )
}

# Statuses no agent moves on from: a person does (unblock).
HUMAN_STATUSES: dict[Status, str] = {
    S.BLOCKED: "a person resolves the blocker: storyflow story unblock ID",
}

# The phase that runs from each status (the first phase listing it among its starts).
PHASE_OF_STATUS: dict[Status, Phase] = {}


def phase_for(status: Status) -> Phase | None:
    """The phase a worker runs for a story in ``status`` (None: blocked or terminal)."""
    return PHASE_OF_STATUS.get(status)


def phases_ahead(status: Status) -> tuple[Phase, ...] | None:
    """The phases a story in ``status`` still runs on its way to completed when every
    verdict passes; None where no agent's path leads to completed (a split, blocked, a
    terminal status). What they produce is what the acceptance rule can expect fresh: a
    story missing anything else (an empty Reuse Plan past generation, no proof past
    implementation: a plan imported mid-flight) cannot complete, however the phases go."""
    return _PHASES_AHEAD.get(status)


def _happy_path(status: Status) -> tuple[Phase, ...] | None:
    path: list[Phase] = []
    current = status
    for _ in range(len(Status)):
        phase = PHASE_OF_STATUS.get(current)
        if phase is None:
            break
        path.append(phase)
        current = phase.edges.get(V.PASS) or phase.edges[DONE]
    return tuple(path) if current is Status.COMPLETED else None


def parse_phase_name(text: str) -> PhaseName:
    key = text.strip().lower()
    try:
        return PhaseName(key)
    except ValueError:
        raise InvalidInput(
            f"unknown phase {text!r}",
            code="UNKNOWN_RUN_PHASE",
            hint="use one of: " + ", ".join(p.value for p in PhaseName),
            details={"value": text},
        ) from None


def actionable_statuses() -> tuple[Status, ...]:
    """Every status a worker can pick a story up from."""
    return tuple(PHASE_OF_STATUS)


def _path_edges(phase: Phase) -> list[tuple[Status, Status]]:
    """The edges a phase takes: start -> running, then the verdict edge from where it ends."""
    edges: list[tuple[Status, Status]] = []
    for start in phase.starts:
        source = start
        if phase.running is not None and start is not phase.running:
            edges.append((start, phase.running))
            source = phase.running
        for target in phase.edges.values():
            if phase.name is PhaseName.SPLIT:
                continue  # the split service takes needs-split -> superseded itself
            edges.append((source, target))
    return edges


def validate_phases(phases: Mapping[PhaseName, Phase]) -> dict[Status, Phase]:
    """Check the table against the state machine; return the status -> phase index."""
    if set(phases) != set(PhaseName):
        raise ValueError("every phase needs an entry")
    index: dict[Status, Phase] = {}
    for phase in phases.values():
        if not phase.starts:
            raise ValueError(f"{phase.name}: no start status")
        for status in phase.starts:
            if status in TERMINAL or status in HUMAN_STATUSES:
                raise ValueError(f"{phase.name}: cannot start from {status}")
            index.setdefault(status, phase)
        for source, target in _path_edges(phase):
            if source is not target and find_edge(source, target) is None:
                raise ValueError(f"{phase.name}: no edge {source} -> {target}")
        verdict_kinds = [k for k in phase.produces if k in VERDICTS]
        if verdict_kinds:
            allowed = {v.value for v in VERDICTS[verdict_kinds[0]]}
            if set(phase.edges) != allowed:
                raise ValueError(f"{phase.name}: verdicts {sorted(phase.edges)} != {allowed}")
        elif set(phase.edges) != {DONE}:
            raise ValueError(f"{phase.name}: a phase without verdicts maps only {DONE}")
    for status in NON_TERMINAL:
        if status not in index and status not in HUMAN_STATUSES:
            raise ValueError(f"no way on from {status}: no phase starts there")
    return index


PHASE_OF_STATUS.update(validate_phases(PHASES))
_PHASES_AHEAD: dict[Status, tuple[Phase, ...]] = {
    status: path for status in PHASE_OF_STATUS if (path := _happy_path(status)) is not None
}
