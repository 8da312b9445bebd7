"""A plan folder as data: what the parser read, and what the plan rules derive from it.

Pure. ``adapters/files/plan_parser.py`` fills the document types (files, front matter,
sections with line numbers); ``domain/plan_rules.py`` reads them and derives a ``DerivedPlan``.
The ``**Field:** value`` lines that plans and ``stories.index.md`` share are parsed here, so
the parser and the rules agree on them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from storyflow.domain.layouts import LayoutName
from storyflow.domain.statuses import Status

PLAN_FILE = "PLAN.exec.md"
META_FILE = "PLAN.meta.md"
INDEX_FILE = "stories.index.md"
PLAN_DOC_TYPE = "plan_exec"
META_DOC_TYPE = "plan_meta"
INDEX_DOC_TYPE = "stories_index"

Line = tuple[int, str]  # (1-based line number in its file, text without the newline)


@dataclass(frozen=True, kw_only=True)
class PlanWarning:
    """Something the import skipped or read leniently; never fatal."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message}


def warn(warnings: list[PlanWarning], document: PlanDocument, line: int | None, text: str) -> None:
    warnings.append(PlanWarning(file=document.source, line=line, message=text))


@dataclass(frozen=True, kw_only=True)
class CodeBlock:
    lang: str
    line: int  # the opening fence
    text: str
    data: Any = None  # the parsed document of a YAML block that parses (else None)


@dataclass(frozen=True, kw_only=True)
class Section:
    """A Markdown heading and its own lines, up to the next heading of any level."""

    level: int
    title: str
    line: int
    lines: tuple[Line, ...]  # code fences and their contents included
    blocks: tuple[CodeBlock, ...] = ()

    @property
    def text(self) -> str:
        return "\n".join(text for _, text in self.lines)

    def prose(self) -> list[Line]:
        """The lines outside fenced code."""
        out: list[Line] = []
        fence: str | None = None
        for number, text in self.lines:
            stripped = text.lstrip()
            if stripped.startswith(("```", "~~~")):
                marker = stripped[:3]
                fence = None if fence == marker else (fence or marker)
                continue
            if fence is None:
                out.append((number, text))
        return out


@dataclass(frozen=True, kw_only=True)
class PlanDocument:
    """PLAN.exec.md or PLAN.meta.md: front matter (with each key's line) and sections."""

    source: str  # workspace-relative path, for messages
    front: dict[str, Any]
    front_lines: dict[str, int]
    sections: tuple[Section, ...]

    def below(self, section: Section) -> Iterator[Section]:
        """The sections nested under ``section`` (deeper headings before the next sibling)."""
        found = False
        for other in self.sections:
            if other is section:
                found = True
                continue
            if found:
                if other.level <= section.level:
                    return
                yield other

    def with_text(self, section: Section) -> str:
        """The section's text and that of every section nested under it."""
        return "\n".join([section.text, *(s.title + "\n" + s.text for s in self.below(section))])


@dataclass(frozen=True, kw_only=True)
class Field:
    """``**Label:** value``, with the list items written below it."""

    label: str
    value: str
    line: int
    items: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return field_key(self.label)


@dataclass(frozen=True, kw_only=True)
class IndexEntry:
    """One ``## PREFIX-NNN: Title`` section of stories.index.md."""

    id: str
    title: str
    line: int
    fields: tuple[Field, ...]


@dataclass(frozen=True, kw_only=True)
class StoriesIndex:
    source: str
    front: dict[str, Any]
    front_lines: dict[str, int]
    entries: tuple[IndexEntry, ...]


@dataclass(frozen=True, kw_only=True)
class PlanSource:
    """Everything read from one plan folder."""

    folder: str  # the plan's folder, relative to the workspace ("." for its root)
    plan: PlanDocument
    meta: PlanDocument | None = None
    index: StoriesIndex | None = None
    warnings: tuple[PlanWarning, ...] = ()

    @property
    def documents(self) -> tuple[PlanDocument, ...]:
        return (self.plan,) if self.meta is None else (self.plan, self.meta)

    def titled(self, pattern: str) -> Iterator[tuple[PlanDocument, Section]]:
        """Every section (of the plan, then the meta file) whose title matches ``pattern``."""
        regex = re.compile(pattern, re.I)
        for document in self.documents:
            for section in document.sections:
                if regex.search(section.title):
                    yield document, section


# ---- what the rules derive ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PlannedStory:
    """A story as the plan states it. ``None`` means "the plan does not say": a new story
    gets the default, an existing one keeps its value. The flags only ever set."""

    id: str
    number: int
    title: str
    source: str
    line: int
    status: Status | None = None
    status_line: int | None = None
    # The status ``plan export`` wrote on that line (its ``<!-- exported: … -->`` note):
    # when the line still says it, the index was not edited there and asks for no move.
    exported_status: Status | None = None
    priority: str | None = None
    phase: int | None = None
    depends_on: tuple[str, ...] | None = None
    depends_line: int | None = None
    requires: tuple[str, ...] | None = None
    breaking_change: bool = False
    graph_integration: bool = False
    multiplier: float | None = None
    details: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class PlannedRequirement:
    name: str
    tables: tuple[str, ...]
    migration: str | None
    source: str
    line: int

    @property
    def note(self) -> str:
        where = self.migration or "the plan"
        return f"{where}: " + (", ".join(self.tables) if self.tables else "deployed")


