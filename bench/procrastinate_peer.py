"""The procrastinate peer figure: how fast procrastinate drains no-op jobs with 4 concurrent
workers on the same PostgreSQL. Run with a Python that has procrastinate installed (bench/
runs.py makes bench/.work/pvenv for it); prints one JSON line: {"jobs": N, "seconds": S}."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import procrastinate


def main(conninfo: str, jobs: int, concurrency: int) -> None:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    @app.task(name="noop", queue="bench")
    async def noop(i: int) -> None:
        return None

    async def run() -> float:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            await noop.batch_defer_async(*({"i": i} for i in range(jobs)))
            start = time.perf_counter()
            await app.run_worker_async(
                queues=["bench"], concurrency=concurrency, wait=False, install_signal_handlers=False
            )
            return time.perf_counter() - start

    seconds = asyncio.run(run())
    print(json.dumps({"jobs": jobs, "seconds": seconds, "concurrency": concurrency}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
