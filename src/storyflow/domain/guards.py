"""Guard evaluation: does the evidence allow this edge? Pure; facts come through a port.

The service implements ``Facts`` lazily over the database, so an edge only pays for the
facts its guards read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from storyflow.domain import gates
from storyflow.domain.artifacts import ArtifactKind, Verdict
from storyflow.domain.budgets import BudgetPhase
from storyflow.domain.model import AcceptancePart, ArtifactVersion, Epic, Story
from storyflow.domain.phases import DONE, Phase
from storyflow.domain.statuses import Status
from storyflow.domain.transitions import (
    PLAN_EVIDENCE,
    PROOF_EVIDENCE,
    REENTRY_TARGETS,
    Edge,
    Evidence,
    Guard,
    find_edge,
)


class Facts(Protocol):
    story: Story
    epic: Epic
    today: date

    def latest_artifact(self, kind: ArtifactKind) -> ArtifactVersion | None: ...

    def entered_version(self, status: Status) -> int:
        """The story version at its latest entry into ``status`` (0 when never)."""
        ...

    def approved(self, artifact_id: int) -> bool: ...

    def unmet_dependencies(self) -> list[tuple[str, str]]: ...

    def unmet_requirements(self) -> list[str]: ...

    def split_children(self) -> list[str]: ...

    def story_file_problems(self) -> list[str]: ...

    def naming_problems(self) -> list[str]: ...

    def phases_ran(self) -> set[BudgetPhase]: ...

    def phases_with_tokens(self) -> set[BudgetPhase]: ...


@dataclass(frozen=True, kw_only=True)
class GuardFailure:
    guard: Guard
    message: str
    hint: str


def _submit_hint(story_id: str, kind: ArtifactKind) -> str:
    return f"write it, then: storyflow artifact submit {story_id} {kind.value}"


def fresh_artifact(facts: Facts, spec: Evidence) -> ArtifactVersion | None:
    """The latest artifact of the kind, if submitted since the story entered the anchor."""
    artifact = facts.latest_artifact(spec.kind)
    if artifact is None:
        return None
    if artifact.story_version <= facts.entered_version(spec.anchor):
        return None
    return artifact


def _missing(facts: Facts, spec: Evidence, guard: Guard) -> GuardFailure:
    stale = facts.latest_artifact(spec.kind) is not None
    what = f"no {spec.kind.value}" + (
        f" submitted since the story last entered {spec.anchor.value}" if stale else ""
    )
    return GuardFailure(guard=guard, message=what, hint=_submit_hint(facts.story.id, spec.kind))


def check(edge: Edge, facts: Facts, *, reason: str | None) -> list[GuardFailure]:
    """Every guard of ``edge`` that does not hold, in table order."""
    story = facts.story
    restoring = edge.source is Status.BLOCKED and edge.target is story.blocked_from
    failures: list[GuardFailure] = []
    for guard in edge.guards:
        if restoring and guard is not Guard.UNBLOCK_TARGET:
            continue
        failures.extend(_CHECKS[guard](edge, facts, reason))
    return failures


def _reason(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    if reason and reason.strip():
        return []
    return [
        GuardFailure(
            guard=Guard.REASON,
            message=f"moving to {edge.target.value} needs a reason",
            hint="add --reason 'what happened'",
        )
    ]


def _story_file(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    return _story_file_failures(facts)


def _story_file_failures(facts: Facts) -> list[GuardFailure]:
    return [
        GuardFailure(
            guard=Guard.STORY_FILE_VALID,
            message=f"story file: {problem}",
            hint="complete the story file, then retry (storyflow artifact validate PATH "
            "--kind story shows every problem)",
        )
        for problem in facts.story_file_problems()
    ]


def _evidence(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    spec = edge.evidence
    assert spec is not None  # the table is validated at import
    artifact = fresh_artifact(facts, spec)
    if artifact is None:
        return [_missing(facts, spec, Guard.EVIDENCE)]
    if spec.verdicts and artifact.verdict not in spec.verdicts:
        wanted = " or ".join(v.value for v in spec.verdicts)
        return [
            GuardFailure(
                guard=Guard.EVIDENCE,
                message=f"{spec.kind.value} v{artifact.version} says {artifact.verdict}; "
                f"{edge.target.value} needs {wanted}",
                hint=f"the verdict leads elsewhere: storyflow story show {facts.story.id} "
                "names the edge it allows",
            )
        ]
    return []


def _approval(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    if not facts.epic.settings.require_approval:
        return []
    artifact = facts.latest_artifact(ArtifactKind.ELABORATION)
    if artifact is not None and facts.approved(artifact.id):
        return []
    return [
        GuardFailure(
            guard=Guard.APPROVAL,
            message="the epic requires PM/UX approval of the elaboration",
            hint=f"storyflow approve {facts.story.id} --by NAME",
        )
    ]


def _split_children(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    if facts.split_children():
        return []
    return [
        GuardFailure(
            guard=Guard.SPLIT_CHILDREN,
            message="no split stories exist",
            hint=f"storyflow story split {facts.story.id} --into TITLE --into TITLE",
        )
    ]


def _plan(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    plan = fresh_artifact(facts, PLAN_EVIDENCE)
    if plan is None:
        return [_missing(facts, PLAN_EVIDENCE, Guard.PLAN)]
    if not facts.story.breaking_change:
        return []
    missing = [
        key
        for key in ("migration_path", "backward_compatibility", "migration_tests")
        if not plan.content.get(key)
    ]
    if not missing:
        return []
    return [
        GuardFailure(
            guard=Guard.PLAN,
            message="breaking-change story: the plan lacks " + ", ".join(missing),
            hint="state the migration path, backward-compatibility plan and migration tests "
            f"in the plan, then: storyflow artifact submit {facts.story.id} plan",
        )
    ]


def _dependencies(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    unmet = facts.unmet_dependencies()
    if not unmet:
        return []
    return [
        GuardFailure(
            guard=Guard.DEPENDENCIES,
            message="unmet dependencies: " + ", ".join(f"{i} ({s})" for i, s in unmet),
            hint="finish those stories first (storyflow next shows what is workable)",
        )
    ]


def _requirements(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    unmet = facts.unmet_requirements()
    if not unmet:
        return []
    return [
        GuardFailure(
            guard=Guard.REQUIREMENTS,
            message="unmet requirements: " + ", ".join(unmet),
            hint="when it is in place: storyflow requirement met " + unmet[0],
        )
    ]


def _proof(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    proof = fresh_artifact(facts, PROOF_EVIDENCE)
    if proof is None:
        return [_missing(facts, PROOF_EVIDENCE, Guard.PROOF)]
    return [
        GuardFailure(
            guard=Guard.PROOF,
            message=problem,
            hint="add a ## Reuse Verification (reuse_verification) to the proof and resubmit",
        )
        for problem in gates.reuse_problems(proof.content)
    ]


def _coverage(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    assert edge.evidence is not None
    review = fresh_artifact(facts, edge.evidence)
    if review is None:
        return []  # reported by the evidence guard
    threshold = facts.epic.settings.coverage_threshold
    coverage = review.content.get("coverage")
    if coverage is not None and float(coverage) >= threshold:
        return []
    return [
        GuardFailure(
            guard=Guard.COVERAGE,
            message=f"coverage {coverage}% is below the epic's threshold {threshold:g}%",
            hint="raise test coverage and submit a new code review",
        )
    ]


def _scenarios(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    if not facts.story.graph_integration:
        return []
    assert edge.evidence is not None
    verification = fresh_artifact(facts, edge.evidence)
    if verification is None or gates.passing_scenarios(verification.content):
        return []
    return [
        GuardFailure(
            guard=Guard.SCENARIOS,
            message="graph-integration story: the verification has no passing scenario "
            "with evidence",
            hint="validate against real orchestrator graphs and record scenarios "
            "(name, status: pass, evidence) in the verification",
        )
    ]


def _gate_evidence(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    assert edge.evidence is not None
    gate = fresh_artifact(facts, edge.evidence)
    if gate is None:
        return []
    return [
        GuardFailure(
            guard=Guard.GATE_EVIDENCE,
            message=f"QA gate v{gate.version}: {problem}",
            hint="submit a QA gate whose decision follows from its checks and issues",
        )
        for problem in gates.gate_contradictions(gate.content, facts.today)
    ]


def _acceptance(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    """The parts of the acceptance rule the epic's plan names (all four by default)."""
    story_id = facts.story.id
    parts = facts.epic.settings.acceptance
    problems = _proof_problems(facts)
    if _reuse_rule(facts):
        problems += _reuse_plan_problems(facts)
    if AcceptancePart.NAMING in parts:
        problems += [
            (f"naming: {p}", "rename the file to the layout's convention (storyflow layouts)")
            for p in facts.naming_problems()
        ]
    unrecorded: list[BudgetPhase] = []
    if AcceptancePart.TOKENS in parts:
        unrecorded = sorted(facts.phases_ran() - facts.phases_with_tokens())
    if unrecorded:
        problems.append(
            (
                "no tokens recorded for phase(s) that ran: "
                + ", ".join(p.value for p in unrecorded),
                f"storyflow token log {story_id} {unrecorded[0].value} --input N --output M",
            )
        )
    return [GuardFailure(guard=Guard.ACCEPTANCE, message=m, hint=h) for m, h in problems]