@dataclass(frozen=True, kw_only=True)
class DerivedPlan:
    prefix: str
    title: str
    layout: LayoutName
    root: str
    timezone: str | None  # None: the plan names none (the workspace default applies)
    settings: dict[str, Any]  # EpicSettings JSON keys the plan states, and their values
    requirements: tuple[PlannedRequirement, ...]
    stories: tuple[PlannedStory, ...]
    warnings: tuple[PlanWarning, ...] = field(default_factory=tuple)


# ---- stories.index.md fields -------------------------------------------------------------

# The **Field:** lines of a story section, in the order ``plan export`` writes them.
INDEX_FIELDS: tuple[tuple[str, str], ...] = (
    ("status", "Status"),
    ("phase", "Phase"),
    ("depends_on", "Depends On"),
    ("priority", "Priority"),
    ("requires", "Requires"),
    ("token_budget_multiplier", "Token Budget Multiplier"),
    ("feature", "Feature"),
    ("goal", "Goal"),
    ("risk_notes", "Risk Notes"),
    ("infrastructure", "Infrastructure"),
    ("deliverable", "Deliverable"),
    ("gates", "Gates"),
    ("notes", "Notes"),
)
FIELD_ALIASES: dict[str, str] = {
    "depends": "depends_on",
    "dependencies": "depends_on",
    "depends_upon": "depends_on",
    "multiplier": "token_budget_multiplier",
    "budget_multiplier": "token_budget_multiplier",
    "risks": "risk_notes",
    "risk": "risk_notes",
    "gate": "gates",
    "note": "notes",
}
# The fields kept in Story.details (free text, or a list for the list fields).
DETAIL_KEYS: tuple[str, ...] = (
    "feature",
    "goal",
    "risk_notes",
    "infrastructure",
    "deliverable",
    "gates",
    "notes",
)
LIST_DETAILS = frozenset({"gates", "notes"})
# Sections of stories.index.md that ``plan export`` generates and ``plan import`` skips.
GENERATED_SECTIONS = frozenset({"progress_summary", "ready_to_start"})


def _validate_fields() -> None:
    keys = [key for key, _ in INDEX_FIELDS]
    if len(set(keys)) != len(keys) or not set(DETAIL_KEYS) <= set(keys):
        raise ValueError("INDEX_FIELDS: duplicate keys, or a detail key without a field")
    for key, label in INDEX_FIELDS:
        if field_key(label) != key:
            raise ValueError(f"INDEX_FIELDS: {label!r} does not read back as {key!r}")
    if set(FIELD_ALIASES) & set(keys) or not set(FIELD_ALIASES.values()) <= set(keys):
        raise ValueError("FIELD_ALIASES: an alias shadows a field or names no field")


# ---- **Field:** lines -----------------------------------------------------------------------

_FIELD = re.compile(
    r"^\s*(?:[-*+]\s+)?\*\*(?P<label>[^*\n]+?)\s*(?::\s*\*\*|\*\*\s*:)\s*(?P<value>.*?)\s*$"
)
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?P<text>.+?)\s*$")


def field_key(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def parse_fields(lines: Sequence[Line]) -> tuple[list[Field], list[Line]]:
    """The ``**Label:** value`` fields among ``lines`` (a field with no value owns the list
    items below it), and the other non-blank lines."""
    fields: list[Field] = []
    stray: list[Line] = []
    current: Field | None = None
    for number, text in lines:
        match = _FIELD.match(text)
        if match:
            if current is not None:
                fields.append(current)
            current = Field(label=match["label"].strip(), value=match["value"], line=number)
            continue
        item = _ITEM.match(text)
        if item and current is not None and (not current.value or current.items):
            current = Field(
                label=current.label,
                value=current.value,
                line=current.line,
                items=(*current.items, item["text"]),
            )
            continue
        if text.strip():
            if current is not None:
                fields.append(current)
                current = None
            stray.append((number, text))
    if current is not None:
        fields.append(current)
    return fields, stray


_validate_fields()


def conflict_markers(text: str) -> list[int]:
    """Lines of unresolved merge-conflict markers. ``=======`` alone is also a Markdown
    heading underline, so it counts only in a file that has a ``<<<<<<<`` or ``>>>>>>>``."""
    marks: list[int] = []
    separators: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(("<<<<<<<", ">>>>>>>")) and (len(line) == 7 or line[7] == " "):
            marks.append(number)
        elif line.rstrip() == "=======":
            separators.append(number)
    return sorted(marks + separators) if marks else []
