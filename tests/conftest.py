"""Fixtures: a real workspace on a real database per test.

STORYFLOW_TEST_BACKEND=sqlite (default) gives each test its own SQLite file;
STORYFLOW_TEST_BACKEND=postgresql gives each test its own PostgreSQL database, cloned from a
template migrated once per session (STORYFLOW_TEST_PG_URL names the server).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def database_url(pg_template: str | None) -> Iterator[str | None]:
    """None on SQLite (the workspace default); a fresh PostgreSQL database otherwise."""
    if pg_template is None:
        yield None
        return
    name = f"sf_{os.getpid()}_{next(_counter)}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _url_for(name)
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def workspace(tmp_path: Path, database_url: str | None) -> Iterator[Workspace]:
    ws = Workspace.create(tmp_path / "ws", database_url)
    yield ws
    ws.close()
