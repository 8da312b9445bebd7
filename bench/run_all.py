"""Run every benchmark and print one Markdown table (also saved to bench/.work/last-run.md).

    .venv/bin/python bench/run_all.py [--profile] [--no-postgres] [--pg-url URL]

Each benchmark runs as its own process (bench/cli_latency.py, bench/transitions.py) and
reports its rows as JSON; this script adds the date, the machine and the git state, and
says for every target whether it is met. It exits non-zero only when a benchmark fails to
run, never because a target is missed. With --profile it also runs bench/profile_hotpaths.py
and appends its findings.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH, REPO, WORK, Row, load, load_rows, log, machine, markdown_table


def git_state() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src")
    return head + (" + uncommitted changes in src/" if dirty else "")


def run_script(script: str, args: list[str], out: Path) -> tuple[list[Row], float]:
    start = time.perf_counter()
    command = [sys.executable, str(BENCH / script), *args, "--json", str(out)]
    log(f"$ {' '.join(command[1:])}")
    done = subprocess.run(command, cwd=REPO, check=False, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed (exit {done.returncode})")
    return load_rows(out), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="Also run the profiler.")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only.")
    parser.add_argument("--pg-url", help="PostgreSQL server for the benchmark databases.")
    parser.add_argument("--reps", type=int, default=21, help="CLI runs per command.")
    parser.add_argument("--runs", type=int, default=5, help="Transition runs per variant.")
    args = parser.parse_args()

    info = machine()
    started = time.perf_counter()
    rows: list[Row] = []
    timings = []
    with tempfile.TemporaryDirectory() as tmp:
        cli, seconds = run_script(
            "cli_latency.py", ["--reps", str(args.reps)], Path(tmp) / "cli.json"
        )
        rows += cli
        timings.append(f"cli_latency {seconds:.0f} s")
        tx_args = ["--runs", str(args.runs)]
        tx_args += ["--backend", "sqlite"] if args.no_postgres else []
        tx_args += ["--pg-url", args.pg_url] if args.pg_url else []
        tx, seconds = run_script("transitions.py", tx_args, Path(tmp) / "tx.json")
        rows += tx
        timings.append(f"transitions {seconds:.0f} s")

    command = ".venv/bin/python bench/run_all.py" + "".join(f" {a}" for a in sys.argv[1:])
    lines = [
        f"- date: {info['date']}",
        f"- machine: nproc {info['nproc']}, Python {info['python']}, {info['platform']}",
        f"- load average (1/5/15 min) at start: {info['load']}; at end: {load()}",
        f"- code: {git_state()}",
        f"- command: `{command}` (took {time.perf_counter() - started:.0f} s: "
        + ", ".join(timings)
        + ")",
        "",
        markdown_table(rows),
        "",
    ]
    for row in rows:
        if row.met is not None:
            lines.append(
                f"- target {'met' if row.met else 'MISSED'}: {row.measure} = "
                f"{row.value:,.2f} {row.unit} ({row.target})"
            )
        elif row.detail.startswith("SKIPPED"):
            lines.append(f"- not measured: {row.measure}: {row.detail}")
    lines += ["", "Spread (min / max over the runs):", ""]
    lines += [f"- {r.measure}: {r.detail}" for r in rows if r.detail]
    text = "\n".join(lines) + "\n"
    print(text)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "last-run.md").write_text(text)

    if args.profile:
        profile_args = ["--no-postgres"] if args.no_postgres else []
        log("$ bench/profile_hotpaths.py " + " ".join(profile_args))
        done = subprocess.run(
            [sys.executable, str(BENCH / "profile_hotpaths.py"), *profile_args],
            cwd=REPO,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"profile_hotpaths.py failed (exit {done.returncode})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
