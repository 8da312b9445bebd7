"""Model assignments: which model runs a phase, as data (pure).

An assignment level maps phases, roles and agents to catalogue model names, with a
``default`` for everything else. The workspace has one level, and each epic and each story
may have its own. Resolution (most specific first)::

    story  level: phases > roles > agents > default
    epic   level: phases > roles > agents > default
    workspace   : phases > roles > agents > default
    (nothing)   : None -- the agent uses its own default model

Validation returns findings (key, problem) instead of raising, so the config loader can
refuse loudly and ``storyflow models check`` can list every problem at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field

from storyflow.domain.model import PREFIX_RE, STORY_ID_RE

# The dimensions of one level, most specific first.
DIMENSIONS = ("phases", "roles", "agents")
LEVEL_KEYS = frozenset({"default", *DIMENSIONS})


@dataclass(frozen=True, kw_only=True)
class Entry:
    key: str  # e.g. assignments.epics.FLOW.phases.review
    dimension: str  # default | phases | roles | agents
    name: str  # the phase, role or agent ("" for default)
    model: str


@dataclass(frozen=True, kw_only=True)
class AssignmentLevel:
    default: str | None = None
    phases: Mapping[str, str] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)
    agents: Mapping[str, str] = field(default_factory=dict)

    def pick(self, *, phase: str | None, role: str | None, agent: str | None) -> tuple[str, str]:
        """(model, key within the level) or ("", "") when this level assigns nothing."""
        for dimension, name in (("phases", phase), ("roles", role), ("agents", agent)):
            table: Mapping[str, str] = getattr(self, dimension)
            if name is not None and name in table:
                return table[name], f"{dimension}.{name}"
        if self.default is not None:
            return self.default, "default"
        return "", ""

    def entries(self) -> Iterator[Entry]:
        """Every assignment this level makes, keys relative to the level."""
        if self.default is not None:
            yield Entry(key="default", dimension="default", name="", model=self.default)
        for dimension in DIMENSIONS:
            table: Mapping[str, str] = getattr(self, dimension)
            for name, model in table.items():
                yield Entry(key=f"{dimension}.{name}", dimension=dimension, name=name, model=model)

    @property
    def empty(self) -> bool:
        return self.default is None and not any(getattr(self, d) for d in DIMENSIONS)


@dataclass(frozen=True, kw_only=True)
class Assignments:
    workspace: AssignmentLevel = field(default_factory=AssignmentLevel)
    epics: Mapping[str, AssignmentLevel] = field(default_factory=dict)
    stories: Mapping[str, AssignmentLevel] = field(default_factory=dict)

    def levels(self, epic: str | None, story: str | None) -> list[tuple[str, AssignmentLevel]]:
        """The levels that apply, most specific first, each with its key prefix."""
        found: list[tuple[str, AssignmentLevel]] = []
        if story is not None and story in self.stories:
            found.append((f"assignments.stories.{story}", self.stories[story]))
        if epic is not None and epic in self.epics:
            found.append((f"assignments.epics.{epic}", self.epics[epic]))
        found.append(("assignments", self.workspace))
        return found

    def resolve(
        self,
        *,
        epic: str | None,
        story: str | None,
        phase: str | None,
        role: str | None,
        agent: str | None = None,
    ) -> Resolution:
        for prefix, level in self.levels(epic, story):
            model, key = level.pick(phase=phase, role=role, agent=agent)
            if model:
                return Resolution(model=model, key=f"{prefix}.{key}")
        return Resolution(model=None, key=None)

    def entries(self) -> Iterator[Entry]:
        """Every assignment, workspace first, with its full key."""
        scoped = [("assignments", self.workspace)]
        scoped += [(f"assignments.epics.{e}", level) for e, level in self.epics.items()]
        scoped += [(f"assignments.stories.{s}", level) for s, level in self.stories.items()]
        for prefix, level in scoped:
            for entry in level.entries():
                yield Entry(
                    key=f"{prefix}.{entry.key}",
                    dimension=entry.dimension,
                    name=entry.name,
                    model=entry.model,
                )

    @property
    def empty(self) -> bool:
        return self.workspace.empty and not self.epics and not self.stories


@dataclass(frozen=True, kw_only=True)
class Resolution:
    model: str | None  # None: nothing assigned; the agent's own default applies
    key: str | None  # the assignment that decided, e.g. assignments.epics.FLOW.phases.review


@dataclass(frozen=True, kw_only=True)
class Finding:
    key: str
    problem: str
    hint: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "problem": self.problem, "hint": self.hint}


def check(
    assignments: Assignments,
    *,
    models: Collection[str],
    phases: Collection[str],
    roles: Collection[str] | None,
    agents: Collection[str] | None = None,
) -> list[Finding]:
    """Every assignment must name a catalogue model and an existing phase, role and agent
    (a vocabulary given as None is not checked)."""
    findings: list[Finding] = []
    known_models = ", ".join(sorted(models))
    for entry in assignments.entries():
        if entry.model not in models:
            findings.append(
                Finding(
                    key=entry.key,
                    problem=f"unknown model {entry.model!r}",
                    hint=f"add {entry.model} under models: (provider, input, output prices), "
                    f"or use one of: {known_models}",
                )
            )
        if entry.dimension == "phases" and entry.name not in phases:
            findings.append(
                Finding(
                    key=entry.key,
                    problem=f"unknown phase {entry.name!r}",
                    hint="phases are: " + ", ".join(phases),
                )
            )
        elif entry.dimension == "roles" and roles is not None and entry.name not in roles:
            findings.append(
                Finding(
                    key=entry.key,
                    problem=f"unknown role {entry.name!r}",
                    hint="roles are: " + ", ".join(sorted(roles)),
                )
            )
        elif entry.dimension == "agents" and agents is not None and entry.name not in agents:
            findings.append(
                Finding(
                    key=entry.key,
                    problem=f"unknown agent {entry.name!r}",
                    hint="configure it under runs.agents, or use one of: "
                    + ", ".join(sorted(agents)),
                )
            )
    return findings


def check_scopes(
    assignments: Assignments, *, epics: Collection[str], stories: Collection[str]
) -> list[Finding]:
    """Every epic and story override must name an epic or story the workspace has: resolution
    matches the key exactly, so a misspelt one (``FLWO``, ``FLOW-099``) never applies. The
    hint names the closest existing one, else how to create it."""
    findings: list[Finding] = []
    for prefix in assignments.epics:
        if prefix not in epics:
            close = closest(prefix, epics)
            findings.append(
                Finding(
                    key=f"assignments.epics.{prefix}",
                    problem=f"unknown epic {prefix!r}",
                    hint=f"did you mean {close}? storyflow epic list shows the epics"
                    if close
                    else f"storyflow epic new {prefix} creates it; storyflow epic list shows "
                    "the epics",
                )
            )
    for story in assignments.stories:
        if story not in stories:
            findings.append(
                Finding(
                    key=f"assignments.stories.{story}",
                    problem=f"unknown story {story!r}",
                    hint=_story_hint(story, epics, stories),
                )
            )
    return findings


def closest(word: str, candidates: Collection[str]) -> str | None:
    """difflib's closest match (for a "did you mean"); among equally close ones, the one
    with the same letters (a transposition: FLWO for FLOW, not FLOX), then the first in
    order."""
    close = difflib.get_close_matches(word, candidates, n=5)
    letters = sorted(word)

    def rank(candidate: str) -> tuple[float, bool, str]:
        ratio = difflib.SequenceMatcher(None, word, candidate).ratio()
        return (-ratio, sorted(candidate) != letters, candidate)

    return min(close, key=rank) if close else None


def _story_hint(story: str, epics: Collection[str], stories: Collection[str]) -> str:
    """The closest story of its epic (of any epic when the epic does not exist), else the
    commands that would make one: a story's number is given out by ``story new``."""
    prefix = story.rsplit("-", 1)[0]
    candidates = [s for s in stories if s.startswith(f"{prefix}-")] if prefix in epics else stories
    close = closest(story, candidates)
    if close:
        return f"did you mean {close}? storyflow story list shows the stories"
    if prefix in epics:
        return f"storyflow story new {prefix} creates the epic's next story; use its ID"
    return f"no epic {prefix}: storyflow epic new {prefix}, then storyflow story new {prefix}"


