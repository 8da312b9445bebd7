"""Where the time goes: CLI startup (imports, first call, work) and the transition loop.

Sections (printed as Markdown; raw profiles saved under bench/.work/profiles/):
1. CLI phases per command: interpreter start, importing the CLI, the first call (lazy
   imports + work), a second call in the same process (work only), interpreter shutdown;
   subprocesses on the 2,000-story workspace with warm bytecode; medians of --reps runs.
   Then an A/B of keeping the garbage collector out of startup and shutdown.
2. Imports of ``story show`` by ``-X importtime``: self time per module (median over runs),
   grouped by package, with the storyflow module that pulled each one in.
3. Startup costs by kind (cProfile of the first call): dataclass creation, Enum creation,
   regex compilation; and what compiling storyflow's modules costs without bytecode cache.
4. The work of each command (cProfile of a second in-process call): top functions.
5. The transition loop (cProfile): in-qa -> uat on SQLite, without and with file
   projection, and on PostgreSQL without file projection when a server is available.

    .venv/bin/python bench/profile_hotpaths.py [--reps 5] [--no-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import enum
import io
import json
import os
import pstats
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import transitions
import workspace
from cli_latency import commands, environment, storyflow_argv
from common import WORK, copy_workspace, fresh_dir, log, open_ctx, run_quiet

PROFILES = WORK / "profiles"

# Run inside the subprocess: phases of one CLI command. Wall-clock stamps (time.time) line
# up with the parent's, so spawn -> first line and last line -> exit are measurable too.
PHASES = """
import time
w0 = time.time()
import contextlib, json, os, sys
from storyflow.entrypoints.cli.main import main
w1 = time.time()
def run():
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        try:
            main(sys.argv[1:])
        except SystemExit as done:
            assert not done.code, done.code
