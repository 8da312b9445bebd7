"""Workers: claim the next actionable story, run its phase, repeat.

A pool runs N worker threads, each with its own Context (its own database connection:
SQLite connections are not shared across threads). A claim is one transaction: candidates
in order (priority, then the stories closest to done, then age), locked with ``FOR UPDATE
SKIP LOCKED`` on PostgreSQL, and the lease upsert decides. An expired lease is taken over
and the takeover recorded (a ``lock`` event; ``story_leases.takeovers``); one left on a story
no claim takes (its holder died after its last commit, before rendering it) is recovered by
a worker with nothing to claim (``recover_expired``). Idle means nothing
is claimable and no lease is active, seen in one snapshot -- so a worker waiting on another
worker's story (a dependency, an orphaned lease) keeps polling until it can go on.

``stop`` lets running phases finish and takes no new story; ``abort`` interrupts the agents,
records their runs as abandoned and releases the leases.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

from storyflow.domain.model import parse_story_id
from storyflow.domain.phases import actionable_statuses
from storyflow.errors import ConflictError, StoryflowError
from storyflow.services.context import Context
from storyflow.services.projection import render_after_commit
from storyflow.services.run_context import RunEnv
from storyflow.services.runs import PhaseOutcome, run_phase

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Claimed:
    story_id: str
    takeover: bool


def _record_takeover(
    ctx: Context,
    env: RunEnv,
    story_id: str,
    previous: Mapping[str, object],
    *,
    released: bool = False,
) -> None:
    story = ctx.store.get_story(story_id)
    payload = {
        "action": "takeover",
        "owner": env.worker,
        "previous_owner": previous.get("owner"),
        "previous_run": previous.get("run_id"),
        "expired_at": previous.get("expires_at"),
    }
    if released:
        payload["released"] = True  # nothing to run: the lease was dropped, not kept
    ctx.store.insert_event(
        type="lock",
        at=ctx.now(),
        story_id=story_id,
        epic=story.epic if story else None,
        actor=ctx.actor,
        payload=payload,
    )


# Expired leases recovered per pass (a pass runs only when nothing was claimable).
RECOVER_LIMIT = 20


def recover_expired(ctx: Context, env: RunEnv, *, epic: str | None) -> list[str]:
    """Leases whose holder died, on stories no claim will take over (completed, blocked,
    paused, ...). A worker releases its lease only after the projection of its last commit,
    so such a holder may have died between the commit and the story file: render the file
    from the database, mark its runs left running as abandoned, drop the lease and record
    the takeover. Returns the stories recovered."""
    runs = ctx.store.run_store()
    now = ctx.now()
    statuses = actionable_statuses()
    if not runs.expired(now=now, statuses=statuses, epic=epic, limit=1):  # a read, no lock
        return []
    recovered: list[str] = []
    with ctx.store.transaction():
        for row in runs.expired(now=now, statuses=statuses, epic=epic, limit=RECOVER_LIMIT):
            story_id = row["story_id"]
            if not runs.drop_expired(story_id, owner=row["owner"], now=now):
                continue  # renewed, or another worker got there first
            runs.abandon_running(
                story_id,
                keep="",
                now=now,
                message=f"its worker died; {env.worker} found its lease expired",
            )
            _record_takeover(ctx, env, story_id, row, released=True)
            recovered.append(story_id)
    for story_id in recovered:
        story = ctx.store.get_story(story_id)
        if story is None:
            continue
        try:
            render_after_commit(ctx, ctx.epic(story.epic), story_id)
        except StoryflowError as error:  # storyflow check reports the file; the run goes on
            log.warning("%s: story file not rendered: %s", story_id, error.message)
    return recovered


def claim_next(ctx: Context, env: RunEnv, *, epic: str | None) -> Claimed | bool:
    """Lease the next actionable story; when there is none, whether the scope is idle."""
    runs = ctx.store.run_store()
    statuses = actionable_statuses()
    now = ctx.now()
    limit = 2 if ctx.store.dialect == "postgresql" else 4
    with ctx.store.transaction():
        # read once the claim holds the write lock: a story another worker refused while
        # this one waited for it is skipped too
        clock = time.monotonic()
        skip = [story_id for story_id, until in list(env.refused.items()) if until > clock]
        for row in runs.candidates(now=now, statuses=statuses, epic=epic, limit=limit, skip=skip):
            took = runs.acquire(
                row["id"], owner=env.worker, phase=None, now=now, expires=env.lease_until(now)
            )
            if took is None:
                continue
            if took:
                previous = {
                    "owner": row["l_owner"],
                    "run_id": row["l_run_id"],
                    "expires_at": row["l_expires_at"],
                }
                _record_takeover(ctx, env, row["id"], previous)
            return Claimed(story_id=row["id"], takeover=took)
        claimable, busy = runs.idle_state(now=now, statuses=statuses, epic=epic, skip=skip)
    return claimable == 0 and busy == 0


def acquire_story(ctx: Context, env: RunEnv, story_id: str, *, wait: bool) -> bool:
    """Lease one story for ``storyflow run ID``: STORY_LOCKED (exit 5) when another run
    holds it, or wait for it with ``wait``. Returns whether it was a takeover."""
    runs = ctx.store.run_store()
    while True:
        now = ctx.now()
        with ctx.store.transaction():
            previous = runs.lease_row(story_id)
            took = runs.acquire(
                story_id, owner=env.worker, phase=None, now=now, expires=env.lease_until(now)
            )
            if took:
                _record_takeover(ctx, env, story_id, previous or {})
        if took is not None:
            return took
        if not wait or env.abort.is_set() or env.stop.is_set():
            holder = previous or {}
            raise ConflictError(
                f"{story_id} is being run by {holder.get('owner')} "
                f"(lease until {holder.get('expires_at')})",
                code="STORY_LOCKED",
                hint=f"wait for it (storyflow run {story_id} --wait) or let the lease expire",
                details={
                    "story": story_id,
                    "owner": holder.get("owner"),
                    "run_id": holder.get("run_id"),
                    "expires_at": holder.get("expires_at"),
                },
            )
        env.sleep(env.settings.poll_seconds)


def release(ctx: Context, env: RunEnv, story_id: str) -> None:
    with ctx.store.transaction():
        ctx.store.run_store().release(story_id, owner=env.worker)


def run_story(
    ctx: Context,
    env: RunEnv,
    story_id: str,
    *,
    phase: str | None = None,
    force: bool = False,
    wait: bool = False,
) -> PhaseOutcome:
    """``storyflow run ID``: the story's next (or named) phase, under its lease."""
    parse_story_id(story_id)
    ctx.story(story_id)  # not found: exit 6 before any lease
    acquire_story(ctx, env, story_id, wait=wait)
    with _released(ctx, env, story_id):
        return run_phase(ctx, env, story_id, named=phase, force=force)


