"""(b) In-process transition throughput on SQLite; (c) the same on PostgreSQL, against a bare
psycopg loop measured in the same run.

The measured edge is in-qa -> uat through ``services.transitions.move``: its guards read the
database (the latest verification artifact and its verdict, the version at which the story
entered in-qa, the graph-integration flag) and the budget check sums the story's
qa_verification ledger; then compare-and-set on the story, the transition row, the event,
the Agent Log row, and (normal path) the story file projection: story.yaml is re-rendered in
its folder (the FLOW layout keeps in-qa and uat in the same UAT stage folder).

Setup: N stories in one staged epic, each created, moved to in-qa (a forced, audited move:
the guards under test are those of in-qa -> uat, not the walk there), given a PASS
verification and a qa_verification ledger entry. Every timed run starts from a fresh copy
of that base (SQLite: a copy of the workspace; PostgreSQL: CREATE DATABASE ... TEMPLATE plus
a copy of the files), so every run moves the same N stories once.

Variants, interleaved per run so noise hits all alike:
- ``no file write``: the Context's files port is the real StoryFiles with ``project`` made a
  no-op (guard + CAS + transition + event + Agent Log row, one transaction). Reads stay:
  if move() reads the story file (the working tree's pre-commit check_story_file parses it
  inside the transaction), that is measured here too;
- ``with files``: the real Context (the normal path);
- ``bare loop``: one UPDATE (compare-and-set on version) and one INSERT into
  workflow_transitions per transaction, on the same tables of a fresh copy, with the
  triggers storyflow keeps there (``list_json``, migration 0004) dropped: they are
  storyflow's work, which the loop is the bare reference for; psycopg for PostgreSQL (the
  target ratio), sqlite3 for SQLite (information);
- ``SQL replay`` (information): the exact statements and transactions that move() sent in an
  untimed recording run, replayed with the bare driver on a fresh copy: the database's share
  of a move; what storyflow adds on top is Python. On PostgreSQL twice: with psycopg's
  default server-side prepared statements (like the bare loop), and without them (like
  storyflow's connection, prepare_threshold=None);
- ``pre-check skipped`` (information, an experiment): no file write, and move()'s pre-commit
  story-file check patched out, to show what that check costs;
- ``floor`` (SQLite, information): each story file replaced by its own bytes with
  ``write_atomic`` (temp file + fsync + rename, as DESIGN §1 asks of every write) and
  nothing else: the disk's share of a move with files.
Also, information only: a uat -> blocked -> uat cycle (guards that read nothing but the
story) on some of the stories just moved, with files.

Targets: SQLite no file write >= 5,000/s; with files >= 1,000/s; PostgreSQL storyflow
(no file write) / bare loop >= 50 %.

    .venv/bin/python bench/transitions.py [--backend sqlite|postgresql|both] [--stories 600]
        [--pg-stories 300] [--runs 5] [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    VERIFICATION_PASS,
    WORK,
    Row,
    Summary,
    Walker,
    copy_workspace,
    fresh_dir,
    init_ws,
    log,
    open_ctx,
    report,
    version_key,
)

TARGET_SQLITE_NOFILE = 5000.0
TARGET_SQLITE_FILES = 1000.0
TARGET_PG_RATIO = 0.5
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BASE = "sf_bench"
PG_RUN = "sf_bench_run"
BLOCK_CYCLE_STORIES = 100


class NoWriteFiles:
    """The real StoryFiles, except that the after-commit projection writes nothing."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def project(self, epic: Any, story_id: Any, **_: Any) -> Path:
        root: Path = self._real.root  # nothing is computed or written
        return root

    def lock(self, story_id: str) -> Any:
        return contextlib.nullcontext()  # no file is touched at all

    def check_renderable(self, epic: Any, story: Any, moving_to: Any = None) -> None:
        return None


def without_file_writes(ctx: Any) -> Any:
    ctx.store.event_sink = None  # no trace lines either: no file is touched
    return dataclasses.replace(ctx, files=NoWriteFiles(ctx.files))


@contextmanager
def without_precheck() -> Iterator[bool]:
    """Experiment: skip move()'s pre-commit story-file check (read + YAML parse inside the
    transaction), to show what it costs. Yields False when move() has no such check."""
    from storyflow.services import transitions as service

    original = getattr(service, "check_story_file", None)
    if original is None:
        yield False
        return
    service.check_story_file = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    try:
        yield True
    finally:
        service.check_story_file = original  # type: ignore[attr-defined]


