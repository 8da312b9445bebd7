"""Reading a story file back into the engine's terms: its editable fields, and the history
its Agent Log records (status moves, forced moves, reasons, artifact submissions,
approvals) and its Token Budget's ledger.

The Agent Log is the history because every change the engine commits appends exactly one
row, in a fixed wording (services/stories.py, transitions.py, artifacts.py, tokens.py). So
a story's version is the number of its rows, a move's version is its row's position, and
an artifact's version and submitter are on its "KIND vN submitted" row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storyflow.config import Config
from storyflow.domain.artifacts import SUBMITTED_ROW, ArtifactKind
from storyflow.domain.budgets import LedgerSource, parse_phase
from storyflow.domain.model import AgentLogRow, LedgerEntry
from storyflow.domain.statuses import Status
from storyflow.errors import InvalidInput, NotFoundError, StoryflowError
from storyflow.services.sync_ports import ScannedFile

MOVE_ROW = re.compile(r"^status: (?P<source>[a-z-]+) -> (?P<target>[a-z-]+)(?P<rest>.*)$", re.S)
CREATED_ROW = re.compile(r"^story created \((?P<what>.*)\)$", re.S)
# storyflow plan import creates a story at the status its plan states (plan_targets.py)
IMPORTED_ROW = re.compile(r"^story imported from (?P<file>.+) \((?P<status>[a-z-]+)\)$", re.S)
TOKENS_ROW = "tokens: "  # the row of one ledger entry (services/tokens.py log_tokens)
APPROVED_ROW = re.compile(r"^elaboration v(?P<version>\d+) approved by (?P<by>.+)$", re.S)
CONFIRMED = " [budget overrun confirmed]"


def parse_time(value: Any, source: str, what: str) -> datetime:
    text = str(value).strip() if value is not None else ""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{source}: {what}: {text!r} is not an ISO-8601 time",
            hint=f"fix {what} in {source}",
            details={"file": source},
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def log_rows(raw: list[dict[str, Any]] | None, source: str) -> list[AgentLogRow]:
    rows = []
    for index, item in enumerate(raw or [], start=1):
        if not isinstance(item, dict):
            raise InvalidInput(
                f"{source}: Agent Log row {index} is not a mapping",
                code="INVALID_YAML",
                hint="each row has timestamp, agent, action and outputs",
                details={"file": source},
            )
        values = {k: item.get(k) for k in ("timestamp", "agent", "action", "outputs")}
        if not values["timestamp"] or not values["action"]:
            raise InvalidInput(
                f"{source}: Agent Log row {index} needs a timestamp and an action",
                code="INVALID_YAML",
                hint="each row has timestamp, agent, action and outputs",
                details={"file": source},
            )
        rows.append(
            AgentLogRow(
                timestamp=str(values["timestamp"]),
                agent=str(values["agent"] or ""),
                action=str(values["action"]),
                outputs="" if values["outputs"] is None else str(values["outputs"]),
            )
        )
    return rows


@dataclass(frozen=True, kw_only=True)
class Submission:
    kind: ArtifactKind
    version: int
    file_name: str
    agent: str
    at: datetime
    story_version: int
    verdict: str | None = None  # as the row states it ("KIND vN submitted: VERDICT")
    fingerprint: str | None = None  # the file's short hash, on rows that carry one
    found: str | None = None  # why the folder's file is not this version (None: no file)


@dataclass(kw_only=True)
class History:
    """What a story's Agent Log says happened to it."""

    status: Status
    transitions: list[dict[str, Any]] = field(default_factory=list)
    submissions: dict[tuple[ArtifactKind, str], Submission] = field(default_factory=dict)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    blocked_from: Status | None = None
    blocked_reason: str | None = None
    review_iterations: int = 0
    qa_iterations: int = 0
    status_changed_at: datetime | None = None
    synthetic_creation: bool = False  # no rows: a creation row is added


def _move_details(rest: str) -> tuple[str | None, bool, bool]:
    """(reason, forced, budget confirmed) from what follows ``status: a -> b``."""
    text = rest.strip()
    confirmed = text.endswith(CONFIRMED.strip())
    if confirmed:
        text = text[: -len(CONFIRMED.strip())].rstrip()
    if text.startswith("(") and text.endswith(")"):
        inner = text[1:-1]
        if inner.startswith("FORCED: "):
            return inner[len("FORCED: ") :], True, confirmed
        return inner, False, confirmed
    return None, False, confirmed