# ---- parsing (the loader hands in what safe YAML gave it) ---------------------------------


def parse(value: object) -> tuple[Assignments, list[Finding]]:
    """Build Assignments from the ``assignments:`` mapping. Structural problems (wrong types,
    unknown keys, malformed epic prefixes or story IDs) come back as findings; the loader
    raises the first one."""
    findings: list[Finding] = []
    if value is None:
        return Assignments(), findings
    if not isinstance(value, Mapping):
        findings.append(_shape("assignments", "must be a mapping"))
        return Assignments(), findings
    allowed = LEVEL_KEYS | {"epics", "stories"}
    for key in value:
        if key not in allowed:
            findings.append(_unknown(f"assignments.{key}", allowed))
    workspace = _level("assignments", {k: v for k, v in value.items() if k in LEVEL_KEYS}, findings)
    epics = _scoped("assignments.epics", value.get("epics"), PREFIX_RE, "an epic prefix", findings)
    stories = _scoped(
        "assignments.stories", value.get("stories"), STORY_ID_RE, "a story ID", findings
    )
    return Assignments(workspace=workspace, epics=epics, stories=stories), findings


def _shape(key: str, problem: str) -> Finding:
    return Finding(key=key, problem=problem, hint=f"fix {key}")


def _unknown(key: str, allowed: Collection[str]) -> Finding:
    return Finding(
        key=key, problem="unknown key", hint="allowed here: " + ", ".join(sorted(allowed))
    )


