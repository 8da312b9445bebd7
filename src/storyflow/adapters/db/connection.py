"""A small connector over DB-API: sqlite3 (stdlib) and psycopg 3, one SQL text for both.

Hot paths talk to the database through this, not through SQLAlchemy: importing SQLAlchemy
costs ~200 ms, more than a read command's whole budget. SQLAlchemy still owns the schema
(``schema.py``) and Alembic the migrations. Queries use ``:name`` parameters; for psycopg
they are rewritten once to ``%(name)s``.

SQLite runs in WAL mode with a busy timeout; writers take ``BEGIN IMMEDIATE`` so two
writers serialise instead of failing half-way. PostgreSQL runs in autocommit with explicit
transactions (READ COMMITTED); the stores' compare-and-set does the rest.
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Protocol

from storyflow.errors import ConflictError, StoryflowError, UsageError

Row = dict[str, Any]
Params = Mapping[str, Any] | None


class UniqueViolation(Exception):
    """A unique or primary key constraint refused an insert (translated by the store)."""


class DatabaseBusy(ConflictError):
    pass


class ConnectionLost(StoryflowError):
    """The connection to the database server broke in the middle of a transaction (a server
    restart, a failover, a network cut): the transaction is gone, or (its COMMIT in flight)
    its outcome is unknown. The connection itself is made again at its next use."""

    exit_status = 5
    default_code = "DATABASE_CONNECTION_LOST"


# How long a lost PostgreSQL connection is tried again (a server restart takes seconds), unless
# limits.database_reconnect_seconds says otherwise.
RECONNECT_SECONDS = 60.0
# Leases are timed by the clock: on PostgreSQL, workers on many machines share them, so a
# machine whose clock is this far (or farther) off the server's times by the server's.
CLOCK_TOLERANCE_SECONDS = 1.0
# How often a long-lived connection measures the server's clock again (a clock drifts).
CLOCK_CHECK_SECONDS = 600.0


class Connection(Protocol):
    dialect: str
    url: str  # what Alembic opens: a SQLite file's absolute URL, whatever the process's cwd

    @property
    def clock_offset(self) -> float:
        """Seconds the database server's clock is ahead of this machine's."""
        ...

    def execute(self, sql: str, params: Params = None) -> int: ...

    def fetchone(self, sql: str, params: Params = None) -> Row | None: ...

    def fetchall(self, sql: str, params: Params = None) -> list[Row]: ...

    def fetch_batch(self, statements: Sequence[tuple[str, Params]]) -> list[list[Row]]:
        """Run reads in order and return each one's rows; one round trip on PostgreSQL."""
        ...

    def fetch_tuples(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        """Rows as plain tuples: for bulk reads, where a dict per row costs more than the
        query (storyflow sync reads one row per file)."""
        ...

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None: ...

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Insert many rows fast: COPY on PostgreSQL, a prepared executemany on SQLite."""
        ...

    def execute_batch(
        self, statements: Sequence[tuple[str, Params]], *, commit: bool = False
    ) -> list[int]:
        """Run statements in order, returning their row counts; one round trip on PostgreSQL
        (pipeline mode), with the COMMIT when ``commit`` (the transaction's last writes)."""
        ...

    def fetch_after(
        self, writes: Sequence[tuple[str, Params]], reads: Sequence[tuple[str, Params]]
    ) -> tuple[list[int], list[list[Row]]]:
        """``execute_batch(writes)`` then ``fetch_batch(reads)``: one round trip on
        PostgreSQL. Nothing is read when a write fails."""
        ...

    def transaction(self, *, write: bool = True) -> Any: ...

    def close(self) -> None: ...


def _dict_rows(cursor: sqlite3.Cursor, rows: list[tuple[Any, ...]]) -> list[Row]:
    """Rows as dicts, the column names read once per query (a row factory would read the
    cursor's description again for every row, in Python)."""
    if not rows:
        return []
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


class SqliteConnection:
    dialect = "sqlite"
    clock_offset = 0.0  # the database is on this machine

    def __init__(self, path: Path, *, busy_timeout_ms: int = 15_000) -> None:
        if not path.parent.parent.is_dir():  # a mistyped URL, not a fresh clone's .storyflow/
            raise UsageError(
                f"cannot open the SQLite database at {path}: {path.parent.parent} does not exist",
                code="DATABASE_UNREACHABLE",
                hint="check the database URL (an absolute path is sqlite:////path/to.db)",
            )
        try:
            path.parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise not_writable(path.parent, exc) from exc
        self.path = path
        self.url = sqlite_url(path)
        try:
            self._conn = sqlite3.connect(
                path, isolation_level=None, timeout=busy_timeout_ms / 1000, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        self._depth = 0
        self._busy_seconds = busy_timeout_ms / 1000
        self._turn: _Turn | None = None  # opened at the first write

    def _error(self, exc: sqlite3.Error) -> StoryflowError:
        """What a SQLite failure means for the user, by its result code. A refusal raised
        inside a transaction rolls it back: nothing is committed."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        where = f"the SQLite database at {self.path}"
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return _busy(exc)
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return UsageError(
                f"{where} is damaged: {exc}",
                code="DATABASE_CORRUPT",
                hint="restore it from a backup; or move it aside and run storyflow sync, "
                "which rebuilds the database from the story files",
                details={"database": str(self.path)},
            )
        if code == sqlite3.SQLITE_READONLY:
            return UsageError(
                f"{where} is read-only: {exc}",
                code="DATABASE_READONLY",
                hint=f"let this user write {self.path} and its folder (permissions, "
                "chattr -i, a read-only mount), or point STORYFLOW_DATABASE_URL elsewhere",
                details={"database": str(self.path)},
            )
        if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
            folder = self.path.parent
            if not os.access(folder, os.W_OK | os.X_OK):  # WAL needs its -wal and -shm files
                return not_writable(folder, exc)
            return UsageError(
                f"cannot open {where}: {exc}",
                code="DATABASE_UNREACHABLE",
                hint=f"check that this user may read and write {self.path}",
                details={"database": str(self.path)},
            )
        return StoryflowError(f"{where} failed: {exc}", code="DATABASE_ERROR")

    def _run(self, sql: str, params: Params) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params or {})
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                raise UniqueViolation(str(exc)) from exc
            raise
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def execute(self, sql: str, params: Params = None) -> int:
        return self._run(sql, params).rowcount

    def fetchone(self, sql: str, params: Params = None) -> Row | None:
        cursor = self._run(sql, params)
        try:
            row = cursor.fetchone()
        except sqlite3.Error as exc:  # a damaged page may be met only while stepping
            raise self._error(exc) from exc
        return None if row is None else _dict_rows(cursor, [row])[0]

    def fetchall(self, sql: str, params: Params = None) -> list[Row]:
        cursor = self._run(sql, params)
        try:
            rows = cursor.fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return _dict_rows(cursor, rows)

    def fetch_batch(self, statements: Sequence[tuple[str, Params]]) -> list[list[Row]]:
        return [self.fetchall(sql, params) for sql, params in statements]

    def fetch_tuples(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        cursor = self._conn.cursor()
        try:
            rows: list[tuple[Any, ...]] = cursor.execute(sql, params or {}).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return rows

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise UniqueViolation(str(exc)) from exc
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise UniqueViolation(str(exc)) from exc
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def execute_batch(
        self, statements: Sequence[tuple[str, Params]], *, commit: bool = False
    ) -> list[int]:
        # ``commit`` lets a backend send COMMIT with the batch; SQLite commits on leaving
        # ``transaction``, so it has nothing to add here.
        return [self._run(sql, params).rowcount for sql, params in statements]

    def fetch_after(
        self, writes: Sequence[tuple[str, Params]], reads: Sequence[tuple[str, Params]]
    ) -> tuple[list[int], list[list[Row]]]:
        return self.execute_batch(writes), self.fetch_batch(reads)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        turn = self._take_turn() if write else None
        try:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._rollback()
                raise
            self._depth = 0
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise self._error(exc) from exc
        finally:
            if turn is not None:
                turn.release()

    def _take_turn(self) -> _Turn:
        """Writers queue for their turn before ``BEGIN IMMEDIATE``: threads of one process
        on a lock, processes on a lock file beside the database. SQLite's own busy handler
        sleeps 1, 2, 5, 10, ... ms between tries, so under contention a waiter oversleeps
        locks held for a few milliseconds; a waiter here is woken at once (a thread) or
        retries within a millisecond (a process). Writers that do not queue here (another
        tool, Alembic) still meet SQLite's busy handling; so does everyone when the lock
        file cannot be used. A wait that outlasts the busy timeout is DATABASE_BUSY."""
        if self._turn is None:
            self._turn = _Turn.open(self.path)
        if not self._turn.acquire(self._busy_seconds):
            raise _busy(f"no write turn within {self._busy_seconds:g} s")
        return self._turn

    def _rollback(self) -> None:
        """Roll back; SQLite may have rolled back already (an I/O or corruption error)."""
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()
        if self._turn is not None:
            self._turn.close()
            self._turn = None


class _Turn:
    """One connection's place in the queue of a SQLite database's writers."""

    _locks: ClassVar[dict[str, threading.Lock]] = {}

    def __init__(self, local: threading.Lock, fd: int) -> None:
        self.local, self.fd = local, fd

    @classmethod
    def open(cls, path: Path) -> _Turn:
        local = cls._locks.setdefault(str(path), threading.Lock())
        try:
            fd = os.open(f"{path}-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            fd = -1  # threads still queue; other processes wait in SQLite's busy handler
        return cls(local, fd)

    def acquire(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        if not self.local.acquire(timeout=seconds):
            return False
        if self.fd < 0:
            return True
        pause = 0.0001
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(pause)
                    pause = min(pause * 2, 0.001)
                    continue
            except OSError:  # a file system without flock
                os.close(self.fd)
                self.fd = -1
                return True
            self.local.release()
            return False

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.local.release()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def not_writable(folder: Path, exc: Exception) -> UsageError:
    """The refusal when storyflow cannot create or write files in ``folder``."""
    return UsageError(
        f"cannot write in {folder}: {exc}",
        code="WORKSPACE_NOT_WRITABLE",
        hint=f"let this user write {folder} (permissions, chattr -i, a read-only mount)",
        details={"folder": str(folder)},
    )


def _busy(exc: Exception | str) -> DatabaseBusy:
    return DatabaseBusy(
        f"the database is busy: {exc}",
        code="DATABASE_BUSY",
        hint="another storyflow process holds the write lock; retry",
    )


_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


class PostgresConnection:
    dialect = "postgresql"

    def __init__(self, url: str, *, reconnect_seconds: float = RECONNECT_SECONDS) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise UsageError(
                "PostgreSQL needs the psycopg driver",
                code="DRIVER_MISSING",
                hint="pip install 'storyflow[postgres]'",
            ) from exc
        self._psycopg = psycopg
        self.url = url
        self.reconnect_seconds = reconnect_seconds
        self._conninfo = _check_postgres_url(url)
        self.clock_offset = 0.0
        try:
            self._conn = self._connect()
            self._measure_clock()
        except psycopg.OperationalError as exc:
            raise UsageError(
                f"cannot connect to PostgreSQL: {_first_line(exc)}",
                code="DATABASE_UNREACHABLE",
                hint="check STORYFLOW_DATABASE_URL and that the server is running",
            ) from exc
        except psycopg.Error as exc:  # what libpq refused in the URL itself
            raise invalid_url(url, _first_line(exc)) from exc
        self._depth = 0
        self._begin_pending = False  # a transaction started, its BEGIN not sent yet
        self._open = False  # BEGIN sent, COMMIT not yet

    def _send(self, statements: Sequence[tuple[str, Params]], *, commit: bool = False) -> list[Any]:
        """Send statements and return their cursors. A transaction's BEGIN travels with its
        first statements and its COMMIT with its last ones: several statements go as one
        pipeline, one round trip."""
        batch = [(to_pyformat(sql), params or {}) for sql, params in statements]
        if self._conn.closed and not self._open:  # lost between transactions: nothing lost
            self._reconnect()
        elif not self._depth and time.monotonic() >= self._clock_due:
            try:
                self._measure_clock()  # a worker's connection lives for days
            except self._psycopg.OperationalError:
                if not self._conn.closed:
                    raise
                self._reconnect()  # lost while idle: nothing lost (and measured anew)
        if self._begin_pending:
            batch.insert(0, ("BEGIN", {}))
            self._begin_pending = False
            self._open = True
        if commit and self._open:
            batch.append(("COMMIT", {}))
            self._open = False
        try:
            cursors = self._execute(batch)
        except self._psycopg.OperationalError as exc:
            if not self._conn.closed:
                raise
            self._open = False
            if not _replayable(batch, exc, in_transaction=self._depth > 0):
                raise _lost(exc) from exc
            # Nothing of it was committed, and nothing before it is lost: send it again on
            # a new connection (the server restarted while this one was idle, typically).
            self._reconnect()
            if batch[0][0] == "BEGIN":
                self._open = batch[-1][0] != "COMMIT"
            with self._lost_here():  # once only: lost again, it is lost
                cursors = self._execute(batch)
        begun = 1 if batch[0][0] == "BEGIN" else 0
        return cursors[begun : begun + len(statements)]

    def _connect(self) -> Any:
        from psycopg.rows import dict_row

        return self._psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)

    def _reconnect(self) -> None:
        """A new connection for one that broke, tried for up to ``reconnect_seconds`` (a
        restarting server refuses connections for a while)."""
        with suppress(Exception):  # closing a broken connection: nothing left to save
            self._conn.close()
        deadline = time.monotonic() + self.reconnect_seconds
        pause = 0.1
        while True:
            try:
                self._conn = self._connect()
                self._measure_clock()  # a failover may have brought another server's clock
                return
            except self._psycopg.OperationalError as exc:
                if time.monotonic() + pause > deadline:
                    raise UsageError(
                        "lost the connection to PostgreSQL and could not connect again "
                        f"within {self.reconnect_seconds:g} s: {_first_line(exc)}",
                        code="DATABASE_UNREACHABLE",
                        hint="check that the server is running, then run the command again "
                        "(limits.database_reconnect_seconds says how long to keep trying)",
                    ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _measure_clock(self) -> None:
        """How far the server's clock is ahead of this machine's, halfway through a round
        trip that asks it."""
        before = time.time()
        row = self._conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8 AS t")
        server = float(row.fetchone()["t"])
        self.clock_offset = server - (before + time.time()) / 2
        self._clock_due = time.monotonic() + CLOCK_CHECK_SECONDS

    def _execute(self, batch: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Any]:
        errors = self._psycopg.errors
        try:
            if len(batch) == 1:
                cursors = [self._conn.execute(batch[0][0], batch[0][1])]
            else:
                cursors = self._pipeline(batch)
        except errors.UniqueViolation as exc:
            raise UniqueViolation(str(exc)) from exc
        except errors.DivisionByZero as exc:  # only the compare-and-set raises it
            raise ConflictError(
                "another writer changed the story first (compare-and-set lost)",
                code="VERSION_CONFLICT",
                hint="look again and retry",
            ) from exc
        except (errors.LockNotAvailable, errors.SerializationFailure) as exc:
            raise _busy(exc) from exc
        except errors.ReadOnlySqlTransaction as exc:  # a standby, or read-only by default
            raise UsageError(
                f"the PostgreSQL database refuses writes: {str(exc).strip().splitlines()[0]}",
                code="DATABASE_READONLY",
                hint="point STORYFLOW_DATABASE_URL at the primary, or allow writes there",
            ) from exc
        return cursors

    def _pipeline(self, batch: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Any]:
        """The statements in one pipeline. A statement's error may surface at a later
        statement, and leaving the pipeline then fails again ("pipeline aborted", which
        psycopg would log on stderr): the first error is the one raised."""
        aborted = self._psycopg.errors.PipelineAborted
        failure: Exception | None = None
        cursors: list[Any] = []
        try:
            with self._conn.pipeline():
                for sql, params in batch:
                    try:
                        cursors.append(self._conn.execute(sql, params))
                    except self._psycopg.Error as exc:
                        failure = exc
                        break
        except self._psycopg.Error:
            if failure is None or isinstance(failure, aborted):
                raise  # the cause comes with leaving the pipeline
            # else leaving failed as the aftermath of ``failure``, the cause
        if failure is not None:
            raise failure
        return cursors

    def execute(self, sql: str, params: Params = None) -> int:
        return int(self._send([(sql, params)])[0].rowcount)

    def fetchone(self, sql: str, params: Params = None) -> Row | None:
        row: Row | None = self._send([(sql, params)])[0].fetchone()
        return row

    def fetchall(self, sql: str, params: Params = None) -> list[Row]:
        rows: list[Row] = self._send([(sql, params)])[0].fetchall()
        return rows

    def fetch_batch(self, statements: Sequence[tuple[str, Params]]) -> list[list[Row]]:
        return [cursor.fetchall() for cursor in self._send(statements)]

    def fetch_tuples(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        from psycopg.rows import tuple_row

        if self._begin_pending:  # the transaction's BEGIN goes first, as in _send
            self._send([])
        elif self._conn.closed and not self._open:
            self._reconnect()
        with self._lost_here():
            cursor = self._conn.cursor(row_factory=tuple_row)
            cursor.execute(to_pyformat(sql), params or {})
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows

    @contextmanager
    def _lost_here(self) -> Iterator[None]:
        """A broken connection under a statement sent outside ``_send``: lost."""
        try:
            yield
        except self._psycopg.OperationalError as exc:
            if not self._conn.closed:
                raise
            self._open = False
            raise _lost(exc) from exc

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self._send([(sql, row) for row in rows])

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        if self._begin_pending:  # the transaction's BEGIN goes first, as in _send
            self._send([])
        elif self._conn.closed and not self._open:
            self._reconnect()
        errors = self._psycopg.errors
        try:
            with self._lost_here(), self._conn.cursor() as cursor:
                statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
                with cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
        except errors.UniqueViolation as exc:
            raise UniqueViolation(str(exc)) from exc

    def execute_batch(
        self, statements: Sequence[tuple[str, Params]], *, commit: bool = False
    ) -> list[int]:
        return [int(cursor.rowcount) for cursor in self._send(statements, commit=commit)]

    def fetch_after(
        self, writes: Sequence[tuple[str, Params]], reads: Sequence[tuple[str, Params]]
    ) -> tuple[list[int], list[list[Row]]]:
        cursors = self._send([*writes, *reads])  # one pipeline: an error stops the rest
        done = len(writes)
        return [int(c.rowcount) for c in cursors[:done]], [c.fetchall() for c in cursors[done:]]

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        self._begin_pending = True
        try:
            yield
        except BaseException:
            if self._open and not self._conn.closed:
                with suppress(self._psycopg.OperationalError):  # the error raised says more
                    self._conn.execute("ROLLBACK")
            raise
        else:
            if self._open:
                self._send([], commit=True)
        finally:
            self._depth = 0
            self._begin_pending = False
            self._open = False

    def close(self) -> None:
        self._conn.close()


def database_clock(conn: Connection) -> Callable[[], datetime]:
    """The time to stamp and time leases by: this machine's, or, when its clock is off the
    database server's by CLOCK_TOLERANCE_SECONDS or more, the server's (measured when the
    connection is made). Workers on machines whose clocks disagree by more than a lease's
    slack would otherwise take over each other's live leases, or keep dead ones."""

    def now() -> datetime:
        offset = conn.clock_offset
        if abs(offset) < CLOCK_TOLERANCE_SECONDS:
            offset = 0.0
        return datetime.fromtimestamp(time.time() + offset, UTC)

    return now


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _replayable(
    batch: Sequence[tuple[str, Mapping[str, Any]]], exc: Exception, *, in_transaction: bool
) -> bool:
    """Whether a batch whose connection broke can be sent again on a new one: nothing of
    it was committed and nothing sent before it is lost. That is a transaction's first
    batch without its COMMIT (the server rolled it back), reads alone, or one statement
    outside a transaction that the server refused because it was ending the session
    (SQLSTATE class 57P: shut down, terminated: the statement did not run)."""
    sql = [text for text, _ in batch if text not in ("BEGIN", "COMMIT")]
    reads = all(text.lstrip()[:6].upper() == "SELECT" for text in sql)
    ended = str(getattr(exc, "sqlstate", None) or "").startswith("57P")
    if batch[0][0] == "BEGIN":  # the transaction starts here
        return batch[-1][0] != "COMMIT" or reads
    if in_transaction:  # earlier statements of this transaction went with the connection
        return False
    return reads or (ended and len(sql) == 1)


def _lost(exc: Exception) -> ConnectionLost:
    return ConnectionLost(
        f"the connection to PostgreSQL broke during a transaction: {_first_line(exc)}",
        hint="run the command again (the connection is made anew); a run's phase that was "
        "in flight is taken over once its lease expires",
    )


Check = Callable[[int], None]


class BatchingConnection:
    """Wraps a connection so that writes marked ``defer=True`` are sent together, in one
    round trip on PostgreSQL, just before the next read or at the end of the transaction.
    A deferred write's ``check`` sees its row count (a compare-and-set raises there, inside
    the transaction, so nothing commits). Writes whose errors the caller translates at the
    call site are never deferred."""

    def __init__(self, inner: Connection) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.url = inner.url
        self._pending: list[tuple[str, Params, Check | None]] | None = None

    @property
    def clock_offset(self) -> float:
        return self.inner.clock_offset

    def execute(
        self, sql: str, params: Params = None, *, defer: bool = False, check: Check | None = None
    ) -> int:
        if defer and self._pending is not None:
            self._pending.append((sql, params, check))
            return -1
        self.flush()
        count = self.inner.execute(sql, params)
        if check is not None:
            check(count)
        return count

    def flush(self, *, commit: bool = False) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._checked(
            pending,
            lambda writes: self.inner.execute_batch(writes, commit=commit),
        )

    def _fetch(self, reads: list[tuple[str, Params]]) -> list[list[Row]]:
        """Reads, with the deferred writes sent ahead of them in the same round trip."""
        if not self._pending:
            return self.inner.fetch_batch(reads)
        pending, self._pending = self._pending, []
        results: list[list[Row]] = []

        def send(writes: list[tuple[str, Params]]) -> list[int]:
            counts, rows = self.inner.fetch_after(writes, reads)
            results.extend(rows)
            return counts

        self._checked(pending, send)
        return results

    def _checked(
        self,
        pending: list[tuple[str, Params, Check | None]],
        send: Callable[[list[tuple[str, Params]]], list[int]],
    ) -> None:
        """Send the deferred writes and run their checks on the row counts."""
        try:
            counts = send([(sql, params) for sql, params, _ in pending])
        except (UniqueViolation, ConflictError) as exc:
            # A lost compare-and-set (PostgreSQL raises inside the batch), or an append that
            # collided with a concurrent writer's: report it as the compare-and-set's own
            # conflict, which names the story.
            for _, _, check in pending:
                if check is not None:
                    check(0)
            raise ConflictError(
                "another writer changed the story first",
                code="VERSION_CONFLICT",
                hint="look again and retry",
            ) from exc
        for (_, _, check), count in zip(pending, counts, strict=True):
            if check is not None:
                check(count)

    def discard_pending(self) -> None:
        """Drop the deferred writes not sent yet (a savepoint is being rolled back)."""
        if self._pending:
            self._pending = []

    def fetchone(self, sql: str, params: Params = None) -> Row | None:
        if not self._pending:
            return self.inner.fetchone(sql, params)
        rows = self._fetch([(sql, params)])[0]
        return rows[0] if rows else None

    def fetchall(self, sql: str, params: Params = None) -> list[Row]:
        if not self._pending:
            return self.inner.fetchall(sql, params)
        return self._fetch([(sql, params)])[0]

    def fetch_batch(self, statements: Sequence[tuple[str, Params]]) -> list[list[Row]]:
        return self._fetch(list(statements))

    def fetch_after(
        self, writes: Sequence[tuple[str, Params]], reads: Sequence[tuple[str, Params]]
    ) -> tuple[list[int], list[list[Row]]]:
        self.flush()
        return self.inner.fetch_after(writes, reads)

    def fetch_tuples(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        self.flush()
        return self.inner.fetch_tuples(sql, params)

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self.flush()
        self.inner.executemany(sql, rows)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        self.flush()
        self.inner.copy_rows(table, columns, rows)

    def execute_batch(
        self, statements: Sequence[tuple[str, Params]], *, commit: bool = False
    ) -> list[int]:
        self.flush()
        return self.inner.execute_batch(statements, commit=commit)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[None]:
        if self._pending is not None:  # nested: the outer transaction flushes
            yield
            return
        with self.inner.transaction(write=write):
            self._pending = []
            try:
                yield
                # The last writes and the COMMIT in one round trip; the checks run after,
                # so a compare-and-set must also fail loudly inside the batch: on
                # PostgreSQL it divides by the number of rows it updated.
                self.flush(commit=True)
            finally:
                self._pending = None

    def close(self) -> None:
        self.inner.close()


def redact_url(url: str) -> str:
    """The URL without its password (for messages and reports)."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def invalid_url(url: str, why: str, hint: str | None = None) -> UsageError:
    return UsageError(
        f"the database URL {redact_url(url)!r} cannot be used: {why}",
        code="DATABASE_URL_INVALID",
        hint=hint
        or "fix --database-url, STORYFLOW_DATABASE_URL or database_url in storyflow.yaml "
        "(sqlite:///relative/to/workspace.db, sqlite:////absolute/path.db or "
        "postgresql+psycopg://user@host/dbname)",
        details={"url": redact_url(url)},
    )


def _check_postgres_url(url: str) -> str:
    """The libpq form of ``url``, refused when libpq cannot parse it or it names no database
    (libpq would then quietly use one named after the user)."""
    from psycopg import Error as PsycopgError
    from psycopg.conninfo import conninfo_to_dict

    conninfo = libpq_url(url)
    try:
        parts = conninfo_to_dict(conninfo)
    except PsycopgError as exc:
        raise invalid_url(url, str(exc).strip().splitlines()[0]) from exc
    if not parts.get("dbname") and not os.environ.get("PGDATABASE"):
        raise invalid_url(
            url,
            "it names no database",
            hint="add the database name: postgresql+psycopg://user@host/dbname",
        )
    return conninfo


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` (SQLAlchemy spelling) to what libpq accepts."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def sqlalchemy_url(url: str) -> str:
    if url.startswith("sqlite"):
        return url
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg://", url)


def sqlite_path(url: str, base: Path) -> Path | None:
    """The file a ``sqlite:`` URL names (None for another scheme). Only SQLAlchemy's
    spellings are taken, since Alembic migrates through SQLAlchemy: sqlite:///relative.db
    (to the workspace) or sqlite:////absolute/path.db. An in-memory database cannot keep a
    workspace between two commands: refused."""
    if not url.startswith("sqlite:"):
        return None
    raw = url[len("sqlite:") :].split("?", 1)[0]
    if not raw.startswith("///") or raw == "///":
        raise invalid_url(url, "a SQLite URL is sqlite:///relative.db or sqlite:////abs.db")
    if "%" in raw:
        from urllib.parse import unquote

        raw = unquote(raw)
    raw = raw[2:]  # the empty host
    if raw.strip("/") == ":memory:":
        raise invalid_url(
            url,
            "an in-memory database forgets the workspace when the command ends",
            hint="use a file: sqlite:///.storyflow/storyflow.db (the default)",
        )
    if raw.startswith("//"):
        return Path(raw[1:])
    return (base / raw.lstrip("/")).resolve()


def sqlite_url(path: Path) -> str:
    """The URL SQLAlchemy (Alembic) opens ``path`` by, wherever the process runs: absolute,
    and quoted so that '%', '?' and '#' in the path stay in it."""
    from urllib.parse import quote

    return "sqlite:///" + quote(str(path), safe="/")


def connect(url: str, base: Path, *, reconnect_seconds: float = RECONNECT_SECONDS) -> Connection:
    path = sqlite_path(url, base)
    if path is not None:
        return SqliteConnection(path)
    if re.match(r"^postgres(ql)?(\+\w+)?://", url):
        return PostgresConnection(url, reconnect_seconds=reconnect_seconds)
    raise UsageError(
        f"unsupported database URL {url!r}",
        code="USAGE",
        hint="use sqlite:///path/to.db or postgresql+psycopg://user@host/db",
    )