def _reuse_rule(facts: Facts) -> bool:
    return AcceptancePart.REUSE in facts.epic.settings.acceptance and bool(
        facts.epic.settings.reuse_gate
    )


def _proof_problems(facts: Facts) -> list[tuple[str, str]]:
    """The acceptance rule's demands on the last implementation round's proof."""
    parts = facts.epic.settings.acceptance
    if AcceptancePart.REUSE not in parts and AcceptancePart.CHECKS not in parts:
        return []
    proof = fresh_artifact(facts, PROOF_EVIDENCE)
    if proof is None:
        return [
            (
                "no proof from the last implementation round",
                _submit_hint(facts.story.id, ArtifactKind.PROOF),
            )
        ]
    problems: list[tuple[str, str]] = []
    if _reuse_rule(facts):
        hint = "document reused packages, or why reuse was not possible, in the proof"
        problems += [(p, hint) for p in gates.reuse_problems(proof.content)]
    if AcceptancePart.CHECKS in parts:
        hint = "record lint, typecheck and tests as pass in the proof's checks"
        problems += [(f"acceptance: {p}", hint) for p in gates.failing_checks(proof.content)]
    return problems


def _reuse_plan_problems(facts: Facts) -> list[tuple[str, str]]:
    return [
        (f"story file: {p}", "complete the story's ## Reuse Plan")
        for p in facts.story_file_problems()
    ]