def replay(story_id: str, rows: list[AgentLogRow], file_status: Status, source: str) -> History:
    """The history the rows record (a log without rows: the story was created as pending)."""
    if not rows:
        return History(status=Status.PENDING, synthetic_creation=True)
    moves = [(i, MOVE_ROW.match(r.action)) for i, r in enumerate(rows, start=1)]
    first_move = next((m for _, m in moves if m), None)
    initial, created_why = _creation(rows[0].action, first_move, file_status)
    history = History(status=initial)
    at = parse_time(rows[0].timestamp, source, "Agent Log timestamp")
    history.transitions.append(_transition(story_id, None, initial, rows[0], created_why, 1, at))
    history.status_changed_at = at
    for index, match in moves:
        row = rows[index - 1]
        if index == 1 and not match:
            continue  # the creation row
        if match:
            target = _status(match["target"], None)
            source_status = _status(match["source"], None)
            if target is None or source_status is None:
                continue
            reason, forced, confirmed = _move_details(match["rest"])
            at = parse_time(row.timestamp, source, "Agent Log timestamp")
            transition = _transition(story_id, source_status, target, row, reason, index, at)
            transition.update(forced=forced, budget_confirmed=confirmed)
            history.transitions.append(transition)
            apply_move(history, source_status, target, reason)
            history.status_changed_at = at
            continue
        _other_row(history, row, index, source)
    return history


def _creation(action: str, first_move: Any, file_status: Status) -> tuple[Status, str]:
    """The status a story was created in and the reason recorded, from its first row: story
    new ("story created (pending)"), split ("… (split from X)"), plan import ("story
    imported from FILE (status)"); any other first row counts as the creation, in the status
    the first move starts from."""
    created = CREATED_ROW.match(action)
    if created and created["what"].startswith("split from "):
        return Status.PENDING, created["what"]
    if created:
        return _status(created["what"], Status.PENDING), "created"
    imported = IMPORTED_ROW.match(action)
    if imported:
        return _status(imported["status"], file_status), f"imported from {imported['file']}"
    return (_status(first_move["source"], file_status) if first_move else file_status), action


def _status(text: str, default: Status | None) -> Any:
    try:
        return Status(text)
    except ValueError:
        return default


def _transition(
    story_id: str,
    source: Status | None,
    target: Status,
    row: AgentLogRow,
    reason: str | None,
    version: int,
    at: datetime,
) -> dict[str, Any]:
    return {
        "story_id": story_id,
        "source": source,
        "target": target,
        "actor": row.agent,
        "reason": reason,
        "forced": False,
        "budget_confirmed": False,
        "story_version": version,
        "at": at,
    }


def apply_move(history: History, source: Status, target: Status, reason: str | None) -> None:
    if target is Status.BLOCKED:
        history.blocked_from, history.blocked_reason = source, reason
    elif source is Status.BLOCKED:
        history.blocked_from = history.blocked_reason = None
    if target is Status.CODE_REVIEW_FAILED:
        history.review_iterations += 1
    if target is Status.NEEDS_WORK or (source is Status.UAT and target is Status.IN_PROGRESS):
        history.qa_iterations += 1
    history.status = target


def _other_row(history: History, row: AgentLogRow, index: int, source: str) -> None:
    submitted = SUBMITTED_ROW.match(row.action)
    if submitted:
        try:
            kind = ArtifactKind(submitted["kind"])
        except ValueError:
            return
        history.submissions[(kind, row.outputs.strip())] = Submission(
            kind=kind,
            version=int(submitted["version"]),
            file_name=row.outputs.strip(),
            agent=row.agent,
            at=parse_time(row.timestamp, source, "Agent Log timestamp"),
            story_version=index,
            verdict=submitted["verdict"],
            fingerprint=submitted["fingerprint"],
        )
        return
    approved = APPROVED_ROW.match(row.action)
    if approved:
        history.approvals.append(
            {
                "version": int(approved["version"]),
                "by": approved["by"],
                "note": row.outputs or None,
                "at": parse_time(row.timestamp, source, "Agent Log timestamp"),
                "story_version": index,
            }
        )


def missing_files(
    history: History, artifact_files: Iterable[tuple[ScannedFile, ArtifactKind]]
) -> list[Submission]:
    """The submissions (the latest of each file name) whose file is not in the folder, in
    log order: a clone that submitted them did not commit the file, or it was deleted."""
    present = {(kind, scanned.name) for scanned, kind in artifact_files}
    missing = [s for key, s in history.submissions.items() if key not in present]
    return sorted(missing, key=lambda s: s.story_version)


def missing_paths(story_path: str, missing: list[Submission]) -> list[str]:
    folder = story_path.rsplit("/", 1)[0]
    return [f"{folder}/{s.file_name}" for s in missing]


