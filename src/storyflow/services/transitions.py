"""Moving a story: edge, guards, budget, compare-and-set, history, event, Agent Log, files.

Everything up to the commit happens in one transaction; the story file is re-rendered from
the committed state afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from storyflow.domain import guards
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.budgets import BudgetAction, BudgetDecision, BudgetPhase, evaluate
from storyflow.domain.model import ArtifactVersion, EdgeFacts, Epic, Story, parse_story_id
from storyflow.domain.statuses import TERMINAL, Status, parse_status
from storyflow.domain.transitions import (
    PHASE_RUN_MARKERS,
    Edge,
    Guard,
    find_edge,
    likely_edge,
    successors,
)
from storyflow.errors import (
    BudgetRefused,
    ConflictError,
    InvalidInput,
    RuleViolation,
    StoryflowError,
)
from storyflow.services.context import Context
from storyflow.services.projection import (
    check_story_file,
    effective_budgets,
    enforcement_of,
    render_after_commit,
)
from storyflow.services.unit_of_work import change


def _same_needs(read: Edge, edge: Edge) -> bool:
    """Whether the facts read for ``read`` are the ones ``edge``'s guards need."""
    assert read.evidence is not None and edge.evidence is not None
    return (read.evidence.kind, read.evidence.anchor, read.budget_phase) == (
        edge.evidence.kind,
        edge.evidence.anchor,
        edge.budget_phase,
    )


class StoreFacts:
    """``guards.Facts`` read lazily from the store and the story folder, cached per move."""

    def __init__(self, ctx: Context, epic: Epic, story: Story, today: date) -> None:
        self.ctx = ctx
        self.epic = epic
        self.story = story
        self.today = today
        self._artifacts: dict[ArtifactKind, ArtifactVersion | None] = {}
        self._entered: dict[Status, int] = {}
        self._story_problems: list[str] | None = None
        self._phase_totals: dict[BudgetPhase, int] = {}
        self.story_snapshot: tuple[str, str, dict[str, Any]] | None = None

    def prefetch(self, edge: Edge, ahead: tuple[Edge, EdgeFacts] | None = None) -> None:
        """Read what the edge's evidence and budget guards need in one round trip, unless
        ``ahead`` already holds them (read with the story for an edge with the same needs)."""
        if edge.evidence is None:
            return
        spec = edge.evidence
        if ahead is not None and _same_needs(ahead[0], edge):
            artifact, anchor_version, used = ahead[1]
        else:
            artifact, anchor_version, used = self.ctx.store.edge_facts(
                self.story.id, spec.kind, spec.anchor, edge.budget_phase
            )
        self._artifacts[spec.kind] = artifact
        self._entered[spec.anchor] = anchor_version
        if edge.budget_phase is not None:
            self._phase_totals[edge.budget_phase] = used

    def phase_total(self, phase: BudgetPhase) -> int:
        if phase not in self._phase_totals:
            self._phase_totals[phase] = self.ctx.store.phase_total(self.story.id, phase)
        return self._phase_totals[phase]

    def latest_artifact(self, kind: ArtifactKind) -> ArtifactVersion | None:
        if kind not in self._artifacts:
            self._artifacts[kind] = self.ctx.store.latest_artifact(self.story.id, kind)
        return self._artifacts[kind]

    def entered_version(self, status: Status) -> int:
        if status not in self._entered:
            self._entered[status] = self.ctx.store.entered_version(self.story.id, status)
        return self._entered[status]

    def approved(self, artifact_id: int) -> bool:
        return bool(self.ctx.store.approvals(artifact_id))

    def unmet_dependencies(self) -> list[tuple[str, str]]:
        return self.ctx.store.unmet_dependencies(self.story.id)

    def unmet_requirements(self) -> list[str]:
        return self.ctx.store.unmet_requirements(self.story.id)

    def split_children(self) -> list[str]:
        return self.ctx.store.split_children(self.story.id)

    def story_file_problems(self) -> list[str]:
        if self._story_problems is None:
            self._story_problems = self._validate_story_file()
        return self._story_problems

    def _validate_story_file(self) -> list[str]:
        from storyflow.schemas.artifacts import validate

        try:
            path, text, parsed = self.ctx.files.read_story(self.epic, self.story)
            display = self.ctx.files.rel(path)
            content = validate(ArtifactKind.STORY, parsed.as_content(), source=display)
        except StoryflowError as exc:
            errors = exc.details.get("errors")
            if errors:
                return [f"{e['field']}: {e['problem']}" for e in errors]
            return [exc.message]
        if content["id"] != self.story.id:
            return [f"the file says id {content['id']}, not {self.story.id}"]
        self.story_snapshot = (display, text, content)
        return []

    def naming_problems(self) -> list[str]:
        return self.ctx.files.naming_problems(self.epic, self.story)

    def phases_ran(self) -> set[BudgetPhase]:
        entered = self.ctx.store.entered_statuses(self.story.id)
        return {phase for phase, marks in PHASE_RUN_MARKERS.items() if entered & marks}

    def phases_with_tokens(self) -> set[BudgetPhase]:
        return self.ctx.store.phases_with_tokens(self.story.id)


