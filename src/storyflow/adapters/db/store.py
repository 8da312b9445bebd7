"""The store: every SQL statement the engine runs, named, over one connection.

Rows come back as domain value objects. Methods never open transactions themselves; the
service wraps each command in ``store.transaction()`` so a command is one transaction.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from storyflow.adapters.db.connection import (
    BatchingConnection,
    Connection,
    Row,
    UniqueViolation,
)
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.budgets import BudgetPhase, Enforcement
from storyflow.domain.layouts import LayoutName
from storyflow.domain.statuses import Status
from storyflow.errors import ConflictError

# The value objects (domain.model) are imported where rows become them: ``story list`` and
# ``board`` build none, and defining their dataclasses costs ~9 ms of a read's start-up.
if TYPE_CHECKING:
    from storyflow.adapters.db.metrics_queries import MetricsQueries
    from storyflow.adapters.db.run_store import RunStore
    from storyflow.domain.checks import AuditRows
    from storyflow.domain.model import (
        AgentLogRow,
        ArtifactVersion,
        EdgeFacts,
        Epic,
        LedgerEntry,
        Loaded,
        Story,
    )

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _story_filter(
    epic: str | None, statuses: Sequence[Status] | None, alias: str = ""
) -> tuple[str, dict[str, Any]]:
    """A WHERE clause (or "") and its parameters for stories of an epic and statuses."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if epic:
        where.append(f"{alias}epic = :epic")
        params["epic"] = epic
    if statuses:
        names = []
        for index, status in enumerate(statuses):
            params[f"s{index}"] = status.value
            names.append(f":s{index}")
        where.append(f"{alias}status IN ({', '.join(names)})")
    return (f" WHERE {' AND '.join(where)}" if where else ""), params


def ledger_entry(r: Row) -> LedgerEntry:
    """A row of workflow_token_logs (the columns of Q_LEDGER) as a ledger entry."""
    from storyflow.domain.model import LedgerEntry

    return LedgerEntry(
        story_id=r["story_id"],
        phase=BudgetPhase(r["phase"]),
        agent=r["agent"],
        model=r["model"],
        input_tokens=int(r["input_tokens"]),
        output_tokens=int(r["output_tokens"]),
        cache_read_tokens=int(r["cache_read_tokens"]),
        cache_write_tokens=int(r["cache_write_tokens"]),
        total_tokens=int(r["total_tokens"]),
        cost_usd=r["cost_usd"],
        source=r["source"],
        run_id=r["run_id"],
        created_at=parse_ts(r["created_at"]),
        note=r.get("note"),
    )


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


def ts(moment: datetime) -> str:
    """``moment`` as stored: UTC, microseconds, a trailing Z. A change stamps every row it
    writes with one ``now``, so the last moment's text is kept (a datetime is immutable)."""
    last = _LAST_TS[0]
    if last[0] is moment:
        return last[1]
    if moment.tzinfo is UTC:  # the engine's clock: isoformat is twice as fast as strftime
        text = moment.isoformat(timespec="microseconds")[:-6] + "Z"
    else:
        text = moment.astimezone(UTC).strftime(TS_FORMAT)
    _LAST_TS[0] = (moment, text)  # one tuple, swapped whole: threads share it
    return text


_LAST_TS: list[tuple[datetime | None, str]] = [(None, "")]


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)  # ~70x faster than strptime; reads the trailing Z


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


# ---- queries ------------------------------------------------------------------------------

Q_INSERT_EPIC = """
INSERT INTO epics (prefix, title, layout, root, timezone, settings, created_at, updated_at,
                   version)
VALUES (:prefix, :title, :layout, :root, :timezone, :settings, :created_at, :updated_at, 1)
"""
Q_GET_EPIC = "SELECT * FROM epics WHERE prefix = :prefix"
Q_LIST_EPICS = "SELECT * FROM epics ORDER BY prefix"
Q_UPDATE_EPIC = """
UPDATE epics SET title = :title, settings = :settings, timezone = :timezone,
                 updated_at = :updated_at, version = version + 1
WHERE prefix = :prefix AND version = :version
"""

STORY_COLUMNS = """id, epic, number, title, status, priority, phase, breaking_change,
    graph_integration, token_budget_multiplier, enforcement, blocked_reason, blocked_from,
    split_from, superseded_by, review_iterations, qa_iterations, details, created_at,
    updated_at, status_changed_at, version"""