# ---- the base: N stories at in-qa with a PASS verification --------------------------------


def prepare(root: Path, stories: int, database_url: str | None) -> list[str]:
    from storyflow.services.epics import create_epic
    from storyflow.services.stories import create_story
    from storyflow.services.transitions import move

    ctx = init_ws(root, database_url)
    try:
        create_epic(ctx, "FLOW", title="Transition benchmark")
        walker = Walker(ctx, root / "inbox")
        ids = []
        for number in range(1, stories + 1):
            sid = create_story(ctx, "FLOW", title=f"Story {number}").id
            move(ctx, sid, "in-qa", force=True, reason="bench setup")
            walker.submit(sid, "verification", VERIFICATION_PASS)
            walker.tokens(sid, "qa_verification", 10000)
            ids.append(sid)
    finally:
        ctx.store.close()
    return ids


def sqlite_base(stories: int, rebuild: bool = False) -> Path:
    home = WORK / f"tx-sqlite-{version_key(stories)}"
    root = home / "ws"
    if rebuild or not (home / "READY").exists():
        log(f"preparing {stories} stories at in-qa on SQLite in {root} (cached afterwards)")
        start = time.perf_counter()
        fresh_dir(home)
        prepare(root, stories, None)
        (home / "READY").write_text("ok\n")
        log(f"  prepared in {time.perf_counter() - start:.1f} s")
    return root


def story_ids(stories: int) -> list[str]:
    return [f"FLOW-{n:03d}" for n in range(1, stories + 1)]


# ---- timed loops ----------------------------------------------------------------------------


def move_all(ctx: Any, ids: list[str], target: str, reason: str | None = None) -> float:
    """ops/s for moving every story in ``ids`` to ``target``, one move() each."""
    from storyflow.services.transitions import move

    start = time.perf_counter()
    for sid in ids:
        move(ctx, sid, target, reason=reason)
    return len(ids) / (time.perf_counter() - start)


def block_cycle(ctx: Any, ids: list[str]) -> float:
    """ops/s for uat -> blocked -> uat on each story (two moves per story)."""
    from storyflow.services.transitions import move

    start = time.perf_counter()
    for sid in ids:
        move(ctx, sid, "blocked", reason="waiting on infra")
        move(ctx, sid, "uat")
    return 2 * len(ids) / (time.perf_counter() - start)


def check_all(ctx: Any, ids: list[str], status: str) -> None:
    moved = {s.id for s in ctx.store.list_stories(epic="FLOW") if s.status.value == status}
    missing = [sid for sid in ids if sid not in moved]
    if missing:
        raise RuntimeError(f"{len(missing)} stories did not reach {status}, e.g. {missing[0]}")


