"""Helpers for the run engine's tests: run settings in storyflow.yaml, scenarios, envs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from storyflow.bootstrap import agents
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.phases import PHASES, PhaseName
from storyflow.domain.statuses import Status
from storyflow.services import epics
from storyflow.services.agents import AgentRequest
from storyflow.services.context import Context
from storyflow.services.run_context import RunEnv
from storyflow.services.runs import worker_name
from storyflow.services.workers import run_story
from tests.support import Workspace, new_story

FAKES = Path(__file__).parent / "fakes"
FAKE_AGENT = FAKES / "fake_agent.py"
FAST = {
    "lease_seconds": 2,
    "heartbeat_seconds": 0.2,
    "poll_seconds": 0.05,
    "backoff_max": 0.05,
    "retries": {
        code: {"backoff": 0.01}
        for code in ("AGENT_TIMEOUT", "MALFORMED_OUTPUT", "EXTERNAL_SERVICE_DOWN")
    },
}


def configure(ws: Workspace, runs: dict[str, Any] | None = None, **sections: Any) -> None:
    """Append a runs: section (fast leases and backoffs, plus ``runs``) to storyflow.yaml."""
    merged = {**FAST, **(runs or {})}
    text = yaml.safe_dump({"runs": merged, **sections}, sort_keys=False)
    path = ws.root / "storyflow.yaml"
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def scenario(ws: Workspace, data: dict[str, Any], name: str = "scenario.yaml") -> str:
    base = {"version": 1, "defaults": {"delay": 0}, "phases": {}, "rules": []}
    base.update(data)
    (ws.root / name).write_text(yaml.safe_dump(base, sort_keys=False), encoding="utf-8")
    return name


def fake_command(mode: str, *extra: str) -> list[str]:
    return [sys.executable, str(FAKE_AGENT), mode, *extra]


def env(ctx: Context, index: int = 0, **kwargs: Any) -> RunEnv:
    return RunEnv(
        settings=ctx.config.runs, agents=agents(ctx.config), worker=worker_name(index), **kwargs
    )


def epic_with(ctx: Context, count: int, prefix: str = "FLOW", **story: Any) -> list[str]:
    epics.create_epic(ctx, prefix, title=f"{prefix} epic")
    return [new_story(ctx, prefix, title=f"Story {i + 1}", **story) for i in range(count)]


def runs_of(ctx: Context, story_id: str) -> list[dict[str, Any]]:
    rows = ctx.store.conn.fetchall(
        "SELECT id, phase, attempt, status, verdict, idempotency_key, error_code, outcome "
        "FROM runs WHERE story_id = :s ORDER BY started_at, id",
        {"s": story_id},
    )
    for row in rows:
        row["outcome"] = json.loads(row["outcome"]) if row["outcome"] else {}
    return rows


def ledger_rows(ctx: Context, story_id: str) -> list[dict[str, Any]]:
    return ctx.store.conn.fetchall(
        "SELECT phase, run_id, total_tokens, input_tokens, output_tokens FROM workflow_token_logs "
        "WHERE story_id = :s ORDER BY id",
        {"s": story_id},
    )


def drive(ctx: Context, run_env: RunEnv, story_id: str, runs: int = 8) -> Status:
    """Run the story's phases until it completes (at most ``runs`` runs); its status."""
    for _ in range(runs):
        run_story(ctx, run_env, story_id)
        if ctx.story(story_id).status is Status.COMPLETED:
            break
    return ctx.story(story_id).status


def agent_request(root: Path, phase: str, reviewer: str | None = None) -> AgentRequest:
    """What the run engine asks an agent for ``phase`` of FLOW-007, its folder made."""
    folder = root / "plans" / "flow" / "in-progress" / "FLOW-007"
    folder.mkdir(parents=True, exist_ok=True)
    spec = PHASES[PhaseName(phase)]
    kinds = [k for k in spec.produces if k is not ArtifactKind.STORY]
    return AgentRequest(
        run_id="run-1",
        story_id="FLOW-007",
        epic="FLOW",
        title="Budget enforcement levels",
        phase=phase,
        role=spec.role.value,
        iteration=2,
        attempt=1,
        model="claude-sonnet-4",
        workspace=root,
        story_dir=folder,
        story_file=folder / "story.yaml",
        produces=tuple(k.value for k in kinds),
        artifact_files={k.value: folder / f"{k.value}.yaml" for k in kinds},
        timeout=60,
        reviewer=reviewer,
        resume=True,
        writes_story=ArtifactKind.STORY in spec.produces,
        context={"findings": ["an unhandled error path"]},
    )
