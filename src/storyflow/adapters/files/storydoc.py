"""The story file in its two formats: a YAML document (staged) and Markdown with YAML front
matter (flat). Parsing gives the metadata, Reuse Plan, Token Budget and Agent Log; projecting
rewrites only what the engine owns (metadata keys, the Token Budget, new Agent Log rows) and
leaves every other line as its author wrote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from storyflow.adapters.files.yamlio import (
    check_mapping,
    dump_entry,
    dump_yaml,
    join_front_matter,
    load_mapping,
    markdown_sections,
    splice_top_level,
    split_front_matter,
    strip_comments,
)
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.model import AgentLogRow
from storyflow.errors import InvalidInput


class StoryFormat(StrEnum):
    YAML = "yaml"
    MARKDOWN = "markdown"


def format_for(file_name: str) -> StoryFormat:
    return StoryFormat.MARKDOWN if file_name.endswith(".md") else StoryFormat.YAML


SECTION_KEYS = ("reuse_plan", "token_budget", "agent_log")
LOG_COLUMNS = ("timestamp", "agent", "action", "outputs")


@dataclass(kw_only=True)
class ParsedStory:
    meta: dict[str, Any]
    reuse_plan: str | None
    token_budget: Any
    agent_log: list[dict[str, Any]] | None
    sections: dict[str, str] = field(default_factory=dict)

    def as_content(self) -> dict[str, Any]:
        """The story as one mapping, the shape the story schema validates."""
        content = dict(self.meta)
        for key, value in self.sections.items():
            content.setdefault(key, value)
        content["reuse_plan"] = self.reuse_plan
        content["token_budget"] = self.token_budget
        content["agent_log"] = self.agent_log
        return content


def parse(text: str, fmt: StoryFormat, *, source: str) -> ParsedStory:
    if fmt is StoryFormat.YAML:
        data = load_mapping(text, source=source)
        meta = {k: v for k, v in data.items() if k not in SECTION_KEYS}
        reuse = data.get("reuse_plan")
        log = data.get("agent_log")
        return ParsedStory(
            meta=meta,
            reuse_plan=None if reuse is None else str(reuse).strip(),
            token_budget=data.get("token_budget"),
            agent_log=log if isinstance(log, list) else None,
        )
    front, body = _front_matter(text, source)
    meta = load_mapping(front, source=source, line_offset=1)
    sections = markdown_sections(body)
    reuse = sections.get("reuse_plan")
    budget = sections.get("token_budget")
    log = sections.get("agent_log")
    return ParsedStory(
        meta=meta,
        reuse_plan=None if reuse is None else strip_comments(reuse[1]),
        token_budget=None if budget is None else _budget_from_markdown(budget[1], source),
        agent_log=None if log is None else parse_log_table(log[1]),
        sections={
            key: strip_comments(text)
            for key, (_, text) in sections.items()
            if key not in SECTION_KEYS
        },
    )


def check(text: str, fmt: StoryFormat, *, source: str) -> None:
    """Raise for a story file the projection must not rewrite (what ``parse`` would refuse
    for syntax), without building its data."""
    if fmt is StoryFormat.YAML:
        _check_yaml(text, source=source)
        return
    front, body = _front_matter(text, source)
    _check_yaml(front, source=source, line_offset=1)
    budget = markdown_sections(body).get("token_budget")
    match = _YAML_BLOCK.search(budget[1]) if budget else None
    if match:
        _check_yaml(match.group(1), source=f"{source} (## Token Budget)")


# Where an explicit YAML tag (``!name``, ``!!python/...``) may begin: after a space, a line
# start or a flow indicator. A ``!`` inside a quoted value matches too (a full load, correct).
_TAG = re.compile(r"(?:^|[\s\[{,])!", re.M)


def _check_yaml(text: str, *, source: str, line_offset: int = 0) -> None:
    """``check_mapping``, except that a text with an explicit tag is loaded: the syntax check
    leaves tags alone, and only the safe constructor refuses one it does not know (which
    ``parse`` and storyflow check would then call unreadable). Nothing is ever executed."""
    if "!" in text and _TAG.search(text):  # the find first: the pattern scans at ~40 us/2 KB
        load_mapping(text, source=source, line_offset=line_offset)
    else:
        check_mapping(text, source=source, line_offset=line_offset)


def _front_matter(
    text: str,
    source: str,
    *,
    problem: str = "no YAML front matter",
    hint: str = "start the file with a '---' line, the metadata, and another '---' line",
) -> tuple[str, str]:
    """(front matter, body) of a Markdown file, or the error that names the file."""
    front, body, _ = split_front_matter(text)
    if front is None:
        raise InvalidInput(
            f"{source}: {problem}",
            code="INVALID_YAML",
            hint=hint,
            details={"file": source, "line": 1},
        )
    return front, body


# The closing fence starts a line (a ``` inside a value does not close the block).
_YAML_BLOCK = re.compile(r"```ya?ml\s*\n(.*?)^[ \t]*```", re.S | re.M)


def _budget_from_markdown(text: str, source: str) -> Any:
    match = _YAML_BLOCK.search(text)
    if not match:
        return None
    data = load_mapping(match.group(1), source=f"{source} (## Token Budget)")
    return data.get("token_budget", data)


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner.removeprefix("|").removesuffix("|")
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def parse_log_table(text: str) -> list[dict[str, Any]]:
    rows = [line for line in text.splitlines() if line.strip().startswith("|")]
    if not rows:
        return []
    header = [h.lower().split(" ")[0] for h in _cells(rows[0])]
    out: list[dict[str, Any]] = []
    for line in rows[1:]:
        cells = _cells(line)
        if all(set(c) <= set("-: ") for c in cells):
            continue
        out.append({header[i] if i < len(header) else f"col{i}": c for i, c in enumerate(cells)})
    return out


def _escape_cell(value: str) -> str:
    return " ".join(value.replace("|", "\\|").split())


def log_row_markdown(row: AgentLogRow) -> str:
    cells = [row.timestamp, row.agent, row.action, row.outputs]
    return "| " + " | ".join(_escape_cell(c) for c in cells) + " |\n"


def _log_item_yaml(row: AgentLogRow) -> str:
    """One Agent Log row as a YAML list item, without the emitter when every field is a
    short single-line scalar (the common case)."""
    fields = log_row_mapping(row)
    lines = [dump_entry(key, value) for key, value in fields.items()]
    if any(line.count("\n") != 1 for line in lines):
        return dump_yaml([fields])
    return "- " + "  ".join(lines)


def log_row_mapping(row: AgentLogRow) -> dict[str, str]:
    return {
        "timestamp": row.timestamp,
        "agent": row.agent,
        "action": row.action,
        "outputs": row.outputs,
    }


# ---- rendering a new story file -----------------------------------------------------------

YAML_HEADER = (
    "# {id}: story definition. storyflow renders the metadata keys, token_budget and\n"
    "# agent_log from its database; write description, acceptance_criteria and reuse_plan.\n"
)
REUSE_PLACEHOLDER = (
    "<!-- Existing packages being reused, why reuse was or wasn't possible, any new shared\n"
    "packages created. Required before elaboration. -->"
)


def render_new(
    fmt: StoryFormat,
    *,
    meta: dict[str, Any],
    token_budget: dict[str, Any],
    log: list[AgentLogRow],
    tz_label: str,
    body: dict[str, str] | None = None,
) -> str:
    body = body or {}
    if fmt is StoryFormat.YAML:
        doc: dict[str, Any] = dict(meta)
        doc["description"] = body.get("description", "")
        doc["acceptance_criteria"] = []
        doc["reuse_plan"] = body.get("reuse_plan", "")
        doc["token_budget"] = token_budget
        doc["agent_log"] = [log_row_mapping(r) for r in log]
        return YAML_HEADER.format(id=meta["id"]) + dump_yaml(doc)
    parts = [
        f"# {meta['id']}: {meta['title']}\n",
        "## Description\n\n" + (body.get("description") or "<!-- What and why. -->") + "\n",
        "## Acceptance Criteria\n\n<!-- - [ ] one line per criterion -->\n",
        "## Reuse Plan\n\n" + (body.get("reuse_plan") or REUSE_PLACEHOLDER) + "\n",
        "## Token Budget\n\n" + _budget_markdown(token_budget),
        "## Agent Log\n\nAppend-only.\n\n"
        + _log_header(tz_label)
        + "".join(log_row_markdown(r) for r in log),
    ]
    return join_front_matter(dump_yaml(meta), "\n" + "\n".join(parts))


def _log_header(tz_label: str) -> str:
    return f"| Timestamp ({tz_label}) | Agent | Action | Outputs |\n|---|---|---|---|\n"


def _budget_markdown(token_budget: dict[str, Any]) -> str:
    return (
        "<!-- Rendered by storyflow from the token ledger. Record usage with storyflow token\n"
        "log, or add entries at the end of actual_measurements: storyflow sync logs them. -->\n\n"
        "```yaml\n" + dump_yaml({"token_budget": token_budget}, fenced=True) + "```\n"
    )


# ---- projecting engine-owned data onto an existing file -----------------------------------


def project(
    text: str,
    fmt: StoryFormat,
    *,
    meta: dict[str, Any],
    remove: frozenset[str],
    token_budget: dict[str, Any] | None,
    new_rows: list[AgentLogRow],
    tz_label: str,
) -> str:
    if fmt is StoryFormat.YAML:
        values: dict[str, Any] = dict(meta)
        if token_budget is not None:
            values["token_budget"] = token_budget
        text = splice_top_level(text, values, remove=remove)
        return _append_yaml_log(text, new_rows) if new_rows else text
    front, body, _ = split_front_matter(text)
    front = splice_top_level(front or "", meta, remove=remove)
    if token_budget is not None:
        body = _replace_section(body, "Token Budget", _budget_markdown(token_budget))
    if new_rows:
        body = _append_markdown_log(body, new_rows, tz_label)
    return join_front_matter(front, body)


def _section_span(lines: list[str], title: str) -> tuple[int, int] | None:
    """Line range [start, end) of the ``## title`` section body, skipping fenced code."""
    fence: str | None = None
    start: int | None = None
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            # Only the opening fence's character closes it, as in markdown_sections.
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
            continue
        if fence:
            continue
        if start is None:
            if re.match(r"^##\s+" + re.escape(title) + r"\s*$", line.rstrip("\n"), re.I):
                start = index + 1
        elif _H12.match(line):
            return start, index
    return None if start is None else (start, len(lines))