def _bare_params(
    rows: list[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    from storyflow.adapters.db.store import ts

    for row in rows:
        now = ts(datetime.now(UTC))
        update = {"id": row["id"], "v": row["version"], "nv": row["version"] + 1, "now": now}
        insert = {"id": row["id"], "nv": row["version"] + 1, "now": now}
        yield update, insert


BARE_SELECT = "SELECT id, version FROM workflow_stories WHERE status = 'in-qa' ORDER BY id"
BARE_UPDATE = (
    "UPDATE workflow_stories SET status = 'uat', version = :nv, updated_at = :now, "
    "status_changed_at = :now WHERE id = :id AND version = :v"
)
BARE_INSERT = (
    "INSERT INTO workflow_transitions (story_id, from_status, to_status, actor, reason, "
    "forced, budget_confirmed, story_version, created_at) "
    "VALUES (:id, 'in-qa', 'uat', 'bench', NULL, false, false, :nv, :now)"
)


def bare_sqlite(db: Path) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 15000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.row_factory = sqlite3.Row
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f"DROP TRIGGER {name}")  # storyflow's work, not the bare loop's
        rows = [dict(r) for r in conn.execute(BARE_SELECT)]
        start = time.perf_counter()
        for update, insert in _bare_params(rows):
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute(BARE_UPDATE, update).rowcount != 1:
                raise RuntimeError("bare loop: compare-and-set failed")
            conn.execute(BARE_INSERT, insert)
            conn.execute("COMMIT")
        return len(rows) / (time.perf_counter() - start)
    finally:
        conn.close()


def file_floor(root: Path, ids: list[str]) -> float:
    """ops/s for the one durable write a move with files cannot avoid: each story file
    replaced by its own bytes through storyflow's ``write_atomic`` (temp file, fsync,
    rename), with nothing read, parsed, rendered, locked or traced. The disk's floor for
    the ``with files`` row: a move also renders, moves folders and appends trace lines."""
    from storyflow.adapters.files.atomic import write_atomic

    files = {path.parent.name: path for path in root.glob("plans/*/*/*/story.yaml")}
    work = [(files[sid], files[sid].read_text(encoding="utf-8")) for sid in ids]
    start = time.perf_counter()
    for path, text in work:
        write_atomic(path, text)
    return len(work) / (time.perf_counter() - start)


def bare_psycopg(url: str) -> float:
    import psycopg
    from psycopg.rows import dict_row

    from storyflow.adapters.db.connection import to_pyformat

    update_sql, insert_sql = to_pyformat(BARE_UPDATE), to_pyformat(BARE_INSERT)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for table in ("workflow_stories", "workflow_transitions"):  # storyflow's work
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        rows = conn.execute(BARE_SELECT).fetchall()
        start = time.perf_counter()
        for update, insert in _bare_params(rows):
            with conn.transaction():
                if conn.execute(update_sql, update).rowcount != 1:
                    raise RuntimeError("bare loop: compare-and-set failed")
                conn.execute(insert_sql, insert)
        return len(rows) / (time.perf_counter() - start)


# ---- SQL replay: what move() sends to the database, without the Python around it ----------

Op = tuple[str, str | None, Any]  # (begin | commit | exec | one | all | many, sql, params)


class Recorder:
    """Wraps the store's connection and records every statement and transaction boundary."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self.ops: list[Op] = []
        self._depth = 0

    def execute(self, sql: str, params: Any = None) -> Any:
        self.ops.append(("exec", sql, dict(params or {})))
        return self.conn.execute(sql, params)

    def fetchone(self, sql: str, params: Any = None) -> Any:
        self.ops.append(("one", sql, dict(params or {})))
        return self.conn.fetchone(sql, params)

    def fetchall(self, sql: str, params: Any = None) -> Any:
        self.ops.append(("all", sql, dict(params or {})))
        return self.conn.fetchall(sql, params)

    def fetch_batch(self, statements: Any) -> Any:
        # replayed one by one, as execute_batch's
        for sql, params in statements:
            self.ops.append(("all", sql, dict(params or {})))
        return self.conn.fetch_batch(statements)

    def executemany(self, sql: str, rows: Any) -> None:
        self.ops.append(("many", sql, [dict(r) for r in rows]))
        self.conn.executemany(sql, rows)

    def execute_batch(self, statements: Any, *, commit: bool = False) -> Any:
        # replayed one by one: the replay measures statements, not round trips
        for sql, params in statements:
            self.ops.append(("exec", sql, dict(params or {})))
        return self.conn.execute_batch(statements, commit=commit)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[None]:
        outer = self._depth == 0
        if outer:
            self.ops.append(("begin", None, write))
        self._depth += 1
        try:
            with self.conn.transaction(write=write):
                yield
        finally:
            self._depth -= 1
        if outer:
            self.ops.append(("commit", None, None))

    def close(self) -> None:
        self.conn.close()


def record_moves(ctx: Any, ids: list[str]) -> list[Op]:
    """The statements of moving every story to uat (no file write), recorded, not timed."""
    batching = ctx.store.conn  # the store's BatchingConnection: record what it sends
    recorder = Recorder(batching.inner)
    batching.inner = recorder
    try:
        move_all(without_file_writes(ctx), ids, "uat")
    finally:
        batching.inner = recorder.conn
    return recorder.ops


def replay_sqlite(db: Path, ops: list[Op], moves: int) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for pragma in ("busy_timeout = 15000", "journal_mode = WAL", "synchronous = NORMAL"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("PRAGMA foreign_keys = ON")
        start = time.perf_counter()
        for kind, sql, params in ops:
            if kind == "begin":
                conn.execute("BEGIN IMMEDIATE" if params else "BEGIN")
            elif kind == "commit":
                conn.execute("COMMIT")
            elif kind == "many":
                conn.executemany(str(sql), params)
            else:
                cursor = conn.execute(str(sql), params)
                if kind != "exec":
                    cursor.fetchall()
        return moves / (time.perf_counter() - start)
    finally:
        conn.close()


def replay_psycopg(url: str, ops: list[Op], moves: int, prepare: int | None = 5) -> float:
    """``prepare``: psycopg's prepare_threshold; its default (5) prepares a statement on the
    server once it has run 5 times; storyflow's connection passes None (never prepare)."""
    import psycopg

    from storyflow.adapters.db.connection import to_pyformat

    texts = {sql: to_pyformat(sql) for _, sql, _ in ops if sql}
    with psycopg.connect(url, autocommit=True, prepare_threshold=prepare) as conn:
        transaction: Any = None
        start = time.perf_counter()
        for kind, sql, params in ops:
            if kind == "begin":
                transaction = conn.transaction()
                transaction.__enter__()
            elif kind == "commit":
                transaction.__exit__(None, None, None)
            elif kind == "many":
                with conn.cursor() as cursor:
                    cursor.executemany(texts[str(sql)], params)
            else:
                cursor = conn.execute(texts[str(sql)], params)
                if kind != "exec":
                    cursor.fetchall()
        return moves / (time.perf_counter() - start)


# ---- the runs -------------------------------------------------------------------------------

VARIANTS = ("nofile", "files", "bare", "replay", "replay_noprep", "nocheck", "cycle", "floor")
PAIRED = "median over runs of the ratio within each run"


def storyflow_run(ctx: Any, ids: list[str], variant: str, results: dict[str, list[float]]) -> None:
    """One timed run of move() over ``ids`` on a fresh copy, then the (untimed) check."""
    run_ctx = ctx if variant == "files" else without_file_writes(ctx)
    if variant == "nocheck":
        with without_precheck() as patched:
            if patched:
                results[variant].append(move_all(run_ctx, ids, "uat"))
    else:
        results[variant].append(move_all(run_ctx, ids, "uat"))
    check_all(ctx, ids, "uat")
    if variant == "files":
        results["cycle"].append(block_cycle(ctx, ids[:BLOCK_CYCLE_STORIES]))


def interleave(runs: int, steps: list[Callable[[], None]], label: str) -> None:
    for run in range(runs):
        log(f"{label} run {run + 1}/{runs}")
        shift = run % len(steps)
        for step in steps[shift:] + steps[:shift]:
            step()


def run_sqlite(stories: int, runs: int, rebuild: bool) -> dict[str, list[float]]:
    base = sqlite_base(stories, rebuild)
    ids = story_ids(stories)
    scratch = WORK / "tx-scratch"
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}

    def copy(name: str) -> Path:
        return copy_workspace(base, scratch / name)

    ctx = open_ctx(copy("record"))
    try:
        ops = record_moves(ctx, ids)
    finally:
        ctx.store.close()

    def storyflow(variant: str) -> None:
        ctx = open_ctx(copy(variant))
        try:
            storyflow_run(ctx, ids, variant, results)
        finally:
            ctx.store.close()

    def bare() -> None:
        results["bare"].append(bare_sqlite(copy("bare") / ".storyflow" / "storyflow.db"))

    def replay() -> None:
        db = copy("replay") / ".storyflow" / "storyflow.db"
        results["replay"].append(replay_sqlite(db, ops, len(ids)))

    def floor() -> None:
        results["floor"].append(file_floor(copy("floor"), ids))

    steps: list[Callable[[], None]] = [
        lambda: storyflow("nofile"),
        lambda: storyflow("files"),
        bare,
        replay,
        lambda: storyflow("nocheck"),
        floor,
    ]
    interleave(runs, steps, "SQLite")
    fresh_dir(scratch)
    return results


