"""The workers of ``storyflow run --epic`` and ``storyflow worker`` as processes: one
interpreter each, so that N workers use N CPUs (worker threads share one GIL: with 4 workers
the command went from 97 to 133 phase runs/s on SQLite, bench/RESULTS.md).

The parent keeps the terminal: the live board, the signals, the report. Each child opens its
own context and agents from the parent's Config and runs ``workers.work_loop``. What it tells
its observer travels to the parent over a pipe of its own; the parent's orders (stop, abort,
a story refused by another child) travel back over another. Pipes, not shared locks or
events: a child killed at any moment cannot leave a lock held that the others would wait on.
A child whose parent dies exits at once, as a worker thread dies with its process: its
story's lease expires and another worker takes the story over. A child killed while the
parent lives is started again (a long-running ``storyflow worker`` keeps its N workers),
unless its slot's processes keep dying as soon as they start.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from storyflow.errors import CODES, StoryflowError, error_class

if TYPE_CHECKING:
    from storyflow.config import Config
    from storyflow.services.agents import ToolCall
    from storyflow.services.run_context import RunEnv
    from storyflow.services.run_report import BudgetEvent, PhaseEvent

STOP, ABORT, REFUSED = "stop", "abort", "refused"
# A killed worker process is started again, unless RESPAWN_LIMIT of its slot's processes in a
# row died within YOUNG_SECONDS of starting (a worker that cannot live: say so, go on without).
RESPAWN_LIMIT, YOUNG_SECONDS = 3, 10.0
# How long the parent waits on its children's pipes before it looks at its own signals.
POLL_SECONDS = 0.2


@dataclass(frozen=True, kw_only=True)
class _Job:
    config: Config
    actor: str | None
    index: int
    epic: str | None
    until_idle: bool


class _Posting:
    """A child's observer: each call goes to the parent as (method, args)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # parallel reviewers report from their own threads

    def post(self, kind: str, *args: Any) -> None:
        with self._lock:
            self._conn.send((kind, args))

    def on_phase_start(self, event: PhaseEvent) -> None:
        self.post("on_phase_start", event)

    def on_phase_end(self, event: PhaseEvent) -> None:
        self.post("on_phase_end", event)

    def on_error(self, event: PhaseEvent) -> None:
        self.post("on_error", event)

    def on_story_done(self, story_id: str, status: str, reason: str | None) -> None:
        self.post("on_story_done", story_id, status, reason)

    def on_tool_call(self, story_id: str, run_id: str, call: ToolCall) -> None:
        self.post("on_tool_call", story_id, run_id, call)

    def on_budget(self, event: BudgetEvent) -> None:
        self.post("on_budget", event)

    def on_warning(self, message: str) -> None:
        self.post("on_warning", message)


def _child(job: _Job, events: Connection, orders: Connection) -> None:
    """A worker process: open the workspace, work until stopped or idle, say how it ended."""
    # A signal from the terminal (Ctrl-C) or a service manager reaches the whole process
    # group: the parent decides (first: stop, second: abort) and sends the order. Caught and
    # dropped, not SIG_IGN: an ignored signal stays ignored in the agents this worker execs,
    # which then could not be stopped with SIGTERM.
    signal.signal(signal.SIGINT, _dropped)
    signal.signal(signal.SIGTERM, _dropped)
    observer = _Posting(events)
    stop, abort = threading.Event(), threading.Event()
    refused: dict[str, float] = {}
    threading.Thread(
        target=_obey, args=(orders, stop, abort, refused), name="storyflow-orders", daemon=True
    ).start()
    try:
        from storyflow.bootstrap import agents, open_context, warm_run_imports
        from storyflow.services.run_context import RunEnv
        from storyflow.services.runs import worker_name
        from storyflow.services.workers import work_loop

        ctx = open_context(job.config, actor=job.actor)
        warm_run_imports()  # each worker's first phase is timed as the phase, not its imports
        try:
            env = RunEnv(
                settings=job.config.runs,
                agents=agents(job.config),
                worker=worker_name(job.index),
                observer=observer,
                stop=stop,
                abort=abort,
                refused=refused,
            )
            work_loop(ctx, env, epic=job.epic, until_idle=job.until_idle)
        finally:
            ctx.store.close()
    except BaseException as exc:  # to the parent, which stops the others and reports it
        observer.post("failed", _described(exc))
    else:
        observer.post("done")


def _dropped(signum: int, frame: Any) -> None:
    """A worker process's SIGINT / SIGTERM: the parent relays what they mean."""


def _obey(
    orders: Connection, stop: threading.Event, abort: threading.Event, refused: dict[str, float]
) -> None:
    """The parent's orders, until its end of the pipe closes: then the parent is gone
    (killed: it closes the pipe only after this child ended) and so is this worker."""
    from storyflow.services.workers import REFUSAL_COOLOFF_SECONDS

    try:
        while True:
            kind, value = orders.recv()
            if kind == REFUSED:
                refused[value] = time.monotonic() + REFUSAL_COOLOFF_SECONDS
                continue
            stop.set()
            if kind == ABORT:
                abort.set()
    except (EOFError, OSError):
        os._exit(1)


def _described(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, StoryflowError):
        described: dict[str, Any] = exc.to_json()["error"]  # the CLI's error body
        return described
    return {"code": "INTERNAL", "message": "".join(traceback.format_exception(exc)).rstrip()}


def _raised(described: dict[str, Any], name: str) -> BaseException:
    code = described["code"]
    if code == "INTERNAL" or code not in CODES:
        return RuntimeError(f"{name} failed:\n{described['message']}")
    cls: type[StoryflowError] = error_class(code)
    return cls(
        described["message"], code=code, hint=described["hint"], details=described["details"]
    )


