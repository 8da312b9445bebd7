"""A PostgreSQL connection that breaks (a server restart, a failover, an administrator's
pg_terminate_backend) is made anew: a statement sent on it that cannot have been committed is
sent again on the new one; a transaction that lost earlier statements with it is refused
with DATABASE_CONNECTION_LOST (exit 5), nothing of it committed; and workers go on through
both, each phase succeeding once. PostgreSQL's own: these run in the PostgreSQL suite."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import psycopg
import pytest

from storyflow.adapters.db.connection import ConnectionLost, PostgresConnection
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.statuses import Status
from tests.run_support import configure, epic_with, runs_of, scenario
from tests.support import Workspace


@pytest.fixture
def pg_url(database_url: str | None) -> Iterator[str]:
    """The test's database; what the tests add to it is dropped after (the database is
    emptied and handed to the next test, which must not find a trigger of these)."""
    if database_url is None:
        pytest.skip("PostgreSQL's own (the PostgreSQL suite runs it)")
    yield database_url
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("DROP TABLE IF EXISTS lost_t")
        admin.execute("DROP TRIGGER IF EXISTS lost_mid_finish ON workflow_proof")
        admin.execute("DROP FUNCTION IF EXISTS lost_mid_finish()")
        admin.execute("DROP SEQUENCE IF EXISTS lost_once")


def _terminate(url: str, pid: int) -> None:
    """End the session ``pid`` and wait (up to 10 s) until it has ended: its FATAL then waits
    for the client's next read."""
    with psycopg.connect(url, autocommit=True) as admin:
        ended = admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone()
        assert ended == (True,)


def _backend(conn: PostgresConnection) -> int:
    row = conn.fetchone("SELECT pg_backend_pid() AS pid")
    assert row is not None
    return int(row["pid"])


def _table(conn: PostgresConnection) -> None:
    conn.execute("DROP TABLE IF EXISTS lost_t")
    conn.execute("CREATE TABLE lost_t (n INTEGER NOT NULL)")


def _rows(conn: PostgresConnection) -> list[int]:
    return [row["n"] for row in conn.fetchall("SELECT n FROM lost_t ORDER BY n")]


def test_a_connection_ended_between_transactions_is_made_anew(pg_url: str) -> None:
    conn = PostgresConnection(pg_url)
    try:
        _table(conn)
        first = _backend(conn)
        _terminate(pg_url, first)
        assert _backend(conn) != first  # a read: sent again on a new connection

        _terminate(pg_url, _backend(conn))
        with conn.transaction():  # its first statements go with BEGIN: sent again
            conn.execute("INSERT INTO lost_t (n) VALUES (1)")
            conn.execute("INSERT INTO lost_t (n) VALUES (2)")

        _terminate(pg_url, _backend(conn))
        conn.execute("INSERT INTO lost_t (n) VALUES (3)")  # refused as the session ended
        assert _rows(conn) == [1, 2, 3]
    finally:
        conn.close()


def test_a_transaction_that_lost_statements_with_its_connection_commits_nothing(
    pg_url: str,
) -> None:
    conn = PostgresConnection(pg_url)
    try:
        _table(conn)
        with pytest.raises(ConnectionLost) as raised, conn.transaction():
            conn.execute("INSERT INTO lost_t (n) VALUES (1)")
            _terminate(pg_url, _backend(conn))
            conn.execute("INSERT INTO lost_t (n) VALUES (2)")
        assert raised.value.code == "DATABASE_CONNECTION_LOST"
        assert raised.value.exit_status == 5
        assert "terminating connection" in raised.value.message
        with conn.transaction():  # the next one connects again
            conn.execute("INSERT INTO lost_t (n) VALUES (3)")
        assert _rows(conn) == [3]
    finally:
        conn.close()


