"""Where an epic's stories live, from its plan: the prefix, the layout (the naming table
matched against the layout registry), the story root and the time zone. Pure."""

from __future__ import annotations

import re

from storyflow.domain.layouts import LAYOUTS, STAGES, LayoutName, default_root
from storyflow.domain.model import PREFIX_RE
from storyflow.domain.plan_model import PlanSource, PlanWarning, warn
from storyflow.errors import InvalidInput

PREFIX_SECTION = r"story prefix"
NAMING_SECTION = r"naming convention"
# A story-folder path in backticks (``plans/stories/REVI-XXX/``): its parent is the root.
STORY_DIR_PATTERN = r"`(?P<root>[^`\s]*?)/?{prefix}-(?:X+|N+|\d{{3,6}})/?`"
FILE_NAME = re.compile(r"`([^`\s/]+\.(?:ya?ml|md))`")
STAMP_PLACEHOLDER = "YYYYMMDD-HHMM"
TIMEZONE = re.compile(r"\((?P<tz>UTC|[A-Z][A-Za-z_]+(?:/[A-Za-z0-9_+\-]+)+)\)")


# ---- prefix, title ------------------------------------------------------------------------


def derive_prefix(source: PlanSource) -> str:
    plan = source.plan
    raw = plan.front.get("story_prefix")
    line = plan.front_lines.get("story_prefix")
    if raw is None:
        for _, section in source.titled(PREFIX_SECTION):
            found = re.search(r"\*\*([A-Z][A-Z0-9]*)\*\*", section.text)
            if found:
                raw, line = found.group(1), section.line
                break
    if raw is None:
        raise InvalidInput(
            f"{plan.source}: the plan names no story prefix",
            code="INVALID_ID",
            hint="add story_prefix: FLOW (2-12 upper-case letters or digits) to the front matter",
            details={"file": plan.source, "line": 1},
        )
    prefix = str(raw).strip()
    if not PREFIX_RE.match(prefix):
        raise InvalidInput(
            f"{plan.source}:{line}: story_prefix {raw!r} is not a prefix",
            code="INVALID_ID",
            hint="a prefix is 2-12 upper-case letters or digits starting with a letter, e.g. FLOW",
            details={"file": plan.source, "line": line, "value": str(raw)},
        )
    others = [(d.source, d.front, d.front_lines) for d in source.documents[1:]]
    if source.index is not None:
        others.append((source.index.source, source.index.front, source.index.front_lines))
    for where, front, lines in others:
        stated = front.get("story_prefix")
        if stated is not None and str(stated).strip() != prefix:
            line = lines.get("story_prefix")
            raise InvalidInput(
                f"{where}:{line}: story_prefix {stated!r} disagrees with the plan's {prefix}",
                code="INVALID_ID",
                hint=f"one plan folder is one epic: make it {prefix}",
                details={"file": where, "line": line, "value": str(stated)},
            )
    return prefix


# ---- layout, root, time zone --------------------------------------------------------------


def _normal_name(name: str, prefix: str) -> str:
    name = re.sub(rf"{prefix}-(?:X+|N+|\d{{3,6}})", f"{prefix}-XXX", name)
    return re.sub(r"\d{8}-\d{4}", STAMP_PLACEHOLDER, name)


def _layout_names(layout: LayoutName, prefix: str) -> set[str]:
    spec = LAYOUTS[layout]
    story_id = f"{prefix}-XXX"
    names = {spec.story_file_name(story_id)}
    names |= {
        p.format(id=story_id, stamp=STAMP_PLACEHOLDER) for p in spec.artifact_patterns.values()
    }
    return names


def derive_layout(
    source: PlanSource, prefix: str, default: LayoutName, warnings: list[PlanWarning]
) -> LayoutName:
    """The layout whose file names the naming table lists (the layout registry is the table)."""
    for document, section in source.titled(NAMING_SECTION):
        names = {_normal_name(n, prefix) for n in FILE_NAME.findall(section.text)}
        scores = {name: len(names & _layout_names(name, prefix)) for name in LAYOUTS}
        best = max(scores.values())
        winners = [name for name, score in scores.items() if score == best]
        if best and len(winners) == 1:
            return winners[0]
        warn(warnings, document, section.line, "the naming table matches no single layout")
    warn(warnings, source.plan, None, f"no artifact naming table: layout {default.value}")
    return default


def derive_root(source: PlanSource, prefix: str, layout: LayoutName) -> str:
    pattern = re.compile(STORY_DIR_PATTERN.format(prefix=re.escape(prefix)))
    for document in source.documents:
        for section in document.sections:
            found = pattern.search(section.text)
            if found and found["root"]:
                root = found["root"].strip("/")
                parent, _, last = root.rpartition("/")
                return parent if parent and last in STAGES else root
    if LAYOUTS[layout].staged:
        return source.folder  # the stage folders live beside the plan
    return default_root(layout, prefix)


def derive_timezone(source: PlanSource) -> str | None:
    for document in source.documents:
        for section in document.sections:
            for _, text in section.lines:
                if "timestamp" in text.lower():
                    found = TIMEZONE.search(text)
                    if found:
                        return found["tz"]
    return None