def _replace_section(body: str, title: str, content: str) -> str:
    lines = body.splitlines(keepends=True)
    span = _section_span(lines, title)
    if span is None:
        anchor = _section_span(lines, "Agent Log")
        block = [f"## {title}\n", "\n", content, "\n"]
        if anchor is None:
            return body.rstrip("\n") + "\n\n" + "".join(block)
        heading = anchor[0] - 1
        return "".join(lines[:heading] + block + lines[heading:])
    start, end = span
    tail = "\n" if end < len(lines) else ""
    return "".join([*lines[:start], "\n", content, tail, *lines[end:]])


def _append_markdown_log(body: str, rows: list[AgentLogRow], tz_label: str) -> str:
    lines = body.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    rendered = [log_row_markdown(r) for r in rows]
    span = _section_span(lines, "Agent Log")
    if span is None:
        block = ["\n## Agent Log\n", "\n", "Append-only.\n", "\n", _log_header(tz_label)]
        return "".join(lines + block + rendered)
    start, end = span
    last_row = max((i for i in range(start, end) if lines[i].lstrip().startswith("|")), default=-1)
    if last_row < 0:
        insert = [_log_header(tz_label), *rendered]
        at = end
        while at > start and not lines[at - 1].strip():
            at -= 1
        return "".join([*lines[:at], "\n", *insert, *lines[at:]])
    return "".join([*lines[: last_row + 1], *rendered, *lines[last_row + 1 :]])


