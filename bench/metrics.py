"""`storyflow metrics` over a trace of 1,000,000 events (target: <= 1.5 s).

The workload is what the run engine leaves behind: per story a story_created event, then one
run per phase (generate, elaborate, plan, implement, review, verify, gate; a quarter of the
stories fail review once and go through fix and a second review, one in twenty-five runs
fails first with an error and is retried), each run writing lock acquire/release,
phase_start, agent_spawn, agent_complete, tokens, artifact, its transitions and
phase_complete events, a ledger row, a runs row and, for gated phases, a verdict row.
Stories are added until the events table holds exactly 1,000,000 rows (the last story is cut
short). The same events are written as the JSONL trace (.storyflow/trace/workspace.jsonl).

Generating that through the services would take hours (each phase run is several
transactions), so the rows are bulk-inserted with the shapes the engine writes; the cached
workspace lives in bench/.work/metrics-<key>/ and is reused. PostgreSQL gets the same rows
by COPY into a database of its own.

Measured, as the user runs it: the `storyflow metrics --json` executable over the whole
workspace (every epic, every story), median of N runs after one warm-up; also `--epic` and
one story. Every figure is a SQL aggregate over the rows those events were committed with
(ledger, runs, transitions, verdict tables; see adapters/db/metrics_queries.py): with run
rows present, the events table itself is not scanned (it is for a scope without runs). For
information: a Python fold of the JSONL file with json.loads per line (tokens only), the
approach the aggregates replace, and where one in-process collect spends its time.

    .venv/bin/python bench/metrics.py [--backend sqlite|postgresql|both] [--events 1000000]
        [--runs 5] [--pg-url URL] [--rebuild] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import WORK, Row, Summary, clean_env, fresh_dir, init_ws, log, report, version_key

TARGET_SECONDS = 1.5
LEDGER_BY = (("epic", "phase", "model"), ("story",))
EPICS = ("BENCH", "LOAD")
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
SCHEMA_TABLES = (
    "workflow_stories",
    "workflow_transitions",
    "workflow_events",
    "workflow_token_logs",
    "artifact_versions",
    "workflow_elaborations",
    "workflow_code_reviews",
    "workflow_verification",
    "workflow_qa_gates",
    "runs",
)
PRICES = {
    "claude-sonnet-4": (3.0, 15.0, 0.3, 3.75),
    "claude-opus-4": (15.0, 75.0, 1.5, 18.75),
    "gpt-4o-mini": (0.15, 0.6, 0.075, 0.0),
}
# run phase -> (model, budget phase, artifact kind it submits)
PHASES: dict[str, tuple[str, str, str | None]] = {
    "generate": ("gpt-4o-mini", "story_generation", None),
    "elaborate": ("claude-sonnet-4", "elaboration", "elaboration"),
    "plan": ("claude-sonnet-4", "implementation", "plan"),
    "implement": ("claude-opus-4", "implementation", "proof"),
    "review": ("claude-sonnet-4", "code_review", "code_review"),
    "fix": ("claude-opus-4", "implementation", "proof"),
    "verify": ("claude-sonnet-4", "qa_verification", "verification"),
    "gate": ("gpt-4o-mini", "qa_verification", "qa_gate"),
}


def _ts(moment: datetime) -> str:
    return moment.strftime(TS_FORMAT)


class Generator:
    """Rows for every table, story by story, in the engine's shapes."""

    def __init__(self, limit: int, seed: int = 7) -> None:
        self.limit = limit
        self.random = random.Random(seed)
        self.rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in SCHEMA_TABLES}
        self.clock = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
        self.artifact_id = 0
        self.run_seq = 0
        self.trace_id = ""
        self.event_count = 0
        self.versions: dict[tuple[str, str], int] = {}

    def full(self) -> bool:
        return self.event_count >= self.limit

    def tick(self, seconds: float) -> str:
        self.clock += timedelta(seconds=seconds)
        return _ts(self.clock)

    def event(
        self, kind: str, story: str, epic: str, at: str, payload: dict[str, Any], span: str = ""
    ) -> str:
        if self.full():
            return span
        span = span or f"{self.random.getrandbits(64):016x}"
        self.rows["workflow_events"].append(
            (
                story,
                epic,
                kind,
                "worker-1",
                json.dumps(payload, separators=(",", ":"), sort_keys=True),
                self.trace_id,
                span,
                at,
            )
        )
        self.event_count += 1
        return span

    def story(self, epic: str, number: int) -> None:
        sid = f"{epic}-{number:05d}"
        self.trace_id = f"{self.random.getrandbits(128):032x}"
        created = self.tick(self.random.uniform(1, 30))
        self.event("story_created", sid, epic, created, {"title": f"Story {number}"})
        self.transition(sid, epic, None, "pending", created)
        review_fails = self.random.random() < 0.25
        plan = ["generate", "elaborate", "plan", "implement", "review"]
        plan += ["fix", "review"] if review_fails else []
        plan += ["verify", "gate"]
        status = "pending"
        reviews = 0
        for phase in plan:
            if self.full():
                break
            if phase == "review":
                reviews += 1
            verdict = self.verdict(phase, review_fails and reviews == 1)
            status = self.run(sid, epic, phase, status, verdict)
        iterations = 1 if review_fails else 0
        updated = self.tick(0)
        self.rows["workflow_stories"].append(
            (sid, epic, number, f"Story {number}", status, created, updated, updated, iterations)
        )

    def verdict(self, phase: str, failing_review: bool) -> str | None:
        if phase == "review":
            return "FAIL" if failing_review else "PASS"
        if phase == "gate":
            return "CONCERNS" if self.random.random() < 0.1 else "PASS"
        if phase in ("elaborate", "verify"):
            return "PASS"
        return None

    def run(self, sid: str, epic: str, phase: str, status: str, verdict: str | None) -> str:
        model, budget_phase, kind = PHASES[phase]
        attempts = 2 if self.random.random() < 0.04 else 1
        for attempt in range(1, attempts + 1):
            self.run_seq += 1
            run_id = f"run-{self.run_seq:08d}"
            started = self.tick(self.random.uniform(0.5, 5))
            base = {"phase": phase, "run_id": run_id, "attempt": attempt}
            self.event("lock", sid, epic, started, {**base, "action": "acquire"})
            span = self.event("phase_start", sid, epic, started, {**base, "agent": "scripted"})
            spawned = self.tick(0.05)
            child = {**base, "agent": "scripted", "model": model, "parent_span_id": span}
            self.event("agent_spawn", sid, epic, spawned, child)
            work_ms = int(self.random.lognormvariate(9, 0.8))  # ~8 s median
            done = self.tick(work_ms / 1000)
            failed = attempt < attempts
            usage = self.usage(phase)
            self.event(
                "agent_complete",
                sid,
                epic,
                done,
                {**child, "duration_ms": work_ms, "tokens": usage},
            )
            self.ledger(sid, epic, budget_phase, model, usage, run_id, done)
            total_ms = work_ms + 100
            if failed:
                self.event("error", sid, epic, done, {**base, "error_code": "AGENT_TIMEOUT"})
                run_status = "failed"
            else:
                status = self.advance(sid, epic, phase, status, verdict, kind, done)
                run_status = "succeeded"
                self.event(
                    "phase_complete",
                    sid,
                    epic,
                    self.tick(0.1),
                    {**base, "duration_ms": total_ms, "tokens": usage, "verdict": verdict},
                    "",
                )
            self.event("lock", sid, epic, self.tick(0.01), {**base, "action": "release"})
            self.rows["runs"].append(
                (
                    run_id,
                    sid,
                    phase,
                    attempt,
                    f"{sid}:{phase}:{attempt}:{self.run_seq}",
                    run_status,
                    verdict,
                    "scripted",
                    model,
                    "worker-1",
                    "AGENT_TIMEOUT" if failed else None,
                    self.trace_id,
                    started,
                    done,
                )
            )
        return status

    def usage(self, phase: str) -> dict[str, int]:
        scale = {"implement": 40_000, "fix": 20_000, "review": 12_000}.get(phase, 6_000)
        inp = int(scale * self.random.uniform(0.5, 1.5))
        return {
            "input": inp,
            "output": inp // 4,
            "cache_read": inp // 2,
            "cache_write": inp // 10,
        }

    def ledger(
        self,
        sid: str,
        epic: str,
        phase: str,
        model: str,
        usage: dict[str, int],
        run_id: str,
        at: str,
    ) -> None:
        p_in, p_out, p_cr, p_cw = PRICES[model]
        i, o, cr, cw = usage["input"], usage["output"], usage["cache_read"], usage["cache_write"]
        cost = (i * p_in + o * p_out + cr * p_cr + cw * p_cw) / 1_000_000
        self.rows["workflow_token_logs"].append(
            (sid, epic, phase, "scripted", model, i, o, cr, cw, i + o + cr + cw, cost, run_id, at)
        )
        self.event(
            "tokens", sid, epic, at, {"phase": phase, "tokens": i + o + cr + cw, "model": model}
        )

    def advance(
        self,
        sid: str,
        epic: str,
        phase: str,
        status: str,
        verdict: str | None,
        kind: str | None,
        at: str,
    ) -> str:
        """The artifact (and its verdict row) and the transitions of a finished phase."""
        if kind is not None:
            self.artifact(sid, epic, kind, verdict, at)
        path = {
            "generate": ["generated"],
            "elaborate": ["in-elaboration", "ready-to-work"],
            "plan": ["in-progress"],
            "implement": ["ready-for-code-review"],
            "review": ["ready-for-qa" if verdict == "PASS" else "code-review-failed"],
            "fix": ["in-progress", "ready-for-code-review"],
            "verify": ["in-qa", "uat"],
            "gate": ["completed"],
        }[phase]
        for target in path:
            self.transition(sid, epic, status, target, at)
            status = target
        return status

    def artifact(self, sid: str, epic: str, kind: str, verdict: str | None, at: str) -> None:
        self.artifact_id += 1
        version = self.versions.get((sid, kind), 0) + 1
        self.versions[(sid, kind)] = version
        raw = f"kind: {kind}\nverdict: {verdict}\n"
        self.rows["artifact_versions"].append(
            (
                self.artifact_id,
                sid,
                kind,
                version,
                f"{kind}.yaml",
                hashlib.sha256(raw.encode()).hexdigest(),
                len(raw),
                raw,
                json.dumps({"verdict": verdict}),
                verdict,
                1,
                "scripted",
                at,
            )
        )
        table = {
            "elaboration": "workflow_elaborations",
            "code_review": "workflow_code_reviews",
            "verification": "workflow_verification",
            "qa_gate": "workflow_qa_gates",
        }.get(kind)
        if table is not None:
            self.rows[table].append((self.artifact_id, sid, version, verdict))
        payload = {"kind": kind, "version": version, "verdict": verdict, "path": f"{kind}.yaml"}
        self.event("artifact", sid, epic, at, payload)

    def transition(self, sid: str, epic: str, source: str | None, target: str, at: str) -> None:
        self.rows["workflow_transitions"].append((sid, source, target, "worker-1", at))
        if source is not None:
            self.event("transition", sid, epic, at, {"from": source, "to": target})


