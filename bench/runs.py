"""Run-engine overhead: phase runs per second with a zero-cost scripted agent, 4 workers.

    .venv/bin/python bench/runs.py [--backend sqlite|postgresql|both] [--stories N]
                                   [--workers 4] [--pg-url URL] [--no-peer]

For each backend: a fresh workspace with N stories, the scripted agent with no delay and
every verdict passing (scenarios/zero.yaml) and one review agent per review (no parallel
reviewers), then every story driven from pending to completed (7 phase runs each):

- ``threads``: a pool of 4 worker threads in this process (``workers.run_pool``, which
  ``storyflow worker --concurrency N`` ran until it used processes as ``run --epic`` does);
- ``processes``: 4 ``storyflow worker --until-idle`` processes (process start included);
- ``run --epic``: the command, ``storyflow run --epic BENCH --workers 4`` (its 4 worker
  processes under one parent; process start included; ``storyflow worker --concurrency 4``
  runs the same way).

Each run counts duplicates -- agent invocations beyond the runs recorded, and stories
completed more than once -- and asserts there are none. On PostgreSQL the procrastinate
peer (4 concurrent workers draining no-op jobs, bench/procrastinate_peer.py) is measured in
the same run against the same server, when a Python with procrastinate is at hand
(``bench/.work/pvenv``, made with ``python -m venv`` and ``pip install procrastinate``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from bench.common import WORK, clean_env, load, log, machine  # noqa: E402

ZERO = REPO / "src" / "storyflow" / "adapters" / "agents" / "scenarios" / "zero.yaml"
PEER_PYTHON = WORK / "pvenv" / "bin" / "python"
TARGETS = {"sqlite": 1000.0, "postgresql": 870.0}


def _pg_admin(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def _fresh_pg(server: str, name: str) -> str:
    with _pg_admin(f"{server}/postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def build(root: Path, database_url: str | None, stories: int) -> None:
    """A workspace with one epic of ``stories`` pending stories."""
    from storyflow.bootstrap import init_workspace, load_config, open_context
    from storyflow.services import epics
    from storyflow.services.stories import create_story

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    env = clean_env({"STORYFLOW_DATABASE_URL": database_url} if database_url else None)
    init_workspace(root, env=env)
    config_file = root / "storyflow.yaml"
    config_file.write_text(
        config_file.read_text()
        + f"runs:\n  scenario: {ZERO}\n  reviewers: {{names: []}}\n  poll_seconds: 0.02\n"
    )
    flags = {"database_url": database_url} if database_url else None
    ctx = open_context(load_config(workspace=root, flags=flags, env={}), actor="bench")
    try:
        epics.create_epic(ctx, "BENCH", title="bench")
        for i in range(stories):
            create_story(ctx, "BENCH", title=f"story {i + 1}")
    finally:
        ctx.store.close()


def _check(root: Path, database_url: str | None, invocations: int | None) -> dict[str, Any]:
    from storyflow.bootstrap import load_config, open_context

    flags = {"database_url": database_url} if database_url else None
    ctx = open_context(load_config(workspace=root, flags=flags, env={}), actor="bench")
    try:
        conn = ctx.store.conn
        runs = conn.fetchone("SELECT COUNT(*) AS n FROM runs")["n"]  # type: ignore[index]
        agent_runs = conn.fetchone(  # type: ignore[index]
            "SELECT COUNT(*) AS n FROM runs WHERE agent <> 'storyflow'"
        )["n"]
        keys = conn.fetchone("SELECT COUNT(DISTINCT idempotency_key) AS n FROM runs")["n"]  # type: ignore[index]
        twice = conn.fetchone(  # type: ignore[index]
            "SELECT COUNT(*) AS n FROM (SELECT story_id FROM workflow_transitions "
            "WHERE to_status = 'completed' GROUP BY story_id HAVING COUNT(*) > 1) x"
        )["n"]
        completed = conn.fetchone(  # type: ignore[index]
            "SELECT COUNT(*) AS n FROM workflow_stories WHERE status = 'completed'"
        )["n"]
        stories = conn.fetchone("SELECT COUNT(*) AS n FROM workflow_stories")["n"]  # type: ignore[index]
    finally:
        ctx.store.close()
    extra = max(0, (invocations or agent_runs) - agent_runs)
    return {
        "runs": int(runs),
        "duplicates": int(extra + twice + (runs - keys)),
        "completed": int(completed),
        "stories": int(stories),
    }


def threads(root: Path, database_url: str | None, workers: int) -> dict[str, Any]:
    from storyflow.bootstrap import agents, load_config, open_context
    from storyflow.services.run_context import RunEnv
    from storyflow.services.runs import worker_name
    from storyflow.services.workers import run_pool

    flags = {"database_url": database_url} if database_url else None
    config = load_config(workspace=root, flags=flags, env={})
    built = agents(config)
    calls = [0]

    class Counting:
        def __init__(self, inner: Any) -> None:
            self.inner, self.name, self.default_model = inner, inner.name, inner.default_model

        def run(self, request: Any, monitor: Any) -> Any:
            calls[0] += 1
            return self.inner.run(request, monitor)

    counting = Counting(built("scripted"))
    env = RunEnv(settings=config.runs, agents=lambda name: counting, worker=worker_name())
    start = time.perf_counter()
    run_pool(
        lambda: open_context(config, actor="bench"),
        env,
        workers=workers,
        epic="BENCH",
        until_idle=True,
        name=worker_name,
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, **_check(root, database_url, calls[0])}


def _storyflow(database_url: str | None) -> tuple[list[str], dict[str, str]]:
    """The storyflow command beside this Python, and its environment."""
    exe = Path(sys.executable).with_name("storyflow")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "storyflow"]
    return command, clean_env({"STORYFLOW_DATABASE_URL": database_url} if database_url else None)


def processes(root: Path, database_url: str | None, workers: int) -> dict[str, Any]:
    command, env = _storyflow(database_url)
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*command, "worker", "--epic", "BENCH", "--until-idle", "--concurrency", "1", "--json"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    codes = [p.wait(timeout=900) for p in procs]
    seconds = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"a worker failed: exit statuses {codes}")
    return {"seconds": seconds, **_check(root, database_url, None)}


def run_epic(root: Path, database_url: str | None, workers: int) -> dict[str, Any]:
    command, env = _storyflow(database_url)
    start = time.perf_counter()
    done = subprocess.run(
        [*command, "run", "--epic", "BENCH", "--workers", str(workers), "--json"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=900,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"run --epic failed ({done.returncode}): {done.stderr[-500:]}")
    return {"seconds": seconds, **_check(root, database_url, None)}


MODES = {"threads": threads, "processes": processes, "run --epic": run_epic}


def _drop_pg(server: str, names: list[str]) -> None:
    """The benchmark's databases go when it is done (they hold 150 stories each)."""
    with _pg_admin(f"{server}/postgres") as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def peer(server: str, jobs: int, workers: int) -> dict[str, Any] | None:
    if not PEER_PYTHON.exists():
        return None
    url = _fresh_pg(server, "sf_bench_peer")
    done = subprocess.run(
        [
            str(PEER_PYTHON),
            str(REPO / "bench" / "procrastinate_peer.py"),
            url,
            str(jobs),
            str(workers),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        log(f"procrastinate peer failed: {done.stderr[-500:]}")
        return None
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--stories", type=int, default=150)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("STORYFLOW_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432"),
    )
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    info = machine()
    log(f"machine: {info}")
    rows: list[dict[str, Any]] = []
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        for mode, measure in MODES.items():
            slug = mode.replace(" --", "_")
            root = WORK / f"runs-{backend}-{slug}"
            url = (
                _fresh_pg(args.pg_url, f"sf_bench_runs_{slug}") if backend == "postgresql" else None
            )
            build(root, url, args.stories)
            log(f"{backend} {mode}: {args.stories} stories, {args.workers} workers ...")
            result = measure(root, url, args.workers)
            rate = result["runs"] / result["seconds"]
            assert result["duplicates"] == 0, result
            assert result["completed"] == result["stories"], result
            rows.append({"backend": backend, "mode": mode, "rate": rate, **result})
            log(
                f"  {result['runs']} phase runs in {result['seconds']:.1f} s = {rate:,.0f}/s, "
                f"duplicates {result['duplicates']}"
            )
        if backend == "postgresql" and not args.no_peer:
            found = peer(args.pg_url, 3000, args.workers)
            if found:
                rate = found["jobs"] / found["seconds"]
                rows.append(
                    {
                        "backend": backend,
                        "mode": "procrastinate peer",
                        "rate": rate,
                        "runs": found["jobs"],
                        "seconds": found["seconds"],
                        "duplicates": 0,
                    }
                )
                log(
                    f"  procrastinate: {found['jobs']} no-op jobs in {found['seconds']:.1f} s "
                    f"= {rate:,.0f}/s"
                )
    if "postgresql" in backends:
        _drop_pg(
            args.pg_url,
            [f"sf_bench_runs_{m.replace(' --', '_')}" for m in MODES] + ["sf_bench_peer"],
        )
    print(f"\nload at end: {load()}\n")
    print("| backend | workers | phase runs | seconds | runs/s | target | duplicates | result |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        target = TARGETS[row["backend"]] if row["mode"] != "procrastinate peer" else None
        verdict = "-" if target is None else ("met" if row["rate"] >= target else "MISSED")
        print(
            f"| {row['backend']} | {row['mode']} | {row['runs']:,} | {row['seconds']:.1f} | "
            f"{row['rate']:,.0f} | {'>= ' + format(target, ',.0f') if target else '-'} | "
            f"{row['duplicates']} | {verdict} |"
        )


if __name__ == "__main__":
    main()