_ITEM = re.compile(r"^(\s*)- ")
_H12 = re.compile(r"^#{1,2}\s")
_LOG_KEY = re.compile(r"^agent_log\s*:")
_TOP_LEVEL = re.compile(r"^[A-Za-z_]")
_COMMENT = re.compile(r"(?:^|\s)#.*$")


def _log_key_line(lines: list[str], text: str) -> int | None:
    """Index of the top-level ``agent_log:`` line (found by str.find, not a regex per line)."""
    at = 0 if text.startswith("agent_log") else text.find("\nagent_log")
    while at != -1:
        line_no = text.count("\n", 0, at + (0 if at == 0 else 1))
        if line_no < len(lines) and _LOG_KEY.match(lines[line_no]):
            return line_no
        at = text.find("\nagent_log", at + 1)
    return None


def count_log_rows(text: str, fmt: StoryFormat) -> int:
    """How many Agent Log rows the file holds, by a line scan (no YAML parse): the projection
    appends the database's rows beyond this count."""
    lines = text.splitlines()
    if fmt is StoryFormat.MARKDOWN:
        span = _section_span([line + "\n" for line in lines], "Agent Log")
        if span is None:
            return 0
        return len(parse_log_table("\n".join(lines[span[0] : span[1]])))
    start = _log_key_line(lines, text)
    if start is None:
        return 0
    indent: str | None = None
    count = 0
    for line in lines[start + 1 :]:
        if _TOP_LEVEL.match(line):
            break
        item = _ITEM.match(line)
        if item and (indent is None or item.group(1) == indent):
            indent = item.group(1)
            count += 1
    return count