INSERTS = {
    "workflow_stories": (
        "INSERT INTO workflow_stories (id, epic, number, title, status, created_at, updated_at, "
        "status_changed_at, review_iterations, priority, version) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'P2', 1)"
    ),
    "workflow_transitions": (
        "INSERT INTO workflow_transitions (story_id, from_status, to_status, actor, forced, "
        "budget_confirmed, story_version, created_at) VALUES (?, ?, ?, ?, false, false, 1, ?)"
    ),
    "workflow_events": (
        "INSERT INTO workflow_events (story_id, epic, type, actor, payload, trace_id, span_id, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "workflow_token_logs": (
        "INSERT INTO workflow_token_logs (story_id, epic, phase, agent, model, input_tokens, "
        "output_tokens, cache_read_tokens, cache_write_tokens, total_tokens, cost_usd, source, "
        "run_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'reported', ?, ?)"
    ),
    "artifact_versions": (
        "INSERT INTO artifact_versions (id, story_id, kind, version, path, sha256, size, raw, "
        "content, verdict, story_version, submitted_by, submitted_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "workflow_elaborations": (
        "INSERT INTO workflow_elaborations (artifact_id, story_id, version, verdict) "
        "VALUES (?, ?, ?, ?)"
    ),
    "workflow_code_reviews": (
        "INSERT INTO workflow_code_reviews (artifact_id, story_id, version, verdict, "
        "blocking_findings) VALUES (?, ?, ?, ?, 0)"
    ),
    "workflow_verification": (
        "INSERT INTO workflow_verification (artifact_id, story_id, version, verdict, failures, "
        "passing_scenarios) VALUES (?, ?, ?, ?, 0, 1)"
    ),
    "workflow_qa_gates": (
        "INSERT INTO workflow_qa_gates (artifact_id, story_id, version, decision, "
        "computed_decision) VALUES (?, ?, ?, ?, 'PASS')"
    ),
    "runs": (
        "INSERT INTO runs (id, story_id, phase, attempt, idempotency_key, status, verdict, "
        "agent, model, worker, error_code, trace_id, started_at, finished_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
}
# the stories first (foreign keys), the verdict tables after their artifacts
ORDER = (
    "workflow_stories",
    "workflow_transitions",
    "workflow_events",
    "workflow_token_logs",
    "artifact_versions",
    "workflow_elaborations",
    "workflow_code_reviews",
    "workflow_verification",
    "workflow_qa_gates",
    "runs",
)


def generate(events: int) -> Generator:
    gen = Generator(events)
    number = 0
    while not gen.full():
        number += 1
        gen.story(EPICS[number % len(EPICS)], number)
    return gen


def build_sqlite(root: Path, events: int) -> Generator:
    import sqlite3

    ctx = init_ws(root)
    from storyflow.services import epics

    for prefix in EPICS:
        epics.create_epic(ctx, prefix, title=f"{prefix} epic")
    ctx.store.close()
    conn = sqlite3.connect(root / ".storyflow" / "storyflow.db")
    (existing,) = conn.execute("SELECT COUNT(*) FROM workflow_events").fetchone()  # epics'
    started = time.perf_counter()
    gen = generate(events - existing)
    log(f"generated {events:,} events in {time.perf_counter() - started:.1f} s")
    with conn:
        for table in ORDER:
            conn.executemany(INSERTS[table], gen.rows[table])
    conn.execute("ANALYZE")
    conn.close()
    write_trace(root, gen)
    return gen


def write_trace(root: Path, gen: Generator) -> None:
    """The same events as the trace's JSONL lines (what the event sink would have written)."""
    from storyflow.adapters.telemetry.jsonl import trace_line

    path = root / ".storyflow" / "trace" / "workspace.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for story, epic, kind, actor, payload, trace_id, span, at in gen.rows["workflow_events"]:
            handle.write(
                trace_line(
                    {
                        "created_at": at,
                        "type": kind,
                        "trace_id": trace_id,
                        "span_id": span,
                        "story_id": story,
                        "epic": epic,
                        "actor": actor,
                        "payload": json.loads(payload),
                    }
                )
            )


def workspace(events: int, rebuild: bool) -> tuple[Path, dict[str, int]]:
    root = WORK / f"metrics-{version_key(events)}"
    stamp = root / ".bench-counts.json"
    if rebuild or not stamp.exists():
        fresh_dir(root)
        gen = build_sqlite(root / "ws", events)
        counts = {t: len(r) for t, r in gen.rows.items()}
        stamp.write_text(json.dumps(counts))
    return root / "ws", json.loads(stamp.read_text())


# ---- PostgreSQL ---------------------------------------------------------------------------


def load_postgres(server: str, name: str, ws: Path, events: int) -> str:
    """A database with the schema, the two epics and the same rows (COPY from SQLite)."""
    import sqlite3

    import psycopg

    from storyflow.adapters.db.migrate import upgrade

    url = server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    upgrade(url)
    source = sqlite3.connect(ws / ".storyflow" / "storyflow.db")
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table in ("epics", *ORDER):
            columns = [r[1] for r in source.execute(f"PRAGMA table_info({table})")]
            types = {r[1]: r[2] for r in source.execute(f"PRAGMA table_info({table})")}
            booleans = [i for i, c in enumerate(columns) if types[c].upper() == "BOOLEAN"]
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in source.execute(f"SELECT {', '.join(columns)} FROM {table}"):
                    values = list(row)
                    for i in booleans:
                        values[i] = None if values[i] is None else bool(values[i])
                    copy.write_row(values)
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('artifact_versions', 'id'), "
            "(SELECT MAX(id) FROM artifact_versions))"
        )
        conn.commit()
        cur.execute("ANALYZE")
    source.close()
    count = psycopg.connect(url).execute("SELECT COUNT(*) FROM workflow_events").fetchone()
    assert count is not None and count[0] == events, count
    return url


