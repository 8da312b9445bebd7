"""Runs and leases: every SQL query of the run engine, named, over the store's connection.

Leases are rows of ``story_leases``: a row exists while a worker holds the story (deleted
on a clean release), so an *expired* row means its holder died and the next claim takes it
over (``takeovers`` counts that). Workers claim with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
and inside ``BEGIN IMMEDIATE`` on SQLite; either way the lease upsert's ``WHERE expires_at
<= now`` is the arbiter, so two claimers never both win. ``runs.idempotency_key`` is unique:
a second insert of the same key does nothing and the caller reads the recorded run.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storyflow.adapters.db.connection import Row
from storyflow.adapters.db.store import Store, ts
from storyflow.domain.statuses import Status

# Later statuses first: a worker finishes stories before it starts new ones.
PROGRESS = (
    Status.UAT,
    Status.IN_QA,
    Status.READY_FOR_QA,
    Status.NEEDS_WORK,
    Status.CODE_REVIEW_FAILED,
    Status.READY_FOR_CODE_REVIEW,
    Status.IN_PROGRESS,
    Status.READY_TO_WORK,
    Status.NEEDS_SPLIT,
    Status.NEEDS_REFINEMENT,
    Status.IN_ELABORATION,
    Status.GENERATED,
    Status.PENDING,
)
_RANK = "CASE s.status " + " ".join(f"WHEN '{s.value}' THEN {i}" for i, s in enumerate(PROGRESS))
_RANK += f" ELSE {len(PROGRESS)} END"

# A story a worker may take: in an actionable status, not leased (or its lease expired),
# ready-to-work only with its dependencies completed and requirements met, and not paused
# since its status last changed (by a soft_gate, or waiting for an approval not yet given).
_CLAIMABLE = """
FROM workflow_stories s LEFT JOIN story_leases l ON l.story_id = s.id
WHERE s.status IN ({statuses}) {epic}
AND (l.story_id IS NULL OR l.expires_at <= :now)
AND (s.status <> 'ready-to-work' OR (
    NOT EXISTS (SELECT 1 FROM story_dependencies d JOIN workflow_stories x ON x.id = d.depends_on
                WHERE d.story_id = s.id AND x.status <> 'completed')
    AND NOT EXISTS (SELECT 1 FROM story_requirements r
                    LEFT JOIN requirements q ON q.name = r.requirement
                    WHERE r.story_id = s.id AND (q.met IS NULL OR q.met = :false))))
AND NOT EXISTS (SELECT 1 FROM runs p WHERE p.story_id = s.id AND p.status = 'paused'
                AND p.finished_at >= s.status_changed_at
                AND (p.error_code IS NULL OR p.error_code <> 'AWAITING_APPROVAL'
                     OR NOT EXISTS (SELECT 1 FROM approvals a WHERE a.story_id = s.id
                                    AND a.created_at >= p.finished_at)))
"""
Q_CANDIDATES = (
    "SELECT s.id, l.owner AS l_owner, l.run_id AS l_run_id, l.expires_at AS l_expires_at"
    + _CLAIMABLE
    + f"ORDER BY s.priority, {_RANK}, s.created_at, s.number LIMIT :limit"
)
# One statement, so one snapshot: nothing claimable and nobody busy means idle.
Q_IDLE = (
    "SELECT (SELECT COUNT(*)"
    + _CLAIMABLE
    + """) AS claimable,
    (SELECT COUNT(*) FROM story_leases b JOIN workflow_stories t ON t.id = b.story_id
     WHERE b.expires_at > :now {busy_epic}) AS busy"""
)
Q_ACQUIRE = """
INSERT INTO story_leases (story_id, owner, phase, acquired_at, heartbeat_at, expires_at,
    run_id, takeovers)
VALUES (:story_id, :owner, :phase, :now, :now, :expires, NULL, 0)
ON CONFLICT (story_id) DO UPDATE SET owner = excluded.owner, phase = excluded.phase,
    acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at,
    expires_at = excluded.expires_at, run_id = NULL,
    takeovers = story_leases.takeovers + 1
WHERE story_leases.expires_at <= :now
RETURNING takeovers
"""
Q_LEASE_ROW = "SELECT owner, run_id, expires_at FROM story_leases WHERE story_id = :story_id"
# Expired leases the claim leaves alone: their stories are not claimable (completed, blocked,
# paused, ...), so no takeover will come for them. A claimable one is left to the claim,
# which adopts the dead worker's run: a lease that expired just after a claim looked would
# otherwise be recovered here, its run abandoned, and the phase started again.
Q_EXPIRED = (
    """
SELECT l.story_id, l.owner, l.run_id, l.expires_at
FROM story_leases l JOIN workflow_stories s ON s.id = l.story_id
WHERE l.expires_at <= :now {epic} AND s.id NOT IN (SELECT s.id"""
    + _CLAIMABLE
    + """)