def _append_yaml_log(text: str, rows: list[AgentLogRow]) -> str:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start = _log_key_line(lines, text)
    # The value on the agent_log line, without a trailing comment (which is kept).
    value = None if start is None else _COMMENT.sub("", lines[start].split(":", 1)[1]).strip()
    if start is None or value not in ("", "[]", "null", "~"):
        if value is not None and value.startswith("["):
            raise InvalidInput(
                "agent_log is written in flow style; storyflow appends only to block lists",
                code="INVALID_YAML",
                hint="write agent_log as a block list ('- timestamp: ...' per row)",
            )
        if start is None:
            return "".join(lines) + dump_yaml({"agent_log": [log_row_mapping(r) for r in rows]})
    end = start + 1
    indent = ""
    while end < len(lines) and not _TOP_LEVEL.match(lines[end]):
        item = _ITEM.match(lines[end])
        if item and not indent:
            indent = item.group(1)
        end += 1
    last = end
    while last > start + 1 and (not lines[last - 1].strip() or lines[last - 1].startswith("#")):
        last -= 1
    items = "".join(_log_item_yaml(r) for r in rows)
    if indent:
        items = "".join(indent + line for line in items.splitlines(keepends=True))
    head = lines[start]
    if value:
        rest = head.split(":", 1)[1]
        head = ("agent_log:" + rest.replace(value, "", 1)).rstrip() + "\n"
    return "".join([*lines[:start], head, *lines[start + 1 : last], items, *lines[last:]])


def parse_artifact(raw: str, kind: ArtifactKind, file_name: str, display: str) -> Any:
    """Parse an artifact file into the mapping its schema validates."""
    fmt = format_for(file_name)
    if kind is ArtifactKind.STORY:
        return parse(raw, fmt, source=display).as_content()
    if fmt is StoryFormat.YAML:
        return load_mapping(raw, source=display)
    front, body = _front_matter(
        raw,
        display,
        problem="a Markdown artifact needs YAML front matter with its fields",
        hint="start the file with '---', the fields (story_id, verdict, …), and '---'",
    )
    data = load_mapping(front, source=display, line_offset=1)
    for key, (_, text) in markdown_sections(body).items():
        data.setdefault(key, strip_comments(text))
    return data


def artifact_text_as(
    raw: str, kind: ArtifactKind, source_name: str, target_name: str, story_id: str
) -> str:
    """The text to store under ``target_name`` for an artifact read from ``source_name``.

    The same text, byte for byte, when the formats agree (its hash is the submitted file's).
    Otherwise a file that parses to the same fields and stands on its own (``storyflow
    artifact validate`` passes on it), keeping the submitted text as far as it can: a YAML
    file stored under a Markdown name (the flat layout's ``ELAB-…md``) becomes that file's
    front matter, comments kept, with a missing ``story_id`` written in as the first field;
    a Markdown file stored under a YAML name gives its fields (``##`` sections included).
    """
    source, target = format_for(source_name), format_for(target_name)
    if source is target or kind is ArtifactKind.STORY:
        return raw
    data = parse_artifact(raw, kind, source_name, source_name)
    if not isinstance(data, dict):
        return raw  # refused by the schema check that follows; nothing to convert
    missing = "story_id" not in data
    want = {"story_id": story_id, **data} if missing else data
    heading = f"\n# {story_id}: {kind.value.replace('_', ' ')}\n"
    id_line = f"story_id: {story_id}\n" if missing else ""
    candidate: str | None = None
    if source is StoryFormat.YAML:
        lines = raw.splitlines(keepends=True)
        if lines and lines[0].rstrip() == "---":
            lines = lines[1:]  # the YAML's own document start
        front = "".join(lines)
        front = id_line + front + ("" if not front or front.endswith("\n") else "\n")
        candidate = front if target is StoryFormat.YAML else "---\n" + front + "---\n" + heading
    if candidate is not None:
        try:
            if parse_artifact(candidate, kind, target_name, target_name) == want:
                return candidate
        except InvalidInput:
            pass  # e.g. a document end marker or flow style: write the fields instead
    if target is StoryFormat.YAML:
        return dump_yaml(want)
    return "---\n" + dump_yaml(want) + "---\n" + heading