# ---- measuring ----------------------------------------------------------------------------


def cli_seconds(ws: Path, args: list[str], runs: int, database_url: str | None) -> list[float]:
    exe = Path(sys.executable).with_name("storyflow")
    env = clean_env({"STORYFLOW_DATABASE_URL": database_url} if database_url else {})
    times = []
    for _ in range(runs + 1):  # the first run warms the OS cache and is dropped
        started = time.perf_counter()
        done = subprocess.run(
            [str(exe), *args], cwd=ws, env=env, capture_output=True, text=True, check=False
        )
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"storyflow {' '.join(args)} failed: {done.stderr}")
    return times[1:]


def breakdown(ws: Path, database_url: str | None) -> str:
    """Where one in-process collect spends its time, query by query."""
    from common import open_ctx
    from storyflow.domain.metrics import Scope

    ctx = open_ctx(ws, database_url)
    q = ctx.store.metrics()
    parts = []
    scope = Scope()
    for name, call in [
        ("ledger x2", lambda: [q.ledger_by(scope, d) for d in LEDGER_BY]),
        ("runs", lambda: q.runs(scope)),
        ("verdicts", lambda: q.verdicts(scope)),
        ("transitions", lambda: q.transitions(scope)),
        ("cycle", lambda: q.cycle_times(scope)),
        ("iterations+status", lambda: (q.iterations(scope), q.status_counts(scope))),
    ]:
        started = time.perf_counter()
        call()
        parts.append(f"{name} {1000 * (time.perf_counter() - started):.0f} ms")
    ctx.store.close()
    return ", ".join(parts)


