"""The rules of a plan that make stories and requirements: the harness step (story 000),
the phase breakdown (one story per deliverable, numbered through the phase's range, its
gates kept in the story's details) and the database requirements. Pure."""

from __future__ import annotations

import re
from typing import Any

from storyflow.domain.model import format_story_id, parse_story_id
from storyflow.domain.plan_model import (
    PlannedRequirement,
    PlannedStory,
    PlanSource,
    PlanWarning,
    parse_fields,
    warn,
)

# the section titles these rules read (case-insensitive search)
DATABASE_SECTION = r"database (?:dependencies|requirements)|schema requirements"
HARNESS_SECTION = r"harness|step 0\b"
PHASE_SECTION = r"^phase\s+\d+\b"
REQUIREMENT_MIGRATION = re.compile(r"(?P<path>[\w./-]*?(?P<number>\d{3,})_[\w-]+\.sql)")
TABLE_ITEM = re.compile(r"^\s*(?:--|#|//)?\s*[-*]\s+`?(?P<table>[A-Za-z_][\w.]*)`?\s*$")
STORIES_RANGE = (
    r"(?P<first>{prefix}-\d{{3,6}})\s*(?:through|thru|to|until|–|—|-|\.\.)\s*"
    r"(?P<last>{prefix}-\d{{3,6}})"
)
PHASE_TITLE = re.compile(
    r"^phase\s+(?P<n>\d+)\s*[:.\-–—]?\s*(?P<name>.*?)\s*(?:\((?P<count>\d+) stor(?:y|ies)\))?$",
    re.I,
)
HEADING_NAME = re.compile(r"^.*?(?:—|–|:|\s-\s)\s*(?P<name>.+?)\s*(?:\(.*\))?$")


def derive_requirements(
    source: PlanSource, warnings: list[PlanWarning]
) -> list[PlannedRequirement]:
    found: dict[str, PlannedRequirement] = {}
    for document, section in source.titled(DATABASE_SECTION):
        text = document.with_text(section)
        migration = REQUIREMENT_MIGRATION.search(text)
        name = f"db-schema-{migration['number']}" if migration else "db-schema"
        tables: list[str] = []
        after_tables = False
        for line in text.splitlines():
            if re.search(r"\btables?\b", line, re.I):
                after_tables = True
                continue
            item = TABLE_ITEM.match(line)
            if after_tables and item:
                tables.append(item["table"])
        if not migration and not tables:
            warn(warnings, document, section.line, "database section names no migration or table")
            continue
        found.setdefault(
            name,
            PlannedRequirement(
                name=name,
                tables=tuple(dict.fromkeys(tables)),
                migration=migration["path"] if migration else None,
                source=document.source,
                line=section.line,
            ),
        )
    return list(found.values())


def derive_harness(source: PlanSource, prefix: str) -> PlannedStory | None:
    for document, section in source.titled(HARNESS_SECTION):
        named = HEADING_NAME.match(section.title)
        title = named["name"] if named else section.title
        fields, stray = parse_fields(section.prose())
        notes = [i for f in fields for i in f.items] + [
            re.sub(r"^\s*[-*+]\s+", "", t) for _, t in stray
        ]
        return PlannedStory(
            id=format_story_id(prefix, 0),
            number=0,
            title=" ".join(title.split()),
            source=document.source,
            line=section.line,
            depends_on=(),
            details={"notes": [" ".join(n.split()) for n in notes]} if notes else {},
        )
    return None


# ---- the phase breakdown --------------------------------------------------------------------


def derive_breakdown(
    source: PlanSource, prefix: str, warnings: list[PlanWarning]
) -> list[PlannedStory]:
    """Breakdown phases (``### Phase N: Name (k stories)`` with **Stories:**, **Deliverables:**
    and **Gates:**): one story per deliverable, numbered through the phase's range."""
    stories: list[PlannedStory] = []
    span = re.compile(STORIES_RANGE.format(prefix=re.escape(prefix)), re.I)
    for document, section in source.titled(PHASE_SECTION):
        fields = {f.key: f for f in parse_fields(section.prose())[0]}
        if "stories" not in fields:
            continue
        title = PHASE_TITLE.match(section.title)
        assert title is not None  # the section matched SECTION_TITLES["phase"]
        phase = int(title["n"])
        stated = fields["stories"]
        found = span.search(stated.value)
        if found:
            first, last = parse_story_id(found["first"])[1], parse_story_id(found["last"])[1]
            numbers = list(range(first, last + 1))
        else:
            ids = re.findall(rf"{re.escape(prefix)}-\d{{3,6}}", stated.value)
            numbers = [parse_story_id(i)[1] for i in ids]
        deliverables = list(fields["deliverables"].items) if "deliverables" in fields else []
        gates = [" ".join(g.split()) for g in fields["gates"].items] if "gates" in fields else []
        if len(numbers) != len(deliverables):
            warn(
                warnings,
                document,
                stated.line,
                f"phase {phase}: {len(numbers)} stories but {len(deliverables)} deliverables",
            )
        if title["count"] and int(title["count"]) != len(numbers):
            warn(
                warnings,
                document,
                section.line,
                f"phase {phase} says {title['count']} stories, its range has {len(numbers)}",
            )
        for number, deliverable in zip(numbers, deliverables, strict=False):
            text = " ".join(deliverable.split())
            details: dict[str, Any] = {"deliverable": text}
            if gates:
                details["gates"] = gates
            stories.append(
                PlannedStory(
                    id=format_story_id(prefix, number),
                    number=number,
                    title=text,
                    source=document.source,
                    line=section.line,
                    phase=phase,
                    details=details,
                )
            )
    return stories