@dataclass(kw_only=True)
class _Child:
    index: int
    process: BaseProcess
    events: Connection
    orders: Connection
    ended: bool = False  # it said so ("done" or "failed")
    born: float = field(default_factory=time.monotonic)
    quick_deaths: int = 0  # of its slot's earlier processes, in a row: each died young

    def order(self, kind: str, value: str | None = None) -> None:
        with contextlib.suppress(OSError):  # it has ended: its pipe says so to the loop
            self.orders.send((kind, value))


@dataclass(kw_only=True)
class _Pump:
    """The parent's side: the children's observer calls passed on to its observer, the run
    ids they started, their refusals (once each, and told to the others), their ends."""

    env: RunEnv
    children: list[_Child]
    spawn: Callable[[int], _Child] | None = None  # a new process for a slot
    run_ids: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)
    reported: set[tuple[str, str]] = field(default_factory=set)

    def receive(self, child: _Child, kind: str, args: tuple[Any, ...]) -> None:
        if kind == "done":
            child.ended = True
        elif kind == "failed":
            child.ended = True
            self.errors.append(_raised(args[0], f"worker process {child.index}"))
            self.env.stop.set()  # as a pool of threads does: the others stop after their phase
        elif self._first(child, kind, args):
            if kind == "on_phase_start":
                self.run_ids.append(args[0].run_id)  # runs._start reports each run it starts
            getattr(self.env.observer, kind)(*args)

    def _first(self, child: _Child, kind: str, args: tuple[Any, ...]) -> bool:
        """False for a refusal another child reported already: each child tries a refused
        story at most once (told by the others, at most once per run) -- the run reports it
        once, as one pool of threads would."""
        if kind == "on_error" and args[0].run_id is None:
            story_id, what = args[0].story_id, "error"
        elif kind == "on_story_done" and args[1] == "refused":
            story_id, what = args[0], "done"
        else:
            return True
        if story_id not in self.refused:
            self.refused.add(story_id)
            for other in self.children:
                if other is not child:
                    other.order(REFUSED, story_id)
        if (story_id, what) in self.reported:
            return False
        self.reported.add((story_id, what))
        return True

    def ended(self, child: _Child) -> _Child | None:
        """Its pipe closed: it ended, or it was killed. A killed worker's story is taken over
        once its lease expires, and a new process takes its place (unless the workers are
        stopping, or its slot's processes keep dying young: then the others go on)."""
        child.process.join()
        if child.ended:
            return None
        code = child.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        said = (
            f"worker process {child.index} (pid {child.process.pid}) ended by {how}: a story "
            "it held is taken over once its lease expires"
        )
        young = time.monotonic() - child.born < YOUNG_SECONDS
        deaths = child.quick_deaths + 1 if young else 0
        if self.env.stop.is_set() or self.spawn is None:
            self.env.observer.on_warning(said)
            return None
        if deaths >= RESPAWN_LIMIT:
            self.env.observer.on_warning(
                f"{said}; its slot is not started again: {deaths} of its processes in a row "
                f"died within {YOUNG_SECONDS:g} s of starting"
            )
            return None
        new = self.spawn(child.index)
        new.quick_deaths = deaths
        self.children[self.children.index(child)] = new
        self.env.observer.on_warning(f"{said}; worker process {new.index} started again")
        return new


def run_processes(
    config: Config,
    env: RunEnv,
    *,
    actor: str | None,
    workers: int,
    epic: str | None,
    until_idle: bool,
) -> list[str]:
    """N workers in processes; returns every run id they started. Returns when all have
    ended; raises the first error a worker raised (the others stop after their phase).
    ``env`` is the parent's: its observer gets the children's reports, its ``stop`` and
    ``abort`` (set by the signal handlers) are sent to them as orders."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    children: list[_Child] = []
    started: list[_Child] = []  # every process, the ones started again included

    def spawn(index: int) -> _Child:
        events_in, events_out = context.Pipe(duplex=False)
        orders_in, orders_out = context.Pipe(duplex=False)
        job = _Job(config=config, actor=actor, index=index, epic=epic, until_idle=until_idle)
        process = context.Process(
            target=_child,
            args=(job, events_out, orders_in),
            name=f"storyflow-worker-{index}",
            daemon=True,
        )
        process.start()
        events_out.close()  # the child's ends: the parent sees EOF when it ends
        orders_in.close()
        child = _Child(index=index, process=process, events=events_in, orders=orders_out)
        started.append(child)
        return child

    pump = _Pump(env=env, children=children, spawn=spawn)
    try:
        for index in range(workers):
            children.append(spawn(index))
        _drain(pump, env)
    finally:
        # Normally every child has ended by now. When the parent itself failed, closing the
        # orders ends the children as the parent's death would (they drop SIGTERM).
        for child in started:
            child.orders.close()
        for child in started:
            child.process.join(timeout=10)
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
            child.events.close()
    if pump.errors:
        raise pump.errors[0]
    return pump.run_ids


def _drain(pump: _Pump, env: RunEnv) -> None:
    live = {child.events: child for child in pump.children}
    sent: str | None = None
    while live:
        order = ABORT if env.abort.is_set() else STOP if env.stop.is_set() else None
        if order is not None and order != sent:
            for child in pump.children:
                child.order(order)
            sent = order
        for conn in wait(list(live), timeout=POLL_SECONDS):
            assert isinstance(conn, Connection)
            child = live[conn]
            try:
                kind, args = conn.recv()
            except (EOFError, OSError):
                del live[conn]
                new = pump.ended(child)
                if new is not None:
                    live[new.events] = new
                    if sent is not None:
                        new.order(sent)
                continue
            pump.receive(child, kind, args)
