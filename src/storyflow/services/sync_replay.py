"""A peer's changes: the rows another clone's engine appended to a story file's Agent Log.

Each clone has its own database; git carries the story files between them. When a file's
Agent Log extends the database's (the database's rows are a prefix of the file's), the
rows beyond are another engine's commits, and each is read back exactly as a rebuild reads
it (``sync_history.replay``, ``rebuild.artifact_row``, ``sync_history.ledger``): moves one
row at a time with their actor, time, reason and flags; "KIND vN submitted" rows as that
version of the file in the folder; approvals; the Token Budget's measurements beyond the
database's ledger. Written as they were, not as new changes, so every clone ends with the
same history, versions and ledger, and the story's version is again its row count.

A row the rules cannot have written (a move with no edge, from a status the story was not
in) is refused: nothing of that story is applied. So is a "KIND vN submitted" row whose file
the folder lacks (the other clone did not commit it): replayed without it, this clone would
hold a log that names a version it does not have, and would take the file, once it arrives,
as a new version the other clone never made. The story waits for the file
(``ARTIFACT_FILE_MISSING``); ``--prefer db`` keeps this database's side instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.budgets import Enforcement
from storyflow.domain.model import AgentLogRow, Epic, LedgerEntry, Story
from storyflow.domain.statuses import Status
from storyflow.domain.transitions import find_edge
from storyflow.errors import RuleViolation, StoryflowError
from storyflow.services.context import Context
from storyflow.services.rebuild import artifact_row
from storyflow.services.sync_fields import FIELDS
from storyflow.services.sync_history import (
    History,
    Submission,
    apply_move,
    ledger,
    missing_file_error,
    missing_files,
    missing_paths,
    parse_time,
    replay,
    split_measurements,
    token_rows,
)
from storyflow.services.sync_merge import changed_by, ledger_key
from storyflow.services.sync_ports import ScannedFile, SyncFilesPort, SyncRecord
from storyflow.services.sync_report import SyncReport


@dataclass(kw_only=True)
class PeerChanges:
    """The rows to write for a peer's appended log rows, and the story after them."""

    story: Story  # as the peer left it: status, flags, counters, version = the file's rows
    rows: list[AgentLogRow]
    transitions: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)
    links: bool = False  # depends_on or requires changed
    registered: list[tuple[ScannedFile, ArtifactKind, str]] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "rows": len(self.rows),
            "moves": len(self.transitions),
            "artifacts": len(self.artifacts),
            "approvals": len(self.approvals),
            "ledger": len(self.ledger),
        }


def read_peer(
    ctx: Context,
    files: SyncFilesPort,
    epic: Epic,
    story: Story,
    doc: Any,
    fields: dict[str, Any],
    file_rows: list[AgentLogRow],
    db_rows: list[AgentLogRow],
    artifact_files: list[tuple[ScannedFile, ArtifactKind]],
    path: str,
    report: SyncReport,
) -> PeerChanges | None:
    """The changes the rows after ``db_rows`` record; None when an artifact they name
    cannot be read (reported); raises when a row cannot be replayed."""
    known = len(db_rows)
    history = replay(story.id, file_rows, Status(fields["status"]), path)
    moves = [t for t in history.transitions if t["story_version"] > known]
    state = History(
        status=story.status,
        blocked_from=story.blocked_from,
        blocked_reason=story.blocked_reason,
        review_iterations=story.review_iterations,
        qa_iterations=story.qa_iterations,
        status_changed_at=story.status_changed_at,
    )
    for move in moves:
        _check_move(story.id, state.status, move, path)
        apply_move(state, move["source"], move["target"], move["reason"])
        state.status_changed_at = move["at"]
    peer = PeerChanges(story=story, rows=file_rows[known:], transitions=moves)
    # Artifacts: the latest submission of each file the new rows name (an older version
    # whose file the next one overwrote is not in the folder: a rebuild skips it too).
    named = History(
        status=state.status,
        submissions={key: s for key, s in history.submissions.items() if s.story_version > known},
    )
    missing = missing_files(named, artifact_files)
    if missing:
        raise _waits(story.id, path, missing)
    stale = []
    for scanned, kind in sorted(artifact_files, key=lambda a: a[0].path):
        row = artifact_row(ctx, files, epic, story, named, scanned, kind, report)
        if row is None:
            return None
        if isinstance(row, Submission):
            stale.append(row)
        elif isinstance(row, dict):
            peer.artifacts.append(row)
            peer.registered.append((scanned, kind, str(row["sha256"])))
    if stale:
        raise _waits(story.id, path, sorted(stale, key=lambda s: s.story_version))
    peer.artifacts.sort(key=lambda a: a["story_version"])
    peer.approvals = [a for a in history.approvals if a["story_version"] > known]
    peer.ledger = _new_entries(ctx, story, doc, path, peer.rows)
    peer.story = _after(story, state, fields, file_rows[known:], doc.meta, path, len(file_rows))
    peer.links = peer.story.depends_on != story.depends_on or (
        peer.story.requires != story.requires
    )
    return peer


def _waits(story_id: str, path: str, missing: list[Submission]) -> StoryflowError:
    """ARTIFACT_FILE_MISSING for rows whose artifact file is not in the folder (or is
    another version's): the story waits for the clone that submitted it."""
    return missing_file_error(
        story_id,
        path,
        missing,
        f"{story_id}'s new Agent Log rows wait for it",
        hint=f"the clone that submitted it did not commit it: there, git add "
        f"{' '.join(missing_paths(path, missing))}, commit and push (a file edited there "
        "after it was submitted: storyflow sync there first, which submits the edit as a "
        "new version); here, pull and run storyflow sync again. Or keep this database's "
        f"side: storyflow sync --prefer db re-renders {path} without those rows",
    )


