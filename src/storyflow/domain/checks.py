"""The pure rules of ``storyflow check``: a story file's front matter and Agent Log against
the database's record, the tokens a completed story owes, dependency cycles, and which names
belong in a story folder. The finding codes are in ``findings.py``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from storyflow.domain.budgets import BudgetPhase
from storyflow.domain.model import (
    AgentLogRow,
    Epic,
    LedgerEntry,
    Story,
    file_stamp,
)
from storyflow.domain.priorities import PRIORITIES, PRIORITY_ALIASES
from storyflow.domain.statuses import Status, parse_status
from storyflow.domain.transitions import PHASE_RUN_MARKERS
from storyflow.errors import InvalidInput


@dataclass(frozen=True, kw_only=True)
class AuditRows:
    """What the database holds that the check compares with the files (read in bulk)."""

    epics: tuple[Epic, ...]
    stories: tuple[Story, ...]
    log: dict[str, list[AgentLogRow]]  # story -> rows in sequence order
    chain_breaks: dict[str, int]  # story -> first sequence number off its hash chain
    entered: dict[str, frozenset[Status]]  # statuses each story entered by a transition
    token_phases: dict[str, frozenset[BudgetPhase]]  # phases with tokens in the ledger
    ledger: dict[str, list[LedgerEntry]]  # story -> its ledger, in order (the Token Budget)
    submitted: dict[tuple[str, str], str]  # (story, sha256) -> first submission, ISO time


# git makes markers longer than seven where a conflict may hold another: in a file two
# clones renamed two ways (a story folder moved to two stages) it writes <<<<<<<< HEAD:path.
_CONFLICT = re.compile(r"^(?:<{7,}|>{7,})(?: |$)|^={7}$", re.M)


def conflict_line(text: str) -> int | None:
    """The line of the first merge-conflict marker in ``text``, if any."""
    found = _CONFLICT.search(text)
    return None if found is None else text.count("\n", 0, found.start()) + 1


# ---- names --------------------------------------------------------------------------------

STORY_ID_IN_TEXT = re.compile(r"(?<![A-Za-z0-9])[A-Z][A-Z0-9]{1,11}-[0-9]{3,6}(?![0-9])")
# Story-like files outside a story folder are loose; plan files (PLAN.exec.md,
# stories.index.md, ...) carry no story ID and are not.
LOOSE_SUFFIXES = (".md", ".yaml", ".yml", ".json")


def story_ids_in(name: str) -> list[str]:
    return STORY_ID_IN_TEXT.findall(name)


def is_loose_story_file(name: str, fixed_names: Iterable[str]) -> bool:
    """A file that belongs in a story folder: named for a story, or a fixed artifact name."""
    if name in set(fixed_names):
        return True
    return name.endswith(LOOSE_SUFFIXES) and bool(story_ids_in(name))


# ---- the story file against the database --------------------------------------------------

# Until a story has been elaborated its file is a draft: the Reuse Plan may still be empty.
DRAFT_STATUSES = frozenset({Status.PENDING, Status.GENERATED, Status.CANCELLED})


def story_file_is_draft(
    status: Status, blocked_from: Status | None, entered: Iterable[Status] | None
) -> bool:
    """Whether the story file may still have an empty Reuse Plan. ``entered``: the statuses
    the database saw the story enter (None: no database to ask)."""
    if entered is not None:
        seen = set(entered)
        if Status.IN_ELABORATION in seen:
            return False
        if status is Status.COMPLETED:
            # imported as done: its planning predates storyflow, and nothing is left to plan
            return True
    effective = (blocked_from or Status.PENDING) if status is Status.BLOCKED else status
    return effective in DRAFT_STATUSES


@dataclass(frozen=True, kw_only=True)
class Drift:
    field: str
    file_value: str
    db_value: str


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _status(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return parse_status(text)[0].value
    except InvalidInput:
        return text


def _priority(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if text.upper() in PRIORITIES:
        return text.upper()
    return PRIORITY_ALIASES.get(text.lower(), text)


def _int(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return _text(value)
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return _text(value)


def _float(value: Any, default: float) -> str:
    if value is None:
        value = default
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


def _bool(value: Any) -> str:
    return "true" if value is True else ("false" if value in (None, False) else str(value))


def _ids(value: Any) -> str:
    if value is None:
        items: list[str] = []
    elif isinstance(value, list | tuple):
        items = [str(v).strip() for v in value]
    else:
        items = [str(value).strip()]
    return ", ".join(sorted(items)) or "(none)"


def file_time(value: Any) -> str | None:
    """A time as a story file keeps it (whole seconds, UTC, ``…Z``), so a file and the
    database, which keeps microseconds, compare at the file's precision. None when unset;
    text that is not an ISO-8601 time is returned as it is (it then differs)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text or None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return file_stamp(moment.astimezone(UTC))


def _show(value: str | None) -> str:
    return "(unset)" if value is None else value