def completion_blockers(facts: Facts, ahead: Sequence[Phase]) -> list[GuardFailure]:
    """What will stop the story at a guard on its way to completed that none of the phases
    ``ahead`` (``phases.phases_ahead``) can provide, however their verdicts go: the story
    file when no phase rewrites it, the proof when no implementation round is ahead. Read
    before a story's first phase, so an agent does not spend tokens on a story that cannot
    complete (a plan imported mid-flight)."""
    produced = {kind for phase in ahead for kind in phase.produces}
    problems: list[tuple[str, str]] = []
    if ArtifactKind.PROOF not in produced:
        problems += _proof_problems(facts)
    if ArtifactKind.STORY not in produced:
        if _reuse_rule(facts):
            problems += _reuse_plan_problems(facts)
        elif Guard.STORY_FILE_VALID in _guards_on_the_way(facts.story.status, ahead):
            problems += [(f.message, f.hint) for f in _story_file_failures(facts)]
    return [GuardFailure(guard=Guard.ACCEPTANCE, message=m, hint=h) for m, h in problems]


def _guards_on_the_way(status: Status, ahead: Sequence[Phase]) -> set[Guard]:
    """The guards of the edges the phases ``ahead`` take from ``status``, passing."""
    found: set[Guard] = set()
    source = status
    for phase in ahead:
        steps = [phase.running] if phase.running and source is not phase.running else []
        steps.append(phase.edges.get(Verdict.PASS) or phase.edges[DONE])
        for target in steps:
            edge = find_edge(source, target)
            if edge is not None:
                found.update(edge.guards)
            source = target
    return found


def _unblock_target(edge: Edge, facts: Facts, reason: str | None) -> list[GuardFailure]:
    blocked_from = facts.story.blocked_from
    if edge.target is blocked_from or edge.target in REENTRY_TARGETS:
        return []
    return [
        GuardFailure(
            guard=Guard.UNBLOCK_TARGET,
            message=f"the story was blocked from {blocked_from}; it can return there or "
            "re-enter in-progress, ready-to-work or in-elaboration",
            hint=f"storyflow story unblock {facts.story.id}",
        )
    ]


_CHECKS = {
    Guard.REASON: _reason,
    Guard.STORY_FILE_VALID: _story_file,
    Guard.EVIDENCE: _evidence,
    Guard.APPROVAL: _approval,
    Guard.SPLIT_CHILDREN: _split_children,
    Guard.PLAN: _plan,
    Guard.DEPENDENCIES: _dependencies,
    Guard.REQUIREMENTS: _requirements,
    Guard.PROOF: _proof,
    Guard.COVERAGE: _coverage,
    Guard.SCENARIOS: _scenarios,
    Guard.GATE_EVIDENCE: _gate_evidence,
    Guard.ACCEPTANCE: _acceptance,
    Guard.UNBLOCK_TARGET: _unblock_target,
}
if set(_CHECKS) != set(Guard):
    raise ValueError("every guard needs a check")
