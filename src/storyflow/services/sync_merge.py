"""The pure part of a two-way sync: where a story file's Agent Log stands against the
database's, which fields the later rows changed, what a field was when the file was
rendered, and which engine-owned keys a person edited."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storyflow.domain.artifacts import SUBMITTED_ROW
from storyflow.domain.checks import LogIssueKind, compare_log, file_time
from storyflow.domain.model import AgentLogRow, LedgerEntry, Story
from storyflow.services.sync_fields import FIELDS
from storyflow.services.sync_history import MOVE_ROW, TOKENS_ROW

UNKNOWN = object()
# Log rows that change no editable field (besides the ones matched below).
NEUTRAL_ROW = ("story created", "story imported from ", TOKENS_ROW, "elaboration v")
UPDATED_ROW = ("updated ", "plan import: updated ")  # story update, plan import
ENGINE_KEYS = ("blocked_reason", "blocked_from", "split_from", "superseded_by")


@dataclass(kw_only=True)
class LogState:
    """A story file's Agent Log against the database's."""

    rows: int  # rows in the file
    tampered: list[str] = field(default_factory=list)  # what was edited or removed
    behind: bool = False  # the file lacks rows the database appended since
    diverged: bool = False  # both: rows only the file has, rows only the database has
    appended: list[AgentLogRow] = field(default_factory=list)  # rows added by hand at the end


@dataclass(kw_only=True)
class Sides:
    """Which side each differing field comes from."""

    file_side: list[str] = field(default_factory=list)  # edited in the file: apply
    db_side: list[str] = field(default_factory=list)  # changed in the database: render
    conflicts: list[str] = field(default_factory=list)  # changed on both sides


def decide(
    fields: dict[str, Any],
    db_fields: dict[str, Any],
    log: LogState,
    db_rows: list[AgentLogRow],
    remembered: Any,
) -> Sides:
    """A file rendered at the database's current state (its log is complete) differs only
    by hand edits; a file behind it needs each field's value at its render point."""
    sides = Sides()
    for name in FIELDS:
        mine, theirs = fields[name], db_fields[name]
        if mine == theirs:
            continue
        if log.tampered:
            sides.conflicts.append(name)
        elif not log.behind:
            sides.file_side.append(name)
        else:
            base = base_value(name, theirs, log.rows, db_rows, remembered)
            if base is UNKNOWN:
                sides.conflicts.append(name)
            elif mine == base:
                sides.db_side.append(name)
            elif theirs == base:
                sides.file_side.append(name)
            else:
                sides.conflicts.append(name)
    return sides


def base_value(
    name: str,
    theirs: Any,
    rows: int,
    db_rows: list[AgentLogRow],
    remembered: Any,
) -> Any:
    """A field's value when the file was rendered (its log had ``rows`` rows): for status,
    from the log; for a field no later row changed, the database's (``theirs``); else what
    the last sync remembered at that point, or UNKNOWN."""
    later = db_rows[rows:]
    if name == "status":
        status = None
        for row in db_rows[:rows]:
            match = MOVE_ROW.match(row.action)
            if match:
                status = match["target"]
        if status is None:
            first = next((MOVE_ROW.match(r.action) for r in later), None)
            status = first["source"] if first else None
        return UNKNOWN if status is None else status
    if name not in changed_by(later):
        return theirs  # no later row changed it: the database still has that value
    if isinstance(remembered, dict) and remembered.get("rows") == rows:
        return remembered.get("fields", {}).get(name, UNKNOWN)
    return UNKNOWN


def update_args(edits: dict[str, Any]) -> dict[str, Any]:
    """story update's keyword arguments for the edited fields."""
    names = {
        "token_budget_multiplier": "budget_multiplier",
        "enforcement": "enforcement",
    }
    args: dict[str, Any] = {}
    for name, value in edits.items():
        if name == "enforcement" and value is not None:
            from storyflow.domain.budgets import Enforcement

            value = Enforcement(value)
        args[names.get(name, name)] = value
    return args


