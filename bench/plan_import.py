"""`storyflow plan import` / `plan export` on a generated 1,000-story stories.index.md
(no target in the issue; recorded so regressions show).

Each a fresh `storyflow` subprocess on SQLite, median of --reps runs:

- `plan import --dry-run`: parse, derive, the whole transaction, rolled back;
- `plan import` into an empty database: the epic, 1,000 stories and their files (the first
  run only: every later import of the same index is a no-op);
- `plan import` again: the no-op re-import (every story compared, every story file checked
  for conflict markers);
- `plan export`: the index regenerated (unchanged, so not rewritten).

    .venv/bin/python bench/plan_import.py [--stories 1000] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from common import REPO, WORK, clean_env, fresh_dir, init_ws, log, run_quiet

SEED = REPO / "tests" / "fixtures" / "plans" / "seeds" / "FLOW.PLAN.exec.md"
STATUSES = ("pending", "ready", "done", "wip", "backlog", "uat", "elaboration", "qa")


def index_text(count: int) -> str:
    parts = ["---\ndoc_type: stories_index\nstory_prefix: FLOW\n---\n\n# FLOW\n"]
    for n in range(1, count + 1):
        deps = f"FLOW-{n - 1:03d}" if n > 1 and n % 3 else "none"
        infra = "DB schema 002" if n % 7 == 0 else "Orchestrator runtime"
        parts.append(
            f"\n## FLOW-{n:03d}: Story number {n}\n\n**Status:** {STATUSES[n % len(STATUSES)]}\n"
            f"**Phase:** {n % 5 + 1}\n**Depends On:** {deps}\n**Priority:** P{n % 4}\n"
            f"**Feature:** feature {n}\n**Goal:** goal {n}\n**Infrastructure:** {infra}\n"
        )
    return "".join(parts)


def timed(root: Path, *args: str) -> float:
    exe = Path(sys.executable).with_name("storyflow")
    start = time.perf_counter()
    done = run_quiet([str(exe), *args], cwd=root, env=clean_env())
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"storyflow {' '.join(args)} failed: {done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    options = parser.parse_args()
    results: dict[str, list[float]] = {"dry run": [], "first import": [], "re-import": []}
    results["export"] = []
    for rep in range(options.reps):
        root = fresh_dir(WORK / "plan-import")
        init_ws(root).store.close()
        folder = root / "plans" / "future" / "flow-sync"
        folder.mkdir(parents=True)
        (folder / "PLAN.exec.md").write_text(SEED.read_text(encoding="utf-8"), encoding="utf-8")
        (folder / "stories.index.md").write_text(index_text(options.stories), encoding="utf-8")
        plan = "plans/future/flow-sync"
        results["dry run"].append(timed(root, "plan", "import", plan, "--dry-run"))
        results["first import"].append(timed(root, "plan", "import", plan))
        results["re-import"].append(timed(root, "plan", "import", plan))
        results["export"].append(timed(root, "plan", "export", "FLOW"))
        log(f"rep {rep + 1}/{options.reps} done")
    print(f"| {options.stories} stories, SQLite | median (s) |")
    print("|---|---|")
    for name, values in results.items():
        print(f"| plan {name} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