run()
w2 = time.time()
run()
w3 = time.time()
print(json.dumps([w0, w1, w2, w3]), file=sys.stderr)
"""


def cli_args(argv: list[str]) -> list[str]:
    """The arguments after the storyflow executable."""
    return argv[len(storyflow_argv()) :]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def median_of(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(s[key] for s in samples)


# ---- 1. CLI phases --------------------------------------------------------------------------


def cli_phases(built: workspace.BuiltWorkspace, reps: int) -> str:
    """One run of each command, split into: interpreter start (spawn to first line),
    importing the CLI entry point, the first call (lazy imports + work), the work alone (a
    second call in the same process), and interpreter shutdown (last line to exit)."""
    env = environment()
    lines = [
        "| command | one run | interpreter start | import cli.main | lazy imports | work "
        "| shutdown |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, argv in commands(built).items():
        if name == "floor":
            continue
        samples: dict[str, list[float]] = defaultdict(list)
        for _ in range(reps):
            spawn = time.time()
            done = run_quiet(
                [sys.executable, "-c", PHASES, *cli_args(argv)], cwd=built.root, env=env
            )
            end = time.time()
            if done.returncode != 0:
                raise RuntimeError(f"{name}: {done.stderr}")
            w0, w1, w2, w3 = json.loads(done.stderr.strip().splitlines()[-1])
            work = w3 - w2
            samples["start"].append(w0 - spawn)
            samples["main"].append(w1 - w0)
            samples["lazy"].append(w2 - w1 - work)
            samples["work"].append(work)
            samples["exit"].append(end - w3)
            samples["one"].append(end - spawn - work)
        med = {k: statistics.median(v) for k, v in samples.items()}
        lines.append(
            f"| `{name}` | {ms(med['one'])} | {ms(med['start'])} | {ms(med['main'])} "
            f"| {ms(med['lazy'])} | {ms(med['work'])} | {ms(med['exit'])} |"
        )
    lines += [
        "",
        "(medians per column, so columns need not add up exactly; `work` is a second call in "
        "the same process: config, database open and schema check, queries, rendering)",
    ]
    return "\n".join(lines)


# ---- 1b. experiments: garbage collection at startup and shutdown ------------------------

GC_VARIANTS = {
    "as is": "",
    "gc.freeze() at exit": "import atexit, gc\natexit.register(gc.freeze)\n",
    "gc.disable() at start + gc.freeze() at exit": (
        "import atexit, gc\ngc.disable()\natexit.register(gc.freeze)\n"
    ),
}


def gc_experiment(built: workspace.BuiltWorkspace, reps: int) -> str:
    """Wall time of the CLI with the collector left alone, or kept out of the shutdown."""
    env = environment()
    run_main = "import sys\nfrom storyflow.entrypoints.cli.main import main\nmain(sys.argv[1:])\n"
    head = " | ".join(GC_VARIANTS)
    lines = [f"| command | {head} |", "|---|" + "---|" * len(GC_VARIANTS)]
    for name in ("story show", "story list", "next"):
        args = cli_args(commands(built)[name])
        samples: dict[str, list[float]] = defaultdict(list)
        for _ in range(reps):
            for label, prelude in GC_VARIANTS.items():
                begin = time.perf_counter()
                done = run_quiet(
                    [sys.executable, "-c", prelude + run_main, *args], cwd=built.root, env=env
                )
                samples[label].append(time.perf_counter() - begin)
                if done.returncode != 0:
                    raise RuntimeError(f"{name} ({label}): {done.stderr}")
        cells = " | ".join(ms(statistics.median(samples[label])) for label in GC_VARIANTS)
        lines.append(f"| `{name}` | {cells} |")
    return "\n".join(lines)


# ---- 2. imports -----------------------------------------------------------------------------

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


def parse_importtime(text: str) -> list[tuple[str, int, int, str | None]]:
    """(module, self us, cumulative us, parent) per line; importtime prints children first."""
    entries = []
    for line in text.splitlines():
        match = _IMPORT_LINE.match(line.rstrip())
        if match:
            depth = len(match.group(3)) // 2
            entries.append((match.group(4), int(match.group(1)), int(match.group(2)), depth))
    out: list[tuple[str, int, int, str | None]] = []
    stack: dict[int, str] = {}
    for name, own, cumulative, depth in reversed(entries):
        stack[depth] = name
        for deeper in [d for d in stack if d > depth]:
            del stack[deeper]
        out.append((name, own, cumulative, stack.get(depth - 1)))
    return list(reversed(out))


def importer(name: str, parents: dict[str, str | None]) -> str:
    """The nearest storyflow module above ``name`` in the import tree."""
    seen = set()
    current = parents.get(name)
    while current and current not in seen:
        if current.startswith("storyflow"):
            return current
        seen.add(current)
        current = parents.get(current)
    return "-"


def import_profile(built: workspace.BuiltWorkspace, reps: int) -> str:
    env = environment()
    script = storyflow_argv()
    if len(script) > 1:  # no console script: python -m storyflow
        script = ["-m", "storyflow"]
    argv = [*script, *cli_args(commands(built)["story show"])]
    own: dict[str, list[int]] = defaultdict(list)
    edges: dict[tuple[str, str], list[int]] = defaultdict(list)  # (storyflow module, import)
    totals = []
    parents: dict[str, str | None] = {}
    for _ in range(reps):
        done = run_quiet([sys.executable, "-X", "importtime", *argv], cwd=built.root, env=env)
        entries = parse_importtime(done.stderr)
        totals.append(sum(c for _, _, c, p in entries if p is None))
        for name, self_us, cumulative, parent in entries:
            own[name].append(self_us)
            parents[name] = parent
            if parent and parent.startswith("storyflow") and not name.startswith("storyflow"):
                edges[(parent, name)].append(cumulative)
    (PROFILES / "importtime-story-show.txt").write_text(done.stderr)
    median_self = {name: statistics.median(v) for name, v in own.items()}
    groups: dict[str, float] = defaultdict(float)
    for name, value in median_self.items():
        root = name.split(".")[0]
        if root == "storyflow":
            group = "storyflow (own modules)"
        elif root in ("click", "yaml", "psycopg", "pydantic", "sqlalchemy", "rich"):
            group = root
        else:
            group = "stdlib: " + root
        groups[group] += value
    total = statistics.median(totals)
    lines = [
        f"Total import time under -X importtime (inflates): median {total / 1000:.1f} ms "
        f"over {reps} runs; self time grouped by package (top 14):",
        "",
        "| package | self ms | share |",
        "|---|---|---|",
    ]
    for group, value in sorted(groups.items(), key=lambda kv: -kv[1])[:14]:
        lines.append(f"| {group} | {value / 1000:.1f} | {value / total * 100:.0f} % |")
    lines += [
        "",
        "Heaviest modules by self time, and the storyflow module that imported them:",
        "",
        "| module | self ms | imported via |",
        "|---|---|---|",
    ]
    for name, value in sorted(median_self.items(), key=lambda kv: -kv[1])[:22]:
        lines.append(f"| {name} | {value / 1000:.1f} | {importer(name, parents)} |")
    lines += [
        "",
        "Other packages imported directly by storyflow modules, cumulative (each including "
        "whatever it was first to import), top 14:",
        "",
        "| import | by | ms |",
        "|---|---|---|",
    ]
    imports = {edge: statistics.median(v) for edge, v in edges.items()}
    for (by, name), value in sorted(imports.items(), key=lambda kv: -kv[1])[:14]:
        lines.append(f"| {name} | {by} | {value / 1000:.1f} |")
    return "\n".join(lines)


# ---- 3. startup costs by kind ---------------------------------------------------------------

STARTUP = """
import cProfile, contextlib, os, pstats, sys, time
profile = cProfile.Profile()
profile.enable()
from storyflow.entrypoints.cli.main import main
with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
    try:
        main(sys.argv[2:])
    except SystemExit:
        pass
