"""Schema revisions: a cheap check on every open, Alembic only when an upgrade is due."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from storyflow.adapters.db.connection import (
    Connection,
    invalid_url,
    not_writable,
    sqlalchemy_url,
)
from storyflow.errors import InvalidInput, UsageError

# The newest revision this code knows; a test checks it equals Alembic's head.
HEAD_REVISION = "0004"
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004")
MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x5709F10  # advisory lock serialising concurrent upgrades


def schema_revision(conn: Connection) -> str | None:
    if conn.dialect == "sqlite":
        exists = conn.fetchone(
            "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        )
    else:
        exists = conn.fetchone("SELECT to_regclass('alembic_version') IS NOT NULL AS x")
        exists = exists if exists and exists["x"] else None
    if not exists:
        return None
    row = conn.fetchone("SELECT version_num FROM alembic_version")
    return None if row is None else str(row["version_num"])


def ensure_schema(conn: Connection, url: str, lock_dir: Path) -> bool:
    """Upgrade to head when the database is empty or behind; True when it was empty (the
    schema was created just now: a new database)."""
    revision = schema_revision(conn)
    if revision == HEAD_REVISION:
        return False
    refuse_unknown(revision)
    with _upgrade_lock(conn, lock_dir):
        revision = schema_revision(conn)
        if revision == HEAD_REVISION:
            return False
        upgrade(url)
    return revision is None


def refuse_unknown(revision: str | None) -> None:
    """Raise DATABASE_TOO_NEW when the database is at a revision this code does not know."""
    if revision is not None and revision not in KNOWN_REVISIONS:
        raise UsageError(
            f"the database is at schema revision {revision}, newer than this storyflow",
            code="DATABASE_TOO_NEW",
            hint="upgrade storyflow (pip install -U storyflow)",
        )


def upgrade_target(revision: str, current: str | None) -> str:
    """``db upgrade --revision``: head, or a revision this storyflow ships that is not behind
    the database's (storyflow migrates forward only). Refused before Alembic runs, so an
    unknown or older revision is an error with a hint, not Alembic's traceback."""
    if revision == "head":
        return revision
    if revision not in KNOWN_REVISIONS:
        raise InvalidInput(
            f"unknown schema revision {revision!r}",
            code="UNKNOWN_REVISION",
            hint=f"use head or one of {', '.join(KNOWN_REVISIONS)} (storyflow db current "
            "shows where the database is)",
            details={"revision": revision, "known": list(KNOWN_REVISIONS)},
        )
    if current is not None and KNOWN_REVISIONS.index(revision) < KNOWN_REVISIONS.index(current):
        raise InvalidInput(
            f"the database is at schema revision {current}; storyflow db upgrade does not go "
            f"back to {revision}",
            code="UNKNOWN_REVISION",
            hint=f"upgrade to {current} or later (head: {HEAD_REVISION}); to go back, restore "
            "a backup of the database",
            details={"revision": revision, "current": current},
        )
    return revision


@contextmanager
def _upgrade_lock(conn: Connection, lock_dir: Path) -> Iterator[None]:
    if conn.dialect == "sqlite":
        try:
            lock_dir.mkdir(parents=True, exist_ok=True)
            handle = open(lock_dir / "migrate.lock", "w")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise not_writable(lock_dir, exc) from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    conn.execute("SELECT pg_advisory_lock(:k)", {"k": _PG_LOCK_KEY})
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(:k)", {"k": _PG_LOCK_KEY})


def _alembic_config(url: str) -> object:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config

    cfg = _alembic_config(url)
    assert isinstance(cfg, Config)
    import logging

    from sqlalchemy.exc import ArgumentError

    logging.getLogger(__name__).info("upgrading database schema to %s", revision)
    try:
        command.upgrade(cfg, revision)
    except ArgumentError as exc:  # a URL our connector took and SQLAlchemy does not
        raise invalid_url(url, str(exc)) from exc


def alembic_head() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()
