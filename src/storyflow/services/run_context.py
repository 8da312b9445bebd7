"""What a run carries: its environment (settings, agents, worker identity, stop flags), one
transaction across several services, and the monitor a running agent reports to.

A phase's outcome -- artifacts submitted, tokens logged, the verdict's edge, the run row, the
lease released -- commits as one transaction. The services it reuses (``artifacts.submit``,
``tokens.log_tokens``, ``transitions.move``, ``stories.split_story``) each open their own
``change(ctx)``; run through ``composed(ctx)`` they nest inside the outer one instead: their
files are staged with the outer transaction's and published after its commit, and the story
files are re-rendered once, after the commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from storyflow.domain.budgets import BudgetDecision, Enforcement
from storyflow.domain.model import AgentLogRow, Epic, Story
from storyflow.run_settings import RunSettings
from storyflow.services.agents import AgentFailure, AgentPort, ToolCall, Usage
from storyflow.services.context import Context
from storyflow.services.ports import FilesPort, PendingWritesPort
from storyflow.services.projection import render_after_commit
from storyflow.services.run_report import NullObserver, RunObserver


@dataclass(kw_only=True)
class RunEnv:
    settings: RunSettings
    agents: Callable[[str], AgentPort]  # agent name -> adapter
    worker: str  # lease owner and runs.worker
    observer: RunObserver = field(default_factory=NullObserver)
    stop: threading.Event = field(default_factory=threading.Event)  # take no new run
    abort: threading.Event = field(default_factory=threading.Event)  # interrupt the agent
    sleep: Callable[[float], None] = time.sleep
    run_ids: list[str] = field(default_factory=list)  # every run this env started or read
    # Stories whose phase was refused before it started (a story file a bad merge broke,
    # say) -> when this process may try them again: until then no worker of this env claims
    # them, so a pool neither spins on them nor waits on them to be idle. Shared by a pool.
    refused: dict[str, float] = field(default_factory=dict)

    def lease_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.lease_seconds)


class _SharedPending:
    """The outer transaction's pending writes, seen by a nested service."""

    def __init__(self, outer: PendingWritesPort) -> None:
        self.outer = outer

    def add(self, target: Path, text: str) -> None:
        self.outer.add(target, text)

    def publish(self) -> None:
        pass  # the outer transaction publishes after its commit

    def discard(self) -> None:
        pass


class _DeferredFiles:
    """The files port, with pending writes shared and projections deferred."""

    def __init__(self, inner: FilesPort, pending: PendingWritesPort) -> None:
        self._inner = inner
        self._pending = _SharedPending(pending)
        # story -> its epic, and the keys every deferred projection of it leaves as they are
        self.projected: dict[str, tuple[Epic, frozenset[str]]] = {}
        self.later: list[Callable[[], object]] = []  # file writes that read the committed state
        self.open = True  # False once the transaction is over: the port is the inner one again
        # Checks already passed in this transaction: nothing on disk changes before its
        # commit (projections wait for it), so the services it composes need not repeat them.
        self._renderable: set[tuple[Any, ...]] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def pending(self) -> PendingWritesPort:
        return self._pending if self.open else self._inner.pending()

    def check_renderable(self, epic: Epic, story: Story, moving_to: Story | None = None) -> None:
        key: tuple[Any, ...] = (epic.prefix, epic.layout, epic.root, *_stage_key(story))
        key += _stage_key(moving_to) if moving_to else ()
        if key not in self._renderable:
            self._inner.check_renderable(epic, story, moving_to)
            self._renderable.add(key)

    def after_commit(self, write: Callable[[], object]) -> None:
        if self.open:
            self.later.append(write)
        else:
            write()

    def project(
        self,
        epic: Epic,
        story_id: str,
        *,
        state: Callable[[], Any],
        rows_after: Callable[[int], list[AgentLogRow]],
        keep: frozenset[str] = frozenset(),
    ) -> Path | None:
        if not self.open:
            return self._inner.project(
                epic, story_id, state=state, rows_after=rows_after, keep=keep
            )
        earlier = self.projected.get(story_id)
        self.projected[story_id] = (epic, keep if earlier is None else earlier[1] & keep)
        return None


