"""Helpers for the sync tests: a whole-second clock, a workspace with a varied history, a
clone of its files onto an empty database, and a field-by-field snapshot of the database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storyflow.bootstrap import sync_ports
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.budgets import Enforcement
from storyflow.domain.layouts import LayoutName
from storyflow.domain.statuses import Status
from storyflow.services import epics, stories, tokens, transitions
from storyflow.services.context import Context
from storyflow.services.sync import sync
from storyflow.services.sync_report import SyncReport
from tests.conftest import BACKEND, pg_database
from tests.support import Driver, Workspace, elaboration, new_story

S = Status


class Clock:
    """Frozen at a whole second (files keep seconds), moved on by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 15, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int = 1) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def other_database_url(
    pg_template: str | None,
    pg_shape: str | None,
    pg_pool: list[str],
) -> Iterator[str | None]:
    """A second empty database (PostgreSQL); None on SQLite (each workspace has its own)."""
    if pg_template is None or pg_shape is None:
        yield None
        return
    with pg_database(pg_template, pg_shape, pg_pool) as url:
        yield url


class Clones:
    """Makes clones and teammates' workspaces, and closes their connections afterwards."""

    def __init__(self, tmp: Path, database_url: str | None) -> None:
        self.tmp = tmp
        self.database_url = database_url
        self.made: list[Workspace] = []

    def fresh(self, ws: Workspace, name: str = "clone") -> Workspace:
        made = clone(ws, self.tmp / name, self.database_url)
        self.made.append(made)
        return made

    def teammate(self, ws: Workspace, name: str = "mate") -> Workspace:
        made = teammate(ws, self.tmp / name)
        self.made.append(made)
        return made


@pytest.fixture
def clones(tmp_path: Path, other_database_url: str | None) -> Iterator[Clones]:
    made = Clones(tmp_path, other_database_url)
    yield made
    for ws in made.made:
        ws.close()


def clone(ws: Workspace, root: Path, database_url: str | None) -> Workspace:
    """A fresh clone: the workspace's files (not .storyflow/) on another, empty database."""
    root.mkdir(parents=True)
    for name in ("storyflow.yaml", "plans"):
        source = ws.root / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        elif source.exists():
            shutil.copy2(source, root / name)
    return Workspace.create(root, database_url)