@dataclass(frozen=True, kw_only=True)
class MoveResult:
    story: Story
    source: Status
    target: Status
    forced: bool
    budget: BudgetDecision | None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "story": self.story.id,
            "from": self.source.value,
            "to": self.target.value,
            "forced": self.forced,
            "version": self.story.version,
            "warnings": self.warnings,
        }
        if self.budget is not None:
            data["budget"] = budget_json(self.budget)
        return data


def budget_json(decision: BudgetDecision) -> dict[str, Any]:
    return {
        "phase": decision.phase.value,
        "enforcement": decision.level.value,
        "used": decision.used,
        "warning_limit": decision.limits.warning,
        "hard_limit": decision.limits.hard,
        "state": decision.state.value,
        "action": decision.action.value,
    }


def _refuse_edge(story: Story, target: Status) -> RuleViolation:
    allowed = [s.value for s in successors(story.status)]
    return RuleViolation(
        f"{story.id}: no transition {story.status.value} -> {target.value}",
        code="TRANSITION_NOT_ALLOWED",
        hint=f"from {story.status.value} a story can move to: {', '.join(allowed)}",
        details={
            "story": story.id,
            "from": story.status.value,
            "to": target.value,
            "allowed": allowed,
        },
    )


def _guard_error(story: Story, edge: Edge, failures: list[guards.GuardFailure]) -> RuleViolation:
    first = failures[0]
    more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
    return RuleViolation(
        f"{story.id}: {edge.source.value} -> {edge.target.value} refused: {first.message}{more}",
        code="GUARD_FAILED",
        hint=first.hint,
        details={
            "story": story.id,
            "from": edge.source.value,
            "to": edge.target.value,
            "failures": [
                {"guard": f.guard.value, "message": f.message, "hint": f.hint} for f in failures
            ],
        },
    )


def check_budget(
    ctx: Context, epic: Epic, story: Story, phase: BudgetPhase, used: int | None = None
) -> BudgetDecision:
    limits = effective_budgets(ctx, epic)[phase].scaled(story.token_budget_multiplier)
    return evaluate(
        phase=phase,
        level=enforcement_of(epic, story),
        used=ctx.store.phase_total(story.id, phase) if used is None else used,
        limits=limits,
    )


def _apply_budget(
    story: Story, decision: BudgetDecision, *, confirm: bool, reason: str | None
) -> str | None:
    """Raise when the budget refuses the edge; return a warning when it only warns."""
    if decision.action is BudgetAction.NONE:  # most moves: nothing to say
        return None
    summary = (
        f"{story.id}: {decision.phase.value} used {decision.used:,} tokens "
        f"(warning {decision.limits.warning:,}, hard {decision.limits.hard:,}, "
        f"{decision.level.value})"
    )
    details = {"story": story.id, **budget_json(decision)}
    if decision.action is BudgetAction.REFUSE:
        raise BudgetRefused(
            summary + ": hard limit reached",
            code="BUDGET_HARD_LIMIT",
            hint="hard_gate: the phase failed; raise the story's token_budget_multiplier "
            "(storyflow story update --budget-multiplier) or override with --force --reason",
            details=details,
        )
    if decision.action is BudgetAction.CONFIRM:
        if not confirm:
            raise BudgetRefused(
                summary + ": hard limit reached, confirmation required",
                code="BUDGET_CONFIRMATION_REQUIRED",
                hint="soft_gate: repeat with --confirm-budget --reason 'why it is worth it'",
                details=details,
            )
        if not (reason and reason.strip()):
            raise RuleViolation(
                "--confirm-budget needs a reason",
                code="REASON_REQUIRED",
                hint="add --reason 'why the overrun is accepted'",
            )
        return None
    if decision.action is BudgetAction.WARN:
        return summary + ": over the warning limit"
    return None


# The columns a move changes (besides updated_at and version): a narrow UPDATE.
MOVE_FIELDS = (
    "status",
    "status_changed_at",
    "blocked_from",
    "blocked_reason",
    "review_iterations",
    "qa_iterations",
)


