"""(a) CLI latency on a 2,000-story SQLite workspace, against a Python+SQLite floor.

Each command is a fresh subprocess, timed wall-clock from spawn to exit (stdout captured).
The floor is the same interpreter opening the same database and printing one row. The
commands and the floor are interleaved (rotating order) so that noise on this shared
machine hits all of them alike; the figures are medians.

Bytecode: the subprocesses run with a bytecode cache (PYTHONPYCACHEPREFIX under bench/.work,
PYTHONDONTWRITEBYTECODE unset), as for any installed package; this environment sets
PYTHONDONTWRITEBYTECODE=1, which would otherwise make every run recompile storyflow from
source (bench/profile_hotpaths.py measures that cost separately).

Targets: every command's median <= 100 ms; median / floor median <= 3.5.

    .venv/bin/python bench/cli_latency.py [--reps 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import workspace
from common import WORK, Row, Summary, clean_env, log, report, run_quiet

TARGET_MS = 100.0
TARGET_RATIO = 3.5
FLOOR_CODE = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
    "print(c.execute('SELECT id, status FROM workflow_stories LIMIT 1').fetchone())"
)


def storyflow_argv() -> list[str]:
    exe = Path(sys.executable).with_name("storyflow")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "storyflow"]


def commands(built: workspace.BuiltWorkspace) -> dict[str, list[str]]:
    sf = storyflow_argv()
    return {
        "floor": [sys.executable, "-c", FLOOR_CODE, str(built.db)],
        "story show": [*sf, "story", "show", built.show_id, "--json"],
        "story list": [*sf, "story", "list", "--json"],
        "board": [*sf, "board", "--json"],
        "next": [*sf, "next", "--json"],
    }


def environment() -> dict[str, str]:
    env = clean_env({"PYTHONPYCACHEPREFIX": str(WORK / "pycache")})
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_once(argv: list[str], cwd: Path, env: dict[str, str], check_json: bool) -> float:
    start = time.perf_counter()
    done = run_quiet(argv, cwd=cwd, env=env, timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr}"
        )
    if check_json:
        json.loads(done.stdout)  # a command that prints no JSON is not the command we meant
    return elapsed * 1000


def measure(
    cmds: dict[str, list[str]], cwd: Path, env: dict[str, str], reps: int, warmup: int
) -> dict[str, Summary]:
    names = list(cmds)
    for _ in range(warmup):
        for name in names:
            run_once(cmds[name], cwd, env, check_json=name != "floor")
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            samples[name].append(run_once(cmds[name], cwd, env, check_json=False))
    return {name: Summary.of(values) for name, values in samples.items()}


def rows_for(stats: dict[str, Summary]) -> list[Row]:
    floor = stats["floor"]
    rows = [
        Row(
            "CLI floor: python + sqlite3, one row",
            floor.median,
            "ms",
            detail=f"min {floor.low:.1f} ms, max {floor.high:.1f} ms, n={floor.n}",
        )
    ]
    for name, summary in stats.items():
        if name == "floor":
            continue
        ms, ratio = summary.median, summary.median / floor.median
        rows.append(
            Row(
                f"CLI `{name} --json`",
                ms,
                "ms",
                f"<= {TARGET_MS:g} ms",
                ms <= TARGET_MS,
                f"min {summary.low:.1f} ms, max {summary.high:.1f} ms, n={summary.n}",
            )
        )
        rows.append(
            Row(
                f"CLI `{name}` / floor",
                ratio,
                "x",
                f"<= {TARGET_RATIO:g}x",
                ratio <= TARGET_RATIO,
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="Timed runs per command.")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the cached workspace.")
    parser.add_argument("--json", help="Also write the rows as JSON to this path.")
    args = parser.parse_args()

    built = workspace.ensure(args.rebuild)
    cmds = commands(built)
    log(f"CLI latency: {len(cmds) - 1} commands + floor, {args.reps} runs each, interleaved")
    stats = measure(cmds, built.root, environment(), args.reps, warmup=2)
    rows = rows_for(stats)
    report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