def python_fold(ws: Path) -> float:
    """Tokens per phase from the JSONL file with json.loads per line (information)."""
    path = ws / ".storyflow" / "trace" / "workspace.jsonl"
    started = time.perf_counter()
    totals: dict[str, int] = {}
    with path.open("rb") as handle:
        for raw in handle:
            line = json.loads(raw)
            if line["type"] == "tokens":
                totals[line["phase"]] = totals.get(line["phase"], 0) + line["tokens"]
    return time.perf_counter() - started


def measure(label: str, ws: Path, runs: int, database_url: str | None, events: int) -> list[Row]:
    rows = []
    for args, what, target in [
        (["metrics", "--json"], "whole workspace", True),
        (["metrics", "--epic", EPICS[0], "--json"], f"--epic {EPICS[0]}", False),
        (["metrics", f"{EPICS[1]}-00001", "--json"], "one story", False),
    ]:
        summary = Summary.of(cli_seconds(ws, args, runs, database_url))
        rows.append(
            Row(
                f"{label} `storyflow metrics` {what}, {events:,} events",
                summary.median,
                "s",
                f"<= {TARGET_SECONDS} s" if target else "",
                summary.median <= TARGET_SECONDS if target else None,
                f"min {summary.low:.3f} s, max {summary.high:.3f} s, {summary.n} runs",
            )
        )
    rows[0].detail += f"; in-process queries: {breakdown(ws, database_url)}"
    return rows


