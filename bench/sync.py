"""(d) storyflow sync: rebuild of 10,000 stories x 7 files, and a no-op sync, against floors
measured on the same files in the same run.

The workspace: one staged epic FLOW whose 10,000 story folders each hold the story file and
six artifacts (elaboration, plan, proof, code review, verification, QA gate): 70,000 small
YAML files in exactly the format the engine renders. Four template stories are walked to
completed through the real services (one with a failed review and its fix, one blocked and
unblocked, tokens priced per model), then their folders are copied 2,500 times each with
the ID replaced. Cached under bench/.work/sync-<version key>/.

Floors, on the same files: walk + stat (os.scandir, one stat per file); read (every file's
bytes); parse = read + ``yaml.load(..., Loader=CSafeLoader)`` of every file, the PyYAML C
parse floor of the target.

Targets: rebuild (an empty database, ``storyflow sync``) <= 2x the parse floor; no-op sync
of the rebuilt workspace (``storyflow sync`` as a subprocess, wall clock) <= 0.5 s.

    .venv/bin/python bench/sync.py [--stories 10000] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import yaml

from common import (
    REPO,
    WORK,
    Row,
    Summary,
    Walker,
    clean_env,
    fresh_dir,
    init_ws,
    log,
    report,
    run_quiet,
    version_key,
)

EXAMPLES = REPO / "examples" / "artifacts"
TEMPLATES = 4
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432"


def _example(name: str) -> dict[str, object]:
    data = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


class TemplateWalker(Walker):
    """The benchmark walker with the example artifacts (realistic sizes), not the minimal
    shapes the tests submit."""

    def submit(self, story_id: str, kind: str, data: dict[str, object]) -> None:
        names = {
            "elaboration": "elaboration.yaml",
            "plan": "plan.yaml",
            "proof": "proof.yaml",
            "code_review": "code-review.yaml",
            "verification": "verification.yaml",
            "qa_gate": "qa-gate.yaml",
        }
        if data.get("verdict") == "FAIL" or kind not in names:
            super().submit(story_id, kind, data)
            return
        super().submit(story_id, kind, {**_example(names[kind]), "story_id": story_id})


def build_templates(root: Path) -> dict[str, dict[str, str]]:
    """Walk the template stories to completed; return {story ID: {file name: text}}."""
    from storyflow.services import epics, stories

    ctx = init_ws(root)
    walker = TemplateWalker(ctx, root / "inbox")
    epics.create_epic(ctx, "FLOW", title="Sync benchmark")
    ids = [stories.create_story(ctx, "FLOW", title=f"Template {i}").id for i in range(TEMPLATES)]
    for index, story_id in enumerate(ids):
        if index == 1:  # a failed review and its fix
            walker.walk_to(story_id, "code-review-failed")
            walker.move(story_id, "in-progress")
            walker.to_ready_for_code_review(story_id)
            for _, step in walker.happy_path()[5:]:
                step(story_id)
        elif index == 2:  # blocked on the way, then unblocked
            walker.walk_to(story_id, "blocked")
            walker.move(story_id, "in-progress")
            for _, step in walker.happy_path()[4:]:
                step(story_id)
        else:
            walker.walk_to(story_id, "completed")
    templates = {}
    for story_id in ids:
        story = ctx.story(story_id)
        folder = ctx.files.locate(ctx.epic("FLOW"), story)
        templates[story_id] = {
            p.name: p.read_text(encoding="utf-8")
            for p in sorted(folder.iterdir())
            if p.name != "METRICS.yaml"  # an engine file sync does not read: left out
        }
        assert len(templates[story_id]) == 7, sorted(templates[story_id])
    ctx.store.close()
    return templates


def build_workspace(stories: int) -> Path:
    """The cached 10,000-story workspace (files only, no database)."""
    from storyflow.domain.model import format_story_id

    base = WORK / f"sync-{version_key(stories)}"
    ws = base / "ws"
    if (base / "done").exists():
        return ws
    started = time.perf_counter()
    templates = build_templates(fresh_dir(base / "templates"))
    fresh_dir(ws)
    template_root = base / "templates"
    shutil.copy2(template_root / "storyflow.yaml", ws / "storyflow.yaml")
    epic_root = ws / "plans" / "flow"
    (epic_root / "done").mkdir(parents=True)
    shutil.copy2(template_root / "plans" / "flow" / "FLOW.epic.yaml", epic_root)
    names = sorted(templates)
    for number in range(1, stories + 1):
        story_id = format_story_id("FLOW", number)
        source = names[number % TEMPLATES]
        folder = epic_root / "done" / story_id
        folder.mkdir()
        for name, text in templates[source].items():
            (folder / name).write_text(text.replace(source, story_id), encoding="utf-8")
    (base / "done").write_text("ok")
    log(f"built the {stories}-story workspace in {time.perf_counter() - started:.0f} s: {ws}")
    return ws


def all_files_read(root: Path) -> None:
    for path in all_files(root):
        with open(path, "rb") as handle:
            handle.read()


def all_files(root: Path) -> list[str]:
    found = []
    for top, _, names in os.walk(root / "plans"):
        found.extend(f"{top}/{name}" for name in names)
    return found


def walk_floor(root: Path) -> float:
    """os.scandir + one stat per file under plans/, seconds."""
    started = time.perf_counter()
    stack = [str(root / "plans")]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append(entry.path)
                else:
                    entry.stat()
    return time.perf_counter() - started


def floors(root: Path) -> dict[str, float]:
    """walk + stat, read, and read + C parse of every file under plans/ (seconds; the parse
    also in CPU seconds)."""
    walk = walk_floor(root)
    paths = all_files(root)
    stats = len(paths)
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb") as handle:
            handle.read()
    read = time.perf_counter() - started
    loader = yaml.CSafeLoader
    gc.disable()  # as the storyflow executable runs
    cpu = time.process_time()
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb") as handle:
            yaml.load(handle.read().decode("utf-8"), Loader=loader)
    parse = time.perf_counter() - started
    parse_cpu = time.process_time() - cpu
    gc.enable()
    return {
        "files": float(stats),
        "walk": walk,
        "read": read,
        "parse": parse,
        "parse_cpu": parse_cpu,
    }


def reset_database(root: Path, database_url: str | None) -> None:
    """An empty database and no sync state: what a fresh clone has."""
    state = root / ".storyflow"
    if state.exists():
        shutil.rmtree(state)
    if database_url:
        _recreate_pg(database_url)
    from storyflow.bootstrap import init_workspace

    env = {"STORYFLOW_DATABASE_URL": database_url} if database_url else {}
    init_workspace(root, env=env)


def _recreate_pg(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _cli_env(database_url: str | None) -> dict[str, str]:
    env = clean_env({"PYTHONPYCACHEPREFIX": str(WORK / "pycache")})
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if database_url:
        env["STORYFLOW_DATABASE_URL"] = database_url
    return env


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rebuild(
    root: Path, database_url: str | None, jobs: int | None
) -> tuple[float, float, dict[str, int]]:
    """``storyflow sync`` on an empty database, as a user runs it: (wall s, CPU s, counts)."""
    reset_database(root, database_url)
    exe = Path(sys.executable).with_name("storyflow")
    cpu = _child_cpu()
    started = time.perf_counter()
    argv = [str(exe), "sync", "--json", *(["--jobs", str(jobs)] if jobs else [])]
    done = run_quiet(argv, cwd=root, env=_cli_env(database_url))
    seconds = time.perf_counter() - started
    cpu = _child_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"rebuild failed ({done.returncode}): {done.stdout[:500]}")
    rebuilt: dict[str, int] = json.loads(done.stdout)["rebuilt"]
    return seconds, cpu, rebuilt


def noop_runs(root: Path, database_url: str | None, reps: int) -> list[float]:
    exe = Path(sys.executable).with_name("storyflow")
    env = _cli_env(database_url)
    times = []
    for _ in range(reps + 1):  # the first run warms the bytecode cache
        started = time.perf_counter()
        done = run_quiet([str(exe), "sync", "--json"], cwd=root, env=env)
        times.append(time.perf_counter() - started)
        if done.returncode != 0 or '"nothing_to_do": true' not in done.stdout:
            raise SystemExit(f"no-op sync failed: {done.returncode} {done.stdout[:300]}")
    return times[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stories", type=int, default=10_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("STORYFLOW_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--jobs", type=int, help="storyflow sync --jobs (default: its own)")
    parser.add_argument("--json")
    args = parser.parse_args()
    root = build_workspace(args.stories)
    all_files_read(root)  # warm the page cache: every figure below starts from warm files
    floor = floors(root)
    parse = [floor["parse"]]
    parse_cpu = [floor["parse_cpu"]]
    results: list[Row] = []
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        url = f"{args.pg_url.rstrip('/')}/sf_bench_sync" if backend == "postgresql" else None
        label = "SQLite" if backend == "sqlite" else "PostgreSQL"
        log(f"{label}: rebuilding from {int(floor['files']):,} files ...")
        all_files_read(root)
        seconds, cpu, counts = rebuild(root, url, args.jobs)
        again = floors(root)  # the floor again, right after: this machine's load varies
        parse.append(again["parse"])
        parse_cpu.append(again["parse_cpu"])
        floor_wall = (parse[-2] + parse[-1]) / 2
        floor_cpu = (parse_cpu[-2] + parse_cpu[-1]) / 2
        ratio = seconds / floor_wall
        jobs = f"--jobs {args.jobs}" if args.jobs else "default --jobs"
        results.append(
            Row(
                f"{label} rebuild (empty db -> storyflow sync, {jobs}, wall)",
                seconds,
                "s",
                detail=", ".join(f"{v:,} {k}" for k, v in counts.items())
                + f"; parse floor before/after: {parse[-2]:.1f} / {parse[-1]:.1f} s",
            )
        )
        results.append(
            Row(f"{label} rebuild / parse floor (wall)", ratio, "x", "<= 2x", ratio <= 2)
        )
        results.append(
            Row(f"{label} rebuild CPU (all processes) / floor CPU", cpu / floor_cpu, "x")
        )
        log(f"{label}: no-op syncs ...")
        noop = Summary.of(noop_runs(root, url, args.reps))
        walks = Summary.of([walk_floor(root) for _ in range(args.reps)])
        results.append(
            Row(
                f"{label} no-op sync (CLI, wall)",
                noop.median,
                "s",
                "<= 0.5 s",
                noop.median <= 0.5,
                detail=f"min {noop.low:.3f} s, max {noop.high:.3f} s, n={noop.n}",
            )
        )
        results.append(
            Row(
                f"{label} no-op: walk + stat floor right after (warm)",
                walks.median,
                "s",
                detail=f"min {walks.low:.3f} s, max {walks.high:.3f} s",
            )
        )
        if url:
            _drop_pg(url)
    files = floor["files"]
    per_1000 = 1000 / files
    mean_parse = sum(parse) / len(parse)
    rows = [
        Row(f"files ({args.stories:,} stories)", files, "files"),
        Row("floor: walk + stat", floor["walk"] * 1000, "ms", detail="os.scandir + stat"),
        Row("floor: read", floor["read"] * 1000, "ms"),
        Row("floor: read + PyYAML C parse (mean of runs)", mean_parse, "s"),
        Row("floor: read + PyYAML C parse, CPU", sum(parse_cpu) / len(parse_cpu), "s"),
        Row("floor per 1,000 files: walk + stat", floor["walk"] * 1000 * per_1000, "ms"),
        Row("floor per 1,000 files: read", floor["read"] * 1000 * per_1000, "ms"),
        Row("floor per 1,000 files: C parse", mean_parse * 1000 * per_1000, "ms"),
        *results,
    ]
    report(rows, args.json)
    return 0


def _drop_pg(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
