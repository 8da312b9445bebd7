"""Value objects: epics, stories, artifact versions, ledger entries. Frozen; copy to change.

Story priorities (their order and spellings) are in ``priorities.py``: ``storyflow next``
sorts by them without defining these dataclasses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.budgets import BudgetPhase, Enforcement, PhaseBudget
from storyflow.domain.layouts import LayoutName
from storyflow.domain.statuses import Status
from storyflow.errors import InvalidInput, RuleViolation

PREFIX_RE = re.compile(r"^[A-Z][A-Z0-9]{1,11}$")
STORY_ID_RE = re.compile(r"^(?P<prefix>[A-Z][A-Z0-9]{1,11})-(?P<number>[0-9]{3,6})$")


def parse_prefix(text: str) -> str:
    value = text.strip()
    if not PREFIX_RE.match(value):
        raise InvalidInput(
            f"invalid epic prefix {text!r}",
            code="INVALID_ID",
            hint="a prefix is 2-12 upper-case letters or digits starting with a letter, e.g. FLOW",
            details={"value": text},
        )
    return value


TITLE_MAX = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's Cc: no title holds one


def clean_title(text: str) -> str:
    """A title as stored: runs of whitespace (line breaks, tabs) as one space. ValueError,
    saying what is wrong, when it is empty, longer than TITLE_MAX characters or holds a
    control character. The one rule for the CLI, plan import and sync."""
    title = " ".join(text.split())
    if not title:
        raise ValueError("cannot be empty")
    if len(title) > TITLE_MAX:
        raise ValueError(f"is at most {TITLE_MAX} characters")
    control = _CONTROL.search(title)
    if control:
        raise ValueError(f"cannot hold a control character ({control.group()!r})")
    return title


def file_stamp(moment: datetime) -> str:
    """A UTC time as story files and their readers show it: whole seconds, ``…Z``."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_story_id(text: str) -> tuple[str, int]:
    """Split ``PREFIX-NNN`` into prefix and number; anything else (paths included) is refused."""
    match = STORY_ID_RE.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise InvalidInput(
            f"invalid story ID {text!r}",
            code="INVALID_ID",
            hint="a story ID is PREFIX-NNN (3-6 digits), e.g. FLOW-001",
            details={"value": str(text)},
        )
    return match["prefix"], int(match["number"])


MAX_STORY_NUMBER = 999_999  # STORY_ID_RE: 3-6 digits


def format_story_id(prefix: str, number: int) -> str:
    return f"{prefix}-{number:03d}"


def check_free_numbers(prefix: str, first: int, count: int = 1) -> None:
    """Refuse ``count`` new stories numbered from ``first`` when the last would not be a
    valid story ID (more than six digits): every other command would reject it."""
    if first + count - 1 > MAX_STORY_NUMBER:
        left = max(0, MAX_STORY_NUMBER - first + 1)
        raise RuleViolation(
            f"epic {prefix} has no free story number for {count} new "
            f"{'story' if count == 1 else 'stories'} ({left} left: a story number has at "
            f"most six digits, {prefix}-{MAX_STORY_NUMBER} is the last)",
            code="STORY_NUMBERS_EXHAUSTED",
            hint="create the story in a new epic (storyflow epic new PREFIX --title ...)",
            details={"epic": prefix, "next": first, "wanted": count, "left": left},
        )


def check_coverage_threshold(value: float, option: str = "--coverage-threshold") -> float:
    """A coverage threshold: a percentage from 0 to 100 (NaN and infinities refused: with NaN
    every comparison is false, so any coverage would pass)."""
    if isinstance(value, bool) or not 0 <= value <= 100:
        raise InvalidInput(
            f"coverage threshold must be between 0 and 100, not {value:g}",
            hint=f"a percentage, e.g. {option} 45",
            details={"value": str(value)},
        )
    return float(value)


MAX_PHASE = 9999  # a plan's phase numbers have at most four digits


def check_phase(value: int) -> int:
    """A plan phase number: 0 to MAX_PHASE (a larger one overflows a database integer)."""
    if isinstance(value, bool) or not 0 <= value <= MAX_PHASE:
        raise InvalidInput(
            f"--phase must be a whole number from 0 to {MAX_PHASE}, not {value}",
            hint="the plan's phase number",
            details={"option": "phase", "value": value},
        )
    return value


class AcceptancePart(StrEnum):
    """The parts of the story acceptance rule (DESIGN §3); an epic's plan names which apply."""

    REUSE = "reuse"  # reuse satisfied or justified
    CHECKS = "checks"  # lint, types and tests recorded as passing
    NAMING = "naming"  # artifact names follow the layout's conventions
    TOKENS = "tokens"  # tokens recorded for every phase that ran


