"""Where a phase run's time goes: CPU per stage for one worker, and wait / hold / CPU for N.

    .venv/bin/python bench/run_stages.py [--stories 150] [--processes 4]

Both parts drive ``--stories`` stories of a fresh SQLite workspace from pending to completed
with the zero-cost scripted agent (bench/runs.py's set-up: 7 phase runs a story).

1. One worker in this process. The engine's stages are wrapped with ``time.process_time``
   (CPU of this process, the kernel's share of its system calls included, unlike a
   profiler's, which slows Python and not the system calls). Printed per phase run: CPU of
   the whole loop, then of each stage and how often it ran. Stages nest: ``finish`` holds the
   artifact record, the tokens, the move and one of the file projections; ``sql execute`` is
   every statement wherever it runs.
2. ``--processes`` worker processes (forked; each runs the worker loop on its own
   connection, as ``storyflow worker`` does). Printed per process: wall time, CPU, time
   waiting for SQLite's write turn and time holding it (``BEGIN IMMEDIATE`` .. ``COMMIT``);
   then phase runs a second and the share of the wall time the write lock was held by
   anyone, and the share of the CPUs used. Near 100 % of either, more workers cannot help.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from bench.common import WORK, log, machine  # noqa: E402
from bench.runs import build  # noqa: E402

PHASE_RUNS_PER_STORY = 7


def _worker(root: Path, name: str) -> Callable[[], None]:
    """The worker loop of one process, ready to run until the epic is idle."""
    from storyflow.bootstrap import agents, load_config, open_context
    from storyflow.services.run_context import RunEnv
    from storyflow.services.workers import work_loop

    config = load_config(workspace=root, flags=None, env={})
    built = agents(config)
    env = RunEnv(settings=config.runs, agents=lambda _: built("scripted"), worker=name)
    ctx = open_context(config, actor="bench")

    def loop() -> None:
        try:
            work_loop(ctx, env, epic="BENCH", until_idle=True)
        finally:
            ctx.store.close()

    return loop


# ---- 1. one worker, CPU per stage ------------------------------------------------------------


def _stages() -> list[tuple[Any, str, str]]:
    from storyflow.adapters.db.connection import SqliteConnection
    from storyflow.adapters.files.story_files import StoryFiles
    from storyflow.adapters.telemetry.jsonl import JsonlTracer
    from storyflow.services import artifacts, metrics, run_finish, runs, transitions, workers

    return [
        (workers, "claim_next", "claim (transaction)"),
        (runs, "start", "start (transaction, projection)"),
        (runs, "invoke", "agent (scripted, writes its files)"),
        (runs, "finish", "finish (all of it)"),
        (artifacts, "prepare", "  artifact read, validated, hashed"),
        (artifacts, "record", "  artifact recorded"),
        (run_finish, "_log_tokens", "  tokens logged"),
        (transitions, "move", "  the verdict's move"),
        (metrics, "write_story_metrics", "  METRICS.yaml at completion"),
        (workers, "release", "release (transaction)"),
        (StoryFiles, "project", "story file projection (start and finish)"),
        (StoryFiles, "check_renderable", "story file pre-commit checks"),
        (StoryFiles, "read_story", "story file read for a guard"),
        (JsonlTracer, "record", "trace lines (JSONL)"),
        (SqliteConnection, "_run", "sql execute (every statement)"),
    ]


def one_worker(stories: int) -> None:
    spent: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    originals = []
    for owner, attr, label in _stages():
        original = getattr(owner, attr)
        originals.append((owner, attr, original))

        def timed(*args: Any, _f: Any = original, _label: str = label, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[_label] += time.process_time() - start
                calls[_label] += 1

        setattr(owner, attr, timed)
    root = WORK / "run-stages"
    build(root, None, stories)
    loop = _worker(root, "bench:stages")
    try:
        start = time.process_time()
        loop()
        total = time.process_time() - start
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)
    runs = stories * PHASE_RUNS_PER_STORY
    print(f"one worker, {runs:,} phase runs: {1000 * total / runs:.2f} ms CPU per phase run\n")
    print("| stage | CPU ms / phase run | share | calls / phase run |")
    print("|---|---|---|---|")
    for _, _, label in _stages():
        share = spent[label] / total
        print(
            f"| {label.strip()} | {1000 * spent[label] / runs:.2f} | {share:.0%} | "
            f"{calls[label] / runs:.2f} |"
        )


# ---- 2. N processes: wait, hold, CPU ------------------------------------------------------------


def _timed_turns() -> dict[str, float]:
    """Wrap SQLite's write turn in this (forked) process: time waiting for it, holding it."""
    from storyflow.adapters.db import connection

    figures = {"wait": 0.0, "hold": 0.0, "taken": 0.0}
    acquire, release = connection._Turn.acquire, connection._Turn.release

    def timed_acquire(self: Any, seconds: float) -> bool:
        start = time.perf_counter()
        got = acquire(self, seconds)
        figures["taken"] = time.perf_counter()
        figures["wait"] += figures["taken"] - start
        return got

    def timed_release(self: Any) -> None:
        figures["hold"] += time.perf_counter() - figures["taken"]
        release(self)

    connection._Turn.acquire = timed_acquire  # type: ignore[method-assign]
    connection._Turn.release = timed_release  # type: ignore[method-assign]
    return figures


def _process(root: Path, index: int, results: Any) -> None:
    figures = _timed_turns()
    loop = _worker(root, f"bench:{os.getpid()}:{index}")
    wall, cpu = time.perf_counter(), time.process_time()
    loop()
    figures["wall"] = time.perf_counter() - wall
    figures["cpu"] = time.process_time() - cpu
    results.put(figures)


def _forked(root: Path, count: int) -> list[dict[str, float]]:
    """Run ``count`` worker processes to the end; what each measured."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_process, args=(root, i, results)) for i in range(count)]
    for process in processes:
        process.start()
    try:
        gathered = [results.get(timeout=600) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
    if any(p.exitcode for p in processes):
        raise SystemExit("a worker process failed")
    return gathered


def many_processes(stories: int, count: int) -> None:
    root = WORK / "run-stages"
    build(root, None, stories)
    start = time.perf_counter()
    gathered = _forked(root, count)
    wall = time.perf_counter() - start
    runs = stories * PHASE_RUNS_PER_STORY
    print(f"\n{count} worker processes, {runs:,} phase runs in {wall:.1f} s: {runs / wall:.0f}/s\n")
    print("| process | wall s | CPU s | waiting for the write turn s | holding it s |")
    print("|---|---|---|---|---|")
    for index, f in enumerate(gathered, start=1):
        print(f"| {index} | {f['wall']:.2f} | {f['cpu']:.2f} | {f['wait']:.2f} | {f['hold']:.2f} |")
    held = sum(f["hold"] for f in gathered)
    cpu = sum(f["cpu"] for f in gathered)
    cpus = os.cpu_count() or 1
    used = cpu / (wall * cpus)
    print(
        f"\nwrite lock held {held / wall:.0%} of the wall time; CPUs used {used:.0%} of {cpus}; "
        f"CPU per phase run {1000 * cpu / runs:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=150)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    log(f"machine: {machine()}")
    one_worker(args.stories)
    many_processes(args.stories, args.processes)


if __name__ == "__main__":
    main()
