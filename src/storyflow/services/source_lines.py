"""Line numbers in story and artifact files, found by a line scan (no second parse), so a
finding can say where: a top-level key, a ``## Section``, an Agent Log row."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_\-]*)\s*:(\s|$)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^(\s*)- ")
_TOP_LEVEL = re.compile(r"^[A-Za-z_]")


def section_key(title: str) -> str:
    """``## Reuse Plan`` -> ``reuse_plan`` (as the story file parser names sections)."""
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


@dataclass(kw_only=True)
class SourceLines:
    """Where things are in one file (1-based line numbers)."""

    keys: dict[str, int] = field(default_factory=dict)  # top-level / front matter keys
    sections: dict[str, int] = field(default_factory=dict)  # ## headings, by section key
    log_rows: list[int] = field(default_factory=list)  # Agent Log rows, in order

    def of(self, name: str) -> int | None:
        """The line of a field (``checks.lint`` -> the ``checks`` key) or a section."""
        top = name.split(".", 1)[0]
        return self.keys.get(top) or self.sections.get(top)

    def log_row(self, index: int | None) -> int | None:
        if index is not None and 0 <= index < len(self.log_rows):
            return self.log_rows[index]
        if self.log_rows:
            return self.log_rows[-1]
        return self.of("agent_log")


def scan_lines(text: str, *, markdown: bool) -> SourceLines:
    lines = text.splitlines()
    found = SourceLines()
    if not markdown:
        for number, line in enumerate(lines, 1):
            match = _KEY.match(line)
            if match:
                found.keys.setdefault(match.group(1), number)
        found.log_rows = _yaml_log_rows(lines, found.keys.get("agent_log"))
        return found
    body_start = 0
    if lines and lines[0].rstrip() == "---":
        for number in range(1, len(lines)):
            if lines[number].rstrip() in ("---", "..."):
                body_start = number + 1
                break
            match = _KEY.match(lines[number])
            if match:
                found.keys.setdefault(match.group(1), number + 1)
    fence: str | None = None
    in_log = False
    table: list[int] = []
    for index in range(body_start, len(lines)):
        stripped = lines[index].lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
            continue
        if fence:
            continue
        heading = _HEADING.match(lines[index])
        if heading and len(heading.group(1)) <= 2:
            key = section_key(heading.group(2)) if len(heading.group(1)) == 2 else ""
            if key:
                found.sections.setdefault(key, index + 1)
            # The first "## Agent Log" section holds the log (as the parser reads it).
            in_log = key == "agent_log" and found.sections[key] == index + 1
            continue
        if in_log and stripped.startswith("|"):
            table.append(index + 1)
    found.log_rows = [n for n in table[1:] if not set(_cells(lines[n - 1])) <= set("-: |")]
    return found


def _cells(line: str) -> str:
    return line.strip().strip("|")


def _yaml_log_rows(lines: list[str], key_line: int | None) -> list[int]:
    if key_line is None:
        return []
    rows: list[int] = []
    indent: str | None = None
    for index in range(key_line, len(lines)):
        line = lines[index]
        if _TOP_LEVEL.match(line):
            break
        item = _ITEM.match(line)
        if item and (indent is None or item.group(1) == indent):
            indent = item.group(1)
            rows.append(index + 1)
    return rows
