"""stories.index.md entries -> planned stories: statuses through the legacy table, field
values read leniently (a bad value is a warning with its line, not a crash), requirements
from the Infrastructure line. Pure."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from storyflow.domain.model import parse_story_id
from storyflow.domain.plan_model import (
    DETAIL_KEYS,
    FIELD_ALIASES,
    INDEX_FIELDS,
    LIST_DETAILS,
    Field,
    IndexEntry,
    PlannedRequirement,
    PlannedStory,
    PlanWarning,
    StoriesIndex,
)
from storyflow.domain.priorities import parse_priority
from storyflow.domain.statuses import parse_status
from storyflow.errors import InvalidInput

EXPORTED_NOTE = re.compile(r"<!--\s*exported:\s*([A-Za-z_-]+)\s*-->")
COMMENT = re.compile(r"<!--.*?-->")
ANY_ID = re.compile(r"\b[A-Z][A-Z0-9]{1,11}-\d+\b")
NO_VALUE = frozenset({"", "none", "-", "—", "–", "n/a", "na", "nothing", "tbd", "[]"})
KNOWN_KEYS = frozenset(key for key, _ in INDEX_FIELDS)
TITLE_LIMIT = 200


def mentions(requirement: PlannedRequirement, text: str) -> bool:
    """Whether ``text`` (an Infrastructure line) names the requirement: its name, its
    migration file, "schema NNN", or one of its tables."""
    lowered = text.lower()
    aliases = [requirement.name, *requirement.tables]
    if requirement.migration:
        file_name = requirement.migration.rsplit("/", 1)[-1]
        aliases += [file_name, file_name.rsplit(".", 1)[0]]
    if any(re.search(rf"(?<![\w-]){re.escape(a.lower())}(?![\w-])", lowered) for a in aliases):
        return True
    number = re.search(r"(\d+)$", requirement.name)
    if number:
        return bool(re.search(rf"\bschema\s*#?\s*0*{int(number.group(1))}\b", lowered))
    return False


class _Field:
    """A field with HTML comments taken out of its value (``raw`` keeps them)."""

    def __init__(self, field: Field) -> None:
        self.raw = field.value
        self.label, self.line, self.items = field.label, field.line, field.items
        self.key = field.key
        self.value = COMMENT.sub("", field.value).strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Reader:
    """Reads one entry's fields, collecting warnings that name the file and line."""

    def __init__(self, source: str, entry: IndexEntry, warnings: list[PlanWarning]) -> None:
        self.source = source
        self.entry = entry
        self.warnings = warnings

    def warn(self, line: int, message: str) -> None:
        self.warnings.append(PlanWarning(file=self.source, line=line, message=message))

    def status(self, f: _Field, values: dict[str, Any]) -> None:
        exported = EXPORTED_NOTE.search(f.raw)
        if exported:
            try:
                values["exported_status"] = parse_status(exported.group(1))[0]
            except InvalidInput:
                self.warn(f.line, f"{self.entry.id}: exported status {exported.group(1)!r}?")
        try:
            status, note = parse_status(f.value)
        except InvalidInput:
            self.warn(f.line, f"{self.entry.id}: unknown status {f.value!r}; status not changed")
            return
        if note:
            self.warn(f.line, f"{self.entry.id}: {note}")
        values["status"], values["status_line"] = status, f.line

    def phase(self, f: _Field, values: dict[str, Any]) -> None:
        found = re.fullmatch(r"\s*(?:phase\s*)?(\d{1,4})\b.*", f.value, re.I)
        if found:
            values["phase"] = int(found.group(1))
        elif f.value.strip().lower() not in NO_VALUE:
            self.warn(f.line, f"{self.entry.id}: phase {f.value!r} is not a number; ignored")

    def priority(self, f: _Field, values: dict[str, Any]) -> None:
        try:
            values["priority"] = parse_priority(f.value)
        except InvalidInput:
            self.warn(f.line, f"{self.entry.id}: priority {f.value!r} not known; ignored")

    def depends_on(self, f: _Field, values: dict[str, Any]) -> None:
        text = " ".join([f.value, *f.items])
        deps: list[str] = []
        for raw in ANY_ID.findall(text):
            try:
                parse_story_id(raw)
            except InvalidInput:
                self.warn(f.line, f"{self.entry.id}: dependency {raw!r} is not a story ID")
                continue
            if raw not in deps:
                deps.append(raw)
        rest = ANY_ID.sub("", text).replace(",", " ").replace(";", " ").strip()
        if not deps and rest.lower() not in NO_VALUE:
            self.warn(f.line, f"{self.entry.id}: Depends On {f.value!r} names no story")
        values["depends_on"], values["depends_line"] = tuple(deps), f.line

    def requires(self, f: _Field, values: dict[str, Any]) -> None:
        text = " ".join([f.value, *f.items]).replace(";", ",")
        names = [n.strip() for n in text.split(",") if n.strip().lower() not in NO_VALUE]
        values["requires_stated"] = tuple(names)

    def multiplier(self, f: _Field, values: dict[str, Any]) -> None:
        try:
            value = float(f.value.strip().lstrip("x×"))
        except ValueError:
            value = 0.0
        if not 0 < value <= 100:
            self.warn(f.line, f"{self.entry.id}: multiplier {f.value!r} is not in (0, 100]")
            return
        values["multiplier"], values["multiplier_line"] = value, f.line

    def detail(self, f: _Field, key: str, details: dict[str, Any]) -> None:
        if key in LIST_DETAILS:
            items = list(f.items) if f.items else f.value.split(";")
            cleaned = [_one_line(i) for i in items if i.strip()]
            if cleaned:
                details[key] = cleaned
            return
        text = _one_line("; ".join(p for p in (f.value, *f.items) if p.strip()))
        if text:
            details[key] = text