@contextmanager
def _released(ctx: Context, env: RunEnv, story_id: str) -> Iterator[None]:
    """The story's lease, released after the block -- unless the database went away under
    it (DATABASE_GONE): what the phase committed last is not known, so the lease stays and
    expires, and the story is taken over (by any worker) as a dead worker's would be."""
    gone = False
    try:
        yield
    except StoryflowError as error:
        gone = error.code in DATABASE_GONE
        raise
    finally:
        if not gone:
            release(ctx, env, story_id)


def work_loop(ctx: Context, env: RunEnv, *, epic: str | None, until_idle: bool) -> None:
    """One worker: claim, run, repeat until stopped (or idle, with ``until_idle``)."""
    try:
        _work(ctx, env, epic=epic, until_idle=until_idle)
    finally:  # what a turn without a phase warned of (a lease takeover, say)
        _pass_on_warnings(ctx, env)


def _pass_on_warnings(ctx: Context, env: RunEnv) -> None:
    """The context's warnings to the run's observer, as they come; budget figures are
    left out (the crossing line and the report say them)."""
    for message in ctx.take_warnings():
        env.observer.on_warning(message)


def _work(ctx: Context, env: RunEnv, *, epic: str | None, until_idle: bool) -> None:
    while not env.stop.is_set():
        try:
            if _turn(ctx, env, epic=epic, until_idle=until_idle):
                return
        except StoryflowError as error:
            if error.code not in PASSING:
                raise
            # The database server restarted (or a failover, a network cut) in the middle of
            # a transaction: the next statement connects again (or, after a minute without
            # a server, raises DATABASE_UNREACHABLE). Or SQLite's write lock was held longer
            # than the busy timeout. Nothing is half-written: this worker says so, goes on.
            env.observer.on_warning(f"{env.worker}: {error.message}; {PASSING[error.code]}")
            env.sleep(env.settings.poll_seconds)


