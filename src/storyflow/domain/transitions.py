"""The state machine: the edge table of DESIGN §3, validated when this module is imported.

Each edge names what takes it (a command or a verdict), the guards that must hold, the
evidence artifact and verdicts it needs, and the budget phase whose forward edge it is.
Docs, `storyflow graph` and the guards all read this one table.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from storyflow.domain.artifacts import ArtifactKind, Verdict
from storyflow.domain.budgets import BudgetPhase
from storyflow.domain.statuses import NON_TERMINAL, TERMINAL, Status


class Guard(StrEnum):
    REASON = "reason"
    STORY_FILE_VALID = "story-file-valid"
    EVIDENCE = "evidence"
    APPROVAL = "approval"
    SPLIT_CHILDREN = "split-children"
    PLAN = "plan"
    DEPENDENCIES = "dependencies"
    REQUIREMENTS = "requirements"
    PROOF = "proof"
    COVERAGE = "coverage"
    SCENARIOS = "scenarios"
    GATE_EVIDENCE = "gate-evidence"
    ACCEPTANCE = "acceptance"
    UNBLOCK_TARGET = "unblock-target"


GUARD_DESCRIPTIONS: dict[Guard, str] = {
    Guard.REASON: "a reason is given",
    Guard.STORY_FILE_VALID: "the story file validates (front matter, ## Reuse Plan, "
    "## Token Budget, ## Agent Log)",
    Guard.EVIDENCE: "the evidence artifact, submitted since the story entered the anchor "
    "status, states one of the edge's verdicts",
    Guard.APPROVAL: "where the epic asks for it, the elaboration is approved (storyflow approve)",
    Guard.SPLIT_CHILDREN: "split stories exist (storyflow story split)",
    Guard.PLAN: "a plan artifact; breaking-change stories state migration path, "
    "backward-compatibility plan and migration tests",
    Guard.DEPENDENCIES: "every depends_on story is completed",
    Guard.REQUIREMENTS: "every requirement is met (storyflow requirement met)",
    Guard.PROOF: "a proof with a non-empty Reuse Verification",
    Guard.COVERAGE: "the code review's coverage is at least the epic's threshold",
    Guard.SCENARIOS: "graph-integration stories: the verification carries passing scenario "
    "evidence",
    Guard.GATE_EVIDENCE: "the QA gate decision agrees with its evidence; WAIVED has reason, "
    "approver and an unexpired date",
    Guard.ACCEPTANCE: "acceptance rule: reuse satisfied or justified, lint/types/tests "
    "passing, naming conventions hold, tokens recorded for every phase run (the parts the "
    "epic's plan names; all four by default)",
    Guard.UNBLOCK_TARGET: "the target is the status the story was blocked from, or "
    "in-progress / ready-to-work / in-elaboration with their entry guards",
}


@dataclass(frozen=True, kw_only=True)
class Evidence:
    kind: ArtifactKind
    verdicts: tuple[Verdict, ...] = ()
    # The artifact must have been submitted after the story last entered this status.
    anchor: Status


@dataclass(frozen=True, kw_only=True)
class Edge:
    source: Status
    target: Status
    trigger: str
    guards: tuple[Guard, ...] = ()
    evidence: Evidence | None = None
    budget_phase: BudgetPhase | None = None

    @property
    def key(self) -> tuple[Status, Status]:
        return (self.source, self.target)


S = Status
_ELAB = ArtifactKind.ELABORATION
_PASSING_ELABORATION = Evidence(
    kind=_ELAB, verdicts=(Verdict.PASS, Verdict.CONDITIONAL_PASS), anchor=S.IN_ELABORATION
)
# The plan and proof guards read these fixed specs; EVIDENCE reads the edge's own.
PLAN_EVIDENCE = Evidence(kind=ArtifactKind.PLAN, anchor=S.GENERATED)
PROOF_EVIDENCE = Evidence(kind=ArtifactKind.PROOF, anchor=S.IN_PROGRESS)

# Guards a status demands of anyone entering it from `blocked` other than by restoring.
_REENTRY: dict[Status, tuple[tuple[Guard, ...], Evidence | None]] = {
    S.IN_PROGRESS: ((Guard.PLAN, Guard.DEPENDENCIES, Guard.REQUIREMENTS), None),
    S.READY_TO_WORK: ((Guard.EVIDENCE, Guard.APPROVAL), _PASSING_ELABORATION),
    S.IN_ELABORATION: ((Guard.STORY_FILE_VALID,), None),
}
REENTRY_TARGETS: frozenset[Status] = frozenset(_REENTRY)


def _lifecycle_edges() -> list[Edge]:
    gen = BudgetPhase.STORY_GENERATION
    return [
        Edge(source=S.PENDING, target=S.GENERATED, trigger="story generated", budget_phase=gen),
        Edge(
            source=S.GENERATED,
            target=S.IN_ELABORATION,
            trigger="elaboration starts",
            guards=(Guard.STORY_FILE_VALID,),
        ),
        Edge(
            source=S.IN_ELABORATION,
            target=S.READY_TO_WORK,
            trigger="elaboration PASS / CONDITIONAL_PASS",
            guards=(Guard.EVIDENCE, Guard.APPROVAL),
            evidence=_PASSING_ELABORATION,
            budget_phase=BudgetPhase.ELABORATION,
        ),
        Edge(
            source=S.IN_ELABORATION,
            target=S.NEEDS_REFINEMENT,
            trigger="elaboration NEEDS_REFINEMENT / FAIL",
            guards=(Guard.EVIDENCE,),
            evidence=Evidence(
                kind=_ELAB,
                verdicts=(Verdict.NEEDS_REFINEMENT, Verdict.FAIL),
                anchor=S.IN_ELABORATION,
            ),
        ),
        Edge(
            source=S.IN_ELABORATION,
            target=S.NEEDS_SPLIT,
            trigger="elaboration SPLIT_REQUIRED",
            guards=(Guard.EVIDENCE,),
            evidence=Evidence(
                kind=_ELAB, verdicts=(Verdict.SPLIT_REQUIRED,), anchor=S.IN_ELABORATION
            ),
        ),
        Edge(
            source=S.NEEDS_REFINEMENT, target=S.GENERATED, trigger="story fixed", budget_phase=gen
        ),
        Edge(source=S.NEEDS_SPLIT, target=S.GENERATED, trigger="re-scoped", budget_phase=gen),
        Edge(
            source=S.NEEDS_SPLIT,
            target=S.SUPERSEDED,
            trigger="split stories exist (storyflow story split)",
            guards=(Guard.SPLIT_CHILDREN,),
        ),
        Edge(
            source=S.READY_TO_WORK,
            target=S.IN_PROGRESS,
            trigger="implementation starts",
            guards=(Guard.PLAN, Guard.DEPENDENCIES, Guard.REQUIREMENTS),
        ),
        Edge(
            source=S.IN_PROGRESS,
            target=S.READY_FOR_CODE_REVIEW,
            trigger="proof submitted",
            guards=(Guard.PROOF,),
            budget_phase=BudgetPhase.IMPLEMENTATION,
        ),
        Edge(
            source=S.IN_PROGRESS,
            target=S.READY_FOR_QA,
            trigger="integrated review passed",
            guards=(Guard.PROOF, Guard.EVIDENCE, Guard.COVERAGE),
            evidence=Evidence(
                kind=ArtifactKind.CODE_REVIEW, verdicts=(Verdict.PASS,), anchor=S.IN_PROGRESS
            ),
            budget_phase=BudgetPhase.IMPLEMENTATION,
        ),
        Edge(
            source=S.READY_FOR_CODE_REVIEW,
            target=S.READY_FOR_QA,
            trigger="review PASS",
            guards=(Guard.EVIDENCE, Guard.COVERAGE),
            evidence=Evidence(
                kind=ArtifactKind.CODE_REVIEW,
                verdicts=(Verdict.PASS,),
                anchor=S.READY_FOR_CODE_REVIEW,
            ),
            budget_phase=BudgetPhase.CODE_REVIEW,
        ),
        Edge(
            source=S.READY_FOR_CODE_REVIEW,
            target=S.CODE_REVIEW_FAILED,
            trigger="review FAIL",
            guards=(Guard.EVIDENCE,),
            evidence=Evidence(
                kind=ArtifactKind.CODE_REVIEW,
                verdicts=(Verdict.FAIL,),
                anchor=S.READY_FOR_CODE_REVIEW,
            ),
        ),
        Edge(source=S.CODE_REVIEW_FAILED, target=S.IN_PROGRESS, trigger="fix starts"),
        Edge(source=S.READY_FOR_QA, target=S.IN_QA, trigger="verification starts"),
        Edge(
            source=S.IN_QA,
            target=S.UAT,
            trigger="verification PASS",
            guards=(Guard.EVIDENCE, Guard.SCENARIOS),
            evidence=Evidence(
                kind=ArtifactKind.VERIFICATION, verdicts=(Verdict.PASS,), anchor=S.IN_QA
            ),
            budget_phase=BudgetPhase.QA_VERIFICATION,
        ),
        Edge(
            source=S.IN_QA,
            target=S.NEEDS_WORK,
            trigger="verification FAIL",
            guards=(Guard.EVIDENCE,),
            evidence=Evidence(
                kind=ArtifactKind.VERIFICATION, verdicts=(Verdict.FAIL,), anchor=S.IN_QA
            ),
        ),
        Edge(source=S.NEEDS_WORK, target=S.IN_PROGRESS, trigger="fix starts"),
        Edge(
            source=S.UAT,
            target=S.COMPLETED,
            trigger="QA gate PASS / CONCERNS / WAIVED + acceptance rule",
            guards=(Guard.EVIDENCE, Guard.GATE_EVIDENCE, Guard.ACCEPTANCE),
            evidence=Evidence(
                kind=ArtifactKind.QA_GATE,
                verdicts=(Verdict.PASS, Verdict.CONCERNS, Verdict.WAIVED),
                anchor=S.IN_QA,
            ),
            budget_phase=BudgetPhase.QA_VERIFICATION,
        ),
        Edge(
            source=S.UAT,
            target=S.IN_PROGRESS,
            trigger="QA gate FAIL",
            guards=(Guard.EVIDENCE, Guard.GATE_EVIDENCE),
            evidence=Evidence(kind=ArtifactKind.QA_GATE, verdicts=(Verdict.FAIL,), anchor=S.IN_QA),
        ),
    ]


def _escape_edges() -> list[Edge]:
    edges: list[Edge] = []
    for source in NON_TERMINAL:
        if source is not S.BLOCKED:
            edges.append(
                Edge(source=source, target=S.BLOCKED, trigger="block", guards=(Guard.REASON,))
            )
        edges.append(
            Edge(source=source, target=S.CANCELLED, trigger="cancel", guards=(Guard.REASON,))
        )
    for target in NON_TERMINAL:
        if target is S.BLOCKED:
            continue
        guards, evidence = _REENTRY.get(target, ((), None))
        edges.append(
            Edge(
                source=S.BLOCKED,
                target=target,
                trigger="unblock",
                guards=(Guard.UNBLOCK_TARGET, *guards),
                evidence=evidence,
            )
        )
    return edges


EDGES: tuple[Edge, ...] = tuple(_lifecycle_edges() + _escape_edges())
EDGE_INDEX: dict[tuple[Status, Status], Edge] = {}
# the first edge into each status that reads evidence (reversed: the first one wins)
_EVIDENCE_INTO: dict[Status, Edge] = {e.target: e for e in reversed(EDGES) if e.evidence}


def find_edge(source: Status, target: Status) -> Edge | None:
    return EDGE_INDEX.get((source, target))


# Guards that read the story file (the Reuse Plan is part of the acceptance rule).
_READS_STORY_FILE = frozenset({Guard.STORY_FILE_VALID, Guard.ACCEPTANCE})


def reads_story_file(source: Status, targets: Iterable[Status]) -> bool:
    """Whether a move from ``source`` to one of ``targets`` runs a guard that reads the story
    file (the run engine reads it before the transaction that makes the move)."""
    for target in targets:
        edge = EDGE_INDEX.get((source, target))
        if edge is not None and _READS_STORY_FILE.intersection(edge.guards):
            return True
    return False


def likely_edge(target: Status, source: Status | None = None) -> Edge | None:
    """The edge a move to ``target`` most likely takes, when that edge reads evidence: the
    edge from ``source`` when the caller knows it, else the first evidence edge into
    ``target`` (the lifecycle's forward edge, listed first). A mover reads that edge's facts
    together with the story; a wrong guess only costs the read it would have made anyway."""
    if source is not None:
        edge = find_edge(source, target)
        return edge if edge is not None and edge.evidence is not None else None
    return _EVIDENCE_INTO.get(target)


def successors(source: Status) -> list[Status]:
    return [e.target for e in EDGES if e.source is source]


# A budget phase "ran" once the story entered one of these statuses by a transition.
PHASE_RUN_MARKERS: dict[BudgetPhase, frozenset[Status]] = {
    BudgetPhase.STORY_GENERATION: frozenset({S.GENERATED}),
    BudgetPhase.ELABORATION: frozenset({S.IN_ELABORATION}),
    BudgetPhase.IMPLEMENTATION: frozenset({S.IN_PROGRESS}),
    BudgetPhase.CODE_REVIEW: frozenset({S.CODE_REVIEW_FAILED, S.READY_FOR_QA}),
    BudgetPhase.QA_VERIFICATION: frozenset({S.IN_QA}),
}


def validate_machine(edges: tuple[Edge, ...]) -> dict[tuple[Status, Status], Edge]:
    """Check the table: unique edges, no way out of a terminal status, no trap states,
    every status reachable from pending, evidence only where a guard reads it."""
    index: dict[tuple[Status, Status], Edge] = {}
    for edge in edges:
        if edge.key in index:
            raise ValueError(f"duplicate edge {edge.source} -> {edge.target}")
        if edge.source is edge.target:
            raise ValueError(f"self edge on {edge.source}")
        if edge.source in TERMINAL:
            raise ValueError(f"edge out of terminal status {edge.source}")
        if (Guard.EVIDENCE in edge.guards) != (edge.evidence is not None):
            raise ValueError(f"{edge.source} -> {edge.target}: evidence and guards disagree")
        index[edge.key] = edge
    for status in NON_TERMINAL:
        if not any(e.source is status for e in edges):
            raise ValueError(f"trap state {status}: no edge out")
    seen = {S.PENDING}
    queue = deque([S.PENDING])
    while queue:
        for edge in edges:
            if edge.source is queue[0] and edge.target not in seen:
                seen.add(edge.target)
                queue.append(edge.target)
        queue.popleft()
    unreachable = set(Status) - seen
    if unreachable:
        raise ValueError(f"unreachable statuses: {sorted(unreachable)}")
    # From every non-terminal status some terminal status stays reachable.
    for status in NON_TERMINAL:
        if not _reaches_terminal(status, edges):
            raise ValueError(f"no terminal status reachable from {status}")
    return index


def _reaches_terminal(start: Status, edges: tuple[Edge, ...]) -> bool:
    seen = {start}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if current in TERMINAL:
            return True
        for edge in edges:
            if edge.source is current and edge.target not in seen:
                seen.add(edge.target)
                queue.append(edge.target)
    return False


EDGE_INDEX.update(validate_machine(EDGES))


def _node(status: Status) -> str:
    return status.value.replace("-", "_")


def mermaid() -> str:
    """The state diagram in Mermaid syntax; the block/cancel/unblock edges that every
    non-terminal status has are drawn once, from a composite "any non-terminal" node."""
    lines = ["stateDiagram-v2"]
    for status in Status:
        lines.append(f'    state "{status.value}" as {_node(status)}')
    lines.append('    state "any non-terminal status" as active')
    lines.append("    [*] --> pending")
    for edge in EDGES:
        if edge.trigger in {"block", "cancel", "unblock"}:
            continue
        lines.append(f"    {_node(edge.source)} --> {_node(edge.target)}: {edge.trigger}")
    lines.append("    active --> blocked: block (reason)")
    lines.append("    active --> cancelled: cancel (reason)")
    lines.append("    blocked --> active: unblock (to blocked_from)")
    for status in sorted(REENTRY_TARGETS):
        lines.append(f"    blocked --> {_node(status)}: unblock (re-entry guards)")
    for status in sorted(TERMINAL):
        lines.append(f"    {_node(status)} --> [*]")
    return "\n".join(lines) + "\n"
