"""From a plan to an epic's rules: tables of phrase patterns -> settings, applied to the
sections of PLAN.exec.md (and PLAN.meta.md). Pure.

No rule knows a particular plan: a rule finds its section by title (``SECTION_TITLES``) and
reads it through a table (naming table -> layout registry, ``~5k`` -> 5000, acceptance phrases
-> parts, gate phrases -> settings, …). What the plan does not state stays unstated (absent
from ``DerivedPlan.settings``; ``None`` on a planned story), so the workspace defaults apply
to a new epic and a re-import leaves such values alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from storyflow.domain.artifacts import Verdict
from storyflow.domain.budgets import BudgetPhase, Enforcement, PhaseBudget, parse_phase
from storyflow.domain.layouts import LayoutName
from storyflow.domain.model import AcceptancePart, parse_story_id
from storyflow.domain.plan_breakdown import (
    DATABASE_SECTION,
    HARNESS_SECTION,
    PHASE_SECTION,
    PHASE_TITLE,
    derive_breakdown,
    derive_harness,
    derive_requirements,
)
from storyflow.domain.plan_layout import (
    NAMING_SECTION,
    PREFIX_SECTION,
    derive_layout,
    derive_prefix,
    derive_root,
    derive_timezone,
)
from storyflow.domain.plan_model import (
    DerivedPlan,
    PlanDocument,
    PlannedStory,
    PlanSource,
    PlanWarning,
    Section,
    parse_fields,
    warn,
)
from storyflow.domain.plan_stories import index_stories, merge_stories
from storyflow.errors import InvalidInput

# rule -> the section titles it reads (case-insensitive search)
SECTION_TITLES: dict[str, str] = {
    "token_budget": r"token budget",
    "reuse_gate": r"reuse gate",
    "acceptance": r"acceptance rule",
    "breaking_change_stories": r"breaking change",
    "graph_integration_stories": r"integration points|graph integration",
}

ESTIMATE = re.compile(r"^~?\s*(?P<n>\d+(?:[.,]\d+)*)\s*(?P<unit>[kKmM]?)\s*(?:tokens)?$")
BACKTICKED = re.compile(r"`([^`]+)`")
COVERAGE_PATTERNS: tuple[str, ...] = (
    r"coverage\b[^\n]*?(?:minimum|min\.?|at least|>=|≥)\s*:?\s*(\d{1,3}(?:\.\d+)?)\s*%",
    r"(?:minimum|at least)\s+(\d{1,3}(?:\.\d+)?)\s*%\s+(?:test\s+)?coverage",
)
MULTIPLIER_PHRASE = r"token_budget_multiplier|per[- ]story multiplier"
# An item of the story acceptance rule -> the part it states.
ACCEPTANCE_PHRASES: tuple[tuple[str, AcceptancePart], ...] = (
    (r"\breus(?:e|es|ed|ing)\b|shared package", AcceptancePart.REUSE),
    (r"\blint|\btype[- ]?check|\btests?\b", AcceptancePart.CHECKS),
    (r"naming convention", AcceptancePart.NAMING),
    (r"\btokens?\b", AcceptancePart.TOKENS),
)
# A workflow phase's title -> the phase its gate belongs to (first match wins).
WORKFLOW_PHASES: tuple[tuple[str, str], ...] = (
    (r"elaborat", "elaboration"),
    (r"implementation plan|\bplan(?:ning)?\b", "plan"),
    (r"develop|implement", "implementation"),
    (r"code review|\breview", "code_review"),
    (r"\bqa\b|verif|\btest", "qa_verification"),
)
# (phase, phrase, setting): a workflow phase's gate turns the setting on when it has the
# phrase, off when it does not ("PM and UX review" after elaboration -> require_approval).
GATE_SETTINGS: tuple[tuple[str, str, str], ...] = (
    (
        "elaboration",
        r"\b(?:PM|UX|product|design|stakeholder)\b[^.;]*\breview|\bapprov|\bsign[- ]off",
        "require_approval",
    ),
)
VERDICT_WORDS = re.compile(r"\b(" + "|".join(v.value for v in Verdict) + r")\b")


# Every section title a rule looks up: stated twice, one of the two would be dropped.
RULE_SECTIONS: tuple[str, ...] = (
    *SECTION_TITLES.values(),
    PREFIX_SECTION,
    NAMING_SECTION,
    DATABASE_SECTION,
    HARNESS_SECTION,
    PHASE_SECTION,
)


def _sections(source: PlanSource, rule: str) -> Iterator[tuple[PlanDocument, Section]]:
    return source.titled(SECTION_TITLES[rule])


def check_duplicate_sections(source: PlanSource) -> None:
    """Refuse a rule section written twice in one document: the same title at the same level
    under the same heading. The rules would read one and silently drop the other. The same
    title under different headings (a ``### Reuse Gate`` per phase) is not a repeat."""
    patterns = [re.compile(p, re.I) for p in RULE_SECTIONS]
    for document in source.documents:
        first: dict[tuple[int | None, int, str], Section] = {}
        open_headings: list[Section] = []
        for section in document.sections:
            while open_headings and open_headings[-1].level >= section.level:
                open_headings.pop()
            parent = open_headings[-1].line if open_headings else None
            open_headings.append(section)
            if not any(p.search(section.title) for p in patterns):
                continue
            key = (parent, section.level, " ".join(section.title.casefold().split()))
            seen = first.setdefault(key, section)
            if seen is not section:
                heading = f"{'#' * section.level} {section.title}"
                raise InvalidInput(
                    f"{document.source}:{section.line}: a second {heading!r} section "
                    f"(the first is at line {seen.line})",
                    code="DUPLICATE_SECTION",
                    hint="keep one section of that title; merge the two",
                    details={
                        "file": document.source,
                        "line": section.line,
                        "first_line": seen.line,
                        "section": section.title,
                    },
                )


# ---- budgets and enforcement ---------------------------------------------------------------


def parse_estimate(value: Any) -> int | None:
    """``~5k`` -> 5000, ``12,000`` -> 12000, ``1.5M`` -> 1500000; None when not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if value >= 0 else None
    found = ESTIMATE.match(str(value).strip())
    if not found:
        return None
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[found["unit"].lower()]
    number = found["n"].replace(",", "") if found["unit"] == "" else found["n"].replace(",", ".")
    return round(float(number) * scale)


def _estimates(data: Any) -> Mapping[str, Any] | None:
    if not isinstance(data, Mapping):
        return None
    inner = data.get("token_budget", data)
    if isinstance(inner, Mapping) and isinstance(inner.get("phase_estimates"), Mapping):
        return inner["phase_estimates"]  # type: ignore[no-any-return]
    return None


def _budgets(
    document: PlanDocument,
    line: int,
    estimates: Mapping[str, Any],
    defaults: Mapping[BudgetPhase, PhaseBudget],
    warnings: list[PlanWarning],
) -> dict[str, dict[str, int]]:
    """The template's estimates as epic budgets (warning and hard limits: the defaults')."""
    budgets: dict[str, dict[str, int]] = {}
    total: int | None = None
    for name, raw in estimates.items():
        amount = parse_estimate(raw)
        if amount is None:
            warn(warnings, document, line, f"estimate {name}: {raw!r} is no number")
            continue
        if str(name).startswith("total"):
            total = amount
            continue
        try:
            phase = parse_phase(str(name))
        except InvalidInput:
            warn(warnings, document, line, f"unknown budget phase {name!r}")
            continue
        base = defaults[phase]
        budgets[phase.value] = {"estimate": amount, "warning": base.warning, "hard": base.hard}
    summed = sum(b["estimate"] for b in budgets.values())
    if total is not None and total != summed:
        warn(warnings, document, line, f"total_estimated {total} is not the sum {summed}")
    return dict(sorted(budgets.items()))


def _enforcement(
    document: PlanDocument, number: int, text: str, warnings: list[PlanWarning]
) -> Enforcement | None:
    """``Enforcement levels: `advisory` (default), `warning`, …``: the level marked default
    (or the only one named)."""
    levels: dict[str, Enforcement] = {}
    for word in BACKTICKED.findall(text):
        try:
            levels[word] = Enforcement(word.strip().lower())
        except ValueError:
            warn(warnings, document, number, f"unknown enforcement level {word!r}")
    default = re.search(r"`([^`]+)`\s*\(default\)", text)
    if default:
        return levels.get(default.group(1))
    return next(iter(levels.values())) if len(levels) == 1 else None


def derive_budgets(
    source: PlanSource,
    defaults: Mapping[BudgetPhase, PhaseBudget],
    settings: dict[str, Any],
    warnings: list[PlanWarning],
) -> None:
    """The Token Budget section: estimates, the enforcement level, per-story multipliers."""
    for document, section in _sections(source, "token_budget"):
        sections = [section, *document.below(section)]
        for block in (b for s in sections for b in s.blocks):
            estimates = _estimates(block.data)
            budgets = (
                _budgets(document, block.line, estimates, defaults, warnings) if estimates else {}
            )
            if budgets:
                settings["budgets"] = budgets
                break
        for number, text in (line for s in sections for line in s.prose()):
            level = (
                _enforcement(document, number, text, warnings)
                if "enforcement" in text.lower()
                else None
            )
            if level is not None:
                settings["enforcement"] = level.value
        if any(re.search(MULTIPLIER_PHRASE, s.text, re.I) for s in sections):
            settings["per_story_multiplier"] = True


# ---- gates ----------------------------------------------------------------------------------


def derive_coverage(source: PlanSource, settings: dict[str, Any]) -> None:
    for document in source.documents:
        for section in document.sections:
            for _, text in section.prose():
                for pattern in COVERAGE_PATTERNS:
                    found = re.search(pattern, text, re.I)
                    if found and 0 <= float(found.group(1)) <= 100:
                        settings["coverage_threshold"] = float(found.group(1))
                        return


def derive_reuse_and_acceptance(
    source: PlanSource, settings: dict[str, Any], warnings: list[PlanWarning]
) -> None:
    if any(True for _ in _sections(source, "reuse_gate")):
        settings["reuse_gate"] = True
    for document, section in _sections(source, "acceptance"):
        fields, stray = parse_fields(section.prose())
        items = [i for f in fields for i in f.items] + [t for _, t in stray]
        parts = {
            part
            for item in items
            for phrase, part in ACCEPTANCE_PHRASES
            if re.search(phrase, item, re.I)
        }
        if not parts:
            warn(warnings, document, section.line, "the acceptance rule names no known part")
            continue
        settings["acceptance"] = [p.value for p in AcceptancePart if p in parts]
        return


def _workflow_phase(title: str) -> str | None:
    name = PHASE_TITLE.match(title)
    text = name["name"] if name else title
    for pattern, phase in WORKFLOW_PHASES:
        if re.search(pattern, text, re.I):
            return phase
    return None


def derive_phase_gates(
    source: PlanSource, settings: dict[str, Any], warnings: list[PlanWarning]
) -> None:
    """Workflow phases (``### Phase N: Name`` without a **Stories:** line) and their gates."""
    gates: dict[str, str] = {}
    for document, section in source.titled(PHASE_SECTION):
        fields = {f.key: f for f in parse_fields(section.prose())[0]}
        if "stories" in fields:
            continue  # a phase of the breakdown: its gates go to its stories
        phase = _workflow_phase(section.title)
        if phase is None:
            warn(warnings, document, section.line, f"workflow phase {section.title!r} not known")
            continue
        gate = fields.get("gate") or fields.get("gates")
        if gate is not None:
            gates[phase] = " ".join([gate.value, *gate.items]).strip()
        elif phase == "elaboration":
            gates[phase] = ""
    if not gates:
        return
    settings["phase_gates"] = {k: v for k, v in sorted(gates.items()) if v}
    for phase, phrase, name in GATE_SETTINGS:
        if phase in gates:
            settings[name] = bool(re.search(phrase, gates[phase], re.I))
    for text in gates.values():
        words = list(dict.fromkeys(VERDICT_WORDS.findall(text)))
        if len(words) >= 2:
            settings["qa_gate"] = words


# ---- special-handling lists ------------------------------------------------------------


def derive_story_lists(source: PlanSource, prefix: str, settings: dict[str, Any]) -> None:
    story_id = re.compile(rf"\b{re.escape(prefix)}-\d{{3,6}}\b")
    for rule in ("breaking_change_stories", "graph_integration_stories"):
        ids: set[str] = set()
        for document, section in _sections(source, rule):
            ids.update(story_id.findall(document.with_text(section)))
        if ids:
            settings[rule] = sorted(ids, key=lambda i: parse_story_id(i)[1])


# ---- everything ---------------------------------------------------------------------------


def derive(
    source: PlanSource,
    *,
    default_layout: LayoutName,
    budgets: Mapping[BudgetPhase, PhaseBudget],
) -> DerivedPlan:
    """Every rule of the plan folder: the epic's prefix, layout, root, time zone, settings,
    requirements and stories (from the harness step, the phase breakdown and the index)."""
    check_duplicate_sections(source)
    warnings = list(source.warnings)
    prefix = derive_prefix(source)
    layout = derive_layout(source, prefix, default_layout, warnings)
    settings: dict[str, Any] = {}
    derive_budgets(source, budgets, settings, warnings)
    derive_coverage(source, settings)
    derive_reuse_and_acceptance(source, settings, warnings)
    derive_phase_gates(source, settings, warnings)
    requirements = derive_requirements(source, warnings)
    if requirements:
        settings["requirements"] = {r.name: list(r.tables) for r in requirements}
    derive_story_lists(source, prefix, settings)
    harness = derive_harness(source, prefix)
    if harness is not None:
        settings["harness"] = True
    settings["plan_dir"] = source.folder
    planned = [harness] if harness is not None else []
    planned += derive_breakdown(source, prefix, warnings)
    if source.index is not None:
        indexed = index_stories(
            source.index,
            prefix,
            requirements=requirements,
            multipliers=bool(settings.get("per_story_multiplier")),
            warnings=warnings,
        )
        planned = merge_stories(planned, indexed)
    flags = {
        "breaking_change": set(settings.get("breaking_change_stories", ())),
        "graph_integration": set(settings.get("graph_integration_stories", ())),
    }
    stories = tuple(_flagged(story, flags) for story in sorted(planned, key=lambda s: s.number))
    title = str(source.plan.front.get("title") or f"{prefix} plan")
    return DerivedPlan(
        prefix=prefix,
        title=" ".join(title.split()),
        layout=layout,
        root=derive_root(source, prefix, layout),
        timezone=derive_timezone(source),
        settings=settings,
        requirements=tuple(requirements),
        stories=stories,
        warnings=tuple(sorted(warnings, key=lambda w: (w.file, w.line or 0))),
    )


def _flagged(story: PlannedStory, flags: Mapping[str, set[str]]) -> PlannedStory:
    from dataclasses import replace

    return replace(
        story,
        breaking_change=story.breaking_change or story.id in flags["breaking_change"],
        graph_integration=story.graph_integration or story.id in flags["graph_integration"],
    )