def paired_ratio(results: dict[str, list[float]], top: str, bottom: str) -> float:
    """Median over runs of top/bottom within the same run (runs are interleaved, so each
    pair ran back to back; load drifting between runs cancels out)."""
    return statistics.median(a / b for a, b in zip(results[top], results[bottom], strict=True))


def _spread(summary: Summary, stories: int) -> str:
    return f"min {summary.low:,.0f}, max {summary.high:,.0f}, n={summary.n} runs of {stories} moves"


def rate_row(
    label: str, results: dict[str, list[float]], variant: str, stories: int, note: str = ""
) -> Row:
    """An information row: a variant's median rate, its spread, and what it measures."""
    summary = Summary.of(results[variant])
    return Row(label, summary.median, "ops/s", detail=_spread(summary, stories) + note)


def ratio_row(label: str, results: dict[str, list[float]], top: str, bottom: str) -> Row:
    """An information row: ``top`` over ``bottom`` as paired within each run."""
    return Row(label, paired_ratio(results, top, bottom) * 100, "%", detail=PAIRED)


def common_rows(backend: str, results: dict[str, list[float]], stories: int) -> list[Row]:
    """Rows without targets, the same for both backends."""
    driver = "sqlite3" if backend == "SQLite" else "psycopg"
    rows = [
        rate_row(f"{backend} bare {driver} UPDATE+INSERT per txn", results, "bare", stories),
        rate_row(
            f"{backend} SQL replay of move()'s statements ({driver})",
            results,
            "replay",
            stories,
            "; the exact statements and transactions move() sent, replayed without Python",
        ),
        ratio_row(f"{backend} storyflow (no file write) / SQL replay", results, "nofile", "replay"),
    ]
    if results["nocheck"]:
        rows.append(
            rate_row(
                f"{backend} in-qa->uat, no file write, story-file pre-check skipped (experiment)",
                results,
                "nocheck",
                stories,
                "; move() with check_story_file patched out",
            )
        )
        rows.append(
            ratio_row(
                f"{backend} storyflow (no file write, pre-check skipped) / bare",
                results,
                "nocheck",
                "bare",
            )
        )
    cycle = Summary.of(results["cycle"])
    rows.append(
        Row(
            f"{backend} uat->blocked->uat cycle, with files",
            cycle.median,
            "ops/s",
            detail=f"{2 * BLOCK_CYCLE_STORIES} moves per run, n={cycle.n}",
        )
    )
    return rows