Q_INSERT_STORY = f"""
INSERT INTO workflow_stories ({STORY_COLUMNS})
VALUES (:id, :epic, :number, :title, :status, :priority, :phase, :breaking_change,
    :graph_integration, :token_budget_multiplier, :enforcement, :blocked_reason, :blocked_from,
    :split_from, :superseded_by, :review_iterations, :qa_iterations, :details, :created_at,
    :updated_at, :status_changed_at, :version)
"""
# {agg} is the dialect's string aggregate (group_concat / string_agg): links in one round trip.
Q_GET_STORY = f"""
SELECT {STORY_COLUMNS},
    (SELECT {{agg}}(depends_on, ',') FROM story_dependencies WHERE story_id = :id) AS deps,
    (SELECT {{agg}}(requirement, ',') FROM story_requirements WHERE story_id = :id) AS reqs
FROM workflow_stories WHERE id = :id
"""
Q_CAS_STORY = """
UPDATE workflow_stories SET title = :title, status = :status, priority = :priority,
    phase = :phase, breaking_change = :breaking_change, graph_integration = :graph_integration,
    token_budget_multiplier = :token_budget_multiplier, enforcement = :enforcement,
    blocked_reason = :blocked_reason, blocked_from = :blocked_from, split_from = :split_from,
    superseded_by = :superseded_by, review_iterations = :review_iterations,
    qa_iterations = :qa_iterations, details = :details, updated_at = :updated_at,
    status_changed_at = :status_changed_at, version = :version
WHERE id = :id AND version = :expected_version
"""
_EPIC_COLUMNS = (
    "title",
    "layout",
    "root",
    "timezone",
    "settings",
    "created_at",
    "updated_at",
    "version",
)
_JOINED_EPIC_COLUMNS = tuple(f"e_{c}" for c in _EPIC_COLUMNS)  # as Q_STORY_AND_EPIC names them
# A story and its epic in one round trip (every change reads both).
Q_STORY_AND_EPIC = (
    "SELECT "
    + ", ".join(f"s.{c.strip()}" for c in STORY_COLUMNS.split(","))
    + ", (SELECT {agg}(depends_on, ',') FROM story_dependencies WHERE story_id = :id) AS deps"
    + ", (SELECT {agg}(requirement, ',') FROM story_requirements WHERE story_id = :id) AS reqs, "
    + ", ".join(f"e.{c} AS e_{c}" for c in _EPIC_COLUMNS)
    + ", l.owner AS l_owner, l.expires_at AS l_expires_at"
    + ", (SELECT CAST(seq AS TEXT) || ':' || row_hash FROM agent_log"
    + " WHERE story_id = :id ORDER BY seq DESC LIMIT 1) AS log_head"
    + "\nFROM workflow_stories s JOIN epics e ON e.prefix = s.epic"
    + " LEFT JOIN story_leases l ON l.story_id = s.id WHERE s.id = :id"
)
# PostgreSQL: the compare-and-set fails loudly (division by zero when no row matched), so
# it aborts the transaction even when the COMMIT travels in the same pipeline.
Q_CAS_STORY_PG = (
    "WITH moved AS (" + Q_CAS_STORY.strip() + " RETURNING 1 AS one) "
    "SELECT 1 / (SELECT COUNT(*) FROM moved) AS ok"
)
Q_NEXT_NUMBER = "SELECT MAX(number) AS n FROM workflow_stories WHERE epic = :epic"
Q_DELETE_DEPENDENCIES = "DELETE FROM story_dependencies WHERE story_id = :id"
Q_DELETE_REQUIRES = "DELETE FROM story_requirements WHERE story_id = :id"
Q_INSERT_DEPENDENCY = (
    "INSERT INTO story_dependencies (story_id, depends_on) VALUES (:story_id, :depends_on)"
)
Q_INSERT_REQUIRES = (
    "INSERT INTO story_requirements (story_id, requirement) VALUES (:story_id, :requirement)"
)
Q_DEPENDENTS = "SELECT story_id FROM story_dependencies WHERE depends_on = :id ORDER BY 1"
Q_ALL_DEPENDENCIES = "SELECT story_id, depends_on FROM story_dependencies"
Q_UNMET_DEPENDENCIES = """
SELECT s.id, s.status FROM story_dependencies d JOIN workflow_stories s ON s.id = d.depends_on
WHERE d.story_id = :id AND s.status <> 'completed' ORDER BY s.id
"""
Q_UNMET_REQUIREMENTS = """
SELECT r.requirement FROM story_requirements r LEFT JOIN requirements q ON q.name = r.requirement
WHERE r.story_id = :id AND (q.met IS NULL OR q.met = :false) ORDER BY 1
"""
Q_SPLIT_CHILDREN = "SELECT id FROM workflow_stories WHERE split_from = :id ORDER BY number"

Q_INSERT_ARTIFACT = """
INSERT INTO artifact_versions (story_id, kind, version, path, sha256, size, raw, content,
    verdict, story_version, submitted_by, submitted_at)
VALUES (:story_id, :kind, :version, :path, :sha256, :size, :raw, :content, :verdict,
    :story_version, :submitted_by, :submitted_at)
RETURNING id
"""
ARTIFACT_COLUMNS = """id, story_id, kind, version, path, sha256, size, content, verdict,
    story_version, submitted_by, submitted_at"""
Q_LATEST_ARTIFACT = f"""
SELECT {ARTIFACT_COLUMNS} FROM artifact_versions
WHERE story_id = :story_id AND kind = :kind ORDER BY version DESC LIMIT 1
"""
Q_ARTIFACT_VERSION = f"""
SELECT {ARTIFACT_COLUMNS}, raw FROM artifact_versions
WHERE story_id = :story_id AND kind = :kind AND version = :version
"""
Q_LIST_ARTIFACTS = f"""
SELECT {ARTIFACT_COLUMNS} FROM artifact_versions WHERE story_id = :story_id
ORDER BY kind, version
"""
Q_INSERT_APPROVAL = """
INSERT INTO approvals (story_id, artifact_id, approved_by, note, created_at)
VALUES (:story_id, :artifact_id, :approved_by, :note, :created_at)
"""
Q_APPROVED = "SELECT approved_by, created_at FROM approvals WHERE artifact_id = :artifact_id"

