"""The 2,000-story SQLite workspace the CLI latency benchmark reads, built in-process
through the real services and cached under bench/.work/ by version key.

Shape (deterministic, seeded): one staged epic FLOW with 2,000 stories. 365 of them are
walked through the lifecycle with evidence (elaboration, plan, proof, code review,
verification, QA gate) and tokens per phase: 120 completed, the rest spread over every
in-flight status; 300 are generated; the remainder pending. About a quarter depend on
other stories; some ready-to-work stories are workable (dependencies completed), others
wait for an open dependency or an unmet requirement, so ``next`` has real filtering to do.

    .venv/bin/python bench/workspace.py [--rebuild]    # prints the workspace path
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import WORK, Walker, fresh_dir, init_ws, log, version_key

STORIES = 2000
# (status, how many); walked in this order, so dependencies on completed stories are met.
MIX: list[tuple[str, int]] = [
    ("completed", 120),
    ("uat", 15),
    ("in-qa", 15),
    ("needs-work", 10),
    ("ready-for-qa", 15),
    ("code-review-failed", 10),
    ("ready-for-code-review", 15),
    ("in-progress", 40),
    ("blocked", 15),
    ("ready-to-work", 60),
    ("needs-refinement", 10),
    ("in-elaboration", 30),
    ("cancelled", 10),
    ("generated", 300),
]
PRIORITIES = ["P0", "P1", "P1", "P2", "P2", "P2", "P2", "P3", "P3", "P4"]


@dataclass(frozen=True)
class BuiltWorkspace:
    root: Path
    db: Path
    show_id: str  # a completed story: every artifact kind, a long history, a full ledger


def _plan_statuses() -> list[str]:
    statuses = [status for status, count in MIX for _ in range(count)]
    return statuses + ["pending"] * (STORIES - len(statuses))


def _links(rng: random.Random, statuses: list[str]) -> list[tuple[list[int], list[str]]]:
    """Dependencies (by story number) and requirements per story, consistent with its
    target status: anything that goes past ready-to-work depends only on completed stories."""
    completed = [n for n, s in enumerate(statuses, 1) if s == "completed"]
    links: list[tuple[list[int], list[str]]] = []
    rtw_seen = 0
    for number, status in enumerate(statuses, 1):
        deps: list[int] = []
        reqs: list[str] = []
        if status == "completed":
            if number % 5 == 0:
                deps = [number - 1]
        elif status == "ready-to-work":
            rtw_seen += 1
            if rtw_seen % 6 == 0:
                reqs = ["db-schema-002"]  # unmet: not workable
            elif rtw_seen % 6 == 1:
                deps = [rng.randrange(number - 120, number)]  # an open story: not workable
            elif rtw_seen % 2 == 0:
                deps = [rng.choice(completed)]
        elif status in {"pending", "generated"}:
            if rng.random() < 0.3:
                deps = sorted(set(rng.sample(range(1, number), k=min(2, number - 1))))
        elif status != "cancelled" and rng.random() < 0.25:
            deps = [rng.choice(completed)]
        links.append((deps, reqs))
    return links


def build(root: Path) -> str:
    from storyflow.services.epics import create_epic
    from storyflow.services.stories import create_story

    ctx = init_ws(root)
    try:
        create_epic(ctx, "FLOW", title="Benchmark epic")
        rng = random.Random(20240601)
        statuses = _plan_statuses()
        links = _links(rng, statuses)
        start = time.perf_counter()
        for number, (deps, reqs) in enumerate(links, 1):
            create_story(
                ctx,
                "FLOW",
                title=f"Story {number}: {rng.choice(['sync', 'import', 'render', 'gate'])} "
                f"{rng.choice(['the index', 'budgets', 'artifacts', 'the board'])}",
                priority=rng.choice(PRIORITIES),
                phase=1 + number % 5,
                depends_on=[f"FLOW-{d:03d}" for d in deps],
                requires=reqs,
            )
        log(f"  created {STORIES} stories in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        walker = Walker(ctx, root / "inbox")
        for number, status in enumerate(statuses, 1):
            if status != "pending":
                walker.walk_to(f"FLOW-{number:03d}", status)
        log(
            f"  walked {sum(s != 'pending' for s in statuses)} stories in "
            f"{time.perf_counter() - start:.1f} s"
        )
    finally:
        ctx.store.close()
    return "FLOW-060"


def ensure(rebuild: bool = False) -> BuiltWorkspace:
    """The cached workspace, built first if missing (or when ``rebuild``)."""
    key = version_key(f"cli{STORIES}")
    home = WORK / f"ws-{key}"
    root = home / "ws"
    marker = home / "READY"
    if rebuild or not marker.exists():
        log(f"building the {STORIES}-story workspace in {root} (cached afterwards)")
        fresh_dir(home)
        show_id = build(root)
        marker.write_text(show_id + "\n")
    show_id = marker.read_text().strip()
    return BuiltWorkspace(root=root, db=root / ".storyflow" / "storyflow.db", show_id=show_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="Ignore the cache.")
    args = parser.parse_args()
    built = ensure(args.rebuild)
    print(built.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
