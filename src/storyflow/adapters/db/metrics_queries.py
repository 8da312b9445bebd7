"""The metrics queries: SQL aggregates over the ledger, events, transitions, verdicts and runs.

Folding a million events in Python (``json.loads`` per line) takes seconds; the database
sums and counts them in a fraction of that, so ``storyflow metrics`` reads aggregates only.
Each query is named and takes the same scope filter (a story, an epic, or everything), and
each table is scanned once:

- the ledger twice: grouped by (epic, phase, model), a handful of rows the service folds
  into the total and the per-phase, per-model and per-epic figures; and grouped by story;
- the transitions once, grouped by edge with the sum of their times: the rework loops and
  the time in each status (a stay ends at the story's next transition, whose ``from`` is
  that status: time in S = sum of exits from S - sum of entries into S + now x open stays);
- the runs once: counts by phase, status, verdict and error code, with each group's
  durations as one text value of integer milliseconds, which the service sorts for the
  percentiles (SQLite has no percentile function, and window functions cost twice as much);
- the events only for a scope without run rows (a trace imported or written by hand):
  ``phase_complete`` and ``error`` events, their payload read with the JSON functions.

Timestamps are fixed-width ISO text, turned into integer milliseconds since 2020 by the
dialect (SQLite ``julianday``, PostgreSQL ``timestamptz``), so sums of times are exact.
PostgreSQL reads the JSON payload as ``jsonb``.
"""

from __future__ import annotations

from typing import Any

from storyflow.adapters.db.connection import BatchingConnection, Row
from storyflow.domain.metrics import MS_EPOCH, Scope

# The Julian day of MS_EPOCH (the Unix epoch is Julian day 2440587.5).
EPOCH_JULIAN = MS_EPOCH.timestamp() / 86400 + 2440587.5
LEDGER_COLUMNS = {"phase": "phase", "story": "story_id", "epic": "epic", "model": "model"}

Q_LEDGER = """
SELECT {keys}, SUM(total_tokens) AS total, SUM(input_tokens) AS input,
    SUM(output_tokens) AS output, SUM(cache_read_tokens) AS cache_read,
    SUM(cache_write_tokens) AS cache_write, SUM(cost_usd) AS cost, COUNT(*) AS entries,
    SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced
FROM workflow_token_logs WHERE {scope} GROUP BY {group}
"""
# A phase's durations as one text value of integer milliseconds: 'phase', 'n', 'ms'.
Q_DURATIONS = """
SELECT phase, COUNT(*) AS n, {agg} AS ms FROM ({source}) d
WHERE ms IS NOT NULL GROUP BY phase
"""
# duration_ms as the run engine reports it, else the time since the run's phase_start.
EVENT_DURATIONS = """
SELECT {phase} AS phase, COALESCE({duration}, {span}) AS ms
FROM (SELECT id, story_id, created_at, {doc} AS p FROM workflow_events
      WHERE type = 'phase_complete' AND {scope}) e
"""
Q_EVENT_VERDICTS = """
SELECT phase, verdict, COUNT(*) AS n
FROM (SELECT {phase} AS phase, {verdict} AS verdict FROM (
        SELECT {doc} AS p FROM workflow_events WHERE type = 'phase_complete' AND {scope}) e) v
GROUP BY phase, verdict
"""
Q_ERRORS = """
SELECT phase, error_code, COUNT(*) AS n
FROM (SELECT {phase} AS phase, {error_code} AS error_code FROM (
        SELECT {doc} AS p FROM workflow_events WHERE type = 'error' AND {scope}) e) v
GROUP BY phase, error_code
"""
Q_VERDICTS = """
SELECT 'elaboration' AS kind, verdict, CASE WHEN version = 1 THEN 1 ELSE 0 END AS is_first,
    COUNT(*) AS n FROM workflow_elaborations WHERE {scope} GROUP BY 2, 3
UNION ALL
SELECT 'code_review', verdict, CASE WHEN version = 1 THEN 1 ELSE 0 END, COUNT(*)
    FROM workflow_code_reviews WHERE {scope} GROUP BY 2, 3
UNION ALL
SELECT 'verification', verdict, CASE WHEN version = 1 THEN 1 ELSE 0 END, COUNT(*)
    FROM workflow_verification WHERE {scope} GROUP BY 2, 3
UNION ALL
SELECT 'qa_gate', decision, CASE WHEN version = 1 THEN 1 ELSE 0 END, COUNT(*)
    FROM workflow_qa_gates WHERE {scope} GROUP BY 2, 3
"""
# Every edge taken (from_status NULL: the story's creation), how often, and the sum of the
# times it was taken at (integer ms since 2020).
Q_TRANSITIONS = """
SELECT from_status, to_status, COUNT(*) AS n, SUM({ms}) AS at_ms
FROM workflow_transitions WHERE {scope} GROUP BY to_status, from_status
"""
Q_ITERATIONS = """
SELECT COUNT(*) AS stories, SUM(review_iterations) AS review_total,
    MAX(review_iterations) AS review_max,
    SUM(CASE WHEN review_iterations > 0 THEN 1 ELSE 0 END) AS review_stories,
    SUM(qa_iterations) AS qa_total, MAX(qa_iterations) AS qa_max,
    SUM(CASE WHEN qa_iterations > 0 THEN 1 ELSE 0 END) AS qa_stories
FROM workflow_stories WHERE {scope}
"""
Q_STATUS_COUNTS = "SELECT status, COUNT(*) AS n FROM workflow_stories WHERE {scope} GROUP BY status"
Q_CYCLE_TIMES = """
SELECT t.story_id AS story, {span} AS ms
FROM workflow_transitions t JOIN workflow_stories s ON s.id = t.story_id
WHERE t.to_status = 'completed' AND {scope}
"""
# One pass over the runs: counts, retries, errors, and the groups' durations (integer ms,
# comma-separated) for the service's percentiles.
Q_RUNS = """
SELECT phase, status, verdict, error_code, COUNT(*) AS n,
    SUM(CASE WHEN attempt > 1 THEN 1 ELSE 0 END) AS retries, {agg} AS ms
FROM (SELECT phase, status, verdict, error_code, attempt,
        CASE WHEN finished_at IS NOT NULL THEN {span} END AS ms
      FROM runs WHERE {scope}) r
GROUP BY phase, status, verdict, error_code
"""