def sqlite_rows(results: dict[str, list[float]], stories: int) -> list[Row]:
    nofile, files = Summary.of(results["nofile"]), Summary.of(results["files"])
    return [
        Row(
            "SQLite in-qa->uat, no file write",
            nofile.median,
            "ops/s",
            f">= {TARGET_SQLITE_NOFILE:,.0f}/s",
            nofile.median >= TARGET_SQLITE_NOFILE,
            _spread(nofile, stories),
        ),
        Row(
            "SQLite in-qa->uat, with file projection",
            files.median,
            "ops/s",
            f">= {TARGET_SQLITE_FILES:,.0f}/s",
            files.median >= TARGET_SQLITE_FILES,
            _spread(files, stories),
        ),
        ratio_row("SQLite storyflow (no file write) / bare", results, "nofile", "bare"),
        rate_row(
            "SQLite floor: one atomic write (temp + fsync + rename) per story file",
            results,
            "floor",
            stories,
            "; write_atomic of each story file with its own bytes, nothing else: "
            "what a move with files writes at the least",
        ),
        ratio_row("SQLite storyflow (with files) / that floor", results, "files", "floor"),
        *common_rows("SQLite", results, stories),
    ]


# ---- PostgreSQL ---------------------------------------------------------------------------


def server_url(flag: str | None) -> str:
    """The PostgreSQL server to create the benchmark databases on (libpq spelling)."""
    if flag:
        url = flag
    elif os.environ.get("STORYFLOW_BENCH_PG_URL"):
        url = os.environ["STORYFLOW_BENCH_PG_URL"]
    elif os.environ.get("STORYFLOW_DATABASE_URL", "").startswith("postgres"):
        url = os.environ["STORYFLOW_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    else:
        url = DEFAULT_PG_URL
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def db_url(server: str, name: str) -> str:
    return server.rsplit("/", 1)[0] + "/" + name


@contextmanager
def admin(server: str) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        yield conn


def drop(server: str, *names: str) -> None:
    with admin(server) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def clone(server: str) -> str:
    with admin(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_RUN}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_RUN}" TEMPLATE "{PG_BASE}"')
    return db_url(server, PG_RUN)