def events_only(ws: Path, runs: int, events: int) -> Row:
    """Information: the fallback a scope without run rows takes (durations, verdicts and
    errors read from the events' JSON payloads), on a copy whose runs table is empty."""
    import sqlite3

    from common import copy_workspace

    copy = copy_workspace(ws, ws.parent / "ws-events-only")
    try:
        conn = sqlite3.connect(copy / ".storyflow" / "storyflow.db")
        with conn:
            conn.execute("DELETE FROM runs")
        conn.close()
        summary = Summary.of(cli_seconds(copy, ["metrics", "--json"], runs, None))
    finally:
        import shutil

        shutil.rmtree(copy, ignore_errors=True)
    return Row(
        f"SQLite `storyflow metrics` whole workspace, no run rows (from the events' JSON), "
        f"{events:,} events",
        summary.median,
        "s",
        detail=f"information: min {summary.low:.3f} s, max {summary.high:.3f} s, {summary.n} runs",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg-url", help="PostgreSQL server for the benchmark database.")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the cached workspace.")
    parser.add_argument("--json", help="Also write the rows as JSON to this path.")
    args = parser.parse_args()

    ws, counts = workspace(args.events, args.rebuild)
    log("rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    rows: list[Row] = []
    if args.backend in ("sqlite", "both"):
        rows += measure("SQLite", ws, args.runs, None, args.events)
        fold = statistics.median(python_fold(ws) for _ in range(3))
        rows.append(
            Row(
                f"Python json.loads fold of the JSONL trace ({args.events:,} lines), tokens only",
                fold,
                "s",
                detail="information: why the figures are SQL aggregates",
            )
        )
        rows.append(events_only(ws, args.runs, args.events))
    if args.backend in ("postgresql", "both"):
        from transitions import pg_available, server_url

        server = server_url(args.pg_url)
        problem = pg_available(server)
        if problem is None:
            url = load_postgres(server, "sf_bench_metrics", ws, args.events)
            try:
                rows += measure("PostgreSQL", ws, args.runs, url, args.events)
            finally:
                import psycopg

                with psycopg.connect(server, autocommit=True) as admin:
                    admin.execute('DROP DATABASE IF EXISTS "sf_bench_metrics" WITH (FORCE)')
        else:
            log(f"PostgreSQL at {server} is unavailable: {problem}")
            rows.append(
                Row(
                    "PostgreSQL `storyflow metrics` whole workspace",
                    0.0,
                    "s",
                    f"<= {TARGET_SECONDS} s",
                    None,
                    f"SKIPPED: {server} unavailable ({problem})",
                )
            )
    report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