def log_state(file_rows: list[AgentLogRow], db_rows: list[AgentLogRow]) -> LogState:
    """Edited or removed rows (tampered), rows missing at the end (the file is behind),
    rows added at the end (to append to the database's log)."""
    state = LogState(rows=len(file_rows))
    issues = compare_log(file_rows, db_rows)
    trailing = [i for i in issues if i.kind is LogIssueKind.REMOVED and i.file_index is None]
    unrecorded = [i for i in issues if i.kind is LogIssueKind.UNRECORDED]
    others = [i for i in issues if i not in trailing and i not in unrecorded]
    for issue in others:
        if issue.kind is LogIssueKind.EDITED:
            state.tampered.append(f"row {issue.first_seq} was edited")
        else:
            state.tampered.append(f"rows {issue.first_seq}-{issue.last_seq} were removed")
    at_end = [i.file_index for i in unrecorded] == list(range(len(db_rows), len(file_rows)))
    if unrecorded and (trailing or not at_end):
        state.tampered.append(f"{len(unrecorded)} row(s) the database never recorded")
    elif unrecorded and not state.tampered:
        # Rows past the end of an intact log only: after an edited row they are the rest of
        # another history (two clones, one a row longer), not rows to replay.
        state.appended = file_rows[len(db_rows) :]
    # Past their common beginning both logs have rows, and the file has rows the database
    # never had: two clones changed the story independently (a git merge kept the other
    # side, or both), unless a person edited rows.
    same = 0
    while same < min(len(file_rows), len(db_rows)) and file_rows[same] == db_rows[same]:
        same += 1
    known = set(db_rows)
    state.diverged = (
        same < len(db_rows) and same < len(file_rows) and any(r not in known for r in file_rows)
    )
    if trailing and not state.tampered:
        state.behind = True
    return state


def changed_by(rows: list[AgentLogRow]) -> set[str]:
    """The editable fields the engine changed in these log rows."""
    changed: set[str] = set()
    for row in rows:
        action = row.action
        if MOVE_ROW.match(action):
            changed.add("status")
        elif action.startswith(UPDATED_ROW):
            names = action.split("updated ", 1)[1]
            changed.update(part.strip() for part in names.split(","))
        elif action.startswith("depends_on: "):
            changed.add("depends_on")
        elif SUBMITTED_ROW.match(action) or action.startswith(NEUTRAL_ROW):
            continue
        else:
            return set(FIELDS)  # a row we cannot read: assume it changed anything
    return changed


def engine_edits(meta: dict[str, Any], story: Story) -> list[str]:
    """Engine-owned keys whose file value differs from the database's."""
    values = {
        "blocked_reason": story.blocked_reason,
        "blocked_from": story.blocked_from.value if story.blocked_from else None,
        "split_from": story.split_from,
        "superseded_by": list(story.superseded_by) or None,
    }
    edited = [k for k in ENGINE_KEYS if meta.get(k) != values[k]]
    # A rebuild takes created_at from the file: an edit would make clones disagree (the
    # order of storyflow next, cycle times). Compared at the file's precision (seconds).
    if "created_at" in meta and file_time(meta["created_at"]) != file_time(story.created_at):
        edited.append("created_at")
    return edited


def ledger_key(entry: LedgerEntry) -> tuple[Any, ...]:
    """A ledger entry at the story file's precision (whole seconds, cost to six places)."""
    cost = None if entry.cost_usd is None else round(entry.cost_usd, 6)
    return (
        entry.phase,
        entry.total_tokens,
        entry.input_tokens,
        entry.output_tokens,
        entry.cache_read_tokens,
        entry.cache_write_tokens,
        entry.source,
        entry.model,
        entry.created_at.replace(microsecond=0),
        cost,
    )


def ledger_differs(in_file: list[LedgerEntry], in_db: list[LedgerEntry]) -> bool:
    """Whether the file's Token Budget lists other measurements than the ledger."""
    return [ledger_key(e) for e in in_file] != [ledger_key(e) for e in in_db]