def _readers(reader: _Reader) -> dict[str, Callable[[_Field, dict[str, Any]], None]]:
    return {
        "status": reader.status,
        "phase": reader.phase,
        "priority": reader.priority,
        "depends_on": reader.depends_on,
        "requires": reader.requires,
        "token_budget_multiplier": reader.multiplier,
    }


def _check_duplicates(index: StoriesIndex) -> None:
    first: dict[str, int] = {}
    for entry in index.entries:
        if entry.id in first:
            raise InvalidInput(
                f"{index.source}:{entry.line}: a second section for {entry.id} "
                f"(the first is at line {first[entry.id]})",
                code="DUPLICATE_SECTION",
                hint="keep one ## section per story; merge the two",
                details={"file": index.source, "line": entry.line, "first_line": first[entry.id]},
            )
        first[entry.id] = entry.line


def index_stories(
    index: StoriesIndex,
    prefix: str,
    *,
    requirements: Sequence[PlannedRequirement],
    multipliers: bool,
    warnings: list[PlanWarning],
) -> list[PlannedStory]:
    """One planned story per entry of the index (duplicates refused with both lines)."""
    _check_duplicates(index)
    stories: list[PlannedStory] = []
    for entry in index.entries:
        entry_prefix, number = parse_story_id(entry.id)
        if entry_prefix != prefix:
            warnings.append(
                PlanWarning(
                    file=index.source,
                    line=entry.line,
                    message=f"{entry.id} does not belong to epic {prefix}; section skipped",
                )
            )
            continue
        reader = _Reader(index.source, entry, warnings)
        readers = _readers(reader)
        values: dict[str, Any] = {}
        details: dict[str, Any] = {}
        for raw in entry.fields:
            f = _Field(raw)
            key = FIELD_ALIASES.get(f.key, f.key)
            if key in readers:
                readers[key](f, values)
            elif key in DETAIL_KEYS:
                reader.detail(f, key, details)
            else:
                reader.warn(f.line, f"{entry.id}: unknown field **{f.label}:** ignored")
        if "multiplier" in values and not multipliers:
            reader.warn(
                values.pop("multiplier_line"),
                f"{entry.id}: the plan declares no per-story token_budget_multiplier; ignored",
            )
            values.pop("multiplier")
        values.pop("multiplier_line", None)
        title = _one_line(entry.title)
        if not title:
            reader.warn(entry.line, f"{entry.id}: no title; the ID stands in")
            title = entry.id
        if len(title) > TITLE_LIMIT:
            raise InvalidInput(
                f"{index.source}:{entry.line}: {entry.id}'s title is over {TITLE_LIMIT} characters",
                hint="shorten the title; put the rest in **Goal:**",
                details={"file": index.source, "line": entry.line},
            )
        stated = values.pop("requires_stated", None)
        infrastructure = details.get("infrastructure")
        if stated is not None or infrastructure is not None:
            derived = [
                r.name for r in requirements if infrastructure and mentions(r, infrastructure)
            ]
            values["requires"] = tuple(sorted({*(stated or ()), *derived}))
        stories.append(
            PlannedStory(
                id=entry.id,
                number=number,
                title=title,
                source=index.source,
                line=entry.line,
                details=details,
                **values,
            )
        )
    return stories


def merge_stories(
    planned: Sequence[PlannedStory], indexed: Sequence[PlannedStory]
) -> list[PlannedStory]:
    """The plan's stories (harness, breakdown) with the index's entries laid over them: what
    the index states wins; details are merged."""
    by_id = {story.id: story for story in planned}
    for entry in indexed:
        base = by_id.get(entry.id)
        if base is None:
            by_id[entry.id] = entry
            continue
        by_id[entry.id] = replace(
            entry,
            phase=entry.phase if entry.phase is not None else base.phase,
            depends_on=entry.depends_on if entry.depends_on is not None else base.depends_on,
            details={**(base.details or {}), **(entry.details or {})},
        )
    return list(by_id.values())
