"""The sync store: ``sync_files`` (each file as of the last sync) and the bulk inserts of a
rebuild, over the engine's connection (so a sync is one transaction with its changes).

Bulk writes go through ``copy_rows``: COPY on PostgreSQL, ``executemany`` of one prepared
statement on SQLite; never a round trip (nor a statement to parse) per row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from storyflow.adapters.db.connection import BatchingConnection
from storyflow.adapters.db.store import _json, _story_params, log_row_hash
from storyflow.services.sync_ports import RebuildRows, SyncRecord

Q_RECORDS = """
SELECT path, story_id, kind, size, mtime_ns, sha256, story_version FROM sync_files
"""
SYNC_COLUMNS = ("path", "story_id", "kind", "size", "mtime_ns", "sha256", "story_version")
Q_STATS = "SELECT path, size, mtime_ns, story_version FROM sync_files"
Q_UPSERT_RECORD = """
INSERT INTO sync_files (path, story_id, kind, size, mtime_ns, sha256, story_version, synced_at)
VALUES (:path, :story_id, :kind, :size, :mtime_ns, :sha256, :story_version, :synced_at)
ON CONFLICT (path) DO UPDATE SET story_id = excluded.story_id, kind = excluded.kind,
    size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
    story_version = excluded.story_version, synced_at = excluded.synced_at
"""
Q_SCRATCH_CREATE = "CREATE TEMPORARY TABLE sync_files_in (LIKE sync_files)"
Q_SCRATCH_UPSERT = (
    "INSERT INTO sync_files SELECT * FROM sync_files_in "
    + Q_UPSERT_RECORD[Q_UPSERT_RECORD.index("ON CONFLICT") :]
)
Q_DELETE_RECORD = "DELETE FROM sync_files WHERE path = :path"
Q_STORY_STATES = "SELECT id, version, status, blocked_from FROM workflow_stories"
Q_EPIC_VERSIONS = "SELECT prefix, version FROM epics"
Q_ARTIFACT_HASHES = "SELECT kind, sha256 FROM artifact_versions WHERE story_id = :story_id"
Q_ARTIFACT_IDS = "SELECT id, story_id, kind, version FROM artifact_versions"

_KIND_TABLES = (
    "workflow_elaborations",
    "workflow_plans",
    "workflow_proof",
    "workflow_code_reviews",
    "workflow_verification",
    "workflow_qa_gates",
)
_NOT_SNAPSHOT = "story_id = :id AND kind <> 'story'"
Q_REPLACE_DELETES = (
    "DELETE FROM approvals WHERE story_id = :id",
    *(f"DELETE FROM {table} WHERE story_id = :id" for table in _KIND_TABLES),
    f"DELETE FROM artifact_versions WHERE {_NOT_SNAPSHOT}",
    "DELETE FROM workflow_transitions WHERE story_id = :id",
    "DELETE FROM agent_log WHERE story_id = :id",
    "DELETE FROM workflow_token_logs WHERE story_id = :id",
    "DELETE FROM story_dependencies WHERE story_id = :id",
    "DELETE FROM story_requirements WHERE story_id = :id",
)

EPIC_COLUMNS = (
    "prefix",
    "title",
    "layout",
    "root",
    "timezone",
    "settings",
    "created_at",
    "updated_at",
    "version",
)
STORY_COLUMNS = (
    "id",
    "epic",
    "number",
    "title",
    "status",
    "priority",
    "phase",
    "breaking_change",
    "graph_integration",
    "token_budget_multiplier",
    "enforcement",
    "blocked_reason",
    "blocked_from",
    "split_from",
    "superseded_by",
    "review_iterations",
    "qa_iterations",
    "details",
    "created_at",
    "updated_at",
    "status_changed_at",
    "version",
)
TRANSITION_COLUMNS = (
    "story_id",
    "from_status",
    "to_status",
    "actor",
    "reason",
    "forced",
    "budget_confirmed",
    "story_version",
    "created_at",
)
LOG_COLUMNS = ("story_id", "seq", "timestamp", "agent", "action", "outputs", "row_hash")
ARTIFACT_COLUMNS = (
    "story_id",
    "kind",
    "version",
    "path",
    "sha256",
    "size",
    "raw",
    "content",
    "verdict",
    "story_version",
    "submitted_by",
    "submitted_at",
)
TOKEN_COLUMNS = (
    "story_id",
    "epic",
    "phase",
    "agent",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "total_tokens",
    "cost_usd",
    "source",
    "run_id",
    "note",
    "created_at",
)
APPROVAL_COLUMNS = ("story_id", "artifact_id", "approved_by", "note", "created_at")


def ts(moment: datetime) -> str:
    """store.ts (``%Y-%m-%dT%H:%M:%S.%fZ``, UTC) by isoformat: 4x faster than strftime,
    which counts over a rebuild's hundreds of thousands of rows."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