@contextmanager
def composed(ctx: Context) -> Iterator[Context]:
    """One transaction for several services: yields a context to call them with."""
    from storyflow.services.unit_of_work import change

    with change(ctx) as pending:
        files = _DeferredFiles(ctx.files, pending)
        yield replace(ctx, files=cast(FilesPort, files))
    files.open = False
    for story_id, (epic, keep) in files.projected.items():
        render_after_commit(ctx, epic, story_id, keep=keep)
    for write in files.later:
        write()


def _stage_key(story: Story) -> tuple[str, str, str | None]:
    """What places a story's folder."""
    return story.id, story.status.value, story.blocked_from and story.blocked_from.value


@contextmanager
def traced(ctx: Context, trace_id: str) -> Iterator[None]:
    """Events written meanwhile carry the run's trace id."""
    store: Any = ctx.store
    before = getattr(store, "trace_id", None)
    store.trace_id = trace_id
    try:
        yield
    finally:
        store.trace_id = before


class RunMonitor:
    """A running agent's link to the engine: keeps the lease alive (from the worker's own
    thread: the database connection is not shared), stops the agent on a hard budget, an
    abort, or a lost lease."""

    def __init__(
        self,
        *,
        heartbeat: Callable[[], bool],
        interval: float,
        abort: threading.Event,
        enforcement: Enforcement,
        used_before: int,
        hard_limit: int,
        owner_thread: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_tool: Callable[[ToolCall], None] | None = None,
    ) -> None:
        self._heartbeat = heartbeat
        self._interval = interval
        self._abort = abort
        self._enforcement = enforcement
        self._used_before = used_before
        self._hard = hard_limit
        self._owner = owner_thread if owner_thread is not None else threading.get_ident()
        self._clock = clock
        self._on_tool = on_tool
        self._last = clock()
        self._lock = threading.Lock()
        self._streams: dict[int, Usage] = {}
        self.lease_lost = False
        self.stopped_by_budget: Usage | None = None

    @property
    def streamed(self) -> Usage:
        with self._lock:
            total = Usage()
            for usage in self._streams.values():
                total = total + usage
            return total

    def beat(self) -> None:
        """Refresh the lease if due; only the worker's thread touches the database."""
        if threading.get_ident() != self._owner:
            return
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        if not self._heartbeat():
            self.lease_lost = True

    def tick(self) -> None:
        self.beat()
        if self.lease_lost:
            raise AgentFailure("LEASE_LOST", "the lease expired and another worker took over")
        if self._abort.is_set():
            raise AgentFailure("RUN_INTERRUPTED", "interrupted: the worker is shutting down")

    def tool(self, call: ToolCall) -> None:
        if self._on_tool is not None:
            self._on_tool(call)

    def usage(self, so_far: Usage, *, final: bool = False) -> None:
        with self._lock:
            self._streams[threading.get_ident()] = so_far
        if self._enforcement is not Enforcement.HARD_GATE:
            return
        used = self._used_before + self.streamed.total
        if used >= self._hard:
            self.stopped_by_budget = self.streamed
            what = (
                "the agent had already finished: its output is not taken"
                if final
                else "the agent was stopped"
            )
            raise AgentFailure(
                "BUDGET_HARD_LIMIT",
                f"hard_gate: the phase reached {used:,} tokens (hard limit {self._hard:,}); "
                + what,
                usage=so_far,
            )


def budget_line(decision: BudgetDecision) -> str:
    return (
        f"{decision.phase.value} used {decision.used:,} tokens "
        f"(warning {decision.limits.warning:,}, hard {decision.limits.hard:,}, "
        f"{decision.level.value})"
    )
