"""How long one worker holds SQLite's write lock per phase run (what bounds many workers).

    .venv/bin/python bench/write_lock.py [--stories 60] [--reps 3]

One worker in this process drives ``--stories`` stories of a fresh SQLite workspace from
pending to completed with the zero-cost scripted agent (bench/runs.py's set-up: 7 phase
runs a story). Every write transaction (``BEGIN IMMEDIATE`` .. ``COMMIT``) is timed. Printed
per repetition: wall time per phase run, the write lock's time per phase run and its share
of the wall time, and write transactions per phase run. On SQLite every other writer waits
while one holds the lock, so N workers reach at most 1 / (lock time per run) phase runs a
second however many CPUs they have. For an A/B, run an older checkout's copy of this script
the same way (``PYTHONPATH=<checkout>/src python <checkout>/bench/write_lock.py``),
alternately with this one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from bench.common import WORK, log, machine  # noqa: E402
from bench.runs import build  # noqa: E402


def one(stories: int) -> dict[str, float]:
    from storyflow.adapters.db import connection
    from storyflow.bootstrap import agents, load_config, open_context
    from storyflow.services.run_context import RunEnv
    from storyflow.services.runs import worker_name
    from storyflow.services.workers import work_loop

    root = WORK / "write-lock"
    build(root, None, stories)
    plain = connection.SqliteConnection.transaction
    held = [0.0, 0]

    @contextmanager
    def timed(self: Any, *, write: bool = True) -> Iterator[None]:
        if not write or self._depth:
            with plain(self, write=write):
                yield
            return
        start = time.perf_counter()
        with plain(self, write=write):
            yield
        held[0] += time.perf_counter() - start
        held[1] += 1

    config = load_config(workspace=root, flags=None, env={})
    built = agents(config)
    env = RunEnv(settings=config.runs, agents=lambda name: built("scripted"), worker=worker_name())
    ctx = open_context(config, actor="bench")
    connection.SqliteConnection.transaction = timed  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        work_loop(ctx, env, epic="BENCH", until_idle=True)
        seconds = time.perf_counter() - start
    finally:
        connection.SqliteConnection.transaction = plain  # type: ignore[method-assign]
    try:
        conn = ctx.store.conn
        runs = int(conn.fetchone("SELECT COUNT(*) AS n FROM runs")["n"])  # type: ignore[index]
        done = conn.fetchone(  # type: ignore[index]
            "SELECT COUNT(*) AS n FROM workflow_stories WHERE status = 'completed'"
        )["n"]
    finally:
        ctx.store.close()
    if done != stories:
        raise SystemExit(f"{done} of {stories} stories completed")
    return {
        "ms_per_run": 1000 * seconds / runs,
        "lock_ms_per_run": 1000 * held[0] / runs,
        "share": held[0] / seconds,
        "txns_per_run": held[1] / runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=60)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    log(f"machine: {machine()}")
    rows = [one(args.stories) for _ in range(args.reps)]
    print("| rep | ms / phase run | write lock ms / phase run | share | write txns / phase run |")
    print("|---|---|---|---|---|")
    for index, row in enumerate(rows, start=1):
        print(
            f"| {index} | {row['ms_per_run']:.2f} | {row['lock_ms_per_run']:.2f} | "
            f"{row['share']:.0%} | {row['txns_per_run']:.1f} |"
        )
    median = statistics.median(r["lock_ms_per_run"] for r in rows)
    print(f"\nmedian write lock per phase run: {median:.2f} ms (at most {1000 / median:,.0f} /s)")


if __name__ == "__main__":
    main()
