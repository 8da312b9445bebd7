"""Migrations: ``upgrade head`` builds exactly the canonical metadata, on the test backend;
the CLI reports and upgrades the schema; an empty database is migrated on first use; a
database newer than this storyflow is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text

from storyflow.adapters.db.connection import connect, sqlalchemy_url
from storyflow.adapters.db.migrate import (
    HEAD_REVISION,
    KNOWN_REVISIONS,
    MIGRATIONS,
    alembic_head,
    schema_revision,
    upgrade,
)
from storyflow.adapters.db.schema import metadata
from tests.support import Workspace, assert_story_list_agrees_with_show

# The workflow tables the plans name, under the names they give them.
SEED_TABLES = {
    "workflow_stories",
    "workflow_elaborations",
    "workflow_plans",
    "workflow_verification",
    "workflow_proof",
    "workflow_token_logs",
}


@pytest.fixture
def url(database_url: str | None, tmp_path: Path) -> str:
    """A database of the test backend: a SQLite file, or this test's PostgreSQL database."""
    return database_url or f"sqlite:///{tmp_path / 'migrations.db'}"


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    eng = create_engine(sqlalchemy_url(url))
    yield eng
    eng.dispose()


def _alembic(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def _revision(url: str, base: Path) -> str | None:
    conn = connect(url, base)
    try:
        return schema_revision(conn)
    finally:
        conn.close()


def _empty(url: str, engine: Engine) -> None:
    """Bring the database to an empty schema (the PostgreSQL template is already migrated)."""
    command.downgrade(_alembic(url), "base")
    assert _tables(engine) <= {"alembic_version"}


def test_upgrade_head_produces_exactly_the_metadata(
    url: str, engine: Engine, tmp_path: Path
) -> None:
    _empty(url, engine)
    assert _revision(url, tmp_path) is None
    upgrade(url)
    assert _revision(url, tmp_path) == HEAD_REVISION
    assert _differences(engine) == []
    assert _tables(engine) == set(metadata.tables) | {"alembic_version"}


def test_the_comparison_sees_a_drifted_schema(url: str, engine: Engine) -> None:
    # Guard against a vacuous comparison: a schema that lost an index and gained a column
    # is reported.
    upgrade(url)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_workflow_stories_status"))
        conn.execute(text("ALTER TABLE epics ADD COLUMN colour TEXT"))
    kinds = sorted(str(diff[0]) for diff in _differences(engine))  # type: ignore[index]
    assert kinds == ["add_index", "remove_column"]


def test_downgrade_to_base_and_upgrade_again(url: str, engine: Engine, tmp_path: Path) -> None:
    upgrade(url)
    command.downgrade(_alembic(url), "base")
    assert _tables(engine) <= {"alembic_version"}
    upgrade(url)
    assert _revision(url, tmp_path) == HEAD_REVISION
    assert _differences(engine) == []


def test_upgrade_is_idempotent(url: str, engine: Engine, tmp_path: Path) -> None:
    upgrade(url)
    upgrade(url)
    assert _revision(url, tmp_path) == HEAD_REVISION
    assert _differences(engine) == []


def test_head_revision_is_alembics_head() -> None:
    assert alembic_head() == HEAD_REVISION
    script = ScriptDirectory.from_config(_alembic("sqlite://"))
    revisions = {rev.revision for rev in script.walk_revisions()}
    assert revisions == set(KNOWN_REVISIONS)
    assert len(script.get_heads()) == 1


def test_the_tables_carry_the_plans_names(url: str, engine: Engine) -> None:
    upgrade(url)
    tables = _tables(engine)
    assert tables >= SEED_TABLES
    assert set(metadata.tables) >= SEED_TABLES
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("workflow_token_logs")}
    assert {"story_id", "phase", "input_tokens", "output_tokens", "total_tokens"} <= columns


# ---- through the CLI ----------------------------------------------------------------------


def test_db_current_and_upgrade_through_the_cli(workspace: Workspace) -> None:
    current = workspace.cli("db", "current", "--json")
    assert current.code == 0, current
    assert current.json == {"revision": HEAD_REVISION, "head": HEAD_REVISION, "up_to_date": True}
    upgraded = workspace.cli("db", "upgrade", "--json")
    assert upgraded.code == 0, upgraded
    assert upgraded.json == {"revision": HEAD_REVISION}
    human = workspace.cli("db", "current")
    assert (
        human.code == 0
        and human.stdout.strip() == f"revision {HEAD_REVISION}; head {HEAD_REVISION}"
    )


def _drop_database(workspace: Workspace) -> None:
    """Lose the database: delete the SQLite file, or empty the PostgreSQL database."""
    if workspace.database_url is None:
        state = workspace.root / ".storyflow"
        for path in state.glob("storyflow.db*"):
            path.unlink()
        assert not (state / "storyflow.db").exists()
    else:
        command.downgrade(_alembic(workspace.database_url), "base")


def test_db_upgrade_migrates_an_empty_database(workspace: Workspace) -> None:
    _drop_database(workspace)
    before = workspace.cli("db", "current", "--json")
    assert before.code == 0, before
    assert before.json == {"revision": None, "head": HEAD_REVISION, "up_to_date": False}
    upgraded = workspace.cli("db", "upgrade", "--json")
    assert upgraded.code == 0, upgraded
    assert upgraded.json == {"revision": HEAD_REVISION}