ORDER BY l.expires_at, l.story_id LIMIT :limit
"""
)
Q_DROP_EXPIRED = """
DELETE FROM story_leases WHERE story_id = :story_id AND owner = :owner AND expires_at <= :now
"""
Q_HEARTBEAT = """
UPDATE story_leases SET heartbeat_at = :now, expires_at = :expires
WHERE story_id = :story_id AND owner = :owner
"""
Q_LEASE_RUN = """
UPDATE story_leases SET run_id = :run_id, phase = :phase
WHERE story_id = :story_id AND owner = :owner
"""
Q_RELEASE = "DELETE FROM story_leases WHERE story_id = :story_id AND owner = :owner"
Q_HOLDS = "SELECT 1 AS one FROM story_leases WHERE story_id = :story_id AND owner = :owner"

RUN_COLUMNS = """id, story_id, phase, attempt, idempotency_key, status, verdict, outcome, agent,
    model, worker, error_code, error_message, trace_id, started_at, finished_at"""
Q_INSERT_RUN = """
INSERT INTO runs (id, story_id, phase, attempt, idempotency_key, status, agent, model, worker,
    trace_id, started_at)
VALUES (:id, :story_id, :phase, :attempt, :idempotency_key, 'running', :agent, :model, :worker,
    :trace_id, :started_at)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id
"""
Q_RUNS_OF = f"""
SELECT {RUN_COLUMNS} FROM runs WHERE story_id = :story_id AND phase = :phase
ORDER BY started_at, id
"""
Q_LAST_RUN = f"""
SELECT {RUN_COLUMNS} FROM runs WHERE story_id = :story_id ORDER BY started_at DESC, id DESC
LIMIT 1
"""
Q_SUCCEEDED_ONCE = """
SELECT 1 AS one FROM runs WHERE story_id = :story_id AND status = 'succeeded' LIMIT 1
"""
Q_ADOPT_RUN = """
UPDATE runs SET worker = :worker, started_at = :started_at, agent = :agent, model = :model,
    trace_id = :trace_id
WHERE id = :id AND status = 'running'
"""
Q_FINISH_RUN = """
UPDATE runs SET status = :status, verdict = :verdict, outcome = :outcome, model = :model,
    error_code = :error_code, error_message = :error_message, finished_at = :finished_at
WHERE id = :id AND status = 'running' AND worker = :worker
"""
Q_ABANDON = """
UPDATE runs SET status = 'abandoned', error_code = :error_code, error_message = :message,
    finished_at = :now
WHERE story_id = :story_id AND status = 'running' AND id <> :keep
"""
# The circuit breaker's count starts again when a person (or sync) moves the story out of
# blocked: the failures before that unblock were what the person looked at.
Q_LAST_RUNS = """
SELECT status FROM runs WHERE story_id = :story_id AND status <> 'running'
AND started_at > COALESCE((SELECT MAX(t.created_at) FROM workflow_transitions t
    WHERE t.story_id = :story_id AND t.from_status = 'blocked'), '')
ORDER BY finished_at DESC, started_at DESC LIMIT :limit
"""
Q_ARTIFACT_VERSIONS = """
SELECT kind, MAX(version) AS v FROM artifact_versions WHERE story_id = :story_id GROUP BY kind
"""
Q_ENTRIES = """
SELECT COUNT(*) AS n FROM workflow_transitions WHERE story_id = :story_id AND to_status = :status
"""
# Entries into a status since the story was last unblocked (a person looked at it).
Q_ENTRIES_SINCE_UNBLOCK = """
SELECT COUNT(*) AS n FROM workflow_transitions WHERE story_id = :story_id
AND to_status = :status
AND created_at > COALESCE((SELECT MAX(t.created_at) FROM workflow_transitions t
    WHERE t.story_id = :story_id AND t.from_status = 'blocked'), '')
"""
Q_RUN_TOKENS = """
SELECT run_id, SUM(input_tokens) AS input, SUM(output_tokens) AS output,
    SUM(cache_read_tokens) AS cache_read, SUM(cache_write_tokens) AS cache_write,
    SUM(total_tokens) AS total, SUM(cost_usd) AS cost, COUNT(*) AS entries
