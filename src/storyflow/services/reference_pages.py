"""The reference pages, rendered from the live objects: the edge table, the guards, the
error codes, the budgets, the layouts, the artifact kinds and the check codes. Every table
comes from the module that enforces it, in that module's order (or sorted), so two runs
give the same bytes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from storyflow.config import DEFAULT_MODELS
from storyflow.domain.artifacts import KIND_ALIASES, VERDICT_FIELD, VERDICTS, ArtifactKind
from storyflow.domain.assignments import DIMENSIONS, phase_roles
from storyflow.domain.budgets import (
    DEFAULT_BUDGETS,
    PHASE_ALIASES,
    BudgetPhase,
    Enforcement,
    LedgerSource,
    PhaseBudget,
    evaluate,
)
from storyflow.domain.findings import CHECK_CODES
from storyflow.domain.layouts import (
    DEFAULT_ROOTS,
    LAYOUTS,
    LEGACY_ARTIFACT_NAMES,
    STAGE_OF_STATUS,
    STAMP_FORMAT,
)
from storyflow.domain.statuses import LEGACY_STATUS_NAMES, TERMINAL, Status
from storyflow.domain.transitions import (
    EDGES,
    GUARD_DESCRIPTIONS,
    PHASE_RUN_MARKERS,
    Edge,
    Guard,
    mermaid,
)
from storyflow.errors import (
    CODES,
    BudgetRefused,
    ConflictError,
    InvalidInput,
    NotFoundError,
    RuleViolation,
    StoryflowError,
    UsageError,
)

ESCAPES = ("block", "cancel", "unblock")


def cell(value: object) -> str:
    return " ".join(str(value).replace("|", "\\|").split())


def table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def code(text: object) -> str:
    return f"`{text}`"


def _codes(items: Iterable[object]) -> str:
    return ", ".join(code(i) for i in items) or "-"


def _evidence(edge: Edge) -> str:
    if edge.evidence is None:
        return "-"
    spec = edge.evidence
    verdicts = " / ".join(v.value for v in spec.verdicts) or "any"
    return f"{code(spec.kind.value)} {verdicts}, submitted since entering {code(spec.anchor)}"


def statuses_page() -> str:
    legacy: dict[Status, list[str]] = {s: [] for s in Status}
    for name, status in sorted(LEGACY_STATUS_NAMES.items()):
        legacy[status].append(name)
    rows = [
        [
            code(s.value),
            "yes" if s in TERMINAL else "no",
            code(STAGE_OF_STATUS[s] + "/") if s in STAGE_OF_STATUS else "the stage of blocked_from",
            _codes(legacy[s]),
        ]
        for s in Status
    ]
    edges = [
        [
            code(e.source.value),
            code(e.target.value),
            e.trigger,
            _codes(g.value for g in e.guards),
            _evidence(e),
            code(e.budget_phase.value) if e.budget_phase else "-",
        ]
        for e in EDGES
    ]
    markers = [[code(p.value), _codes(sorted(m))] for p, m in PHASE_RUN_MARKERS.items()]
    return (
        "# Statuses and transitions\n\n"
        f"{len(Status)} statuses; terminal: {_codes(sorted(TERMINAL))}. Older names are read "
        "with a warning and written in the new spelling.\n\n"
        + table(["status", "terminal", "stage folder (staged layout)", "legacy names"], rows)
        + "\n## State diagram\n\n```mermaid\n"
        + mermaid()
        + "```\n\n## Transitions\n\n"
        f"{len(EDGES)} edges. A guard is checked in the same transaction as the move "
        "([guards](guards.md)); the budget phase is the one whose forward edge it is.\n\n"
        + table(["from", "to", "taken by", "guards", "evidence", "budget phase"], edges)
        + "\n## When a budget phase has run\n\n"
        "A phase ran once the story entered one of these statuses; a completed story needs "
        "tokens recorded for each phase that ran.\n\n"
        + table(["budget phase", "ran once the story entered"], markers)
    )


def _guard_edges(guard: Guard) -> str:
    """The edges a guard sits on; a block or cancel from every status is summarised."""
    edges = [e for e in EDGES if guard in e.guards]
    named: list[str] = []
    for trigger in dict.fromkeys(e.trigger for e in edges):
        mine = [e for e in edges if e.trigger == trigger]
        if trigger in ESCAPES and len(mine) > 3:
            named.append(f"{trigger}: any of {len(mine)} statuses → {code(mine[0].target.value)}")
        else:
            named += [f"{code(e.source.value)} → {code(e.target.value)}" for e in mine]
    return ", ".join(named)


def guards_page() -> str:
    rows = [[code(g.value), GUARD_DESCRIPTIONS[g], _guard_edges(g)] for g in Guard]
    return (
        "# Guards\n\nThe evidence each edge requires; see [statuses and transitions]"
        "(statuses.md#transitions) for the edges.\n\n" + table(["guard", "requires", "edges"], rows)
    )


_EXIT_CLASSES: tuple[type[StoryflowError], ...] = (
    StoryflowError,
    UsageError,
    RuleViolation,
    BudgetRefused,
    ConflictError,
    NotFoundError,
    InvalidInput,
)


def errors_page() -> str:
    exits = [[0, "-", "ok"]] + [
        [
            cls.exit_status,
            code(cls.__name__),
            _codes(c.code for c in CODES.values() if c.exit_status == cls.exit_status),
        ]
        for cls in _EXIT_CLASSES
    ]
    rows = [
        [code(c.code), c.exit_status, c.summary]
        for c in sorted(CODES.values(), key=lambda c: (c.exit_status, c.code))
    ]
    return (
        "# Errors and exit statuses\n\n"
        "An error prints one line on stderr, `storyflow: error[CODE]: message (hint: ...)`; "
        'with `--json`, `{"error": {"code", "message", "details", "hint"}}` on stdout. '
        "The code decides the exit status.\n\n"
        + table(["exit", "error class", "codes"], exits)
        + "\n## Codes\n\n"
        + table(["code", "exit", "meaning"], rows)
    )


def _limits(budget: PhaseBudget) -> list[object]:
    return [f"{budget.estimate:,}", f"{budget.warning:,}", f"{budget.hard:,}"]


def budgets_page() -> str:
    aliases: dict[BudgetPhase, list[str]] = {p: [] for p in BudgetPhase}
    for alias, phase in sorted(PHASE_ALIASES.items()):
        aliases[phase].append(alias)
    phases = [
        [code(p.value), *_limits(DEFAULT_BUDGETS[p]), _codes(aliases[p])] for p in BudgetPhase
    ]
    probe = PhaseBudget(estimate=1, warning=10, hard=20)
    levels = [
        [
            code(level.value),
            evaluate(phase=BudgetPhase.ELABORATION, level=level, used=10, limits=probe).action,
            evaluate(phase=BudgetPhase.ELABORATION, level=level, used=20, limits=probe).action,
        ]
        for level in Enforcement
    ]
    models = [
        [code(name), m.provider, m.input, m.output, m.cache_read, m.cache_write]
        for name, m in sorted(DEFAULT_MODELS.items())
    ]
    return (
        "# Token budgets\n\n"
        "Limits per budget phase, scaled by the story's `token_budget_multiplier`; a "
        "workspace overrides them in `storyflow.yaml` (`budgets:`), an epic in its settings. "
        "Estimates are the FLOW budget template; warning and hard limits the REVI defaults.\n\n"
        + table(["phase", "estimate", "warning", "hard", "also called"], phases)
        + "\n## Enforcement levels\n\n"
        "What each level does when a phase's tokens reach its limits (`confirm`: the forward "
        "edge needs `--confirm-budget --reason`; `refuse`: the phase fails).\n\n"
        + table(["level", "at the warning limit", "at the hard limit"], levels)
        + "\n## Ledger sources\n\n"
        + _codes(s.value for s in LedgerSource)
        + "\n\n## Model catalogue\n\nUSD per million tokens; `storyflow.yaml` (`models:`) "
        "overrides and extends it.\n\n"
        + table(["model", "provider", "input", "output", "cache read", "cache write"], models)
        + "\n## Model assignments\n\n"
        "Which catalogue model runs a phase: `assignments:` in `storyflow.yaml` (or "
        "`models.yaml`), with a level for the workspace, one per epic (`epics: {PREFIX: ...}`) "
        "and one per story (`stories: {ID: ...}`). The most specific wins: "
        + " over ".join(f"the {level}'s" for level in ("story", "epic", "workspace"))
        + " level, and within a level "
        + " over ".join(code(d) for d in (*DIMENSIONS, "default"))
        + ". With no assignment the agent uses its own default model (an API agent has "
        "none: its run fails with `AGENT_SPAWN_FAILED`). "
        "`storyflow models show` prints the effective table, `storyflow models check` every "
        "problem, an epic or story override naming an epic or story the database does not "
        "have included (it would never apply).\n\n"
        + table(
            ["phase", "role (assign with roles:)"],
            [[code(phase), code(role)] for phase, role in phase_roles().items()],
        )
    )


def layouts_page() -> str:
    sections = []
    for layout in LAYOUTS.values():
        folder = "<root>/<stage>/<ID>/" if layout.staged else "<root>/<ID>/"
        files = [[code(ArtifactKind.STORY.value), code(layout.story_file_pattern)]] + [
            [code(kind.value), code(pattern)] for kind, pattern in layout.artifact_patterns.items()
        ]
        sections.append(
            f"## `{layout.name.value}`\n\n{layout.description}.\n\n"
            f"Story folder: `{folder}`; default root: "
            f"`{DEFAULT_ROOTS[layout.name]}`.\n\n" + table(["kind", "file name"], files)
        )
    stages = [[code(s.value), code(stage + "/")] for s, stage in STAGE_OF_STATUS.items()]
    legacy = [[code(pattern), code(kind.value)] for pattern, kind in LEGACY_ARTIFACT_NAMES.items()]
    return (
        "# Layouts and file names\n\n"
        f"`{{id}}` is the story ID; `{{stamp}}` is `{STAMP_FORMAT}` in the epic's time zone "
        "(a second file in the same minute gets `-2`, `-3`, ...). Story folders are named "
        "`PREFIX-NNN`; no story file lies outside a story folder.\n\n"
        + "\n".join(sections)
        + "\n## Stage folders\n\nA staged story's folder moves with its status; a blocked "
        "story stays in the stage of the status it was blocked from.\n\n"
        + table(["status", "stage folder"], stages)
        + "\n## Legacy names\n\nRead as the kind shown (regular expressions over the file "
        "name); `storyflow artifact submit` stores them under the layout's name.\n\n"
        + table(["file name", "read as"], legacy)
    )


def artifacts_page() -> str:
    aliases: dict[ArtifactKind, list[str]] = {k: [] for k in ArtifactKind}
    for alias, kind in sorted(KIND_ALIASES.items()):
        aliases[kind].append(alias)
    rows = [
        [
            code(k.value),
            code(VERDICT_FIELD[k]) if k in VERDICT_FIELD else "-",
            " / ".join(v.value for v in VERDICTS.get(k, ())) or "-",
            _codes(aliases[k]),
            f"[{k.value}.json](schemas/{k.value}.json)",
        ]
        for k in ArtifactKind
    ]
    return (
        "# Artifact kinds\n\nEvery submission is validated against its kind's schema, then "
        "against its own evidence, and stored as a new version.\n\n"
        + table(["kind", "verdict field", "verdicts", "also accepted as", "JSON Schema"], rows)
    )


def checks_page() -> str:
    rows = [[code(c.code), c.summary, c.hint] for c in CHECK_CODES.values()]
    return (
        "# Check findings\n\n"
        "`storyflow check [--json] [PATHS...]` exits 0 when clean and 3 on findings; each "
        "finding names the file, the line where known, its code and a hint. With PATHS it "
        "checks what those files concern (the pre-commit hook passes the staged files).\n\n"
        + table(["code", "finding", "what to do"], rows)
    )