Q_INSERT_TRANSITION = """
INSERT INTO workflow_transitions (story_id, from_status, to_status, actor, reason, forced,
    budget_confirmed, story_version, created_at)
VALUES (:story_id, :from_status, :to_status, :actor, :reason, :forced, :budget_confirmed,
    :story_version, :created_at)
"""
Q_HISTORY = """
SELECT from_status, to_status, actor, reason, forced, budget_confirmed, story_version,
    created_at FROM workflow_transitions WHERE story_id = :story_id ORDER BY id
"""
# Returning from blocked to the status it was blocked from (the transition just before) is
# not a new entry: the evidence submitted before the block stays fresh.
Q_ENTERED_VERSION = """
SELECT MAX(t.story_version) AS v FROM workflow_transitions t
WHERE t.story_id = :story_id AND t.to_status = :status
AND NOT (t.from_status = 'blocked' AND t.to_status = COALESCE((
    SELECT p.from_status FROM workflow_transitions p
    WHERE p.story_id = t.story_id AND p.id < t.id ORDER BY p.id DESC LIMIT 1), ''))
"""
# What a guarded forward edge reads, in one round trip: the latest artifact of the evidence
# kind, the version at which the story entered the anchor status, the budget phase's total.
Q_EDGE_FACTS = f"""
SELECT {", ".join("a." + c.strip() for c in ARTIFACT_COLUMNS.split(","))},
    ({Q_ENTERED_VERSION.replace(":status", ":anchor").strip()}) AS anchor_version,
    (SELECT COALESCE(SUM(total_tokens), 0) FROM workflow_token_logs
     WHERE story_id = :story_id AND phase = :phase) AS phase_total
FROM (SELECT 1 AS one) x
LEFT JOIN artifact_versions a ON a.id = (
    SELECT id FROM artifact_versions WHERE story_id = :story_id AND kind = :kind
    ORDER BY version DESC LIMIT 1)
"""
Q_ENTERED_STATUSES = """
SELECT DISTINCT to_status FROM workflow_transitions
WHERE story_id = :story_id AND from_status IS NOT NULL
"""

Q_INSERT_EVENT = """
INSERT INTO workflow_events (story_id, epic, type, actor, payload, trace_id, span_id, created_at)
VALUES (:story_id, :epic, :type, :actor, :payload, :trace_id, :span_id, :created_at)
"""
# Newest first by when each happened: a phase run writes its agent's events (spawn,
# complete, tool calls) with their own times in the finish transaction, after rows of that
# transaction stamped later (ties: the order of writing).
Q_RECENT_EVENTS = """
SELECT type, actor, payload, created_at FROM workflow_events WHERE story_id = :story_id
ORDER BY created_at DESC, id DESC LIMIT :limit
"""

Q_LAST_LOG = """
SELECT seq, row_hash FROM agent_log WHERE story_id = :story_id ORDER BY seq DESC LIMIT 1
"""
Q_INSERT_LOG = """
INSERT INTO agent_log (story_id, seq, timestamp, agent, action, outputs, row_hash)
VALUES (:story_id, :seq, :timestamp, :agent, :action, :outputs, :row_hash)
"""
Q_LOG = """
SELECT seq, timestamp, agent, action, outputs, row_hash FROM agent_log
WHERE story_id = :story_id AND seq > :after ORDER BY seq
"""

Q_INSERT_TOKENS = """
INSERT INTO workflow_token_logs (story_id, epic, phase, agent, model, input_tokens,
    output_tokens, cache_read_tokens, cache_write_tokens, total_tokens, cost_usd, source,
    run_id, note, created_at)
VALUES (:story_id, :epic, :phase, :agent, :model, :input_tokens, :output_tokens,
    :cache_read_tokens, :cache_write_tokens, :total_tokens, :cost_usd, :source, :run_id,
    :note, :created_at)
"""
Q_PHASE_TOTAL = """
SELECT COALESCE(SUM(total_tokens), 0) AS t FROM workflow_token_logs
WHERE story_id = :story_id AND phase = :phase
"""
Q_PHASES_WITH_TOKENS = """
SELECT DISTINCT phase FROM workflow_token_logs WHERE story_id = :story_id AND total_tokens > 0
"""
Q_TOUCH_STORY = """
UPDATE workflow_stories SET version = version + 1, updated_at = :updated_at WHERE id = :id
RETURNING version
"""
Q_LEDGER = """
SELECT story_id, phase, agent, model, input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, total_tokens, cost_usd, source, run_id, note, created_at
FROM workflow_token_logs WHERE story_id = :story_id ORDER BY id
"""
Q_EPIC_LEDGER_TOTALS = """
SELECT story_id, phase, SUM(total_tokens) AS total, SUM(input_tokens) AS input,
    SUM(output_tokens) AS output, SUM(cost_usd) AS cost, COUNT(*) AS entries,
    SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced
FROM workflow_token_logs WHERE epic = :epic GROUP BY story_id, phase
"""
Q_LEASE = (
    "SELECT owner, phase, acquired_at, heartbeat_at, expires_at, run_id, takeovers "
    "FROM story_leases "
    "WHERE story_id = :story_id"
)

Q_UPSERT_REQUIREMENT = """
INSERT INTO requirements (name, met, note, updated_at, updated_by)
VALUES (:name, :met, :note, :updated_at, :updated_by)
ON CONFLICT (name) DO UPDATE SET met = excluded.met,
    note = COALESCE(excluded.note, requirements.note),
    updated_at = excluded.updated_at, updated_by = excluded.updated_by
"""
Q_INSERT_REQUIREMENT_IF_MISSING = """
INSERT INTO requirements (name, met, note, updated_at, updated_by)
VALUES (:name, :false, NULL, :updated_at, :updated_by) ON CONFLICT (name) DO NOTHING
"""
Q_REQUIREMENTS = """
SELECT q.name, q.met, q.note, q.updated_at, q.updated_by,
    (SELECT COUNT(*) FROM story_requirements r WHERE r.requirement = q.name) AS stories
FROM requirements q ORDER BY q.name
"""


# Epics by their row: every move reads its story's epic, and building one (its settings
# parsed from JSON, their budgets and enums) costs as much as the rest of the read. An epic
# is frozen and a pure function of its row (the key holds every column, version included),
# so a changed epic is a new key; the memo is cleared when it grows past a few hundred.
_EPICS: dict[tuple[Any, ...], Epic] = {}
_EPICS_MAX = 256


