"""story list JSON kept by the database

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 06:20:00

``story list --json`` and ``next --json`` print each story as the object ``story_json``
gives. Building those objects with ``json_object`` took SQLite ~11 ms of the ~60 ms a
``story list --json`` over 2,000 stories costs; the scan of a stored column takes ~2 ms. So
each story row now carries its object in ``list_json``, written by triggers whenever the
row, its dependencies or its requirements change, whichever code (or hand) changes them:
no write path can forget it. SQLite: AFTER triggers that set the column (the one on the
story fires only for the columns the object shows, so its own write does not fire it
again). PostgreSQL: a BEFORE trigger that fills the row being written, and AFTER triggers
on the link tables that touch the story row so that it fills it again.

The expressions are frozen here, as a migration's must be. A later change to the object's
keys, or a rebuild of ``workflow_stories`` (a SQLite batch migration copies the table and
drops its triggers), needs a migration that creates these triggers again;
``tests/integration/test_read_models.py`` compares the column with ``story_json`` after
every kind of change, on both backends.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LINK_TABLES = {"story_dependencies": "depends_on", "story_requirements": "requirement"}
# the columns the object shows (an update of another one, or of list_json, changes nothing)
SHOWN = (
    "id, epic, title, status, priority, phase, breaking_change, graph_integration, "
    "token_budget_multiplier, enforcement, blocked_reason, blocked_from, split_from, "
    "superseded_by, review_iterations, qa_iterations, created_at, updated_at, version"
)


def story_object(dialect: str, row: str) -> str:
    """The object of ``story_json`` for the story row ``row`` (an alias, or ``NEW``): same
    keys, same order, same values. Timestamps are stored with ``Z`` and printed as
    ``datetime.isoformat()`` does (``+00:00``)."""
    sqlite = dialect == "sqlite"

    def flag(column: str) -> str:  # SQLite keeps booleans as 0/1
        return f"CASE WHEN {column} THEN json('true') ELSE json('false') END" if sqlite else column

    def names(table: str, column: str) -> str:
        if sqlite:  # the ordered subquery feeds the aggregate in its order
            return (
                f"(SELECT json_group_array({column}) FROM (SELECT {column} FROM {table}"
                f" WHERE story_id = {row}.id ORDER BY {column}))"
            )
        return (
            f"coalesce((SELECT json_agg({column} ORDER BY {column}) FROM {table}"
            f" WHERE story_id = {row}.id), '[]'::json)"
        )

    fields = {
        "id": f"{row}.id",
        "epic": f"{row}.epic",
        "title": f"{row}.title",
        "status": f"{row}.status",
        "priority": f"{row}.priority",
        "phase": f"{row}.phase",
        "depends_on": names("story_dependencies", "depends_on"),
        "requires": names("story_requirements", "requirement"),
        "breaking_change": flag(f"{row}.breaking_change"),
        "graph_integration": flag(f"{row}.graph_integration"),
        "token_budget_multiplier": f"{row}.token_budget_multiplier",
        "enforcement": f"{row}.enforcement",
        "blocked_reason": f"{row}.blocked_reason",
        "blocked_from": f"{row}.blocked_from",
        "split_from": f"{row}.split_from",
        "superseded_by": f"json(coalesce(nullif({row}.superseded_by, ''), '[]'))"
        if sqlite
        else f"coalesce(nullif({row}.superseded_by, ''), '[]')::json",
        "review_iterations": f"{row}.review_iterations",
        "qa_iterations": f"{row}.qa_iterations",
        "created_at": f"replace({row}.created_at, 'Z', '+00:00')",
        "updated_at": f"replace({row}.updated_at, 'Z', '+00:00')",
        "version": f"{row}.version",
    }
    pairs = ", ".join(f"'{key}', {value}" for key, value in fields.items())
    return f"json_object({pairs})" if sqlite else f"json_build_object({pairs})::text"


def _sqlite_refresh(story_id: str) -> str:
    """The statement that writes the object of the story ``story_id`` into its row."""
    return (
        "UPDATE workflow_stories SET list_json = (SELECT "
        + story_object("sqlite", "s")
        + f" FROM workflow_stories s WHERE s.id = {story_id}) WHERE id = {story_id};"
    )


def _sqlite_triggers() -> list[str]:
    story = _sqlite_refresh("NEW.id")
    linked, unlinked = _sqlite_refresh("NEW.story_id"), _sqlite_refresh("OLD.story_id")
    statements = [
        "CREATE TRIGGER workflow_stories_list_json_insert AFTER INSERT ON workflow_stories"
        f" BEGIN {story} END",
        f"CREATE TRIGGER workflow_stories_list_json_update AFTER UPDATE OF {SHOWN}"
        f" ON workflow_stories BEGIN {story} END",
    ]
    for table in LINK_TABLES:
        statements += [
            f"CREATE TRIGGER {table}_list_json_insert AFTER INSERT ON {table} BEGIN {linked} END",
            f"CREATE TRIGGER {table}_list_json_delete AFTER DELETE ON {table} BEGIN {unlinked} END",
            f"CREATE TRIGGER {table}_list_json_update AFTER UPDATE ON {table}"
            f" BEGIN {unlinked} {linked} END",
        ]
    return statements


def _postgresql_triggers() -> list[str]:
    statements = [
        "CREATE FUNCTION workflow_stories_list_json() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN NEW.list_json := {story_object('postgresql', 'NEW')}; RETURN NEW; END $$",
        "CREATE TRIGGER workflow_stories_list_json BEFORE INSERT OR UPDATE ON workflow_stories"
        " FOR EACH ROW EXECUTE FUNCTION workflow_stories_list_json()",
        # a link changed: touching the story row has its BEFORE trigger fill it again
        "CREATE FUNCTION story_links_list_json() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF TG_OP <> 'INSERT' THEN"
        " UPDATE workflow_stories SET list_json = NULL WHERE id = OLD.story_id; END IF;"
        " IF TG_OP <> 'DELETE' THEN"
        " UPDATE workflow_stories SET list_json = NULL WHERE id = NEW.story_id; END IF;"
        " RETURN NULL; END $$",
    ]
    statements += [
        f"CREATE TRIGGER {table}_list_json AFTER INSERT OR UPDATE OR DELETE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION story_links_list_json()"
        for table in LINK_TABLES
    ]
    return statements


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("workflow_stories", sa.Column("list_json", sa.Text(), nullable=True))
    statements = _sqlite_triggers() if dialect == "sqlite" else _postgresql_triggers()
    for statement in statements:
        op.execute(statement)
    # the stories already there: the story trigger on SQLite fires for a shown column only
    op.execute(
        "UPDATE workflow_stories SET version = version"
        if dialect == "postgresql"
        else "UPDATE workflow_stories SET list_json = (SELECT "
        + story_object("sqlite", "s")
        + " FROM workflow_stories s WHERE s.id = workflow_stories.id)"
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in ("workflow_stories", *LINK_TABLES):
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {name}_list_json_{event}")
    else:
        for name in ("workflow_stories", *LINK_TABLES):
            op.execute(f"DROP TRIGGER IF EXISTS {name}_list_json ON {name}")
        op.execute("DROP FUNCTION IF EXISTS story_links_list_json()")
        op.execute("DROP FUNCTION IF EXISTS workflow_stories_list_json()")
    with op.batch_alter_table("workflow_stories", schema=None) as batch_op:
        batch_op.drop_column("list_json")