def front_matter_drift(meta: Mapping[str, Any], story: Story) -> list[Drift]:
    """Every engine-owned metadata field whose value in the file differs from the story's."""
    enforcement = story.enforcement.value if story.enforcement else None
    pairs: list[tuple[str, str | None, str | None]] = [
        ("status", _status(meta.get("status")), story.status.value),
        ("title", _text(meta.get("title")), story.title),
        ("priority", _priority(meta.get("priority")), story.priority),
        ("phase", _int(meta.get("phase")), _int(story.phase)),
        ("depends_on", _ids(meta.get("depends_on")), _ids(list(story.depends_on))),
        ("requires", _ids(meta.get("requires")), _ids(list(story.requires))),
        ("breaking_change", _bool(meta.get("breaking_change")), _bool(story.breaking_change)),
        (
            "graph_integration",
            _bool(meta.get("graph_integration")),
            _bool(story.graph_integration),
        ),
        (
            "token_budget_multiplier",
            _float(meta.get("token_budget_multiplier"), 1.0),
            _float(story.token_budget_multiplier, 1.0),
        ),
        ("token_budget_enforcement", _text(meta.get("token_budget_enforcement")), enforcement),
        ("blocked_from", _status(meta.get("blocked_from")), _status(story.blocked_from)),
        ("split_from", _text(meta.get("split_from")), story.split_from),
        ("superseded_by", _ids(meta.get("superseded_by")), _ids(list(story.superseded_by))),
    ]
    if "created_at" in meta:  # without it a rebuild takes the first Agent Log row's time
        pairs.append(("created_at", file_time(meta.get("created_at")), file_time(story.created_at)))
    return [
        Drift(field=name, file_value=_show(mine), db_value=_show(theirs))
        for name, mine, theirs in pairs
        if mine != theirs
    ]


class LogIssueKind(StrEnum):
    EDITED = "edited"
    REMOVED = "removed"
    UNRECORDED = "unrecorded"


@dataclass(frozen=True, kw_only=True)
class LogIssue:
    kind: LogIssueKind
    file_index: int | None  # the file row the issue is reported at (0-based), if any
    first_seq: int | None = None  # the database rows concerned (1-based sequence numbers)
    last_seq: int | None = None
    recorded: AgentLogRow | None = None  # what the database holds for an edited row


LOG_FIELDS = ("timestamp", "agent", "action", "outputs")


def _log_key(row: Any) -> tuple[str, ...]:
    if isinstance(row, AgentLogRow):
        values: list[Any] = [row.timestamp, row.agent, row.action, row.outputs]
    elif isinstance(row, Mapping):
        values = [row.get(name) for name in LOG_FIELDS]
    else:
        values = [row, None, None, None]
    # Markdown cells collapse whitespace; compare what both forms keep.
    return tuple(" ".join(str("" if v is None else v).split()) for v in values)


def compare_log(file_rows: Sequence[Any], db_rows: Sequence[AgentLogRow]) -> list[LogIssue]:
    """Where the file's Agent Log departs from the database's: rows edited, rows removed
    (consecutive ones reported once), rows the database never recorded."""
    mine = [_log_key(r) for r in file_rows]
    theirs = [_log_key(r) for r in db_rows]
    where: dict[tuple[str, ...], list[int]] = {}
    for index, key in enumerate(theirs):
        where.setdefault(key, []).append(index)
    issues: list[LogIssue] = []
    i = j = 0
    while i < len(mine) and j < len(theirs):
        if mine[i] == theirs[j]:
            i += 1
            j += 1
            continue
        ahead = next((k for k in where.get(mine[i], []) if k > j), None)
        if ahead is not None:  # rows j..ahead-1 were removed from the file
            issues.append(
                LogIssue(kind=LogIssueKind.REMOVED, file_index=i, first_seq=j + 1, last_seq=ahead)
            )
            j = ahead
        elif i + 1 < len(mine) and mine[i + 1] == theirs[j]:  # a row added by hand
            issues.append(LogIssue(kind=LogIssueKind.UNRECORDED, file_index=i))
            i += 1
        else:
            issues.append(
                LogIssue(
                    kind=LogIssueKind.EDITED,
                    file_index=i,
                    first_seq=j + 1,
                    last_seq=j + 1,
                    recorded=db_rows[j],
                )
            )
            i += 1
            j += 1
    if j < len(theirs):
        issues.append(
            LogIssue(
                kind=LogIssueKind.REMOVED,
                file_index=None,
                first_seq=j + 1,
                last_seq=len(theirs),
            )
        )
    issues.extend(LogIssue(kind=LogIssueKind.UNRECORDED, file_index=k) for k in range(i, len(mine)))
    return issues


def unrecorded_phases(
    entered: Iterable[Status], with_tokens: Iterable[BudgetPhase]
) -> list[BudgetPhase]:
    """Budget phases that ran (the story entered one of their marker statuses) with no
    tokens in the ledger: the acceptance rule's "tokens recorded for every phase run"."""
    reached = set(entered)
    ran = {phase for phase, marks in PHASE_RUN_MARKERS.items() if reached & marks}
    return sorted(ran - set(with_tokens))


def dependency_cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of ``graph`` (story -> dependencies) that
    has one, as a path that ends where it starts; sorted, deterministic."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            edges = sorted(graph.get(node, ()))
            if position < len(edges):
                work.append((node, position + 1))
                nxt = edges[position]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    cycles = []
    for component in components:
        members = set(component)
        start = min(members)
        if len(members) == 1 and start not in graph.get(start, ()):
            continue
        path = [start]
        seen = {start: 0}
        current = start
        while True:
            current = min(d for d in graph.get(current, ()) if d in members)
            if current in seen:
                cycles.append([*path[seen[current] :], current])
                break
            seen[current] = len(path)
            path.append(current)
    return sorted(cycles)


def rename_back(holder: str, story_id: str) -> str:
    """The hint for a story whose folder was renamed by hand: ``holder`` is the story file
    that says it is ``story_id``, in a folder of another name."""
    folder = holder.rsplit("/", 1)[0]
    expected = f"{folder.rsplit('/', 1)[0]}/{story_id}"
    return f"give the folder its story's name: git mv {folder} {expected}"
