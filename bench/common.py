"""Shared helpers for the benchmarks: paths, cache keys, statistics, results, and a small
driver that walks stories through the real services with the evidence each edge needs.

Nothing here asserts a target: the scripts measure, print whether each target is met, and
exit non-zero only when something fails to run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
WORK = BENCH / ".work"  # gitignored: cached workspaces, bytecode cache, profiles
# Bump when the shape of a cached workspace changes (what build_* functions create).
BUILD_VERSION = "3"


def version_key(*parts: object) -> str:
    """Cache key: bench build version, storyflow version and schema revision, plus extras."""
    import storyflow
    from storyflow.adapters.db.migrate import HEAD_REVISION

    extra = "-".join(str(p) for p in parts)
    key = f"b{BUILD_VERSION}-sf{storyflow.__version__}-rev{HEAD_REVISION}"
    return f"{key}-{extra}" if extra else key


def machine() -> dict[str, str]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load": load(),
    }


def load() -> str:
    """The 1/5/15-minute load averages: on a shared machine, the context of every figure."""
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for storyflow subprocesses: no STORYFLOW_* leaking in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORYFLOW_")}
    env["STORYFLOW_ACTOR"] = "bench"
    env.update(extra or {})
    return env


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- statistics and results --------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        return cls(statistics.median(values), min(values), max(values), len(values))


@dataclass
class Row:
    """One line of the results table."""

    measure: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    detail: str = ""

    def cells(self) -> list[str]:
        verdict = {True: "met", False: "MISSED", None: "info"}[self.met]
        return [self.measure, f"{fmt(self.value)} {self.unit}", self.target or "-", verdict]


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown_table(rows: list[Row]) -> str:
    head = ["measure", "median", "target", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def report(rows: list[Row], json_path: str | None) -> None:
    """Print the table and the per-target verdicts; write JSON for run_all when asked."""
    print(markdown_table(rows))
    print()
    for row in rows:
        if row.met is None:
            continue
        verdict = "MET   " if row.met else "MISSED"
        print(f"target {verdict} {row.measure}: {fmt(row.value)} {row.unit} ({row.target})")
    details = [r for r in rows if r.detail]
    if details:
        print()
        for row in details:
            print(f"- {row.measure}: {row.detail}")
    if json_path:
        Path(json_path).write_text(json.dumps([asdict(r) for r in rows], indent=2))


def load_rows(path: Path) -> list[Row]:
    return [Row(**r) for r in json.loads(path.read_text())]


# ---- workspaces ----------------------------------------------------------------------------


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def copy_workspace(source: Path, target: Path) -> Path:
    """A private copy of a cached workspace (files and, on SQLite, the database)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, symlinks=True)
    return target


def open_ctx(root: Path, database_url: str | None = None, actor: str = "bench") -> Any:
    from storyflow.bootstrap import load_config, open_context

    flags = {"database_url": database_url} if database_url else None
    config = load_config(workspace=root, flags=flags, env={})
    return open_context(config, actor=actor)


def init_ws(root: Path, database_url: str | None = None) -> Any:
    from storyflow.bootstrap import init_workspace

    fresh_dir(root)
    env = {"STORYFLOW_DATABASE_URL": database_url} if database_url else {}
    init_workspace(root, env=env)
    return open_ctx(root, database_url)


# ---- evidence (the same shapes the test suite submits) -----------------------------------

ELABORATION = {"verdict": "PASS", "summary": "scoped", "acceptance_criteria": ["it works"]}
NEEDS_REFINEMENT = {**ELABORATION, "verdict": "NEEDS_REFINEMENT"}
PLAN = {"approach": "do it", "steps": ["one"], "test_strategy": "unit"}
PROOF = {
    "summary": "built it",
    "reuse_verification": {"packages_used": ["@repo/shared"]},
    "checks": {"lint": "pass", "typecheck": "pass", "tests": "pass"},
    "coverage": 80,
}
REVIEW_PASS = {"verdict": "PASS", "coverage": 80, "findings": []}
REVIEW_FAIL = {
    "verdict": "FAIL",
    "coverage": 80,
    "findings": [{"severity": "high", "message": "bug"}],
}
VERIFICATION_PASS = {
    "verdict": "PASS",
    "acceptance_criteria": [{"criterion": "it works", "status": "pass", "evidence": "t"}],
    "tests": {"unit": "pass", "integration": "pass"},
}
VERIFICATION_FAIL = {
    "verdict": "FAIL",
    "acceptance_criteria": [{"criterion": "it works", "status": "fail", "evidence": "t"}],
    "tests": {"unit": "pass", "integration": "fail"},
}
QA_GATE_PASS = {"decision": "PASS", "checks": [{"name": "tests", "status": "pass"}], "issues": []}