def test_a_lost_database_is_recreated_on_the_next_command(workspace: Workspace) -> None:
    _drop_database(workspace)
    listed = workspace.cli("epic", "list", "--json")
    assert listed.code == 0, listed
    assert listed.json == []
    if workspace.database_url is None:
        assert (workspace.root / ".storyflow" / "storyflow.db").is_file()
    current = workspace.cli("db", "current", "--json")
    assert current.json["up_to_date"] is True
    created = workspace.cli("epic", "new", "FLOW", "--title", "Flow", "--json")
    assert created.code == 0, created
    assert (
        workspace.cli("story", "new", "FLOW", "--title", "First", "--json").json["id"] == "FLOW-001"
    )


def _stamp(workspace: Workspace, revision: str) -> None:
    url = workspace.database_url or f"sqlite:///{workspace.root / '.storyflow' / 'storyflow.db'}"
    conn = connect(url, workspace.root)
    try:
        conn.execute("UPDATE alembic_version SET version_num = :r", {"r": revision})
    finally:
        conn.close()


def test_a_database_newer_than_storyflow_is_refused(workspace: Workspace) -> None:
    _stamp(workspace, "9999")
    refused = workspace.cli("story", "list")
    assert refused.code == 2, refused
    assert "error[DATABASE_TOO_NEW]" in refused.stderr
    assert "9999" in refused.stderr
    as_json = workspace.cli("epic", "list", "--json")
    assert as_json.code == 2
    assert as_json.json["error"]["code"] == "DATABASE_TOO_NEW"
    current = workspace.cli("db", "current", "--json")
    assert current.code == 0
    assert current.json == {"revision": "9999", "head": HEAD_REVISION, "up_to_date": False}
    upgrade_refused = workspace.cli("db", "upgrade", "--json")
    assert upgrade_refused.code == 2, upgrade_refused
    assert upgrade_refused.json["error"]["code"] == "DATABASE_TOO_NEW"
    # Nothing was changed by the refusals.
    assert workspace.cli("db", "current", "--json").json["revision"] == "9999"


def test_db_upgrade_goes_to_a_shipped_revision_and_refuses_others(workspace: Workspace) -> None:
    """--revision takes head or a revision storyflow ships that is not behind the
    database's; anything else is UNKNOWN_REVISION (exit 7), not Alembic's traceback, and
    the database stays where it was."""
    url = workspace.database_url or f"sqlite:///{workspace.root / '.storyflow' / 'storyflow.db'}"
    command.downgrade(_alembic(url), "0002")
    for revision, says in (
        ("zzz", "unknown schema revision 'zzz'"),
        ("+1", "unknown schema revision '+1'"),
        ("0001", "does not go back to 0001"),
    ):
        refused = workspace.cli("db", "upgrade", "--revision", revision, "--json")
        assert refused.code == 7, refused
        assert refused.json["error"]["code"] == "UNKNOWN_REVISION", refused.json
        assert says in refused.json["error"]["message"], refused.json
        assert workspace.cli("db", "current", "--json").json["revision"] == "0002"
    human = workspace.cli("db", "upgrade", "--revision", "nope")
    assert human.code == 7 and "error[UNKNOWN_REVISION]" in human.stderr, human
    assert "hint: use head or one of 0001, 0002, 0003, 0004" in human.stderr, human
    step = workspace.cli("db", "upgrade", "--revision", "0003", "--json")
    assert (step.code, step.json) == (0, {"revision": "0003"}), step
    again = workspace.cli("db", "upgrade", "--revision", "0003", "--json")
    assert (again.code, again.json) == (0, {"revision": "0003"}), again
    back = workspace.cli("db", "upgrade", "--revision", "0002", "--json")
    assert back.code == 7 and back.json["error"]["code"] == "UNKNOWN_REVISION", back
    upgraded = workspace.cli("db", "upgrade", "--json")
    assert (upgraded.code, upgraded.json) == (0, {"revision": HEAD_REVISION}), upgraded


def test_a_database_newer_than_storyflow_is_refused_as_a_subprocess(workspace: Workspace) -> None:
    _stamp(workspace, "9999")
    refused = workspace.run("board")
    assert refused.code == 2, refused
    assert "DATABASE_TOO_NEW" in refused.stderr
    assert refused.stdout == ""


def test_upgrading_to_0004_fills_the_list_objects_of_the_stories_already_there(
    workspace: Workspace, tmp_path: Path
) -> None:
    """A database of revision 0003 with stories: the next command upgrades it, and `story
    list --json` (read from the column 0004 adds) shows every story as `story show` does."""
    assert workspace.cli("epic", "new", "FLOW", "--title", "Flow").code == 0
    for args in (
        ("--title", "First", "--requires", "db-schema-002", "--breaking-change"),
        ("--title", "Second", "--depends-on", "FLOW-001", "--priority", "P1"),
    ):
        assert workspace.cli("story", "new", "FLOW", *args).code == 0
    url = workspace.database_url or f"sqlite:///{workspace.root / '.storyflow' / 'storyflow.db'}"
    command.downgrade(_alembic(url), "0003")
    assert _revision(url, tmp_path) == "0003"
    listed = assert_story_list_agrees_with_show(workspace)
    assert _revision(url, tmp_path) == HEAD_REVISION
    assert [(s["id"], s["depends_on"], s["requires"]) for s in listed] == [
        ("FLOW-001", [], ["db-schema-002"]),
        ("FLOW-002", ["FLOW-001"], []),
    ]