profile.disable()
profile.dump_stats(sys.argv[1])
"""


def _cumulative(stats: pstats.Stats, match: Callable[[tuple[str, int, str]], bool]) -> float:
    """Cumulative time of the outermost calls of the matching functions."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = 0.0
    for key, (_, _, _, cumulative, callers) in raw.items():
        if match(key) and not any(match(c) for c in callers):
            total += cumulative
    return total


def _is(function: Any) -> Callable[[tuple[str, int, str]], bool]:
    """Matches the cProfile key of ``function`` (file, first line, name)."""
    code = function.__code__
    key = (code.co_filename, code.co_firstlineno, code.co_name)
    return lambda k: k == key


def startup_costs(built: workspace.BuiltWorkspace) -> str:
    env = environment()
    out = PROFILES / "startup-story-show.prof"
    args = cli_args(commands(built)["story show"])
    done = run_quiet([sys.executable, "-c", STARTUP, str(out), *args], cwd=built.root, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    stats = pstats.Stats(str(out))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max(v[3] for v in raw.values())
    kinds = {
        "dataclass creation (dataclasses._process_class)": _is(dataclasses._process_class),  # type: ignore[attr-defined]
        "Enum class creation (EnumType.__new__)": _is(enum.EnumType.__new__),
        "regex compilation (re._compile)": _is(re._compile),  # type: ignore[attr-defined]
        "reading bytecode (marshal.loads)": lambda k: k[2] == "<built-in method marshal.loads>",
    }
    lines = [
        f"Under cProfile, `story show` (first call, imports included) takes {ms(total)} ms; "
        "of that:",
        "",
    ]
    for label, match in kinds.items():
        value = _cumulative(stats, match)
        lines.append(f"- {label}: {ms(value)} ms ({value / total * 100:.0f} %)")
    is_dataclass = _is(dataclasses._process_class)  # type: ignore[attr-defined]
    classes = sum(v[1] for k, v in raw.items() if is_dataclass(k))
    lines.append(f"- dataclasses created at startup: {classes}")
    lines.append("")
    lines.append(compile_cost(built))
    return "\n".join(lines)


def compile_cost(built: workspace.BuiltWorkspace) -> str:
    """Compile every storyflow module that ``story show`` imports, as a run without a
    bytecode cache does (PYTHONDONTWRITEBYTECODE=1 and no __pycache__)."""
    code = (
        "import sys, json, contextlib, os\n"
        "from storyflow.entrypoints.cli.main import main\n"
        "with open(os.devnull, 'w') as s, contextlib.redirect_stdout(s):\n"
        "    try:\n        main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()\n"
        "    if n.startswith('storyflow') and getattr(m, '__file__', None))), file=sys.stderr)\n"
    )
    args = cli_args(commands(built)["story show"])
    done = run_quiet([sys.executable, "-c", code, *args], cwd=built.root, env=environment())
    files = json.loads(done.stderr.strip().splitlines()[-1])
    timings = []
    for _ in range(3):
        begin = time.perf_counter()
        for path in files:
            compile(Path(path).read_text(encoding="utf-8"), path, "exec")
        timings.append(time.perf_counter() - begin)
    return (
        f"Without a bytecode cache (this environment sets PYTHONDONTWRITEBYTECODE=1), every "
        f"`story show` also compiles its {len(files)} storyflow modules from source: "
        f"{ms(statistics.median(timings))} ms."
    )


# ---- 4. the work of each command ----------------------------------------------------------


def command_work(built: workspace.BuiltWorkspace) -> str:
    from storyflow.entrypoints.cli.main import main

    def run(args: list[str]) -> None:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            try:
                main(["--workspace", str(built.root), *args])
            except SystemExit as done:
                if done.code:
                    raise RuntimeError(f"{args}: exit {done.code}") from None

    for key in [k for k in os.environ if k.startswith("STORYFLOW_")]:
        del os.environ[key]
    sections = []
    for name, argv in commands(built).items():
        if name == "floor":
            continue
        args = cli_args(argv)
        run(args)  # imports
        begin = time.perf_counter()
        run(args)
        plain = time.perf_counter() - begin
        profile = cProfile.Profile()
        profile.enable()
        run(args)
        profile.disable()
        stats = pstats.Stats(profile)
        total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
        parse = _cumulative(stats, lambda k: k[2] == "parse_ts")
        encode = _cumulative(
            stats, lambda k: k[2] in ("encode", "iterencode") and k[0].endswith("encoder.py")
        )
        sql = sum(
            v[2]
            for k, v in stats.stats.items()  # type: ignore[attr-defined]
            if "sqlite3" in k[2]
        )
        sections.append(
            f"- `{name}`: {ms(plain)} ms in-process (no profiler). Under cProfile "
            f"({ms(total)} ms): timestamp parsing (store.parse_ts -> strptime) "
            f"{parse / total * 100:.0f} %, JSON encoding {encode / total * 100:.0f} %, "
            f"sqlite3 calls {sql / total * 100:.0f} %. Top functions by own time: "
            + top_functions(stats, 5)
        )
        stats.dump_stats(str(PROFILES / f"work-{name.replace(' ', '-')}.prof"))
    return "\n".join(sections)


def top_functions(stats: pstats.Stats, count: int) -> str:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max(v[3] for v in raw.values())
    rows = sorted(raw.items(), key=lambda kv: -kv[1][2])[:count]
    return "; ".join(f"{_label(k)} {v[2] / total * 100:.0f} % ({v[1]} calls)" for k, v in rows)


def _label(key: tuple[str, int, str]) -> str:
    path, _, func = key
    if path == "~":
        return func.replace("<built-in method ", "").replace("<method ", "").rstrip(">")
    parts = Path(path).parts
    where = "/".join(parts[parts.index("storyflow") + 1 :]) if "storyflow" in parts else parts[-1]
    return f"{where}:{func}"


# ---- 5. the transition loop ---------------------------------------------------------------

CATEGORIES: dict[str, Callable[[tuple[str, int, str]], bool]] = {
    "SQL (sqlite3 / psycopg, incl. waiting for the server)": lambda k: (
        (k[0] == "~" and "sqlite3" in k[2]) or "/psycopg/" in k[0]
    ),
    "timestamp parsing (parse_ts/strptime)": lambda k: k[2] == "parse_ts",
    "YAML rendering (yamlio.dump_yaml)": lambda k: k[2] == "dump_yaml",
    "fsync": lambda k: k[2] == "<built-in method posix.fsync>",
    "temp file creation (tempfile.mkstemp)": lambda k: k[2] == "mkstemp",
    "story file pre-check (projection.check_story_file)": lambda k: k[2] == "check_story_file",
    "path resolution (StoryFiles.rel)": lambda k: k[2] == "rel" and "story_files" in k[0],
    "epic load (Store.get_epic)": lambda k: k[2] == "get_epic",
}


def loop_profile(label: str, ctx: Any, ids: list[str]) -> str:
    profile = cProfile.Profile()
    profile.enable()
    rate = transitions.move_all(ctx, ids, "uat")
    profile.disable()
    stats = pstats.Stats(profile)
    stats.dump_stats(str(PROFILES / f"transitions-{label.replace(' ', '-')}.prof"))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max(v[3] for v in raw.values())
    statements = sum(
        v[1] for k, v in raw.items() if k[2] in ("_run", "_cursor") and "connection" in k[0]
    )
    parts = []
    for name, match in CATEGORIES.items():
        value = (
            sum(v[2] for k, v in raw.items() if match(k))
            if name.startswith(("SQL", "fsync"))
            else _cumulative(stats, match)
        )
        if value:
            parts.append(f"{name} {value / total * 100:.0f} %")
    per_move = total / len(ids) * 1000
    return (
        f"- {label}: {rate:,.0f} moves/s under cProfile ({per_move:.2f} ms/move), "
        f"{statements / len(ids):.0f} SQL statements per move (plus BEGIN/COMMIT). "
        "Share of the loop (cumulative, so categories can nest): "
        + "; ".join(parts)
        + ". Top own time: "
        + top_functions(stats, 6)
    )


def transition_profiles(stories: int, postgres: bool) -> str:
    lines = []
    base = transitions.sqlite_base(stories)
    ids = transitions.story_ids(stories)
    for variant in ("no file write", "with files"):
        root = copy_workspace(base, WORK / "profiles" / "ws")
        ctx = open_ctx(root)
        try:
            run_ctx = transitions.without_file_writes(ctx) if variant == "no file write" else ctx
            lines.append(loop_profile(f"SQLite {variant}", run_ctx, ids))
        finally:
            ctx.store.close()
    fresh_dir(WORK / "profiles" / "ws")
    if postgres:
        server = transitions.server_url(None)
        problem = transitions.pg_available(server)
        if problem:
            lines.append(f"- PostgreSQL: skipped ({problem})")
        else:
            lines.append(postgres_profile(server, min(stories, 200)))
    return "\n".join(lines)


def postgres_profile(server: str, stories: int) -> str:
    home = WORK / "profiles" / "pg"
    transitions.drop(server, transitions.PG_BASE)
    try:
        with transitions.admin(server) as conn:
            conn.execute(f'CREATE DATABASE "{transitions.PG_BASE}"')
        url = transitions.db_url(server, transitions.PG_BASE)
        ids = transitions.prepare(home, stories, url)
        ctx = open_ctx(home, url)
        try:
            return loop_profile(
                "PostgreSQL no file write", transitions.without_file_writes(ctx), ids
            )
        finally:
            ctx.store.close()
    finally:
        transitions.drop(server, transitions.PG_BASE)
        fresh_dir(home)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="Subprocess runs per figure.")
    parser.add_argument("--stories", type=int, default=600, help="Moves to profile.")
    parser.add_argument("--no-postgres", action="store_true", help="Skip the PostgreSQL loop.")
    args = parser.parse_args()
    PROFILES.mkdir(parents=True, exist_ok=True)
    built = workspace.ensure()
    out = io.StringIO()
    steps: list[tuple[str, Callable[[], str]]] = [
        ("CLI phases (ms, medians)", lambda: cli_phases(built, args.reps)),
        (
            "CLI garbage collection experiment (wall ms, medians, interleaved)",
            lambda: gc_experiment(built, args.reps + 2),
        ),
        ("CLI imports (`story show`)", lambda: import_profile(built, args.reps)),
        ("CLI startup costs by kind", lambda: startup_costs(built)),
        ("CLI command work (in-process, imports done)", lambda: command_work(built)),
        (
            "Transition loop (cProfile, in-qa -> uat)",
            lambda: transition_profiles(args.stories, not args.no_postgres),
        ),
    ]
    for title, step in steps:
        log(f"profiling: {title}")
        print(f"### {title}\n\n{step()}\n", file=out)
    print(out.getvalue())
    (PROFILES / "summary.md").write_text(out.getvalue())
    log(f"raw profiles: {PROFILES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