def _epic(row: Row, prefix: str = "prefix", columns: Sequence[str] = _EPIC_COLUMNS) -> Epic:
    """The epic of ``row`` (its ``columns`` hold _EPIC_COLUMNS, in that order)."""
    key = (row[prefix], *(row[c] for c in columns))
    epic = _EPICS.get(key)
    if epic is None:
        if len(_EPICS) >= _EPICS_MAX:
            _EPICS.clear()
        epic = _EPICS[key] = _build_epic(key)
    return epic


def _build_epic(key: tuple[Any, ...]) -> Epic:
    from storyflow.domain.model import Epic, EpicSettings

    row = dict(zip(("prefix", *_EPIC_COLUMNS), key, strict=True))
    return Epic(
        prefix=row["prefix"],
        title=row["title"],
        layout=LayoutName(row["layout"]),
        root=row["root"],
        timezone=row["timezone"],
        settings=EpicSettings.from_json(json.loads(row["settings"])),
        created_at=parse_ts(row["created_at"]),
        updated_at=parse_ts(row["updated_at"]),
        version=row["version"],
    )


def _story(row: Row, depends_on: Sequence[str] = (), requires: Sequence[str] = ()) -> Story:
    from storyflow.domain.model import Story

    return Story(
        id=row["id"],
        epic=row["epic"],
        number=row["number"],
        title=row["title"],
        status=Status(row["status"]),
        priority=row["priority"],
        phase=row["phase"],
        breaking_change=bool(row["breaking_change"]),
        graph_integration=bool(row["graph_integration"]),
        token_budget_multiplier=float(row["token_budget_multiplier"]),
        enforcement=Enforcement(row["enforcement"]) if row["enforcement"] else None,
        blocked_reason=row["blocked_reason"],
        blocked_from=Status(row["blocked_from"]) if row["blocked_from"] else None,
        split_from=row["split_from"],
        superseded_by=tuple(json.loads(row["superseded_by"])) if row["superseded_by"] else (),
        depends_on=tuple(depends_on),
        requires=tuple(requires),
        review_iterations=row["review_iterations"],
        qa_iterations=row["qa_iterations"],
        details=json.loads(row["details"]) if row["details"] else {},
        created_at=parse_ts(row["created_at"]),
        updated_at=parse_ts(row["updated_at"]),
        status_changed_at=parse_ts(row["status_changed_at"]),
        version=row["version"],
    )


def _story_params(story: Story) -> dict[str, Any]:
    return {
        "id": story.id,
        "epic": story.epic,
        "number": story.number,
        "title": story.title,
        "status": story.status.value,
        "priority": story.priority,
        "phase": story.phase,
        "breaking_change": story.breaking_change,
        "graph_integration": story.graph_integration,
        "token_budget_multiplier": story.token_budget_multiplier,
        "enforcement": story.enforcement.value if story.enforcement else None,
        "blocked_reason": story.blocked_reason,
        "blocked_from": story.blocked_from.value if story.blocked_from else None,
        "split_from": story.split_from,
        "superseded_by": _json(list(story.superseded_by)) if story.superseded_by else None,
        "review_iterations": story.review_iterations,
        "qa_iterations": story.qa_iterations,
        "details": _json(story.details) if story.details else None,
        "created_at": ts(story.created_at),
        "updated_at": ts(story.updated_at),
        "status_changed_at": ts(story.status_changed_at),
        "version": story.version,
    }


def _artifact(row: Row) -> ArtifactVersion:
    from storyflow.domain.model import ArtifactVersion

    return ArtifactVersion(
        id=int(row["id"]),
        story_id=row["story_id"],
        kind=ArtifactKind(row["kind"]),
        version=row["version"],
        path=row["path"],
        sha256=row["sha256"],
        size=row["size"],
        content=json.loads(row["content"]),
        verdict=row["verdict"],
        story_version=row["story_version"],
        submitted_by=row["submitted_by"],
        submitted_at=parse_ts(row["submitted_at"]),
    )


def _loaded(row: Row) -> Loaded:
    from storyflow.domain.model import Loaded

    deps = sorted(row["deps"].split(",")) if row["deps"] else []
    reqs = sorted(row["reqs"].split(",")) if row["reqs"] else []
    lease = None
    if row["l_owner"] is not None:
        lease = {"owner": row["l_owner"], "expires_at": parse_ts(row["l_expires_at"])}
    head = (0, "")
    if row["log_head"]:
        seq, _, digest = row["log_head"].partition(":")
        head = (int(seq), digest)
    epic = _epic(row, "epic", _JOINED_EPIC_COLUMNS)
    return Loaded(story=_story(row, deps, reqs), epic=epic, lease=lease, log_head=head)


def _edge_facts_params(
    story_id: str, kind: ArtifactKind, anchor: Status, phase: BudgetPhase | None
) -> dict[str, Any]:
    return {
        "story_id": story_id,
        "kind": kind.value,
        "anchor": anchor.value,
        "phase": phase.value if phase else "",
    }


def _edge_facts(row: Row) -> EdgeFacts:
    artifact = None if row["id"] is None else _artifact(row)
    anchor_version = int(row["anchor_version"]) if row["anchor_version"] is not None else 0
    return artifact, anchor_version, int(row["phase_total"])


def log_row_hash(previous: str, row: AgentLogRow) -> str:
    text = "\x1f".join((previous, row.timestamp, row.agent, row.action, row.outputs))
    import hashlib  # only writers chain log rows

    return hashlib.sha256(text.encode()).hexdigest()