@dataclass(frozen=True, kw_only=True)
class EpicSettings:
    coverage_threshold: float = 45.0
    require_approval: bool = False
    enforcement: Enforcement = Enforcement.ADVISORY
    reuse_gate: bool = True
    budgets: dict[BudgetPhase, PhaseBudget] = field(default_factory=dict)
    # From the epic's plan (storyflow plan import); the defaults keep older rows as they were.
    acceptance: tuple[AcceptancePart, ...] = tuple(AcceptancePart)
    phase_gates: dict[str, str] = field(default_factory=dict)  # phase -> the plan's gate text
    qa_gate: tuple[str, ...] = ()  # the QA gate decisions the plan names
    breaking_change_stories: tuple[str, ...] = ()
    graph_integration_stories: tuple[str, ...] = ()
    requirements: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> tables
    harness: bool = False  # PREFIX-000 validates the workflow; every other story depends on it
    per_story_multiplier: bool = False  # stories carry their own token_budget_multiplier
    plan_dir: str | None = None  # the plan's folder: plan export writes stories.index.md there

    def to_json(self) -> dict[str, Any]:
        return {
            "coverage_threshold": self.coverage_threshold,
            "require_approval": self.require_approval,
            "enforcement": self.enforcement.value,
            "reuse_gate": self.reuse_gate,
            "budgets": {
                phase.value: {"estimate": b.estimate, "warning": b.warning, "hard": b.hard}
                for phase, b in sorted(self.budgets.items())
            },
            "acceptance": [part.value for part in self.acceptance],
            "phase_gates": dict(sorted(self.phase_gates.items())),
            "qa_gate": list(self.qa_gate),
            "breaking_change_stories": list(self.breaking_change_stories),
            "graph_integration_stories": list(self.graph_integration_stories),
            "requirements": {k: list(v) for k, v in sorted(self.requirements.items())},
            "harness": self.harness,
            "per_story_multiplier": self.per_story_multiplier,
            "plan_dir": self.plan_dir,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpicSettings:
        acceptance = data.get("acceptance")
        return cls(
            coverage_threshold=float(data.get("coverage_threshold", 45.0)),
            require_approval=bool(data.get("require_approval", False)),
            enforcement=Enforcement(data.get("enforcement", Enforcement.ADVISORY.value)),
            reuse_gate=bool(data.get("reuse_gate", True)),
            budgets={
                BudgetPhase(k): PhaseBudget(**v) for k, v in (data.get("budgets") or {}).items()
            },
            acceptance=(
                tuple(AcceptancePart)
                if acceptance is None
                else tuple(AcceptancePart(p) for p in acceptance)
            ),
            phase_gates={str(k): str(v) for k, v in (data.get("phase_gates") or {}).items()},
            qa_gate=tuple(data.get("qa_gate") or ()),
            breaking_change_stories=tuple(data.get("breaking_change_stories") or ()),
            graph_integration_stories=tuple(data.get("graph_integration_stories") or ()),
            requirements={str(k): tuple(v) for k, v in (data.get("requirements") or {}).items()},
            harness=bool(data.get("harness", False)),
            per_story_multiplier=bool(data.get("per_story_multiplier", False)),
            plan_dir=data.get("plan_dir"),
        )


@dataclass(frozen=True, kw_only=True)
class Epic:
    prefix: str
    title: str
    layout: LayoutName
    root: str
    timezone: str
    settings: EpicSettings
    created_at: datetime
    updated_at: datetime
    version: int = 1


@dataclass(frozen=True, kw_only=True)
class Story:
    id: str
    epic: str
    number: int
    title: str
    status: Status
    priority: str = "P2"
    phase: int | None = None
    breaking_change: bool = False
    graph_integration: bool = False
    token_budget_multiplier: float = 1.0
    enforcement: Enforcement | None = None
    blocked_reason: str | None = None
    blocked_from: Status | None = None
    split_from: str | None = None
    superseded_by: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    review_iterations: int = 0
    qa_iterations: int = 0
    details: dict[str, Any] = field(default_factory=dict)  # plan metadata: feature, goal, …
    created_at: datetime
    updated_at: datetime
    status_changed_at: datetime
    version: int = 1

    @property
    def is_harness(self) -> bool:
        return self.number == 0


@dataclass(frozen=True, kw_only=True)
class ArtifactVersion:
    id: int
    story_id: str
    kind: ArtifactKind
    version: int
    path: str
    sha256: str
    size: int
    content: dict[str, Any]
    verdict: str | None
    story_version: int
    submitted_by: str
    submitted_at: datetime


@dataclass(frozen=True, kw_only=True)
class LedgerEntry:
    story_id: str
    phase: BudgetPhase
    agent: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    total_tokens: int
    cost_usd: float | None
    source: str
    created_at: datetime
    run_id: str | None = None
    note: str | None = None  # token log --note: the database's only (not in the story file)


@dataclass(frozen=True, kw_only=True)
class Loaded:
    """What a change to a story reads first, in one round trip."""

    story: Story
    epic: Epic
    lease: dict[str, Any] | None  # owner, expires_at (datetime), expired or not
    log_head: tuple[int, str]  # (seq, hash) of the last Agent Log row; (0, "") when none


# (latest artifact of the edge's kind, story version at the latest entry into its anchor
# status, tokens used in its budget phase): what an edge's evidence guards read
EdgeFacts = tuple[ArtifactVersion | None, int, int]


@dataclass(frozen=True, kw_only=True)
class AgentLogRow:
    timestamp: str
    agent: str
    action: str
    outputs: str