FROM workflow_token_logs WHERE run_id IN ({ids}) GROUP BY run_id
"""


@dataclass(frozen=True, kw_only=True)
class Claim:
    story_id: str
    takeover: bool
    previous_owner: str | None
    previous_run: str | None


class RunStore:
    """Named queries for runs and leases; transactions are the caller's (``store``'s)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn
        self.dialect = store.dialect

    # ---- leases ---------------------------------------------------------------------------

    def _scope(
        self, statuses: Sequence[Status], epic: str | None, skip: Collection[str] = ()
    ) -> dict[str, Any]:
        names = {f"st{i}": s.value for i, s in enumerate(statuses)}
        skipped = {f"sk{i}": story_id for i, story_id in enumerate(sorted(skip))}
        where = "AND s.epic = :epic" if epic else ""
        if skipped:
            where += f" AND s.id NOT IN ({', '.join(f':{n}' for n in skipped)})"
        return {
            "statuses": ", ".join(f":{n}" for n in names),
            "epic": where,
            "busy_epic": "AND t.epic = :epic" if epic else "",
            "params": {**names, **skipped, "epic": epic, "false": False},
        }

    def candidates(
        self,
        *,
        now: datetime,
        statuses: Sequence[Status],
        epic: str | None,
        limit: int,
        skip: Collection[str] = (),
    ) -> list[Row]:
        """Claimable stories in claim order (but those in ``skip``); on PostgreSQL locked
        (SKIP LOCKED) until the transaction ends, so concurrent claimers look at different
        rows."""
        scope = self._scope(statuses, epic, skip)
        sql = Q_CANDIDATES.format(statuses=scope["statuses"], epic=scope["epic"])
        if self.dialect == "postgresql":
            sql += " FOR UPDATE OF s SKIP LOCKED"
        return self.conn.fetchall(sql, {**scope["params"], "now": ts(now), "limit": limit})

    def idle_state(
        self,
        *,
        now: datetime,
        statuses: Sequence[Status],
        epic: str | None,
        skip: Collection[str] = (),
    ) -> tuple[int, int]:
        """(claimable stories but those in ``skip``, active leases) seen in one snapshot."""
        scope = self._scope(statuses, epic, skip)
        sql = Q_IDLE.format(
            statuses=scope["statuses"], epic=scope["epic"], busy_epic=scope["busy_epic"]
        )
        row = self.conn.fetchone(sql, {**scope["params"], "now": ts(now)})
        assert row is not None
        return int(row["claimable"]), int(row["busy"])

    def acquire(
        self, story_id: str, *, owner: str, phase: str | None, now: datetime, expires: datetime
    ) -> bool | None:
        """Take the story's lease: None when someone holds it, else whether it was a takeover
        of an expired lease."""
        row = self.conn.fetchone(
            Q_ACQUIRE,
            {
                "story_id": story_id,
                "owner": owner,
                "phase": phase,
                "now": ts(now),
                "expires": ts(expires),
            },
        )
        return None if row is None else int(row["takeovers"]) > 0

    def lease_row(self, story_id: str) -> Row | None:
        return self.conn.fetchone(Q_LEASE_ROW, {"story_id": story_id})

    def expired(
        self, *, now: datetime, statuses: Sequence[Status], epic: str | None, limit: int
    ) -> list[Row]:
        """Leases past their expiry on stories no claim would take (a claim in ``statuses``
        would), oldest first (in ``epic`` when given)."""
        scope = self._scope(statuses, epic)
        sql = Q_EXPIRED.format(statuses=scope["statuses"], epic=scope["epic"])
        return self.conn.fetchall(sql, {**scope["params"], "now": ts(now), "limit": limit})

    def drop_expired(self, story_id: str, *, owner: str, now: datetime) -> bool:
        """Delete the lease ``owner`` let expire; False when it was renewed or taken meanwhile."""
        params = {"story_id": story_id, "owner": owner, "now": ts(now)}
        return self.conn.execute(Q_DROP_EXPIRED, params) == 1

    def heartbeat(self, story_id: str, *, owner: str, now: datetime, expires: datetime) -> bool:
        params = {"story_id": story_id, "owner": owner, "now": ts(now), "expires": ts(expires)}
        return self.conn.execute(Q_HEARTBEAT, params) == 1

    def holds(self, story_id: str, owner: str) -> bool:
        return self.conn.fetchone(Q_HOLDS, {"story_id": story_id, "owner": owner}) is not None

    def set_lease_run(self, story_id: str, *, owner: str, run_id: str, phase: str) -> None:
        self.conn.execute(
            Q_LEASE_RUN,
            {"story_id": story_id, "owner": owner, "run_id": run_id, "phase": phase},
            defer=True,
        )

    def release(self, story_id: str, *, owner: str) -> None:
        self.conn.execute(Q_RELEASE, {"story_id": story_id, "owner": owner}, defer=True)

    # ---- runs -----------------------------------------------------------------------------

    def insert_run(
        self,
        *,
        run_id: str,
        story_id: str,
        phase: str,
        attempt: int,
        key: str,
        agent: str,
        model: str | None,
        worker: str,
        trace_id: str,
        started_at: datetime,
    ) -> bool:
        """Insert a running run; False when a run with the same key exists already."""
        row = self.conn.fetchone(
            Q_INSERT_RUN,
            {
                "id": run_id,
                "story_id": story_id,
                "phase": phase,
                "attempt": attempt,
                "idempotency_key": key,
                "agent": agent,
                "model": model,
                "worker": worker,
                "trace_id": trace_id,
                "started_at": ts(started_at),
            },
        )
        return row is not None

    def runs_of(self, story_id: str, phase: str) -> list[Row]:
        return [
            _run(r) for r in self.conn.fetchall(Q_RUNS_OF, {"story_id": story_id, "phase": phase})
        ]

    def last_run(self, story_id: str) -> Row | None:
        """The story's most recent run, of any phase."""
        row = self.conn.fetchone(Q_LAST_RUN, {"story_id": story_id})
        return None if row is None else _run(row)

    def succeeded_once(self, story_id: str) -> bool:
        """Whether any phase of the story has run to a recorded success."""
        return self.conn.fetchone(Q_SUCCEEDED_ONCE, {"story_id": story_id}) is not None

    def runs_by_id(self, ids: Sequence[str]) -> list[Row]:
        rows: list[Row] = []
        for chunk in _chunks(ids):
            names = {f"r{i}": run_id for i, run_id in enumerate(chunk)}
            placeholders = ", ".join(f":{n}" for n in names)
            sql = f"SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({placeholders})"
            rows += [_run(r) for r in self.conn.fetchall(sql, names)]
        return sorted(rows, key=lambda r: (r["started_at"], r["id"]))

    def adopt_run(
        self,
        run_id: str,
        *,
        worker: str,
        agent: str,
        model: str | None,
        trace_id: str,
        now: datetime,
    ) -> bool:
        params = {
            "id": run_id,
            "worker": worker,
            "agent": agent,
            "model": model,
            "trace_id": trace_id,
            "started_at": ts(now),
        }
        return self.conn.execute(Q_ADOPT_RUN, params) == 1

    def finish_run(
        self,
        run_id: str,
        *,
        worker: str,
        status: str,
        verdict: str | None,
        outcome: dict[str, Any],
        model: str | None,
        error_code: str | None,
        error_message: str | None,
        now: datetime,
    ) -> bool:
        """Record the run's end; False when the run is no longer this worker's (its lease
        expired and another worker adopted the run): the caller must then commit nothing."""
        count = self.conn.execute(
            Q_FINISH_RUN,
            {
                "id": run_id,
                "worker": worker,
                "status": status,
                "verdict": verdict,
                "outcome": json.dumps(outcome, sort_keys=True, separators=(",", ":")),
                "model": model,
                "error_code": error_code,
                "error_message": error_message,
                "finished_at": ts(now),
            },
        )
        return count == 1

    def abandon_running(self, story_id: str, *, keep: str, now: datetime, message: str) -> None:
        """Mark runs its story's earlier, dead workers left running as abandoned (sent with
        the transaction's next read or its commit)."""
        self.conn.execute(
            Q_ABANDON,
            {
                "story_id": story_id,
                "keep": keep,
                "now": ts(now),
                "error_code": "WORKER_LOST",
                "message": message,
            },
            defer=True,
        )

    def last_statuses(self, story_id: str, limit: int) -> list[str]:
        rows = self.conn.fetchall(Q_LAST_RUNS, {"story_id": story_id, "limit": limit})
        return [r["status"] for r in rows]

    def artifact_versions(self, story_id: str) -> dict[str, int]:
        rows = self.conn.fetchall(Q_ARTIFACT_VERSIONS, {"story_id": story_id})
        return {r["kind"]: int(r["v"]) for r in rows}

    def entries(self, story_id: str, status: Status) -> int:
        row = self.conn.fetchone(Q_ENTRIES, {"story_id": story_id, "status": status.value})
        return int(row["n"]) if row else 0

    def entries_since_unblock(self, story_id: str, status: Status) -> int:
        row = self.conn.fetchone(
            Q_ENTRIES_SINCE_UNBLOCK, {"story_id": story_id, "status": status.value}
        )
        return int(row["n"]) if row else 0

    def run_tokens(self, ids: Sequence[str]) -> dict[str, Row]:
        out: dict[str, Row] = {}
        for chunk in _chunks(ids):
            names = {f"r{i}": run_id for i, run_id in enumerate(chunk)}
            sql = Q_RUN_TOKENS.format(ids=", ".join(f":{n}" for n in names))
            for row in self.conn.fetchall(sql, names):
                out[row["run_id"]] = row
        return out


def _run(row: Row) -> Row:
    row = dict(row)
    row["outcome"] = json.loads(row["outcome"]) if row["outcome"] else {}
    return row


def _chunks(ids: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
