"""SQLite writers queue for their turn on a lock file beside the database (``<db>-lock``)
before ``BEGIN IMMEDIATE``: a writer waits while another holds it, goes on when it is let go,
is refused DATABASE_BUSY (nothing written) when the wait outlasts the busy timeout, and still
writes when the lock file cannot be used. These are SQLite's own: they run on either suite."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from storyflow.adapters.db.connection import DatabaseBusy, SqliteConnection
from storyflow.domain.statuses import Status
from tests.run_support import configure, epic_with, scenario
from tests.support import Workspace

HOLDER = """
import fcntl, sys
handle = open(sys.argv[1], "a")
fcntl.flock(handle, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()  # until the test closes it
"""


@contextmanager
def turn_held_elsewhere(db: Path) -> Iterator[None]:
    """Another process holds the writers' turn of ``db`` for the block."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"{db}-lock"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert holder.stdout.readline() == "held\n"
            yield
        finally:
            holder.stdin.close()
            holder.wait(timeout=10)


def database(tmp_path: Path, busy_timeout_ms: int = 15_000) -> SqliteConnection:
    conn = SqliteConnection(tmp_path / "state" / "t.db", busy_timeout_ms=busy_timeout_ms)
    with conn.transaction():
        conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER NOT NULL)")
    return conn


def rows(conn: SqliteConnection) -> list[int]:
    return [row["n"] for row in conn.fetchall("SELECT n FROM t ORDER BY n")]


def test_a_writer_waits_for_the_turn_another_process_holds(tmp_path: Path) -> None:
    conn = database(tmp_path)
    done = threading.Event()

    def write() -> None:
        with conn.transaction():
            conn.execute("INSERT INTO t (n) VALUES (1)")
        done.set()

    with turn_held_elsewhere(conn.path):
        writer = threading.Thread(target=write)
        writer.start()
        assert not done.wait(0.5), "the write went ahead while another process held the turn"
    writer.join(timeout=10)
    assert done.is_set()
    assert rows(conn) == [1]
    conn.close()


def test_a_turn_held_past_the_busy_timeout_is_database_busy_and_writes_nothing(
    tmp_path: Path,
) -> None:
    conn = database(tmp_path, busy_timeout_ms=300)
    with turn_held_elsewhere(conn.path):
        with pytest.raises(DatabaseBusy) as refused, conn.transaction():
            conn.execute("INSERT INTO t (n) VALUES (1)")
        assert refused.value.code == "DATABASE_BUSY"
        assert "retry" in (refused.value.hint or "")
        assert rows(conn) == []  # a read needs no turn
    with conn.transaction():  # the turn is free again: the same write goes through
        conn.execute("INSERT INTO t (n) VALUES (1)")
    assert rows(conn) == [1]
    conn.close()


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    """Four connections in four threads, each adding 50 rows in its own transactions,
    while the others write: every row lands, none is refused."""
    database(tmp_path).close()
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        conn = SqliteConnection(tmp_path / "state" / "t.db")
        try:
            for n in range(offset, offset + 50):
                with conn.transaction():
                    last = conn.fetchone("SELECT COUNT(*) AS c FROM t")
                    conn.execute("INSERT INTO t (n) VALUES (:n)", {"n": n})
                    assert conn.fetchone("SELECT COUNT(*) AS c FROM t") == {
                        "c": last["c"] + 1  # type: ignore[index]
                    }
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(100 * i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    conn = SqliteConnection(tmp_path / "state" / "t.db")
    assert rows(conn) == sorted(100 * i + k for i in range(4) for k in range(50))
    conn.close()


def test_a_lock_file_that_cannot_be_opened_leaves_the_writers_to_sqlite(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "t.db-lock").mkdir()  # a folder where the lock file goes
    conn = database(tmp_path)
    with conn.transaction():
        conn.execute("INSERT INTO t (n) VALUES (1)")
    assert rows(conn) == [1]
    conn.close()


def test_the_turn_is_let_go_after_each_transaction(tmp_path: Path) -> None:
    """After a commit, and after a rollback, nobody holds the turn; the lock file carries a
    lock, never data."""
    conn = database(tmp_path)
    with conn.transaction():
        conn.execute("INSERT INTO t (n) VALUES (1)")
    with pytest.raises(ZeroDivisionError), conn.transaction():
        conn.execute("INSERT INTO t (n) VALUES (2)")
        raise ZeroDivisionError
    assert rows(conn) == [1]
    assert os.path.getsize(f"{conn.path}-lock") == 0
    with open(f"{conn.path}-lock") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if still held
    conn.close()


def test_a_worker_outlives_a_write_turn_held_past_the_busy_timeout(tmp_path: Path) -> None:
    """A worker whose claim waited out the busy timeout (another process held the write
    turn for longer) is refused DATABASE_BUSY, nothing written: it says so and tries again,
    and the stories are driven to rest once the turn is let go."""
    ws = Workspace.create(tmp_path / "ws", None)  # SQLite's own, on either suite
    try:
        scenario(ws, {})
        configure(ws, {"scenario": "scenario.yaml"})
        stories = epic_with(ws.ctx(), 2)
        ws.close()
        with turn_held_elsewhere(ws.root / ".storyflow" / "storyflow.db"):
            worker = ws.spawn("worker", "--epic", "FLOW", "--until-idle", "--json")
            time.sleep(17)  # its first claim waits 15 s for the turn, then is refused
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        assert "the database is busy" in err and "trying again" in err, err
        assert json.loads(out)["stories"], out
        ctx = ws.ctx()
        assert all(ctx.story(story).status is Status.COMPLETED for story in stories)
    finally:
        ws.close()