def _next_state(story: Story, target: Status, reason: str | None, now: datetime) -> Story:
    updates: dict[str, Any] = {
        "status": target,
        "version": story.version + 1,
        "updated_at": now,
        "status_changed_at": now,
    }
    if target is Status.BLOCKED:
        updates["blocked_from"] = story.status
        updates["blocked_reason"] = reason
    elif story.status is Status.BLOCKED:
        updates["blocked_from"] = None
        updates["blocked_reason"] = None
    if target is Status.CODE_REVIEW_FAILED:
        updates["review_iterations"] = story.review_iterations + 1
    if target is Status.NEEDS_WORK or (story.status is Status.UAT and target is Status.IN_PROGRESS):
        updates["qa_iterations"] = story.qa_iterations + 1
    return replace(story, **updates)


def move(
    ctx: Context,
    story_id: str,
    target_name: str | Status,
    *,
    reason: str | None = None,
    force: bool = False,
    confirm_budget: bool = False,
    expect_from: str | None = None,
    lease_owner: str | None = None,
) -> MoveResult:
    """Take one edge of the state machine (or, with ``force``, an audited override)."""
    parse_story_id(story_id)
    if isinstance(target_name, Status):
        target = target_name
    else:
        target, note = parse_status(target_name)
        if note:
            ctx.warn(note)
    expected = None
    if expect_from is not None:
        expected, note = parse_status(expect_from)
        if note:
            ctx.warn(note)
    reason = reason.strip() if reason and reason.strip() else None
    now = ctx.now()
    decision: BudgetDecision | None = None
    warnings: list[str] = []
    with change(ctx):
        guess = None if force else likely_edge(target, expected)
        ahead: tuple[Edge, EdgeFacts] | None = None
        if guess is None:
            loaded = ctx.load(story_id)
        else:
            loaded, facts_ahead = ctx.load_for_edge(story_id, guess)
            ahead = (guess, facts_ahead)
        story, epic = loaded.story, loaded.epic
        source = story.status
        if expected is not None and source is not expected:
            raise ConflictError(
                f"{story.id} is {source.value}, not {expected.value}: someone moved it first",
                code="VERSION_CONFLICT",
                hint=f"look again (storyflow story show {story.id}) and decide anew",
                details={"story": story.id, "status": source.value, "expected": expected.value},
            )
        if source is target:
            raise ConflictError(
                f"{story.id} is already {target.value}",
                code="ALREADY_IN_STATUS",
                hint=f"storyflow story history {story.id} shows who moved it",
                details={"story": story.id, "status": source.value},
            )
        if source in TERMINAL:
            raise RuleViolation(
                f"{story.id} is {source.value}, a terminal status; it cannot move",
                code="TERMINAL_STATUS",
                hint="create a new story for further work",
                details={"story": story.id, "status": source.value},
            )
        _check_lease(story, loaded.lease, lease_owner, now)
        edge = find_edge(source, target)
        facts = StoreFacts(ctx, epic, story, now.date())
        if force:
            if not reason:
                raise RuleViolation(
                    "--force needs --reason: every override is audited",
                    code="REASON_REQUIRED",
                    hint="add --reason 'why the rules do not apply here'",
                )
        else:
            if edge is None:
                raise _refuse_edge(story, target)
            facts.prefetch(edge, ahead)
            failures = guards.check(edge, facts, reason=reason)
            if failures:
                raise _guard_error(story, edge, failures)
            if edge.budget_phase is not None:
                decision = check_budget(
                    ctx, epic, story, edge.budget_phase, facts.phase_total(edge.budget_phase)
                )
                warning = _apply_budget(story, decision, confirm=confirm_budget, reason=reason)
                if warning:
                    warnings.append(warning)
        moved = _next_state(story, target, reason, now)
        check_story_file(ctx, epic, story, moving_to=moved)  # and where it goes
        ctx.store.cas_update_story(moved, story.version, MOVE_FIELDS)
        budget_confirmed = bool(
            decision is not None and decision.action is BudgetAction.CONFIRM and confirm_budget
        )
        ctx.store.insert_transition(
            story_id=story.id,
            source=source,
            target=target,
            actor=ctx.actor,
            reason=reason,
            forced=force,
            budget_confirmed=budget_confirmed,
            story_version=moved.version,
            at=now,
        )
        if facts.story_snapshot is not None:
            _register_story_snapshot(ctx, moved, facts.story_snapshot, now)
        payload: dict[str, Any] = {"from": source.value, "to": target.value, "forced": force}
        if reason:
            payload["reason"] = reason
        if decision is not None and decision.state.value != "ok":
            payload["budget"] = budget_json(decision)
            ctx.store.insert_event(
                type="budget",
                at=now,
                story_id=story.id,
                epic=epic.prefix,
                actor=ctx.actor,
                payload={**budget_json(decision), "confirmed": budget_confirmed},
            )
        ctx.store.insert_event(
            type="transition",
            at=now,
            story_id=story.id,
            epic=epic.prefix,
            actor=ctx.actor,
            payload=payload,
        )
        action = f"status: {source.value} -> {target.value}"
        if force:
            action += f" (FORCED: {reason})"
        elif reason:
            action += f" ({reason})"
        if budget_confirmed:
            action += " [budget overrun confirmed]"
        row = ctx.log_row(epic, action, ctx.files.layout(epic).story_file_name(story.id))
        ctx.store.append_log(story.id, [row], head=loaded.log_head)
    render_after_commit(ctx, epic, moved.id, budget=False)
    if target is Status.COMPLETED:  # the story's figures are final: METRICS.yaml
        from storyflow.services.metrics import write_story_metrics

        # From the committed state: a move nested in a run's transaction (which holds the
        # database's write lock on SQLite) writes it after that transaction commits.
        ctx.files.after_commit(lambda: write_story_metrics(ctx, epic, moved.id))
    for warning in warnings:  # what _apply_budget said
        ctx.warn(warning, budget=True)
    return MoveResult(
        story=moved,
        source=source,
        target=target,
        forced=force,
        budget=decision,
        warnings=warnings,
    )