def teammate(ws: Workspace, root: Path) -> Workspace:
    """Another clone on the *same* database (a teammate on the shared PostgreSQL)."""
    root.mkdir(parents=True)
    shutil.copytree(ws.root / "plans", root / "plans")
    url = ws.database_url or f"sqlite:///{ws.root / '.storyflow' / 'storyflow.db'}"
    (root / "storyflow.yaml").write_text(
        (ws.root / "storyflow.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    return Workspace(root=root, database_url=url)


def run_sync(ctx: Context, **options: Any) -> SyncReport:
    return sync(ctx, sync_ports(ctx), **options)


def with_clock(ws: Workspace, clock: Clock, actor: str = "tester") -> Context:
    ctx = ws.ctx(actor)
    ctx.clock = clock
    return ctx


def build_history(ws: Workspace, layout: LayoutName, clock: Clock) -> Driver:
    """An epic whose stories went through most of the state machine: moves, a forced move, a
    block with its reason, a failed review and its fix, an approval, a budget overrun
    confirmed, a split, tokens with costs, dependencies, hand-written metadata."""
    ctx = with_clock(ws, clock)
    driver = Driver(ws, ctx)
    prefix = "FLOW" if layout is LayoutName.STAGED else "REVI"
    tz = "UTC" if layout is LayoutName.STAGED else "America/Denver"
    epics.create_epic(
        ctx,
        prefix,
        title=f"{prefix} epic",
        layout=layout,
        timezone=tz,
        require_approval=True,
        enforcement=Enforcement.SOFT_GATE,
        coverage_threshold=50,
    )
    epics.update_epic(ctx, prefix, title=f"The {prefix} epic")
    clock.tick()
    targets = [
        S.COMPLETED,
        S.IN_QA,
        S.CODE_REVIEW_FAILED,
        S.BLOCKED,
        S.NEEDS_REFINEMENT,
        S.READY_TO_WORK,
        S.PENDING,
    ]
    ids = []
    for index, target in enumerate(targets):
        depends = [ids[0]] if index == 2 else []
        story_id = new_story(
            ctx,
            prefix,
            title=f"Story {index}",
            priority=f"P{index % 4}",
            phase=index % 3 or None,
            depends_on=depends,
            breaking_change=index == 5,
            graph_integration=index == 1,
            budget_multiplier=1.5 if index == 3 else 1.0,
            requires=["db-schema-002"] if index == 6 else None,
        )
        ids.append(story_id)
        for step in _path(target):
            clock.tick()
            driver.step(story_id, step)
    clock.tick()
    # a failed review, then its fix and a second review
    transitions.move(ctx, ids[2], S.IN_PROGRESS.value)
    driver.step(ids[2], S.READY_FOR_CODE_REVIEW)
    driver.step(ids[2], S.READY_FOR_QA)
    # tokens with a priced model, and an overrun confirmed with a reason (soft_gate)
    tokens.log_tokens(
        ctx, ids[6], "story_generation", input_tokens=123_456, output_tokens=789, model="gpt-4o"
    )
    tokens.log_tokens(ctx, ids[6], "elaboration", before=1_000, after=4_321)
    clock.tick()
    transitions.move(ctx, ids[6], S.GENERATED.value, confirm_budget=True, reason="worth it")
    # a forced move, audited
    transitions.move(ctx, ids[5], S.IN_PROGRESS.value, force=True, reason="hotfix")
    # a split: the parent is superseded, its children inherit its links
    split = new_story(ctx, prefix, title="Too big")
    for step in (S.GENERATED, S.IN_ELABORATION, S.NEEDS_SPLIT):
        driver.step(split, step)
    clock.tick()
    stories.split_story(ctx, split, ["Part one", "Part two"])
    stories.update_story(ctx, ids[4], title="Story four, renamed", priority="P0")
    return driver


def _path(target: Status) -> list[Status]:
    from tests.support import PATHS

    return PATHS[target]


def _artifact_key(artifact: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(replace(artifact, id=0)).items()}


def db_state(ctx: Context) -> dict[str, Any]:
    """The database, field by field: epics, board, and per story its row, history, ledger,
    Agent Log, artifact versions (without row ids) and approvals."""
    from storyflow.services.story_reads import board

    state: dict[str, Any] = {
        "epics": ctx.store.list_epics(),
        "board": board(ctx),
        "requirements": sorted(r["name"] for r in ctx.store.requirements()),
        "stories": {},
    }
    for story in ctx.store.list_stories():
        versions = {
            (a.kind.value, a.version): _artifact_key(a)
            for a in ctx.store.list_artifacts(story.id)
            if a.kind is not ArtifactKind.STORY
        }
        latest: dict[str, Any] = {}
        for artifact in ctx.store.list_artifacts(story.id):
            if artifact.kind is not ArtifactKind.STORY:
                latest[artifact.kind.value] = artifact
        elaboration_approvals = []
        if "elaboration" in latest:
            elaboration_approvals = [
                (r["approved_by"], r["created_at"])
                for r in ctx.store.approvals(latest["elaboration"].id)
            ]
        state["stories"][story.id] = {
            "story": story,
            "history": ctx.store.history(story.id),
            "ledger": ctx.store.ledger(story.id),
            "log": ctx.store.log_rows(story.id),
            "latest": {k: _artifact_key(a) for k, a in latest.items()},
            "versions": versions,
            "approvals": elaboration_approvals,
        }
    return state


def assert_same_state(original: dict[str, Any], rebuilt: dict[str, Any]) -> None:
    """Field by field: what a rebuild must give back. Artifact versions: every version the
    rebuilt database has equals the original's, and the latest of each kind is the same."""
    assert rebuilt["epics"] == original["epics"]
    assert rebuilt["board"] == original["board"]
    assert rebuilt["requirements"] == original["requirements"]
    assert sorted(rebuilt["stories"]) == sorted(original["stories"])
    for story_id, mine in original["stories"].items():
        theirs = rebuilt["stories"][story_id]
        assert theirs["story"] == mine["story"], story_id
        assert theirs["history"] == mine["history"], story_id
        assert theirs["ledger"] == mine["ledger"], story_id
        assert theirs["log"] == mine["log"], story_id
        assert theirs["latest"] == mine["latest"], story_id
        for key, artifact in theirs["versions"].items():
            assert artifact == mine["versions"][key], (story_id, key)
        assert theirs["approvals"] == mine["approvals"], story_id


__all__ = [
    "BACKEND",
    "Clock",
    "Clones",
    "assert_same_state",
    "build_history",
    "clone",
    "clones",
    "db_state",
    "elaboration",
    "other_database_url",
    "run_sync",
    "teammate",
    "with_clock",
]