class Dialect:
    """The date, JSON and aggregate fragments that differ between SQLite and PostgreSQL."""

    def __init__(self, name: str) -> None:
        self.sqlite = name == "sqlite"

    # Every stored timestamp is UTC ('...Z'): PostgreSQL reads them as ``timestamp`` (the
    # zone letter ignored), which parses faster than ``timestamptz``.
    def ms(self, column: str) -> str:
        """A timestamp column as integer milliseconds since MS_EPOCH (domain/metrics.py)."""
        if self.sqlite:
            return f"CAST(ROUND((julianday({column}) - {EPOCH_JULIAN}) * 86400000.0) AS INTEGER)"
        epoch = MS_EPOCH.strftime("%Y-%m-%d %H:%M:%S")
        return (
            f"CAST(ROUND(date_part('epoch', CAST({column} AS timestamp)"
            f" - TIMESTAMP '{epoch}') * 1000) AS bigint)"
        )

    def span_ms(self, start: str, end: str) -> str:
        """Milliseconds from ``start`` to ``end`` (two timestamp columns), not rounded."""
        if self.sqlite:
            return f"((julianday({end}) - julianday({start})) * 86400000.0)"
        return f"(date_part('epoch', CAST({end} AS timestamp) - CAST({start} AS timestamp)) * 1000)"

    def joined(self, column: str) -> str:
        """The group's values of an integer column as one comma-separated text."""
        if self.sqlite:
            return f"group_concat(CAST(ROUND({column}) AS INTEGER), ',')"
        return f"string_agg(CAST(CAST(ROUND({column}) AS bigint) AS text), ',')"

    def parse(self, column: str) -> str:
        """A JSON text column as the dialect's JSON document."""
        return column if self.sqlite else f"CAST({column} AS jsonb)"

    @property
    def doc(self) -> str:
        """The payload, parsed once per row (on PostgreSQL) and named ``p``."""
        return self.parse("payload")

    def text(self, key: str, doc: str = "p") -> str:
        if self.sqlite:
            return f"json_extract({doc}, '$.{key}')"
        return f"({doc} ->> '{key}')"

    def number(self, key: str, doc: str = "p") -> str:
        if self.sqlite:
            return f"json_extract({doc}, '$.{key}')"
        return f"CAST({doc} ->> '{key}' AS double precision)"


