"""The bulk reads behind ``storyflow check``: one query per table, never one per story.

Read-only. The Agent Log's hash chain is verified here, where the hash function lives.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from storyflow.domain.budgets import BudgetPhase
from storyflow.domain.checks import AuditRows
from storyflow.domain.model import AgentLogRow, LedgerEntry
from storyflow.domain.statuses import Status

if TYPE_CHECKING:
    from storyflow.adapters.db.store import Store

Q_AUDIT_LOG = """
SELECT story_id, seq, timestamp, agent, action, outputs, row_hash FROM agent_log
ORDER BY story_id, seq
"""
Q_AUDIT_ENTERED = """
SELECT DISTINCT story_id, to_status FROM workflow_transitions WHERE from_status IS NOT NULL
"""
Q_AUDIT_LEDGER = """
SELECT story_id, phase, agent, model, input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, total_tokens, cost_usd, source, run_id, note, created_at
FROM workflow_token_logs ORDER BY story_id, id
"""
Q_AUDIT_SUBMITTED = """
SELECT story_id, sha256, MIN(submitted_at) AS submitted_at FROM artifact_versions
GROUP BY story_id, sha256
"""


def read_audit_rows(store: Store) -> AuditRows:
    from storyflow.adapters.db.store import ledger_entry, log_row_hash

    conn = store.conn
    log: dict[str, list[AgentLogRow]] = defaultdict(list)
    chain_breaks: dict[str, int] = {}
    previous: dict[str, str] = {}
    for r in conn.fetchall(Q_AUDIT_LOG):
        story_id = r["story_id"]
        row = AgentLogRow(
            timestamp=r["timestamp"], agent=r["agent"], action=r["action"], outputs=r["outputs"]
        )
        log[story_id].append(row)
        digest = log_row_hash(previous.get(story_id, ""), row)
        if digest != r["row_hash"] and story_id not in chain_breaks:
            chain_breaks[story_id] = int(r["seq"])
        previous[story_id] = r["row_hash"]
    entered: dict[str, set[Status]] = defaultdict(set)
    for r in conn.fetchall(Q_AUDIT_ENTERED):
        entered[r["story_id"]].add(Status(r["to_status"]))
    phases: dict[str, set[BudgetPhase]] = defaultdict(set)
    ledger: dict[str, list[LedgerEntry]] = defaultdict(list)
    for r in conn.fetchall(Q_AUDIT_LEDGER):
        entry = ledger_entry(r)
        ledger[entry.story_id].append(entry)
        if entry.total_tokens > 0:
            phases[entry.story_id].add(entry.phase)
    submitted = {
        (r["story_id"], r["sha256"]): str(r["submitted_at"])
        for r in conn.fetchall(Q_AUDIT_SUBMITTED)
    }
    return AuditRows(
        epics=tuple(store.list_epics()),
        stories=tuple(store.list_stories()),
        log=dict(log),
        chain_breaks=chain_breaks,
        entered={k: frozenset(v) for k, v in entered.items()},
        token_phases={k: frozenset(v) for k, v in phases.items()},
        ledger=dict(ledger),
        submitted=submitted,
    )
