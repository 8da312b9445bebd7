"""covering indexes for storyflow metrics

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 12:20:00

Additive: three indexes that hold every column the metrics aggregates read, in the order
they group by, so that SQLite scans an index instead of sorting the ledger, the runs and
the transitions (bench/metrics.py, 1,000,000 events).
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LEDGER = [
    "epic",
    "phase",
    "model",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
]
RUNS = ["phase", "status", "verdict", "error_code", "attempt", "started_at", "finished_at"]
TRANSITIONS = ["to_status", "from_status", "created_at"]


def upgrade() -> None:
    op.create_index("ix_workflow_token_logs_metrics", "workflow_token_logs", LEDGER)
    op.create_index("ix_runs_metrics", "runs", RUNS)
    op.create_index("ix_workflow_transitions_metrics", "workflow_transitions", TRANSITIONS)


def downgrade() -> None:
    op.drop_index("ix_workflow_transitions_metrics", table_name="workflow_transitions")
    op.drop_index("ix_runs_metrics", table_name="runs")
    op.drop_index("ix_workflow_token_logs_metrics", table_name="workflow_token_logs")