def _model_name(key: str, value: object, findings: list[Finding]) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    findings.append(_shape(key, "must be a model name from the catalogue"))
    return None


def _level(key: str, value: object, findings: list[Finding]) -> AssignmentLevel:
    if value is None:
        return AssignmentLevel()
    if not isinstance(value, Mapping):
        findings.append(_shape(key, "must be a mapping with default, phases, roles, agents"))
        return AssignmentLevel()
    for name in value:
        if name not in LEVEL_KEYS:
            findings.append(_unknown(f"{key}.{name}", LEVEL_KEYS))
    default = None
    if value.get("default") is not None:
        default = _model_name(f"{key}.default", value["default"], findings)
    tables: dict[str, dict[str, str]] = {}
    for dimension in DIMENSIONS:
        raw = value.get(dimension)
        table: dict[str, str] = {}
        if raw is not None and not isinstance(raw, Mapping):
            findings.append(_shape(f"{key}.{dimension}", f"must map {dimension} to models"))
        elif raw is not None:
            for name, model in raw.items():
                picked = _model_name(f"{key}.{dimension}.{name}", model, findings)
                if picked is not None:
                    table[str(name)] = picked
        tables[dimension] = table
    return AssignmentLevel(default=default, **tables)


def _scoped(
    key: str, value: object, pattern: re.Pattern[str], what: str, findings: list[Finding]
) -> dict[str, AssignmentLevel]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        findings.append(_shape(key, f"must map {what} to its assignments"))
        return {}
    levels: dict[str, AssignmentLevel] = {}
    for name, spec in value.items():
        text = str(name)
        if not pattern.match(text):
            findings.append(
                Finding(key=f"{key}.{text}", problem=f"not {what}", hint=f"use {what} as the key")
            )
            continue
        levels[text] = _level(f"{key}.{text}", spec, findings)
    return levels


def phase_roles() -> dict[str, str]:
    """Each phase, in run order, and the agent role that runs it (the run engine's table)."""
    from storyflow.domain.phases import PHASES  # imported when assignments are used

    return {name.value: phase.role.value for name, phase in PHASES.items()}


def vocabulary() -> tuple[tuple[str, ...], frozenset[str]]:
    """The phase names and agent roles an assignment may name."""
    from storyflow.domain.phases import Role

    return tuple(phase_roles()), frozenset(r.value for r in Role)