def test_workers_go_on_when_the_server_ends_their_connections(
    workspace: Workspace, pg_url: str
) -> None:
    """Every worker session of the database is ended, three times, while four stories run;
    and the one finish transaction of an implement phase is ended mid-way (a trigger ends
    its own session once): that worker leaves the story to its lease, which another worker
    takes over. Every story completes, each phase succeeds once."""
    scenario(workspace, {"defaults": {"delay": 0.15}})
    configure(workspace, {"scenario": "scenario.yaml", "lease_seconds": 1.5})
    stories = epic_with(workspace.ctx(), 4)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("CREATE SEQUENCE lost_once")
        admin.execute(
            "CREATE FUNCTION lost_mid_finish() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF nextval('lost_once') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); "
            "PERFORM pg_sleep(5); END IF; RETURN NEW; END $$"
        )
        admin.execute(
            "CREATE TRIGGER lost_mid_finish AFTER INSERT ON workflow_proof "
            "FOR EACH ROW EXECUTE FUNCTION lost_mid_finish()"
        )
    run = workspace.spawn("run", "--epic", "FLOW", "--workers", "2", "--json")
    ctx = workspace.ctx()

    def sessions() -> int:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            return int(row[0]) if row else 0

    ended = 0
    for _ in range(3):
        time.sleep(1.0)
        ended += sessions()
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    assert ended > 0
    assert "DATABASE_CONNECTION_LOST" not in out
    assert "broke during a transaction" in err and "connecting again" in err, err
    summary = json.loads(out)
    assert summary["takeovers"] >= 1
    for story in stories:
        assert ctx.story(story).status is Status.COMPLETED
        succeeded = [r["phase"] for r in runs_of(ctx, story) if r["status"] == "succeeded"]
        assert len(succeeded) == len(set(succeeded)), (story, succeeded)
        proofs = [
            a.version for a in ctx.store.list_artifacts(story) if a.kind is ArtifactKind.PROOF
        ]
        assert proofs == [1], (story, proofs)
    assert workspace.run("check").code == 0


def test_workers_that_cannot_connect_again_end_the_run_with_the_reason(
    workspace: Workspace, pg_url: str
) -> None:
    """The database stops taking connections while worker processes run: each tries for
    limits.database_reconnect_seconds, then fails; the run ends (exit 2) with the worker's
    own error, not a traceback. Once the database is back, a new run finishes the stories
    their leases held, each phase succeeding once."""
    scenario(workspace, {"defaults": {"delay": 0.3}})
    configure(workspace, {"scenario": "scenario.yaml", "lease_seconds": 1.5})
    stories = epic_with(workspace.ctx(), 3)
    workspace.close()
    run = workspace.spawn(
        "run",
        "--epic",
        "FLOW",
        "--workers",
        "2",
        extra_env={"STORYFLOW_DATABASE_RECONNECT_SECONDS": "1"},
    )
    server, _, name = pg_url.rpartition("/")
    with psycopg.connect(pg_url, autocommit=True) as watch:
        deadline = time.monotonic() + 60
        while not watch.execute("SELECT 1 FROM runs WHERE status = 'running'").fetchone():
            assert time.monotonic() < deadline, "no phase started"
            time.sleep(0.05)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            _, err = run.communicate(timeout=120)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert run.returncode == 2, err
    assert "error[DATABASE_UNREACHABLE]" in err, err
    assert "could not connect again within 1 s" in err, err
    assert "Traceback" not in err, err
    assert "refused" not in err, err  # the database's absence is no fault of a story

    again = workspace.run("run", "--epic", "FLOW", "--workers", "2", timeout=120)
    assert again.code == 0, again
    ctx = workspace.ctx()
    for story in stories:
        assert ctx.story(story).status is Status.COMPLETED
        succeeded = [r["phase"] for r in runs_of(ctx, story) if r["status"] == "succeeded"]
        assert len(succeeded) == len(set(succeeded)), (story, succeeded)
    assert workspace.run("check").code == 0


def test_a_long_lived_connection_measures_the_servers_clock_again(pg_url: str) -> None:
    """A worker's connection lives for days and a badly kept clock drifts: the offset to
    the server's clock is measured again every CLOCK_CHECK_SECONDS, between transactions."""
    conn = PostgresConnection(pg_url)
    try:
        assert abs(conn.clock_offset) < 1  # the server runs on this machine
        conn.clock_offset = 120.0  # as if this clock had drifted two minutes behind since
        conn.fetchone("SELECT 1 AS one")
        assert conn.clock_offset == 120.0  # not due yet
        conn._clock_due = 0.0  # due
        conn.fetchone("SELECT 1 AS one")
        assert abs(conn.clock_offset) < 1

        conn.clock_offset, conn._clock_due = 120.0, 0.0  # due, on a connection ended since
        first = _backend(conn)
        _terminate(pg_url, first)
        conn.clock_offset, conn._clock_due = 120.0, 0.0
        assert _backend(conn) != first  # connected again, not an internal error
        assert abs(conn.clock_offset) < 1
    finally:
        conn.close()