def missing_file_error(
    story_id: str, story_path: str, missing: list[Submission], outcome: str, *, hint: str
) -> NotFoundError:
    """ARTIFACT_FILE_MISSING: the rows that submit ``missing``, and what sync did about it."""
    what = "; ".join(
        f"row {s.story_version} submits {s.kind.value} v{s.version} ({s.file_name})"
        for s in missing
    )
    other = [f"{s.file_name} is another version: {s.found}" for s in missing if s.found]
    folder = "the story folder has no such file" if not other else "; ".join(other)
    paths = missing_paths(story_path, missing)
    return NotFoundError(
        f"{story_path}: {what}, but {folder}: {outcome}",
        code="ARTIFACT_FILE_MISSING",
        hint=hint,
        details={"file": paths[0], "story": story_id, "missing": paths, "rows": what},
    )


def token_rows(rows: Iterable[AgentLogRow]) -> int:
    """How many ledger entries ``rows`` logged (log_tokens writes one row per entry)."""
    return sum(1 for row in rows if row.action.startswith(TOKENS_ROW))


def split_measurements(block: Any, logged: int) -> tuple[Any, list[Any]]:
    """(the Token Budget block with its first ``logged`` measurements, those Agent Log rows
    logged; the entries after them, added by hand, which sync logs). A block without a
    list of measurements is returned whole: ``ledger`` says what is wrong with it."""
    listed = block.get("actual_measurements") if isinstance(block, dict) else None
    if not isinstance(listed, list):
        return block, []
    return {**block, "actual_measurements": listed[:logged]}, listed[logged:]


def ledger(story_id: str, block: Any, config: Config, source: str) -> list[LedgerEntry]:
    """The ledger entries the Token Budget block lists (``actual_measurements``)."""
    if not isinstance(block, dict):
        return []
    rows = block.get("actual_measurements") or []
    if not isinstance(rows, list):
        raise InvalidInput(
            f"{source}: token_budget.actual_measurements is not a list",
            code="INVALID_YAML",
            hint="the Token Budget is rendered by storyflow: storyflow sync --prefer db",
            details={"file": source},
        )
    entries = []
    for index, row in enumerate(rows, start=1):
        try:
            entries.append(ledger_entry(story_id, row, config, source))
        except (KeyError, TypeError, ValueError, StoryflowError) as exc:
            raise InvalidInput(
                f"{source}: token_budget measurement {index}: {exc}",
                code="INVALID_YAML",
                hint="the Token Budget is rendered by storyflow: storyflow sync --prefer db",
                details={"file": source},
            ) from None
    return entries


def _count(row: dict[str, Any], key: str) -> int:
    value = row.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a whole number")
    return value


def ledger_entry(story_id: str, row: Any, config: Config, source: str) -> LedgerEntry:
    """One ``actual_measurements`` entry; KeyError, TypeError or ValueError (or an
    InvalidInput for its date) says what is wrong with it."""
    if not isinstance(row, dict):
        raise ValueError("not a mapping")
    counts = {k: _count(row, k) for k in ("input", "output", "cache_read", "cache_write")}
    origin = LedgerSource(str(row.get("source", LedgerSource.REPORTED.value))).value
    model = row.get("model")
    cost = row.get("cost_usd")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int | float)):
        raise ValueError("cost_usd must be a number")
    if cost is not None and model in config.models and origin != LedgerSource.MEASURED.value:
        # The file rounds to 6 places: the catalogue gives back the exact figure it rounded.
        exact = config.models[str(model)].cost(
            input=counts["input"],
            output=counts["output"],
            cache_read=counts["cache_read"],
            cache_write=counts["cache_write"],
        )
        cost = exact if round(exact, 6) == cost else float(cost)
    return LedgerEntry(
        story_id=story_id,
        phase=parse_phase(str(row["phase"])),
        agent=None if row.get("agent") is None else str(row["agent"]),
        model=None if model is None else str(model),
        input_tokens=counts["input"],
        output_tokens=counts["output"],
        cache_read_tokens=counts["cache_read"],
        cache_write_tokens=counts["cache_write"],
        total_tokens=_count(row, "tokens_used"),
        cost_usd=None if cost is None else float(cost),
        source=origin,
        created_at=parse_time(row.get("date"), source, "token_budget date"),
        run_id=None if row.get("run_id") is None else str(row["run_id"]),
        note=_note(row.get("notes")),
    )


def _note(value: Any) -> str | None:
    """A measurement's ``notes`` (free text; the seed writes one per finding)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("notes must be text (put it in quotes)")
    return str(value)