def _check_lease(
    story: Story, lease: dict[str, Any] | None, owner: str | None, now: datetime
) -> None:
    if lease is None or lease["owner"] == owner or lease["expires_at"] <= now:
        return
    raise ConflictError(
        f"{story.id} is leased by {lease['owner']} until {lease['expires_at']}",
        code="STORY_LOCKED",
        hint="wait for the run to finish (storyflow story show shows the lease), "
        "or let the lease expire",
        details={
            "story": story.id,
            "owner": lease["owner"],
            "expires_at": lease["expires_at"].isoformat(),
        },
    )


def _register_story_snapshot(
    ctx: Context, story: Story, snapshot: tuple[str, str, dict[str, Any]], now: datetime
) -> None:
    """Entering elaboration freezes the story as written: a new story artifact version."""
    from storyflow.adapters.files.story_files import sha256_text

    display, text, content = snapshot
    digest = sha256_text(text)
    latest = ctx.store.latest_artifact(story.id, ArtifactKind.STORY)
    if latest is not None and latest.sha256 == digest:
        return
    ctx.store.insert_artifact(
        story_id=story.id,
        kind=ArtifactKind.STORY,
        version=(latest.version + 1) if latest else 1,
        path=display.rsplit("/", 1)[-1],
        sha256=digest,
        raw=text,
        content=content,
        verdict=None,
        story_version=story.version,
        submitted_by=ctx.actor,
        submitted_at=now,
    )


def elaboration_approved(ctx: Context, story_id: str) -> bool:
    """Whether the story's latest elaboration carries a PM/UX approval (what the approval
    guard asks for, read by the run engine to pause rather than fail)."""
    latest = ctx.store.latest_artifact(story_id, ArtifactKind.ELABORATION)
    return latest is not None and bool(ctx.store.approvals(latest.id))


def approve(ctx: Context, story_id: str, *, by: str, note: str | None = None) -> dict[str, Any]:
    """Record the PM/UX approval of the story's latest elaboration."""
    parse_story_id(story_id)
    if not by.strip():
        raise InvalidInput("--by needs a name", hint="storyflow approve ID --by NAME")
    now = ctx.now()
    with change(ctx):
        story = ctx.story(story_id)
        epic = ctx.epic(story.epic)
        elaboration = ctx.store.latest_artifact(story.id, ArtifactKind.ELABORATION)
        if elaboration is None or elaboration.verdict not in ("PASS", "CONDITIONAL_PASS"):
            raise RuleViolation(
                f"{story.id} has no passing elaboration to approve",
                code="GUARD_FAILED",
                hint=f"submit one first: storyflow artifact submit {story.id} elaboration",
                details={"story": story.id},
            )
        check_story_file(ctx, epic, story)
        touched = replace(story, version=story.version + 1, updated_at=now)
        ctx.store.cas_update_story(touched, story.version)
        ctx.store.insert_approval(
            story_id=story.id, artifact_id=elaboration.id, by=by.strip(), note=note, at=now
        )
        ctx.store.insert_event(
            type="approval",
            at=now,
            story_id=story.id,
            epic=epic.prefix,
            actor=ctx.actor,
            payload={"kind": "elaboration", "version": elaboration.version, "by": by.strip()},
        )
        row = ctx.log_row(
            epic,
            f"elaboration v{elaboration.version} approved by {by.strip()}",
            note or "",
            agent=ctx.actor,
        )
        ctx.store.append_log(story.id, [row])
    render_after_commit(ctx, epic, touched.id, budget=False)
    return {"story": story.id, "elaboration_version": elaboration.version, "approved_by": by}


__all__ = ["Guard", "MoveResult", "approve", "check_budget", "move"]
