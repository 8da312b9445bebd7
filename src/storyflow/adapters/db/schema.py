"""The canonical schema (SQLAlchemy Core metadata). Alembic migrates to it; a test checks that
``upgrade head`` produces exactly this. Runtime queries live in ``queries.py``.

Timestamps are ISO-8601 UTC text of fixed width (sortable, identical on both backends).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = BigInteger().with_variant(Integer(), "sqlite")


def _id() -> Column[int]:
    return Column("id", Id, primary_key=True, autoincrement=True)


def _story_fk(nullable: bool = False) -> Column[str]:
    return Column(
        "story_id", Text, ForeignKey("workflow_stories.id", ondelete="CASCADE"), nullable=nullable
    )


epics = Table(
    "epics",
    metadata,
    Column("prefix", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("layout", Text, nullable=False),
    Column("root", Text, nullable=False),
    Column("timezone", Text, nullable=False),
    Column("settings", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
)

workflow_stories = Table(
    "workflow_stories",
    metadata,
    Column("id", Text, primary_key=True),
    Column("epic", Text, ForeignKey("epics.prefix"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("priority", Text, nullable=False, server_default="P2"),
    Column("phase", Integer),
    Column("breaking_change", Boolean, nullable=False, server_default="0"),
    Column("graph_integration", Boolean, nullable=False, server_default="0"),
    Column("token_budget_multiplier", Float, nullable=False, server_default="1.0"),
    Column("enforcement", Text),
    Column("blocked_reason", Text),
    Column("blocked_from", Text),
    Column("split_from", Text),
    Column("superseded_by", Text),
    Column("review_iterations", Integer, nullable=False, server_default="0"),
    Column("qa_iterations", Integer, nullable=False, server_default="0"),
    # extra metadata a plan gives a story (feature, goal, risk notes, ...), JSON
    Column("details", Text),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("status_changed_at", Text, nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
    # the row as ``story list --json`` prints it, written by triggers (migration 0004)
    Column("list_json", Text),
    UniqueConstraint("epic", "number"),
    Index("ix_workflow_stories_status", "status"),
)

story_dependencies = Table(
    "story_dependencies",
    metadata,
    _story_fk(),
    Column("depends_on", Text, ForeignKey("workflow_stories.id"), nullable=False),
    PrimaryKeyConstraint("story_id", "depends_on"),
    Index("ix_story_dependencies_depends_on", "depends_on"),
)

story_requirements = Table(
    "story_requirements",
    metadata,
    _story_fk(),
    Column("requirement", Text, nullable=False),
    PrimaryKeyConstraint("story_id", "requirement"),
)

requirements = Table(
    "requirements",
    metadata,
    Column("name", Text, primary_key=True),
    Column("met", Boolean, nullable=False, server_default="0"),
    Column("note", Text),
    Column("updated_at", Text, nullable=False),
    Column("updated_by", Text),
)

artifact_versions = Table(
    "artifact_versions",
    metadata,
    _id(),
    _story_fk(),
    Column("kind", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("size", Integer, nullable=False),
    Column("raw", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("verdict", Text),
    Column("story_version", Integer, nullable=False),
    Column("submitted_by", Text, nullable=False),
    Column("submitted_at", Text, nullable=False),
    UniqueConstraint("story_id", "kind", "version"),
)


def _kind_table(name: str, *columns: Column[object]) -> Table:
    return Table(
        name,
        metadata,
        Column(
            "artifact_id",
            Id,
            ForeignKey("artifact_versions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        _story_fk(),
        Column("version", Integer, nullable=False),
        *columns,
        Index(f"ix_{name}_story_id", "story_id"),
    )


workflow_elaborations = _kind_table(
    "workflow_elaborations",
    Column("verdict", Text, nullable=False),
    Column("conditions", Text),
)
workflow_plans = _kind_table(
    "workflow_plans",
    Column("approach", Text, nullable=False),
    Column("has_migration_plan", Boolean, nullable=False),
)
workflow_proof = _kind_table(
    "workflow_proof",
    Column("lint", Text, nullable=False),
    Column("typecheck", Text, nullable=False),
    Column("tests", Text, nullable=False),
    Column("reuse_documented", Boolean, nullable=False),
    Column("coverage", Float),
)
workflow_code_reviews = _kind_table(
    "workflow_code_reviews",
    Column("verdict", Text, nullable=False),
    Column("coverage", Float),
    Column("blocking_findings", Integer, nullable=False),
)
workflow_verification = _kind_table(
    "workflow_verification",
    Column("verdict", Text, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("passing_scenarios", Integer, nullable=False),
)
workflow_qa_gates = _kind_table(
    "workflow_qa_gates",
    Column("decision", Text, nullable=False),
    Column("computed_decision", Text, nullable=False),
    Column("waiver_approver", Text),
    Column("waiver_expires", Text),
)

approvals = Table(
    "approvals",
    metadata,
    _id(),
    _story_fk(),
    Column("artifact_id", Id, ForeignKey("artifact_versions.id"), nullable=False),
    Column("approved_by", Text, nullable=False),
    Column("note", Text),
    Column("created_at", Text, nullable=False),
)

workflow_token_logs = Table(
    "workflow_token_logs",
    metadata,
    _id(),
    _story_fk(),
    Column("epic", Text, nullable=False),
    Column("phase", Text, nullable=False),
    Column("agent", Text),
    Column("model", Text),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float),
    Column("source", Text, nullable=False),
    Column("run_id", Text),
    Column("note", Text),
    Column("created_at", Text, nullable=False),
    Index("ix_workflow_token_logs_story_id_phase", "story_id", "phase"),
    Index("ix_workflow_token_logs_epic", "epic"),
    # revision 0003: storyflow metrics sums tokens and cost by epic, phase and model from
    # this index alone, in its order, instead of sorting the whole ledger (1M events:
    # ~280 -> ~45 ms on SQLite)
    Index(
        "ix_workflow_token_logs_metrics",
        "epic",
        "phase",
        "model",
        "total_tokens",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_usd",
    ),
)

workflow_transitions = Table(
    "workflow_transitions",
    metadata,
    _id(),
    _story_fk(),
    Column("from_status", Text),
    Column("to_status", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text),
    Column("forced", Boolean, nullable=False, server_default="0"),
    Column("budget_confirmed", Boolean, nullable=False, server_default="0"),
    Column("story_version", Integer, nullable=False),
    Column("created_at", Text, nullable=False),
    Index("ix_workflow_transitions_story_id_to_status", "story_id", "to_status"),
    # revision 0003: metrics counts edges (and cycle times finds 'completed') from this index
    Index("ix_workflow_transitions_metrics", "to_status", "from_status", "created_at"),
)

workflow_events = Table(
    "workflow_events",
    metadata,
    _id(),
    Column("story_id", Text),
    Column("epic", Text),
    Column("type", Text, nullable=False),
    Column("actor", Text),
    Column("payload", Text, nullable=False),
    Column("trace_id", Text),
    Column("span_id", Text),
    Column("created_at", Text, nullable=False),
    Index("ix_workflow_events_story_id", "story_id"),
)

agent_log = Table(
    "agent_log",
    metadata,
    _id(),
    _story_fk(),
    Column("seq", Integer, nullable=False),
    Column("timestamp", Text, nullable=False),
    Column("agent", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("outputs", Text, nullable=False),
    Column("row_hash", Text, nullable=False),
    UniqueConstraint("story_id", "seq"),
)

story_leases = Table(
    "story_leases",
    metadata,
    Column(
        "story_id", Text, ForeignKey("workflow_stories.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("owner", Text, nullable=False),
    Column("phase", Text),
    Column("acquired_at", Text, nullable=False),
    Column("heartbeat_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("run_id", Text),
    Column("takeovers", Integer, nullable=False, server_default="0"),
)


# ---- revision 0002: sync state and runs ---------------------------------------------------

sync_files = Table(
    "sync_files",
    metadata,
    Column("path", Text, primary_key=True),  # relative to the workspace, POSIX
    Column("story_id", Text),
    Column("kind", Text),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("story_version", Integer),  # the story's version when the file was last synced
    Column("synced_at", Text, nullable=False),
    Index("ix_sync_files_story_id", "story_id"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Text, primary_key=True),
    _story_fk(),
    Column("phase", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("status", Text, nullable=False),  # running | succeeded | failed | skipped
    Column("verdict", Text),
    Column("outcome", Text),  # JSON: artifacts, edge taken, tokens, reviewers, ...
    Column("agent", Text, nullable=False),
    Column("model", Text),
    Column("worker", Text),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("trace_id", Text),
    Column("started_at", Text, nullable=False),
    Column("finished_at", Text),
    Index("ix_runs_story_id_phase", "story_id", "phase"),
    Index("ix_runs_status", "status"),
    # revision 0003: metrics groups the runs from this index alone (~330 -> ~100 ms, 1M events)
    Index(
        "ix_runs_metrics",
        "phase",
        "status",
        "verdict",
        "error_code",
        "attempt",
        "started_at",
        "finished_at",
    ),
)