class MetricsQueries:
    """Named aggregate queries over one connection (the store's)."""

    def __init__(self, conn: BatchingConnection, dialect: str) -> None:
        self.conn = conn
        self.d = Dialect(dialect)

    @staticmethod
    def _scope(scope: Scope, *, epic_column: bool, alias: str = "") -> tuple[str, dict[str, Any]]:
        """The WHERE fragment for a table with a story_id column (and maybe an epic one)."""
        prefix = f"{alias}." if alias else ""
        if scope.story is not None:
            return f"{prefix}story_id = :story", {"story": scope.story}
        if scope.epic is not None:
            if epic_column:
                return f"{prefix}epic = :epic", {"epic": scope.epic}
            return (
                f"{prefix}story_id IN (SELECT id FROM workflow_stories WHERE epic = :epic)",
                {"epic": scope.epic},
            )
        return "1 = 1", {}

    @staticmethod
    def _stories(scope: Scope) -> tuple[str, dict[str, Any]]:
        if scope.story is not None:
            return "id = :story", {"story": scope.story}
        if scope.epic is not None:
            return "epic = :epic", {"epic": scope.epic}
        return "1 = 1", {}

    def ledger_by(self, scope: Scope, dimensions: tuple[str, ...]) -> list[Row]:
        """Token and cost sums grouped by some of: phase, story, epic, model (each a column
        of the result under that name)."""
        where, params = self._scope(scope, epic_column=True)
        keys = ", ".join(f"{LEDGER_COLUMNS[d]} AS {d}" for d in dimensions)
        group = ", ".join(LEDGER_COLUMNS[d] for d in dimensions)
        sql = Q_LEDGER.format(keys=keys, group=group, scope=where)
        return self.conn.fetchall(sql, params)

    def event_durations(self, scope: Scope) -> list[Row]:
        """The same from phase_complete events (a scope without run rows)."""
        where, params = self._scope(scope, epic_column=True)
        d = self.d
        start = (
            "(SELECT s.created_at FROM workflow_events s WHERE s.story_id = e.story_id"
            " AND s.type = 'phase_start' AND s.id < e.id"
            f" AND {d.text('run_id', d.parse('s.payload'))} = {d.text('run_id')}"
            " ORDER BY s.id DESC LIMIT 1)"
        )
        source = EVENT_DURATIONS.format(
            phase=d.text("phase"),
            duration=d.number("duration_ms"),
            span=d.span_ms(start, "e.created_at"),
            doc=d.doc,
            scope=where,
        )
        return self.conn.fetchall(Q_DURATIONS.format(agg=d.joined("ms"), source=source), params)

    def event_verdicts(self, scope: Scope) -> list[Row]:
        """phase, verdict, n over phase_complete events."""
        where, params = self._scope(scope, epic_column=True)
        d = self.d
        sql = Q_EVENT_VERDICTS.format(
            phase=d.text("phase"), verdict=d.text("verdict"), doc=d.doc, scope=where
        )
        return self.conn.fetchall(sql, params)

    def errors(self, scope: Scope) -> list[Row]:
        """phase, error_code, n over error events."""
        where, params = self._scope(scope, epic_column=True)
        d = self.d
        sql = Q_ERRORS.format(
            phase=d.text("phase"), error_code=d.text("error_code"), doc=d.doc, scope=where
        )
        return self.conn.fetchall(sql, params)

    def verdicts(self, scope: Scope) -> list[Row]:
        """kind, verdict, is_first (version 1), n over the verdict tables."""
        where, params = self._scope(scope, epic_column=False)
        return self.conn.fetchall(Q_VERDICTS.format(scope=where), params)

    def transitions(self, scope: Scope) -> list[Row]:
        """from_status, to_status, n, at_ms (the sum of the times, ms since 2020)."""
        where, params = self._scope(scope, epic_column=False)
        sql = Q_TRANSITIONS.format(ms=self.d.ms("created_at"), scope=where)
        return self.conn.fetchall(sql, params)

    def iterations(self, scope: Scope) -> Row:
        where, params = self._stories(scope)
        row = self.conn.fetchone(Q_ITERATIONS.format(scope=where), params)
        return row or {}

    def status_counts(self, scope: Scope) -> dict[str, int]:
        where, params = self._stories(scope)
        rows = self.conn.fetchall(Q_STATUS_COUNTS.format(scope=where), params)
        return {r["status"]: int(r["n"]) for r in rows}

    def cycle_times(self, scope: Scope) -> list[Row]:
        """story, ms from its creation to its move to completed."""
        where, params = self._scope(scope, epic_column=False, alias="t")
        sql = Q_CYCLE_TIMES.format(span=self.d.span_ms("s.created_at", "t.created_at"), scope=where)
        return self.conn.fetchall(sql, params)

    def runs(self, scope: Scope) -> list[Row]:
        """phase, status, verdict, error_code, n, retries (attempts after the first), and
        ms: the finished runs' durations, comma-separated integer milliseconds."""
        where, params = self._scope(scope, epic_column=False)
        d = self.d
        sql = Q_RUNS.format(
            agg=d.joined("ms"), span=d.span_ms("started_at", "finished_at"), scope=where
        )
        return self.conn.fetchall(sql, params)