class Walker:
    """Moves stories by legal, evidenced transitions (what tests/support.py's Driver does),
    and logs tokens per phase so budgets and the Token Budget section have real rows."""

    def __init__(self, ctx: Any, inbox: Path) -> None:
        self.ctx = ctx
        self.inbox = inbox
        inbox.mkdir(parents=True, exist_ok=True)

    def submit(self, story_id: str, kind: str, data: dict[str, Any]) -> None:
        from storyflow.services import artifacts

        path = self.inbox / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        artifacts.submit(self.ctx, story_id, kind, path)

    def tokens(self, story_id: str, phase: str, amount: int = 1000) -> None:
        from storyflow.services.tokens import log_tokens

        log_tokens(
            self.ctx,
            story_id,
            phase,
            input_tokens=amount,
            output_tokens=amount // 4,
            model="claude-sonnet-4",
        )

    def move(self, story_id: str, target: str, reason: str | None = None) -> None:
        from storyflow.services.transitions import move

        move(self.ctx, story_id, target, reason=reason)

    def fill_story(self, story_id: str) -> None:
        """Write the story's Reuse Plan, as the generate phase would (staged layout: YAML)."""
        story = self.ctx.story(story_id)
        path = self.ctx.files.story_file(self.ctx.epic(story.epic), story)
        text = path.read_text(encoding="utf-8")
        path.write_text(
            text.replace("reuse_plan: ''", "reuse_plan: Reuses @repo/shared."), encoding="utf-8"
        )

    # One step per status on the happy path; each provides the evidence of its edge.
    def to_generated(self, sid: str) -> None:
        self.move(sid, "generated")
        self.tokens(sid, "story_generation", 4000)

    def to_in_elaboration(self, sid: str) -> None:
        self.fill_story(sid)
        self.move(sid, "in-elaboration")

    def to_ready_to_work(self, sid: str) -> None:
        self.submit(sid, "elaboration", ELABORATION)
        self.tokens(sid, "elaboration", 12000)
        self.move(sid, "ready-to-work")

    def to_in_progress(self, sid: str) -> None:
        self.submit(sid, "plan", PLAN)
        self.move(sid, "in-progress")

    def to_ready_for_code_review(self, sid: str) -> None:
        self.submit(sid, "proof", PROOF)
        self.tokens(sid, "implementation", 40000)
        self.move(sid, "ready-for-code-review")

    def to_ready_for_qa(self, sid: str) -> None:
        self.submit(sid, "code_review", REVIEW_PASS)
        self.tokens(sid, "code_review", 15000)
        self.move(sid, "ready-for-qa")

    def to_in_qa(self, sid: str) -> None:
        self.move(sid, "in-qa")

    def to_uat(self, sid: str) -> None:
        self.submit(sid, "verification", VERIFICATION_PASS)
        self.tokens(sid, "qa_verification", 10000)
        self.move(sid, "uat")

    def to_completed(self, sid: str) -> None:
        self.submit(sid, "qa_gate", QA_GATE_PASS)
        self.move(sid, "completed")

    def happy_path(self) -> list[tuple[str, Callable[[str], None]]]:
        return [
            ("generated", self.to_generated),
            ("in-elaboration", self.to_in_elaboration),
            ("ready-to-work", self.to_ready_to_work),
            ("in-progress", self.to_in_progress),
            ("ready-for-code-review", self.to_ready_for_code_review),
            ("ready-for-qa", self.to_ready_for_qa),
            ("in-qa", self.to_in_qa),
            ("uat", self.to_uat),
            ("completed", self.to_completed),
        ]

    def walk_to(self, sid: str, status: str) -> None:
        """Walk a pending story to ``status`` (happy-path statuses and a few side exits)."""
        side = {
            "needs-refinement": ("in-elaboration", self._needs_refinement),
            "code-review-failed": ("ready-for-code-review", self._review_failed),
            "needs-work": ("in-qa", self._needs_work),
            "blocked": ("in-progress", lambda s: self.move(s, "blocked", "waiting on infra")),
            "cancelled": ("generated", lambda s: self.move(s, "cancelled", "out of scope")),
        }
        stop, extra = side.get(status, (status, None))
        for name, step in self.happy_path():
            step(sid)
            if name == stop:
                break
        else:
            if stop != "completed":
                raise ValueError(f"cannot walk to {status}")
        if extra is not None:
            extra(sid)

    def _needs_refinement(self, sid: str) -> None:
        self.submit(sid, "elaboration", NEEDS_REFINEMENT)
        self.move(sid, "needs-refinement")

    def _review_failed(self, sid: str) -> None:
        self.submit(sid, "code_review", REVIEW_FAIL)
        self.move(sid, "code-review-failed")

    def _needs_work(self, sid: str) -> None:
        self.submit(sid, "verification", VERIFICATION_FAIL)
        self.move(sid, "needs-work")


def run_quiet(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