class SyncStore:
    """``SyncStorePort`` over the engine's batching connection."""

    def __init__(self, conn: BatchingConnection) -> None:
        self.conn = conn

    # ---- sync_files -----------------------------------------------------------------------

    def records(self) -> dict[str, SyncRecord]:
        make = SyncRecord._make
        return {row[0]: make(row) for row in self.conn.fetch_tuples(Q_RECORDS)}

    def stats(self) -> dict[str, tuple[int, int, int | None]]:
        """Each recorded path's (size, mtime_ns, story_version): what a no-op sync compares
        (the hashes are read only when there is something to do)."""
        return {p: (size, mtime, v) for p, size, mtime, v in self.conn.fetch_tuples(Q_STATS)}

    def upsert_records(self, records: Sequence[SyncRecord], at: str) -> None:
        unique = {r.path: r for r in records}  # one row per path per statement
        rows = [
            {
                "path": r.path,
                "story_id": r.story_id,
                "kind": r.kind,
                "size": r.size,
                "mtime_ns": r.mtime_ns,
                "sha256": r.sha256,
                "story_version": r.story_version,
                "synced_at": at,
            }
            for r in unique.values()
        ]
        if not rows:
            return
        if self.conn.dialect == "sqlite":
            self.conn.executemany(Q_UPSERT_RECORD, rows)
            return
        # PostgreSQL: COPY into a scratch table, then one upsert from it.
        self.conn.execute(Q_SCRATCH_CREATE)
        columns = (*SYNC_COLUMNS, "synced_at")
        self.conn.copy_rows("sync_files_in", columns, [tuple(r[c] for c in columns) for r in rows])
        self.conn.execute(Q_SCRATCH_UPSERT)
        self.conn.execute("DROP TABLE sync_files_in")

    def delete_records(self, paths: Iterable[str]) -> None:
        self.conn.executemany(Q_DELETE_RECORD, [{"path": p} for p in paths])

    def story_states(self) -> dict[str, tuple[int, str, str | None]]:
        """Every story's (version, status, blocked_from): enough to skip an unchanged one."""
        return {
            r["id"]: (int(r["version"]), r["status"], r["blocked_from"])
            for r in self.conn.fetchall(Q_STORY_STATES)
        }

    def epic_versions(self) -> dict[str, int]:
        return {r["prefix"]: int(r["version"]) for r in self.conn.fetchall(Q_EPIC_VERSIONS)}

    def artifact_hashes(self, story_ids: Iterable[str]) -> dict[tuple[str, str], set[str]]:
        """The sha256 of every stored version of each story's artifacts, by (story, kind)."""
        found: dict[tuple[str, str], set[str]] = defaultdict(set)
        for story_id in sorted(set(story_ids)):
            for r in self.conn.fetchall(Q_ARTIFACT_HASHES, {"story_id": story_id}):
                found[(story_id, r["kind"])].add(r["sha256"])
        return found

    # ---- rebuild --------------------------------------------------------------------------

    def insert_rebuild(self, rows: RebuildRows) -> dict[str, int]:
        """Insert a rebuild's rows, parents first; return counts per table. Rows are built
        as tuples in column order (a dict per row costs more than the insert)."""
        copy = self.conn.copy_rows
        copy("epics", EPIC_COLUMNS, [_epic_row(e) for e in rows.epics])
        copy(
            "workflow_stories",
            STORY_COLUMNS,
            [tuple(p[c] for c in STORY_COLUMNS) for p in map(_story_params, rows.stories)],
        )
        return {"epics": len(rows.epics), **self._story_rows(rows)}

    def replace_story_rows(self, rows: RebuildRows) -> dict[str, int]:
        """Replace what the files carry of the stories in ``rows`` (their links, history,
        log, artifact versions but the story snapshots, approvals, ledger) with ``rows``;
        the story rows themselves are the caller's (a compare-and-set), and what the files
        do not carry (runs, leases, events, snapshots) stays. Children first: approvals and
        kind rows point at artifact versions, and SQLite may run without ON DELETE CASCADE."""
        for story in rows.stories:
            params = {"id": story.id}
            for sql in Q_REPLACE_DELETES:
                self.conn.execute(sql, params)
        return self._story_rows(rows)

    def _story_rows(self, rows: RebuildRows) -> dict[str, int]:
        """Insert the stories' dependent rows (the stories exist); return counts per table."""
        copy = self.conn.copy_rows
        links = [(s.id, d) for s in rows.stories for d in s.depends_on]
        copy("story_dependencies", ("story_id", "depends_on"), links)
        needs = [(s.id, r) for s in rows.stories for r in s.requires]
        copy("story_requirements", ("story_id", "requirement"), needs)
        self._requirements({r for _, r in needs}, rows)
        copy(
            "workflow_transitions",
            TRANSITION_COLUMNS,
            [
                (
                    t["story_id"],
                    t["source"].value if t["source"] else None,
                    t["target"].value,
                    t["actor"],
                    t["reason"],
                    t["forced"],
                    t["budget_confirmed"],
                    t["story_version"],
                    ts(t["at"]),
                )
                for t in rows.transitions
            ],
        )
        copy("agent_log", LOG_COLUMNS, _chained(rows))
        copy(
            "artifact_versions",
            ARTIFACT_COLUMNS,
            [
                (
                    a["story_id"],
                    a["kind"].value,
                    a["version"],
                    a["path"],
                    a["sha256"],
                    len(a["raw"].encode("utf-8")),
                    a["raw"],
                    _json(a["content"]),
                    a["verdict"],
                    a["story_version"],
                    a["submitted_by"],
                    ts(a["submitted_at"]),
                )
                for a in rows.artifacts
            ],
        )
        ids = self._artifact_ids({s.id for s in rows.stories})
        by_table: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {}
        for artifact in rows.artifacts:
            table, values = artifact["kind_row"]
            if table:
                key = (artifact["story_id"], artifact["kind"].value, artifact["version"])
                columns = ("artifact_id", "story_id", "version", *values)
                row = (ids[key], artifact["story_id"], artifact["version"], *values.values())
                by_table.setdefault(table, (columns, []))[1].append(row)
        for table, (columns, table_rows) in sorted(by_table.items()):
            copy(table, columns, table_rows)
        approvals = [
            (a["story_id"], ids[key], a["by"], a["note"], ts(a["at"]))
            for a in rows.approvals
            if (key := (a["story_id"], "elaboration", a["version"])) in ids
        ]
        copy("approvals", APPROVAL_COLUMNS, approvals)
        copy("workflow_token_logs", TOKEN_COLUMNS, [_token(e, p) for e, p in rows.ledger])
        return {
            "stories": len(rows.stories),
            "transitions": len(rows.transitions),
            "log_rows": sum(len(r) for _, r in rows.log_rows),
            "artifacts": len(rows.artifacts),
            "approvals": len(approvals),
            "ledger": len(rows.ledger),
        }

    def _requirements(self, names: set[str], rows: RebuildRows) -> None:
        if not names:
            return
        existing = {r["name"] for r in self.conn.fetchall("SELECT name FROM requirements")}
        at = ts(rows.at)
        self.conn.copy_rows(
            "requirements",
            ("name", "met", "note", "updated_at", "updated_by"),
            [(n, False, None, at, None) for n in sorted(names - existing)],
        )

    def _artifact_ids(self, story_ids: set[str]) -> dict[tuple[str, str, int], int]:
        if not story_ids:
            return {}
        return {
            (r["story_id"], r["kind"], int(r["version"])): int(r["id"])
            for r in self.conn.fetchall(Q_ARTIFACT_IDS)
            if r["story_id"] in story_ids
        }


def _epic_row(epic: Any) -> tuple[Any, ...]:
    return (
        epic.prefix,
        epic.title,
        epic.layout.value,
        epic.root,
        epic.timezone,
        _json(epic.settings.to_json()),
        ts(epic.created_at),
        ts(epic.updated_at),
        epic.version,
    )


def _chained(rows: RebuildRows) -> list[tuple[Any, ...]]:
    """Agent Log rows with their sequence numbers and sha256 hash chain."""
    out = []
    for story_id, log in rows.log_rows:
        previous = ""
        for seq, row in enumerate(log, start=1):
            previous = log_row_hash(previous, row)
            out.append((story_id, seq, row.timestamp, row.agent, row.action, row.outputs, previous))
    return out


def _token(entry: Any, epic: str) -> tuple[Any, ...]:
    return (
        entry.story_id,
        epic,
        entry.phase.value,
        entry.agent,
        entry.model,
        entry.input_tokens,
        entry.output_tokens,
        entry.cache_read_tokens,
        entry.cache_write_tokens,
        entry.total_tokens,
        entry.cost_usd,
        entry.source,
        entry.run_id,
        entry.note,  # the file's notes (an entry rendered before notes were: the database's)
        ts(entry.created_at),
    )