# A transaction's connection broke (adapters/db/connection.py ConnectionLost).
CONNECTION_LOST = "DATABASE_CONNECTION_LOST"
# What a worker outlives, and what it says it does then.
PASSING = {CONNECTION_LOST: "connecting again", "DATABASE_BUSY": "trying again"}
# The database went away under a phase (lost mid-transaction, or not back in time).
DATABASE_GONE = frozenset({CONNECTION_LOST, "DATABASE_UNREACHABLE"})


def _turn(ctx: Context, env: RunEnv, *, epic: str | None, until_idle: bool) -> bool:
    """Claim and run one phase, or recover an expired lease, or wait; True when idle and
    told to stop then."""
    claimed = claim_next(ctx, env, epic=epic)
    if isinstance(claimed, Claimed):
        try:
            with _released(ctx, env, claimed.story_id):
                run_phase(ctx, env, claimed.story_id)
        except StoryflowError as error:
            if error.code in DATABASE_GONE:
                raise  # not the story's fault: no refusal, and _work decides
            # A phase refused before it started (e.g. a bad merge broke the story file):
            # the story stays as it is, and this run leaves it alone for a while
            # instead of claiming it again at once, forever.
            _refused(env, claimed.story_id, epic, error)
        finally:
            _pass_on_warnings(ctx, env)
        return False
    if recover_expired(ctx, env, epic=epic):
        return False
    if claimed and until_idle:
        return True
    env.sleep(env.settings.poll_seconds)
    return False


# How long a run leaves a refused story alone before a long-running worker tries it again
# (a person may have fixed it meanwhile); a run that stops when idle does not wait for it.
REFUSAL_COOLOFF_SECONDS = 300.0


def _refused(env: RunEnv, story_id: str, epic: str | None, error: StoryflowError) -> None:
    if isinstance(error, ConflictError) and error.code != "STORY_FILES_BEHIND":
        # lost to another writer: claim again as usual
        env.sleep(env.settings.poll_seconds)
        return
    log.warning("%s: %s", story_id, error.message)
    from storyflow.services.run_report import PhaseEvent

    env.refused[story_id] = time.monotonic() + REFUSAL_COOLOFF_SECONDS
    env.observer.on_error(
        PhaseEvent(
            story_id=story_id,
            epic=epic or "",
            title="",
            phase="",
            run_id=None,
            attempt=0,
            worker=env.worker,
            status="failed",
            error_code=error.code,
            message=error.message,
        )
    )
    hint = f" (hint: {error.hint})" if error.hint else ""
    env.observer.on_story_done(
        story_id, "refused", f"{error.code}: {error.message}{hint}; left alone by this run"
    )


def run_pool(
    open_ctx: Callable[[], Context],
    env: RunEnv,
    *,
    workers: int,
    epic: str | None,
    until_idle: bool,
    name: Callable[[int], str],
) -> list[str]:
    """N workers in threads, each with its own context; returns every run id they touched.
    Returns when all have stopped; re-raises the first unexpected error."""
    errors: list[BaseException] = []
    envs = [replace(env, worker=name(i), run_ids=[]) for i in range(workers)]

    def body(worker_env: RunEnv) -> None:
        try:
            ctx = open_ctx()
        except BaseException as exc:
            errors.append(exc)
            env.stop.set()
            return
        try:
            work_loop(ctx, worker_env, epic=epic, until_idle=until_idle)
        except BaseException as exc:
            errors.append(exc)
            env.stop.set()
        finally:
            ctx.store.close()

    threads = [
        threading.Thread(target=body, args=(e,), name=f"storyflow-worker-{i}", daemon=True)
        for i, e in enumerate(envs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.2)  # the main thread stays free for signals
    if errors:
        raise errors[0]
    return [run_id for e in envs for run_id in e.run_ids]
