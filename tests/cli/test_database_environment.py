"""The database and the state folder as the environment leaves them: not writable, read-only,
damaged, or named by a URL that cannot work. Each is a clear error with its code, exit 2 and
a hint (never INTERNAL), and a refused command leaves files and database as they were.

The executable runs as a subprocess (``via="run"``): a process checks the locks folder once
and remembers it, so an in-process run after the seeded fixture's moves would not look again.
Read-only and immutable folders are made with ``chattr +i`` (root ignores permission bits);
where chattr is missing or not allowed (a filesystem without attributes) those tests skip.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Seeded
from tests.cli.helpers import refuse, refuse_with, run_in, unchanged
from tests.integration.test_sqlite_writers import turn_held_elsewhere
from tests.support import Result, Workspace

MOVE = ("story", "move", "FLOW-002", "in-elaboration")


def sqlite_only(ws: Workspace) -> Path:
    if ws.database_url:
        pytest.skip("a SQLite database file")
    return ws.root / ".storyflow" / "storyflow.db"


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``path`` immutable (chattr +i) for the block: not even root may write it."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    done = subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not allowed here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@contextmanager
def held_open(ws: Workspace) -> Iterator[None]:
    """Another connection keeps a SQLite database's -wal and -shm files (which a writer
    needs) in place, as a second storyflow process would; nothing to do on PostgreSQL."""
    if ws.database_url:
        yield
        return
    conn = sqlite3.connect(ws.root / ".storyflow" / "storyflow.db")
    try:
        conn.execute("SELECT 1 FROM workflow_stories").fetchall()
        yield
    finally:
        conn.close()


def status_of(ws: Workspace, story_id: str) -> str:
    result = ws.run("story", "show", story_id, "--json")
    assert result.code == 0, result
    return str(result.json["status"])


# ---- the state folder ----------------------------------------------------------------------


def test_a_state_folder_nobody_may_write_refuses_the_move_before_the_commit(
    seeded: Seeded,
) -> None:
    """The projection takes a lock in .storyflow/locks after the commit: when it cannot, the
    move is refused before, not committed and then failed (the database said generated, the
    file pending)."""
    ws = seeded.ws
    state = ws.root / ".storyflow"
    shutil.rmtree(state / "locks", ignore_errors=True)  # made by the first projection
    with unchanged(ws), held_open(ws), immutable(state):
        error = refuse(ws, *MOVE, code="WORKSPACE_NOT_WRITABLE", via="run")
        assert str(state) in error["message"], error
        assert "chattr -i" in error["hint"], error
    assert status_of(ws, "FLOW-002") == "generated"
    assert ws.run(*MOVE).code == 0  # writable again: the same move goes through


def test_a_file_where_the_locks_folder_goes_refuses_the_move(seeded: Seeded) -> None:
    ws = seeded.ws
    locks = ws.root / ".storyflow" / "locks"
    shutil.rmtree(locks, ignore_errors=True)
    locks.write_text("not a folder\n")
    with unchanged(ws):
        error = refuse(ws, *MOVE, code="WORKSPACE_NOT_WRITABLE", via="run")
    assert error["details"] == {"folder": str(locks)}, error
    locks.unlink()
    assert ws.run(*MOVE).code == 0


def test_a_state_folder_without_the_database_open_elsewhere_is_refused_at_open(
    seeded: Seeded,
) -> None:
    """SQLite cannot make its -wal file: refused as not writable (it was WORKSPACE_NOT_FOUND
    with a hint about .storyflow/, or INTERNAL)."""
    ws = seeded.ws
    state = ws.root / ".storyflow"
    sqlite_only(ws)
    seeded.ws.close()  # the seeded fixture's own connection would keep them
    with unchanged(ws), immutable(state):
        error = refuse(ws, *MOVE, code="WORKSPACE_NOT_WRITABLE", via="run")
        assert str(state) in error["message"], error


# ---- the writers' turn --------------------------------------------------------------------


def test_a_move_waits_for_the_turn_and_then_commits(seeded: Seeded) -> None:
    """Through the CLI: ``story move`` while another process holds the writers' turn waits,
    and commits once the turn is let go."""
    ws = seeded.ws
    db = sqlite_only(ws)
    moved: list[int] = []

    def move() -> None:
        moved.append(ws.run(*MOVE).code)

    with turn_held_elsewhere(db):
        mover = threading.Thread(target=move)
        mover.start()
        mover.join(timeout=1.5)
        assert moved == [], "the move committed while another process held the turn"
        assert status_of(ws, "FLOW-002") == "generated"
    mover.join(timeout=60)
    assert moved == [0]
    assert status_of(ws, "FLOW-002") == "in-elaboration"


# ---- a read-only database ------------------------------------------------------------------

WRITERS = {
    "story move": MOVE,
    "epic new": ("epic", "new", "NEWE", "--title", "New"),
    "story new": ("story", "new", "FLOW", "--title", "x"),
}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_read_only_database_file_refuses_writes(seeded: Seeded, command: str) -> None:
    ws = seeded.ws
    db = sqlite_only(ws)
    with unchanged(ws), held_open(ws), immutable(db):
        error = refuse(ws, *WRITERS[command], code="DATABASE_READONLY", via="run")
        assert str(db) in error["message"], error
        assert ws.run("story", "list").code == 0  # reading still works
    assert not (ws.root / "plans" / "newe").exists()


def test_sync_on_a_read_only_database_file(seeded: Seeded) -> None:
    ws = seeded.ws
    db = sqlite_only(ws)
    with unchanged(ws), held_open(ws), immutable(db):
        result = ws.run("sync", "--json")
        if result.code != 0:  # a sync with nothing to write may well succeed
            refuse(ws, "sync", code="DATABASE_READONLY", via="run")


def test_a_read_only_postgresql_database_refuses_writes(seeded: Seeded) -> None:
    ws = seeded.ws
    if not ws.database_url:
        pytest.skip("PostgreSQL")
    import psycopg

    from storyflow.adapters.db.connection import libpq_url

    url = libpq_url(ws.database_url)
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        try:
            with unchanged(ws):
                refuse(ws, *MOVE, code="DATABASE_READONLY", via="run")
        finally:
            admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')


# ---- a damaged database --------------------------------------------------------------------

DAMAGED_READERS = {
    "story show": ("story", "show", "FLOW-001"),
    "story move": MOVE,
    "check": ("check",),
    "sync": ("sync",),
}


def damage(ws: Workspace, how: str) -> tuple[Path, bytes]:
    """Damage the SQLite database (``how``: a page run over in the middle, garbage, or cut
    short) with everything checkpointed into it first; the damaged bytes."""
    db = sqlite_only(ws)
    ws.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = db.stat().st_size
    with open(db, "r+b") as handle:
        if how == "page":
            assert size > 3 * 4096
            handle.seek(3 * 4096)
            handle.write(b"\xff" * (size - 3 * 4096))  # every table's pages
        elif how == "garbage":
            handle.write(bytes(range(256)) * 8)
        else:
            handle.truncate(5000)
    return db, db.read_bytes()


@pytest.mark.parametrize("how", ["page", "garbage", "truncated"])
@pytest.mark.parametrize("command", sorted(DAMAGED_READERS))
def test_a_damaged_database_is_named_with_a_way_back(
    seeded: Seeded, how: str, command: str
) -> None:
    ws = seeded.ws
    db, damaged = damage(ws, how)
    files = ws.snapshot()
    error = refuse(ws, *DAMAGED_READERS[command], code="DATABASE_CORRUPT", via="run")
    assert str(db) in error["message"], error
    assert "backup" in error["hint"] and "storyflow sync" in error["hint"], error
    assert ws.snapshot() == files
    assert db.read_bytes() == damaged


def test_the_hint_of_a_damaged_database_works(seeded: Seeded) -> None:
    """Moved aside, the database is rebuilt from the files by storyflow sync."""
    ws = seeded.ws
    db, _ = damage(ws, "page")
    for suffix in ("", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    assert ws.run("sync").code == 0
    assert status_of(ws, "FLOW-001") == "in-elaboration"


# ---- database URLs -------------------------------------------------------------------------

BAD_URLS = {
    "bad percent token": "postgresql+psycopg://%%%",
    "unclosed IPv6 host": "postgresql://x@[::1",
    "no database name": "postgresql://",
    "host but no database name": "postgresql://postgres@127.0.0.1:5432/",
    "sqlite without slashes": "sqlite:relative.db",
    "sqlite in memory": "sqlite:///:memory:",
    "sqlite empty": "sqlite://",
}


@pytest.mark.parametrize("case", sorted(BAD_URLS))
def test_a_bad_database_url_in_the_environment(seeded: Seeded, case: str) -> None:
    ws = seeded.ws
    env = {"STORYFLOW_DATABASE_URL": BAD_URLS[case], "PGDATABASE": ""}
    with unchanged(ws):
        error = refuse(ws, *MOVE, code="DATABASE_URL_INVALID", via="env", env=env)
    assert "postgresql+psycopg://user@host/" in error["hint"] or "file" in error["hint"]
    assert not (ws.root / "relative.db").exists()


def init_in(parent: Path, *args: str) -> Result:
    return run_in(parent, "init", "i", *args, env={"PGDATABASE": ""})


@pytest.mark.parametrize("case", [*sorted(BAD_URLS), "unsupported scheme"])
def test_a_refused_init_leaves_nothing_behind(tmp_path: Path, case: str) -> None:
    url = BAD_URLS.get(case, "garbage://")
    target = tmp_path / "i"
    target.mkdir()
    code = "USAGE" if case == "unsupported scheme" else "DATABASE_URL_INVALID"

    def call(*argv: str) -> Result:
        return init_in(tmp_path, *argv)

    refuse_with(call, "--database-url", url, code=code)
    assert sorted(p.name for p in target.iterdir()) == []


def test_a_refused_init_keeps_what_was_there(tmp_path: Path) -> None:
    """Only what this init created goes: a state folder and its files that were there stay,
    and so does a damaged database file it was pointed at."""
    target = tmp_path / "i"
    (target / ".storyflow").mkdir(parents=True)
    (target / ".storyflow" / "mine.txt").write_text("keep\n")
    (target / "old.db").write_bytes(b"not a database" * 100)

    def call(*argv: str) -> Result:
        return init_in(tmp_path, *argv)

    refuse_with(call, "--database-url", "sqlite:///old.db", code="DATABASE_CORRUPT")
    assert sorted(p.name for p in target.iterdir()) == [".storyflow", "old.db"]
    assert sorted(p.name for p in (target / ".storyflow").iterdir()) == ["mine.txt"]
    assert (target / "old.db").read_bytes() == b"not a database" * 100


@pytest.mark.parametrize(
    "name", ["my #1.db", "a: b.db", "it's.db", 'say "hi".db', "100%.db", "é ü.db"]
)
def test_init_writes_the_database_url_as_given(tmp_path: Path, name: str) -> None:
    """The URL goes into storyflow.yaml quoted: a '#' once made a comment of its tail, and
    every later command used another database."""
    target = tmp_path / "i"
    target.mkdir()
    url = f"sqlite:///{target / name}"
    assert init_in(tmp_path, "--database-url", url).code == 0
    written = yaml.safe_load((target / "storyflow.yaml").read_text(encoding="utf-8"))
    assert written["database_url"] == url
    assert run_in(target, "epic", "new", "FLOW", "--title", "F").code == 0
    assert sorted(p.name for p in target.iterdir() if p.suffix == ".db") == [name]
    listed = run_in(target, "epic", "list", "--json")
    assert [e["prefix"] for e in listed.json] == ["FLOW"], listed


def test_a_relative_sqlite_url_is_the_workspace_s_from_any_folder(tmp_path: Path) -> None:
    """sqlite:///state.db is relative to the workspace: a first command in a subfolder
    creates the schema there too (Alembic was handed the URL as written, and made its
    tables relative to the current folder)."""
    target = tmp_path / "i"
    target.mkdir()
    assert init_in(tmp_path, "--database-url", "sqlite:///state.db").code == 0
    (target / "state.db").unlink()
    (target / "sub").mkdir()
    assert run_in(target / "sub", "epic", "new", "FLOW", "--title", "F").code == 0
    assert not (target / "sub" / "state.db").exists()
    assert [e["prefix"] for e in run_in(target, "epic", "list", "--json").json] == ["FLOW"]
