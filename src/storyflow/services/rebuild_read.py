"""Reading the story folders of a rebuild: in one process, or, when there are enough of them
and more than one CPU, in worker processes (``--jobs``).

Reading is where a rebuild spends its time (YAML parsing, schema validation), and each
folder is read on its own, so the work spreads over processes; the database inserts stay in
the parent, in its one transaction. Workers are forked: they inherit the context and the
candidates, read their share and send back plain values; they never touch the database.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storyflow.services.context import Context
from storyflow.services.sync_ports import RebuildRows, SyncFilesPort
from storyflow.services.sync_report import Problem, SyncReport

if TYPE_CHECKING:
    from storyflow.services.rebuild import Candidate, Imported

PARALLEL_MIN_STORIES = 400  # below this, starting workers costs more than it saves
MAX_JOBS = 8
CHUNK = 40  # story folders per task


@dataclass(kw_only=True)
class Prepared:
    """What reading one story folder gave."""

    imported: Imported | None = None
    rows: RebuildRows | None = None
    problems: list[Problem] = field(default_factory=list)
    claimed: dict[str, str] = field(default_factory=dict)  # SyncReport.claimed
    read: int = 0
    parsed: int = 0


def default_jobs(stories: int) -> int:
    """One process for a few hundred stories or two CPUs (the parent needs one for the
    inserts; measured: two workers on two busy CPUs were slower than one); else one per
    CPU but the parent's."""
    cpus = os.cpu_count() or 1
    if stories < PARALLEL_MIN_STORIES or cpus <= 2:
        return 1
    return min(MAX_JOBS, cpus - 1)


def read_one(ctx: Context, files: SyncFilesPort, candidate: Candidate) -> Prepared:
    from storyflow.services.rebuild import prepare_story

    scratch = SyncReport(dry_run=False, prefer=None)
    done = prepare_story(ctx, files, candidate, scratch)
    return Prepared(
        imported=done[0] if done else None,
        rows=done[1] if done else None,
        problems=scratch.problems,
        claimed=scratch.claimed,
        read=scratch.read,
        parsed=scratch.parsed,
    )


def read_all(
    ctx: Context,
    files: SyncFilesPort,
    candidates: list[Candidate],
    *,
    jobs: int,
    progress: Callable[[int], None] | None,
) -> list[Prepared]:
    """One Prepared per candidate, in order."""
    if jobs <= 1 or len(candidates) < 2:
        out = []
        for candidate in candidates:
            out.append(read_one(ctx, files, candidate))
            if progress is not None:
                progress(1 + len(candidate.artifacts))
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spans = [(i, min(i + CHUNK, len(candidates))) for i in range(0, len(candidates), CHUNK)]
    results: list[Prepared] = []
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_adopt,
        initargs=(ctx, files, candidates),
    ) as pool:
        for (start, end), part in zip(spans, pool.map(_read_span, spans), strict=True):
            results.extend(part)
            if progress is not None:
                progress(sum(1 + len(c.artifacts) for c in candidates[start:end]))
    return results


class _Inherited:
    """The context and candidates, in a worker process (set by the pool's initializer)."""

    work: tuple[Context, SyncFilesPort, list[Any]] | None = None


def _adopt(ctx: Context, files: SyncFilesPort, candidates: list[Any]) -> None:
    _Inherited.work = (ctx, files, candidates)


def _read_span(span: tuple[int, int]) -> list[Prepared]:
    assert _Inherited.work is not None
    ctx, files, candidates = _Inherited.work
    return [read_one(ctx, files, candidates[i]) for i in range(*span)]