class Store:
    """Named queries over one connection; see module docstring."""

    def __init__(self, conn: Connection, *, created: bool = False) -> None:
        self.conn = BatchingConnection(conn)
        self.dialect = conn.dialect
        agg = "group_concat" if conn.dialect == "sqlite" else "string_agg"
        self._q_get_story = Q_GET_STORY.format(agg=agg)
        self._q_story_and_epic = Q_STORY_AND_EPIC.format(agg=agg)
        self._q_cas = Q_CAS_STORY if conn.dialect == "sqlite" else Q_CAS_STORY_PG
        self.created = created  # opening it created the schema: a new, empty database
        self._cas_cache: dict[tuple[str, ...], str] = {}
        # Every event row is also a trace line: committed events go to ``event_sink``.
        self.trace_id = new_trace_id()
        self.event_sink: Callable[[list[dict[str, Any]]], None] | None = None
        self._pending_events: list[dict[str, Any]] = []
        self._in_transaction = False
        self._savepoints = 0

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[None]:
        outer = not self._in_transaction
        self._in_transaction = True
        try:
            with self.conn.transaction(write=write):
                yield
        except BaseException:
            if outer:
                self._pending_events.clear()
            raise
        finally:
            if outer:
                self._in_transaction = False
        if outer and self._pending_events:
            events, self._pending_events = self._pending_events, []
            if self.event_sink is not None:
                self.event_sink(events)  # the trace sees only what committed

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: when the block raises, undo its writes and drop its events
        and keep the rest of the transaction (storyflow sync applies each file this way)."""
        self.conn.flush()
        events = len(self._pending_events)
        self._savepoints += 1
        name = f"sf_{self._savepoints}"
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
            self.conn.flush()  # a lost compare-and-set surfaces here, inside the block
        except BaseException:
            self.conn.discard_pending()
            del self._pending_events[events:]
            self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        self.conn.execute(f"RELEASE SAVEPOINT {name}")

    def close(self) -> None:
        self.conn.close()

    # ---- epics ----------------------------------------------------------------------------

    def insert_epic(self, epic: Epic) -> None:
        try:
            self.conn.execute(
                Q_INSERT_EPIC,
                {
                    "prefix": epic.prefix,
                    "title": epic.title,
                    "layout": epic.layout.value,
                    "root": epic.root,
                    "timezone": epic.timezone,
                    "settings": _json(epic.settings.to_json()),
                    "created_at": ts(epic.created_at),
                    "updated_at": ts(epic.updated_at),
                },
            )
        except UniqueViolation as exc:
            raise ConflictError(
                f"epic {epic.prefix} already exists",
                code="DUPLICATE_ID",
                hint=f"storyflow epic show {epic.prefix}",
                details={"epic": epic.prefix},
            ) from exc

    def get_epic(self, prefix: str) -> Epic | None:
        row = self.conn.fetchone(Q_GET_EPIC, {"prefix": prefix})
        return None if row is None else _epic(row)

    def list_epics(self) -> list[Epic]:
        return [_epic(r) for r in self.conn.fetchall(Q_LIST_EPICS)]

    def update_epic(self, epic: Epic, expected_version: int) -> None:
        changed = self.conn.execute(
            Q_UPDATE_EPIC,
            {
                "prefix": epic.prefix,
                "title": epic.title,
                "timezone": epic.timezone,
                "settings": _json(epic.settings.to_json()),
                "updated_at": ts(epic.updated_at),
                "version": expected_version,
            },
        )
        if changed != 1:
            raise ConflictError(
                f"epic {epic.prefix} changed concurrently", hint="retry the command"
            )

    # ---- stories --------------------------------------------------------------------------

    def insert_story(self, story: Story) -> None:
        try:
            self.conn.execute(Q_INSERT_STORY, _story_params(story))
        except UniqueViolation as exc:
            raise ConflictError(
                f"story {story.id} already exists",
                code="DUPLICATE_ID",
                hint=f"storyflow story show {story.id}",
                details={"story": story.id},
            ) from exc
        self.set_links(story.id, story.depends_on, story.requires)

    def set_links(self, story_id: str, depends_on: Iterable[str], requires: Iterable[str]) -> None:
        self.conn.execute(Q_DELETE_DEPENDENCIES, {"id": story_id})
        self.conn.execute(Q_DELETE_REQUIRES, {"id": story_id})
        self.conn.executemany(
            Q_INSERT_DEPENDENCY, [{"story_id": story_id, "depends_on": d} for d in depends_on]
        )
        reqs = list(requires)
        self.conn.executemany(
            Q_INSERT_REQUIRES, [{"story_id": story_id, "requirement": r} for r in reqs]
        )
        for name in reqs:
            self.conn.execute(
                Q_INSERT_REQUIREMENT_IF_MISSING,
                {
                    "name": name,
                    "false": False,
                    "updated_at": ts(datetime.now(UTC)),
                    "updated_by": None,
                },
            )

    def get_story(self, story_id: str) -> Story | None:
        row = self.conn.fetchone(self._q_get_story, {"id": story_id})
        if row is None:
            return None
        deps = sorted(row["deps"].split(",")) if row["deps"] else []
        reqs = sorted(row["reqs"].split(",")) if row["reqs"] else []
        return _story(row, deps, reqs)

    def get_story_and_epic(self, story_id: str) -> Loaded | None:
        """The story, its epic, its lease and the head of its log: one round trip."""
        row = self.conn.fetchone(self._q_story_and_epic, {"id": story_id})
        return None if row is None else _loaded(row)

    def get_story_with_edge_facts(
        self, story_id: str, kind: ArtifactKind, anchor: Status, phase: BudgetPhase | None
    ) -> tuple[Loaded | None, EdgeFacts]:
        """``get_story_and_epic`` and ``edge_facts`` together: one round trip for what a
        move reads before its guards (the edge is guessed by the caller from the target)."""
        story_rows, facts_rows = self.conn.fetch_batch(
            [
                (self._q_story_and_epic, {"id": story_id}),
                (Q_EDGE_FACTS, _edge_facts_params(story_id, kind, anchor, phase)),
            ]
        )
        loaded = _loaded(story_rows[0]) if story_rows else None
        return loaded, _edge_facts(facts_rows[0])

    def list_stories(
        self, *, epic: str | None = None, statuses: Sequence[Status] | None = None
    ) -> list[Story]:
        clause, params = _story_filter(epic, statuses)
        rows = self.conn.fetchall(
            f"SELECT {STORY_COLUMNS} FROM workflow_stories{clause} ORDER BY epic, number", params
        )
        if not rows:
            return []
        deps: dict[str, list[str]] = defaultdict(list)
        reqs: dict[str, list[str]] = defaultdict(list)
        ids = {r["id"] for r in rows}
        for r in self.conn.fetchall(
            "SELECT story_id, depends_on FROM story_dependencies ORDER BY story_id, depends_on"
        ):
            if r["story_id"] in ids:
                deps[r["story_id"]].append(r["depends_on"])
        for r in self.conn.fetchall(
            "SELECT story_id, requirement FROM story_requirements ORDER BY story_id, requirement"
        ):
            if r["story_id"] in ids:
                reqs[r["story_id"]].append(r["requirement"])
        return [_story(r, deps[r["id"]], reqs[r["id"]]) for r in rows]

    def story_list_json(
        self, *, epic: str | None = None, statuses: Sequence[Status] | None = None
    ) -> str:
        """The stories in the shape of ``story_json``, as one JSON array of the objects the
        database keeps in ``list_json`` (its triggers write them as rows and links change;
        migration 0004): ``story list --json`` over thousands of stories builds no Python
        object per value and runs no encoder."""
        return "[" + ",".join(text for _, text in self.story_json_rows(epic, statuses)) + "]"

    def story_json_rows(
        self, epic: str | None = None, statuses: Sequence[Status] | None = None
    ) -> list[tuple[int, str]]:
        """(number, the object of ``story_list_json``) per matching story, in its order."""
        clause, params = _story_filter(epic, statuses, alias="s.")
        rows = self.conn.fetch_tuples(
            f"SELECT s.number, s.list_json FROM workflow_stories s{clause}"
            " ORDER BY s.epic, s.number",
            params,
        )
        return [(int(number), text) for number, text in rows]

    def board_rows(self, epic: str | None) -> list[Row]:
        clause, params = ("WHERE epic = :epic", {"epic": epic}) if epic else ("", {})
        return self.conn.fetchall(
            f"SELECT id, title, priority, status FROM workflow_stories {clause} "
            "ORDER BY epic, number",
            params,
        )

    def status_counts(self, epic: str | None) -> dict[str, int]:
        clause, params = ("WHERE epic = :epic", {"epic": epic}) if epic else ("", {})
        rows = self.conn.fetchall(
            f"SELECT status, COUNT(*) AS n FROM workflow_stories {clause} GROUP BY status", params
        )
        return {r["status"]: int(r["n"]) for r in rows}

    def story_status_map(self) -> dict[str, Status]:
        rows = self.conn.fetchall("SELECT id, status FROM workflow_stories")
        return {r["id"]: Status(r["status"]) for r in rows}

    def next_number(self, epic: str) -> int:
        row = self.conn.fetchone(Q_NEXT_NUMBER, {"epic": epic})
        current = row["n"] if row else None
        return 1 if current is None else int(current) + 1

    def _cas_sql(self, fields: tuple[str, ...] | None) -> str:
        if fields is None:
            return self._q_cas
        if fields not in self._cas_cache:
            sets = ", ".join(f"{f} = :{f}" for f in (*fields, "updated_at", "version"))
            sql = (
                f"UPDATE workflow_stories SET {sets} WHERE id = :id AND version = :expected_version"
            )
            if self.dialect != "sqlite":
                sql = (
                    f"WITH moved AS ({sql} RETURNING 1 AS one) "
                    "SELECT 1 / (SELECT COUNT(*) FROM moved) AS ok"
                )
            self._cas_cache[fields] = sql
        return self._cas_cache[fields]

    def cas_update_story(
        self, story: Story, expected_version: int, fields: tuple[str, ...] | None = None
    ) -> None:
        """Write ``story`` only if nobody changed it since ``expected_version``; ``fields``
        limits the write to those columns (plus updated_at and version)."""
        params = _story_params(story)
        params["expected_version"] = expected_version

        def check(count: int) -> None:
            if count != 1:
                raise ConflictError(
                    f"{story.id} was changed by another writer "
                    f"(version {expected_version} is stale)",
                    code="VERSION_CONFLICT",
                    hint=f"look again (storyflow story show {story.id}) and retry",
                    details={"story": story.id, "expected_version": expected_version},
                )

        # Deferred with the change's other writes (one round trip on PostgreSQL); the check
        # runs before the commit, so a lost compare-and-set commits nothing.
        self.conn.execute(self._cas_sql(fields), params, defer=True, check=check)

    def all_dependencies(self) -> dict[str, list[str]]:
        graph: dict[str, list[str]] = defaultdict(list)
        for r in self.conn.fetchall(Q_ALL_DEPENDENCIES):
            graph[r["story_id"]].append(r["depends_on"])
        return dict(graph)

    def dependents(self, story_id: str) -> list[str]:
        return [r["story_id"] for r in self.conn.fetchall(Q_DEPENDENTS, {"id": story_id})]

    def unmet_dependencies(self, story_id: str) -> list[tuple[str, str]]:
        rows = self.conn.fetchall(Q_UNMET_DEPENDENCIES, {"id": story_id})
        return [(r["id"], r["status"]) for r in rows]

    def unmet_requirements(self, story_id: str) -> list[str]:
        rows = self.conn.fetchall(Q_UNMET_REQUIREMENTS, {"id": story_id, "false": False})
        return [r["requirement"] for r in rows]

    def split_children(self, story_id: str) -> list[str]:
        return [r["id"] for r in self.conn.fetchall(Q_SPLIT_CHILDREN, {"id": story_id})]

    # ---- artifacts ------------------------------------------------------------------------

    def insert_artifact(
        self,
        *,
        story_id: str,
        kind: ArtifactKind,
        version: int,
        path: str,
        sha256: str,
        raw: str,
        content: dict[str, Any],
        verdict: str | None,
        story_version: int,
        submitted_by: str,
        submitted_at: datetime,
    ) -> int:
        row = self.conn.fetchone(
            Q_INSERT_ARTIFACT,
            {
                "story_id": story_id,
                "kind": kind.value,
                "version": version,
                "path": path,
                "sha256": sha256,
                "size": len(raw.encode()),
                "raw": raw,
                "content": _json(content),
                "verdict": verdict,
                "story_version": story_version,
                "submitted_by": submitted_by,
                "submitted_at": ts(submitted_at),
            },
        )
        assert row is not None
        return int(row["id"])

    def insert_kind_row(self, table: str, values: dict[str, Any]) -> None:
        columns = ", ".join(values)
        names = ", ".join(f":{k}" for k in values)
        # sent with the change's next read or its commit: nothing waits for its row count
        self.conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({names})", values, defer=True)

    def latest_artifact(self, story_id: str, kind: ArtifactKind) -> ArtifactVersion | None:
        row = self.conn.fetchone(Q_LATEST_ARTIFACT, {"story_id": story_id, "kind": kind.value})
        return None if row is None else _artifact(row)

    def artifact_version(
        self, story_id: str, kind: ArtifactKind, version: int
    ) -> tuple[ArtifactVersion, str] | None:
        row = self.conn.fetchone(
            Q_ARTIFACT_VERSION, {"story_id": story_id, "kind": kind.value, "version": version}
        )
        return None if row is None else (_artifact(row), row["raw"])

    def list_artifacts(self, story_id: str) -> list[ArtifactVersion]:
        return [_artifact(r) for r in self.conn.fetchall(Q_LIST_ARTIFACTS, {"story_id": story_id})]

    def insert_approval(
        self, *, story_id: str, artifact_id: int, by: str, note: str | None, at: datetime
    ) -> None:
        self.conn.execute(
            Q_INSERT_APPROVAL,
            {
                "story_id": story_id,
                "artifact_id": artifact_id,
                "approved_by": by,
                "note": note,
                "created_at": ts(at),
            },
        )

    def approvals(self, artifact_id: int) -> list[Row]:
        return self.conn.fetchall(Q_APPROVED, {"artifact_id": artifact_id})

    # ---- transitions, events, agent log ---------------------------------------------------

    def insert_transition(
        self,
        *,
        story_id: str,
        source: Status | None,
        target: Status,
        actor: str,
        reason: str | None,
        forced: bool,
        budget_confirmed: bool,
        story_version: int,
        at: datetime,
    ) -> None:
        self.conn.execute(
            Q_INSERT_TRANSITION,
            defer=True,
            params={
                "story_id": story_id,
                "from_status": source.value if source else None,
                "to_status": target.value,
                "actor": actor,
                "reason": reason,
                "forced": forced,
                "budget_confirmed": budget_confirmed,
                "story_version": story_version,
                "created_at": ts(at),
            },
        )

    def history(self, story_id: str) -> list[Row]:
        rows = self.conn.fetchall(Q_HISTORY, {"story_id": story_id})
        for row in rows:
            row["forced"] = bool(row["forced"])
            row["budget_confirmed"] = bool(row["budget_confirmed"])
        return rows

    def edge_facts(
        self, story_id: str, kind: ArtifactKind, anchor: Status, phase: BudgetPhase | None
    ) -> EdgeFacts:
        """(latest ``kind`` artifact, version at the latest entry into ``anchor``, tokens
        used in ``phase``) in one round trip."""
        row = self.conn.fetchone(Q_EDGE_FACTS, _edge_facts_params(story_id, kind, anchor, phase))
        assert row is not None
        return _edge_facts(row)

    def entered_version(self, story_id: str, status: Status) -> int:
        row = self.conn.fetchone(Q_ENTERED_VERSION, {"story_id": story_id, "status": status.value})
        return int(row["v"]) if row and row["v"] is not None else 0

    def entered_statuses(self, story_id: str) -> set[Status]:
        rows = self.conn.fetchall(Q_ENTERED_STATUSES, {"story_id": story_id})
        return {Status(r["to_status"]) for r in rows}

    def insert_event(
        self,
        *,
        type: str,
        at: datetime,
        story_id: str | None = None,
        epic: str | None = None,
        actor: str | None = None,
        payload: dict[str, Any] | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> None:
        """Insert an event row; once its transaction commits it also reaches the trace."""
        params = {
            "story_id": story_id,
            "epic": epic,
            "type": type,
            "actor": actor,
            "payload": _json(payload or {}),
            "trace_id": trace_id or self.trace_id,
            "span_id": span_id or new_span_id(),
            "created_at": ts(at),
        }
        self.conn.execute(Q_INSERT_EVENT, defer=True, params=params)
        event = dict(params, payload=payload or {})
        if self._in_transaction:
            self._pending_events.append(event)
        elif self.event_sink is not None:
            self.event_sink([event])

    def recent_events(self, story_id: str, limit: int = 10) -> list[Row]:
        rows = self.conn.fetchall(Q_RECENT_EVENTS, {"story_id": story_id, "limit": limit})
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def append_log(
        self,
        story_id: str,
        rows: Sequence[AgentLogRow],
        head: tuple[int, str] | None = None,
    ) -> int:
        """Append rows to the story's hash-chained log; return the last sequence number.
        ``head`` is the (seq, hash) of the last row when the caller already read it."""
        if head is None:
            last = self.conn.fetchone(Q_LAST_LOG, {"story_id": story_id})
            head = (int(last["seq"]), str(last["row_hash"])) if last else (0, "")
        seq, previous = head
        for row in rows:
            seq += 1
            previous = log_row_hash(previous, row)
            self.conn.execute(
                Q_INSERT_LOG,
                defer=True,
                params={
                    "story_id": story_id,
                    "seq": seq,
                    "timestamp": row.timestamp,
                    "agent": row.agent,
                    "action": row.action,
                    "outputs": row.outputs,
                    "row_hash": previous,
                },
            )
        return seq

    def log_rows(self, story_id: str, after: int = 0) -> list[AgentLogRow]:
        """The story's log rows with sequence number above ``after``."""
        from storyflow.domain.model import AgentLogRow

        return [
            AgentLogRow(
                timestamp=r["timestamp"], agent=r["agent"], action=r["action"], outputs=r["outputs"]
            )
            for r in self.conn.fetchall(Q_LOG, {"story_id": story_id, "after": after})
        ]

    def audit_rows(self) -> AuditRows:
        """What storyflow check compares with the files, one query per table (audit.py)."""
        from storyflow.adapters.db.audit import read_audit_rows

        return read_audit_rows(self)

    # ---- tokens ---------------------------------------------------------------------------

    def insert_tokens(self, entry: LedgerEntry, *, epic: str) -> None:
        self.conn.execute(
            Q_INSERT_TOKENS,
            defer=True,
            params={
                "story_id": entry.story_id,
                "epic": epic,
                "phase": entry.phase.value,
                "agent": entry.agent,
                "model": entry.model,
                "input_tokens": entry.input_tokens,
                "output_tokens": entry.output_tokens,
                "cache_read_tokens": entry.cache_read_tokens,
                "cache_write_tokens": entry.cache_write_tokens,
                "total_tokens": entry.total_tokens,
                "cost_usd": entry.cost_usd,
                "source": entry.source,
                "run_id": entry.run_id,
                "note": entry.note,
                "created_at": ts(entry.created_at),
            },
        )

    def phase_total(self, story_id: str, phase: BudgetPhase) -> int:
        row = self.conn.fetchone(Q_PHASE_TOTAL, {"story_id": story_id, "phase": phase.value})
        return int(row["t"]) if row else 0

    def phases_with_tokens(self, story_id: str) -> set[BudgetPhase]:
        rows = self.conn.fetchall(Q_PHASES_WITH_TOKENS, {"story_id": story_id})
        return {BudgetPhase(r["phase"]) for r in rows}

    def touch_story(self, story_id: str, at: datetime) -> int:
        """Bump version and updated_at without compare-and-set (ledger appends never lose)."""
        row = self.conn.fetchone(Q_TOUCH_STORY, {"id": story_id, "updated_at": ts(at)})
        assert row is not None
        return int(row["version"])

    def ledger(self, story_id: str) -> list[LedgerEntry]:
        return [ledger_entry(r) for r in self.conn.fetchall(Q_LEDGER, {"story_id": story_id})]

    def epic_ledger_totals(self, epic: str) -> list[Row]:
        return self.conn.fetchall(Q_EPIC_LEDGER_TOTALS, {"epic": epic})

    # ---- leases and requirements ----------------------------------------------------------

    def leased_story_ids(self, now: datetime) -> set[str]:
        rows = self.conn.fetchall(
            "SELECT story_id FROM story_leases WHERE expires_at > :now", {"now": ts(now)}
        )
        return {r["story_id"] for r in rows}

    def active_lease(self, story_id: str, now: datetime) -> Row | None:
        """The story's lease if it has not expired at ``now``."""
        return self.conn.fetchone(
            Q_LEASE + " AND expires_at > :now", {"story_id": story_id, "now": ts(now)}
        )

    def lease(self, story_id: str) -> Row | None:
        return self.conn.fetchone(Q_LEASE, {"story_id": story_id})

    def set_requirement(
        self, name: str, *, met: bool, note: str | None, by: str, at: datetime
    ) -> None:
        self.conn.execute(
            Q_UPSERT_REQUIREMENT,
            {"name": name, "met": met, "note": note, "updated_at": ts(at), "updated_by": by},
        )

    def requirements(self) -> list[Row]:
        rows = self.conn.fetchall(Q_REQUIREMENTS)
        for row in rows:
            row["met"] = bool(row["met"])
            row["stories"] = int(row["stories"])
        return rows

    # ---- metrics --------------------------------------------------------------------------

    def run_store(self) -> RunStore:
        """Runs and leases: the run engine's queries (run_store.py)."""
        from storyflow.adapters.db.run_store import RunStore

        return RunStore(self)

    def metrics(self) -> MetricsQueries:
        """The aggregate queries behind storyflow metrics (metrics_queries.py)."""
        from storyflow.adapters.db.metrics_queries import MetricsQueries

        return MetricsQueries(self.conn, self.dialect)