def run_postgres(stories: int, runs: int, server: str) -> dict[str, list[float]]:
    ids = story_ids(stories)
    home = WORK / "tx-postgres"
    base = home / "base"
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    drop(server, PG_RUN, PG_BASE)
    try:
        with admin(server) as conn:
            conn.execute(f'CREATE DATABASE "{PG_BASE}"')
        log(f"preparing {stories} stories at in-qa on PostgreSQL ({PG_BASE})")
        start = time.perf_counter()
        prepare(base, stories, db_url(server, PG_BASE))
        log(f"  prepared in {time.perf_counter() - start:.1f} s")

        ctx = open_ctx(copy_workspace(base, home / "record"), clone(server))
        try:
            ops = record_moves(ctx, ids)
        finally:
            ctx.store.close()

        def storyflow(variant: str) -> None:
            url = clone(server)
            ctx = open_ctx(copy_workspace(base, home / variant), url)
            try:
                storyflow_run(ctx, ids, variant, results)
            finally:
                ctx.store.close()

        def bare() -> None:
            results["bare"].append(bare_psycopg(clone(server)))

        def replay() -> None:
            results["replay"].append(replay_psycopg(clone(server), ops, len(ids)))

        def replay_unprepared() -> None:
            url = clone(server)
            results["replay_noprep"].append(replay_psycopg(url, ops, len(ids), prepare=None))

        steps: list[Callable[[], None]] = [
            lambda: storyflow("nofile"),
            lambda: storyflow("files"),
            bare,
            replay,
            replay_unprepared,
            lambda: storyflow("nocheck"),
        ]
        interleave(runs, steps, "PostgreSQL")
    finally:
        drop(server, PG_RUN, PG_BASE)
        fresh_dir(home)
    return results


def postgres_rows(results: dict[str, list[float]], stories: int) -> list[Row]:
    nofile, files = Summary.of(results["nofile"]), Summary.of(results["files"])
    ratio = paired_ratio(results, "nofile", "bare")
    return [
        Row(
            "PostgreSQL in-qa->uat, no file write",
            nofile.median,
            "ops/s",
            detail=_spread(nofile, stories),
        ),
        Row(
            "PostgreSQL in-qa->uat, with file projection",
            files.median,
            "ops/s",
            detail=_spread(files, stories),
        ),
        Row(
            "PostgreSQL storyflow (no file write) / bare",
            ratio * 100,
            "%",
            f">= {TARGET_PG_RATIO * 100:.0f} %",
            ratio >= TARGET_PG_RATIO,
            PAIRED + "; ratio of the medians: "
            f"{nofile.median / Summary.of(results['bare']).median * 100:.1f} %",
        ),
        ratio_row("PostgreSQL storyflow (with files) / bare", results, "files", "bare"),
        *common_rows("PostgreSQL", results, stories),
        rate_row(
            "PostgreSQL SQL replay, no server-side prepared statements (as storyflow connects)",
            results,
            "replay_noprep",
            stories,
            "; psycopg prepare_threshold=None, which storyflow's PostgresConnection passes "
            "(the bare loop and the other replay use psycopg's default, 5)",
        ),
    ]


def pg_available(server: str) -> str | None:
    """None when the server answers; otherwise why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=5):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--stories", type=int, default=600, help="Moves per timed run.")
    parser.add_argument("--pg-stories", type=int, default=300, help="Moves per run (PG).")
    parser.add_argument("--runs", type=int, default=5, help="Timed runs per variant.")
    parser.add_argument("--pg-url", help=f"PostgreSQL server (default {DEFAULT_PG_URL}).")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the cached SQLite base.")
    parser.add_argument("--json", help="Also write the rows as JSON to this path.")
    args = parser.parse_args()

    rows: list[Row] = []
    if args.backend in ("sqlite", "both"):
        rows += sqlite_rows(run_sqlite(args.stories, args.runs, args.rebuild), args.stories)
    if args.backend in ("postgresql", "both"):
        server = server_url(args.pg_url)
        problem = pg_available(server)
        if problem is None:
            results = run_postgres(args.pg_stories, args.runs, server)
            rows += postgres_rows(results, args.pg_stories)
        else:
            log(f"PostgreSQL at {server} is unavailable: {problem}")
            rows.append(
                Row(
                    "PostgreSQL storyflow (no file write) / bare",
                    0.0,
                    "%",
                    f">= {TARGET_PG_RATIO * 100:.0f} %",
                    None,
                    f"SKIPPED: {server} unavailable ({problem})",
                )
            )
    report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
