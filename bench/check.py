"""`storyflow check` on a 1,000-story workspace (target: <= 5 s), beside the floors of
reading the same files.

The workspace is built once through the real services and cached under bench/.work/:
epic FLOW (staged, YAML files) with 700 stories and REVI (flat, Markdown files, America/
Denver) with 300; 400 of them completed with every artifact and tokens for each phase, 250
spread over the in-flight statuses, 200 generated, 150 pending; about a quarter depend on
other stories. Then, each a fresh subprocess, median of --reps runs after one warm-up:

- `storyflow check --json`: the whole workspace (every story file and artifact parsed and
  validated, the database read in bulk); the target;
- `storyflow check --json PATH`: one story's files, what the pre-commit hook runs for a
  commit that touches one story;
- the floors, in this process over the same files: walk + stat, read, PyYAML C parse.

    .venv/bin/python bench/check.py [--reps 5] [--rebuild] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from common import WORK, Row, Summary, Walker, clean_env, fresh_dir, init_ws, log, report, run_quiet
from common import version_key as key_of

TARGET_S = 5.0
STORIES = {"FLOW": 700, "REVI": 300}
# (status, how many), walked in this order, so dependencies point at completed stories
MIX: list[tuple[str, int]] = [
    ("completed", 400),
    ("uat", 25),
    ("in-qa", 25),
    ("needs-work", 20),
    ("ready-for-qa", 25),
    ("code-review-failed", 20),
    ("ready-for-code-review", 25),
    ("in-progress", 35),
    ("blocked", 15),
    ("ready-to-work", 35),
    ("in-elaboration", 25),
    ("generated", 200),
    ("pending", 150),
]
assert sum(n for _, n in MIX) == sum(STORIES.values())


class FlatWalker(Walker):
    """The bench Walker, also for Markdown story files (the flat layout)."""

    def fill_story(self, story_id: str) -> None:
        story = self.ctx.story(story_id)
        path = self.ctx.files.story_file(self.ctx.epic(story.epic), story)
        if path.suffix != ".md":
            super().fill_story(story_id)
            return
        text = path.read_text(encoding="utf-8")
        head, marker, tail = text.partition("## Reuse Plan\n\n")
        rest = tail.split("\n## ", 1)[1]
        path.write_text(f"{head}{marker}Reuses @repo/shared.\n\n## {rest}", encoding="utf-8")


def build(root: Path) -> None:
    from storyflow.domain.layouts import LayoutName
    from storyflow.services.epics import create_epic
    from storyflow.services.stories import create_story

    ctx = init_ws(root)
    try:
        create_epic(ctx, "FLOW", title="Staged epic")
        create_epic(
            ctx, "REVI", title="Flat epic", layout=LayoutName.FLAT, timezone="America/Denver"
        )
        rng = random.Random(20260201)
        statuses = [status for status, count in MIX for _ in range(count)]
        prefixes = ["REVI" if i % 10 < 3 else "FLOW" for i in range(len(statuses))]
        start = time.perf_counter()
        made: list[tuple[str, str]] = []
        completed: list[str] = []
        for status, prefix in zip(statuses, prefixes, strict=True):
            deps: list[str] = []
            if status == "completed" and completed and rng.random() < 0.2:
                deps = [rng.choice(completed)]
            elif status in ("pending", "generated") and made and rng.random() < 0.3:
                deps = [rng.choice(made)[0]]
            story = create_story(ctx, prefix, title=f"Story {len(made) + 1}", depends_on=deps)
            made.append((story.id, status))
            if status == "completed":
                completed.append(story.id)
        log(f"  created {len(made)} stories in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        walker = FlatWalker(ctx, root / "inbox")
        for number, (story_id, status) in enumerate(made, 1):
            if status != "pending":
                walker.walk_to(story_id, status)
            if number % 100 == 0:
                log(f"  walked {number} stories ({time.perf_counter() - start:.0f} s)")
        # the evidence inbox is not part of the plans
        for path in (root / "inbox").iterdir():
            path.unlink()
    finally:
        ctx.store.close()


def ensure(rebuild: bool) -> Path:
    home = WORK / f"check-{key_of('check1000')}"
    root = home / "ws"
    if rebuild or not (home / "READY").exists():
        log(f"building the 1,000-story workspace in {root} (cached afterwards; a few minutes)")
        fresh_dir(home)
        build(root)
        (home / "READY").write_text("ok\n")
    return root


def storyflow_argv() -> list[str]:
    exe = Path(sys.executable).with_name("storyflow")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "storyflow"]


def timed_check(root: Path, extra: list[str], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    import json

    start = time.perf_counter()
    done = run_quiet([*storyflow_argv(), "check", "--json", *extra], cwd=root, env=env, timeout=600)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 3):
        raise RuntimeError(f"storyflow check exited {done.returncode}: {done.stderr[-2000:]}")
    body: dict[str, Any] = json.loads(done.stdout)
    return elapsed, body


def floors(root: Path, reps: int) -> dict[str, Summary]:
    """Walk + stat, read, and PyYAML C parse of every file under plans/ (Markdown: the front
    matter), in this process: what any checker of these files pays at least."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    samples: dict[str, list[float]] = {"walk": [], "read": [], "parse": []}
    for _ in range(reps):
        start = time.perf_counter()
        paths = []
        for folder, _dirs, names in os.walk(root / "plans"):
            for name in names:
                path = os.path.join(folder, name)
                os.stat(path)
                paths.append(path)
        samples["walk"].append(time.perf_counter() - start)
        start = time.perf_counter()
        texts = [(p, Path(p).read_text(encoding="utf-8")) for p in paths]
        samples["read"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for path, text in texts:
            if path.endswith(".md"):
                text = (
                    text.split("\n---\n", 1)[0].removeprefix("---\n")
                    if text.startswith("---")
                    else text
                )
            yaml.load(text, Loader=loader)
        samples["parse"].append(time.perf_counter() - start)
    log(f"  floors over {len(paths):,} files")
    return {name: Summary.of(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="Timed runs per measurement.")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the cached workspace.")
    parser.add_argument("--json", help="Also write the rows as JSON to this path.")
    args = parser.parse_args()

    root = ensure(args.rebuild)
    env = clean_env({"PYTHONPYCACHEPREFIX": str(WORK / "pycache")})
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    one = "plans/stories/REVI-001/REVI-001.md"
    timed_check(root, [], env)  # warm-up (bytecode, page cache)
    whole: list[float] = []
    single: list[float] = []
    body: dict[str, Any] = {}
    for _ in range(args.reps):
        seconds, body = timed_check(root, [], env)
        whole.append(seconds)
        single.append(timed_check(root, [one], env)[0])
    summary = body["summary"]
    if not summary["clean"]:
        raise SystemExit(f"the benchmark workspace does not check clean: {summary}")
    stats = floors(root, args.reps)
    full = Summary.of(whole)
    files = summary["files"]
    rows = [
        Row(
            f"`storyflow check` on {summary['stories']:,} stories ({files:,} files)",
            full.median,
            "s",
            f"<= {TARGET_S:g} s",
            full.median <= TARGET_S,
            f"min {full.low:.2f} s, max {full.high:.2f} s, n={full.n}",
        ),
        Row(
            "`storyflow check PATH` (one story, the pre-commit hook)",
            statistics.median(single) * 1000,
            "ms",
            detail=f"min {min(single) * 1000:.0f} ms, max {max(single) * 1000:.0f} ms",
        ),
        Row("floor: walk + stat of plans/", stats["walk"].median * 1000, "ms"),
        Row("floor: read every file", stats["read"].median * 1000, "ms"),
        Row("floor: PyYAML C parse of every file", stats["parse"].median * 1000, "ms"),
        Row(
            "check / (walk + read + parse floor)",
            full.median / sum(s.median for s in stats.values()),
            "x",
        ),
    ]
    report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