def _check_move(story_id: str, current: Status, move: dict[str, Any], path: str) -> None:
    source, target = move["source"], move["target"]
    where = f"{path}: Agent Log row {move['story_version']}"
    hint = (
        f"the row was not written by storyflow: fix or remove it in {path} (git log -p "
        f"{path} shows where it came from), then sync again"
    )
    if source is not current:
        raise RuleViolation(
            f"{where} moves {story_id} from {source.value}, but it was {current.value} "
            "after the rows before it",
            code="TRANSITION_NOT_ALLOWED",
            hint=hint,
            details={"file": path, "story": story_id},
        )
    if not move["forced"] and find_edge(source, target) is None:
        raise RuleViolation(
            f"{where} records {source.value} -> {target.value}, which no edge of the state "
            "machine allows (and it was not forced)",
            code="TRANSITION_NOT_ALLOWED",
            hint=hint,
            details={"file": path, "story": story_id},
        )


def _new_entries(
    ctx: Context, story: Story, doc: Any, path: str, rows: list[AgentLogRow]
) -> list[LedgerEntry]:
    """The measurements the new ``rows`` logged (each "tokens: …" row logged one): the
    file's entries after the ledger's, when the ledger is their beginning (any other
    difference is a hand edit of the Token Budget, which sync reverts). Entries listed
    beyond those were added by hand: sync logs them afterwards (sync_measurements)."""
    in_db = ctx.store.ledger(story.id)
    block, _ = split_measurements(doc.token_budget, len(in_db) + token_rows(rows))
    in_file = ledger(story.id, block, ctx.config, path)
    if [ledger_key(e) for e in in_file[: len(in_db)]] != [ledger_key(e) for e in in_db]:
        return []
    return in_file[len(in_db) :]


def _after(
    story: Story,
    state: History,
    fields: dict[str, Any],
    rows: list[AgentLogRow],
    meta: dict[str, Any],
    path: str,
    count: int,
) -> Story:
    """The story as the peer left it. The fields its "updated …" rows changed are the
    file's; any other difference in the file is a hand edit, applied through the rules."""
    recognised = changed_by([r for r in rows if changed_by([r]) != set(FIELDS)])
    values: dict[str, Any] = {}
    for name in recognised - {"status"}:
        value = fields[name]
        if name in ("depends_on", "requires"):
            value = tuple(value)
        elif name == "enforcement":
            value = Enforcement(value) if value else None
        values[name] = value
    last = parse_time(rows[-1].timestamp, path, "Agent Log timestamp")
    updated = parse_time(meta["updated_at"], path, "updated_at") if "updated_at" in meta else last
    return replace(
        story,
        **values,
        status=state.status,
        blocked_from=state.blocked_from,
        blocked_reason=state.blocked_reason,
        review_iterations=state.review_iterations,
        qa_iterations=state.qa_iterations,
        status_changed_at=state.status_changed_at or story.status_changed_at,
        updated_at=max(updated, story.updated_at),
        version=count,
    )


def write_peer(ctx: Context, epic: Epic, story: Story, peer: PeerChanges) -> None:
    """Write the peer's changes as it made them (inside the caller's savepoint), with the
    compare-and-set on the version the database had."""
    store = ctx.store
    store.cas_update_story(peer.story, story.version)
    if peer.links:
        store.set_links(story.id, peer.story.depends_on, peer.story.requires)
    store.append_log(story.id, peer.rows)
    for t in peer.transitions:
        store.insert_transition(
            story_id=story.id,
            source=t["source"],
            target=t["target"],
            actor=t["actor"],
            reason=t["reason"],
            forced=t["forced"],
            budget_confirmed=t["budget_confirmed"],
            story_version=t["story_version"],
            at=t["at"],
        )
    for a in peer.artifacts:
        artifact_id = store.insert_artifact(
            story_id=story.id,
            kind=a["kind"],
            version=a["version"],
            path=a["path"],
            sha256=a["sha256"],
            raw=a["raw"],
            content=a["content"],
            verdict=a["verdict"],
            story_version=a["story_version"],
            submitted_by=a["submitted_by"],
            submitted_at=a["submitted_at"],
        )
        table, values = a["kind_row"]
        if table:
            store.insert_kind_row(
                table,
                {
                    "artifact_id": artifact_id,
                    "story_id": story.id,
                    "version": a["version"],
                    **values,
                },
            )
    for approval in peer.approvals:
        found = store.artifact_version(story.id, ArtifactKind.ELABORATION, approval["version"])
        if found is not None:  # as a rebuild: an approval of a version not kept is dropped
            store.insert_approval(
                story_id=story.id,
                artifact_id=found[0].id,
                by=approval["by"],
                note=approval["note"],
                at=approval["at"],
            )
    for entry in peer.ledger:
        store.insert_tokens(entry, epic=epic.prefix)
    store.insert_event(
        type="log_appended",
        at=ctx.now(),
        story_id=story.id,
        epic=epic.prefix,
        actor=ctx.actor,
        payload=peer.summary(),
    )


def records(peer: PeerChanges, story_id: str) -> list[SyncRecord]:
    """sync_files records of the artifact files registered as the peer's versions."""
    return [
        SyncRecord(s.path, story_id, k.value, s.size, s.mtime_ns, sha, peer.story.version)
        for s, k, sha in peer.registered
    ]


__all__ = ["PeerChanges", "read_peer", "records", "write_peer"]
