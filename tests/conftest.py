"""Fixtures: a real workspace on a real database per test.

STORYFLOW_TEST_BACKEND=sqlite (default) gives each test its own SQLite file;
STORYFLOW_TEST_BACKEND=postgresql gives each test its own PostgreSQL database, cloned from a
template migrated once per session (STORYFLOW_TEST_PG_URL names the server).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support import Workspace

BACKEND = os.environ.get("STORYFLOW_TEST_BACKEND", "sqlite")
PG_URL = os.environ.get("STORYFLOW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
_counter = itertools.count()


def pytest_report_header(config: pytest.Config) -> str:
    return f"storyflow backend: {BACKEND}" + (f" ({PG_URL})" if BACKEND == "postgresql" else "")


def _admin():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True)


def _url_for(database: str) -> str:
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    if BACKEND != "postgresql":
        yield None
        return
    from storyflow.adapters.db.migrate import upgrade

    name = f"sf_tmpl_{os.getpid()}"
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    upgrade(_url_for(name))
    yield name
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Databases cloned from the template and handed back after each test. Cloning costs about
# half a second (CREATE DATABASE ... TEMPLATE writes and syncs every page), emptying the
# tables of a used one about 15 ms, so each test still gets a database that looks just
# migrated, without paying for a new one every time.
_free: list[str] = []


# Columns, indexes, constraints and the alembic revision, in one digest: a database whose
# digest differs from the template's was changed by its test and is not reused.
Q_SHAPE = """
SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
  SELECT table_name || '.' || column_name || ':' || data_type || ':' || is_nullable || ':'
         || coalesce(column_default, '') AS x
  FROM information_schema.columns WHERE table_schema = 'public'
  UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
  UNION ALL SELECT conname || ':' || pg_get_constraintdef(oid) FROM pg_constraint
  WHERE connamespace = 'public'::regnamespace
  UNION ALL SELECT 'alembic:' || version_num FROM alembic_version
) AS parts
"""


def _shape(conn: Any) -> str:
    import psycopg

    try:
        row = conn.execute(Q_SHAPE).fetchone()
    except psycopg.Error:  # no alembic_version table: not the template's shape
        return ""
    return str(row[0]) if row else ""


def _reset(name: str, shape: str) -> bool:
    """Empty a used database back to the just-migrated state; False if it cannot be (a test
    downgraded or stamped it), and then it is dropped and a fresh clone is used instead."""
    import psycopg

    try:
        with psycopg.connect(_url_for(name), autocommit=True) as conn:
            # Whatever a test left connected (a killed worker's session, a subprocess still
            # holding a lock) goes first, so nothing it did can leak into the next test.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            conn.execute("SET lock_timeout = '5s'")
            if _shape(conn) != shape:
                return False
            tables = conn.execute(
                "SELECT tablename FROM pg_tables"
                " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            ).fetchall()
            sequences = conn.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
            ).fetchall()
            # DELETE (not TRUNCATE, which makes new files and costs ~10x more) with the
            # foreign-key triggers off, so the order of the tables does not matter.
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
                for (table,) in tables:
                    conn.execute(f'DELETE FROM "{table}"')
                for (sequence,) in sequences:
                    conn.execute(f'ALTER SEQUENCE "{sequence}" RESTART')
    except psycopg.Error:
        return False
    return True


@pytest.fixture(scope="session")
def pg_shape(pg_template: str | None) -> str | None:
    """The template's schema digest: what a reset database must still have."""
    if pg_template is None:
        return None
    import psycopg

    with psycopg.connect(_url_for(pg_template), autocommit=True) as conn:
        return _shape(conn)


@pytest.fixture(scope="session")
def pg_pool(pg_template: str | None) -> Iterator[list[str]]:
    """Every database this session made, dropped at the end."""
    made: list[str] = []
    yield made
    if made:
        with _admin() as conn:
            for name in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def pg_database(template: str, shape: str, pool: list[str]) -> Iterator[str]:
    """The URL of a database of its own, just migrated and empty (a fresh clone of the
    template, or a used one emptied), handed back for reuse afterwards."""
    name = _free.pop() if _free else None
    if name is None:
        name = f"sf_{os.getpid()}_{next(_counter)}"
        with _admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            # A commit still makes its writes visible to every session at once; it only
            # stops waiting for the WAL flush, which a server crash (never a test's) would
            # need. On a slow disk the suite spent most of its time in those waits.
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        pool.append(name)
    try:
        yield _url_for(name)
    finally:
        if _reset(name, shape):
            _free.append(name)
        else:
            with _admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            pool.remove(name)


@pytest.fixture
def database_url(
    pg_template: str | None,
    pg_shape: str | None,
    pg_pool: list[str],
) -> Iterator[str | None]:
    """None on SQLite (the workspace default); a PostgreSQL database of the test's own."""
    if pg_template is None or pg_shape is None:
        yield None
        return
    with pg_database(pg_template, pg_shape, pg_pool) as url:
        yield url


@pytest.fixture
def workspace(tmp_path: Path, database_url: str | None) -> Iterator[Workspace]:
    ws = Workspace.create(tmp_path / "ws", database_url)
    yield ws
    ws.close()


@pytest.fixture
def fake_api() -> Iterator[tuple[str, Any]]:
    """The fake LLM API (tests/fakes/fake_llm_api.py) on a free port: its URL and state."""
    from tests.fakes.fake_llm_api import serve

    server, state = serve()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
