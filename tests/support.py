"""Test support: a workspace on a real database, the CLI in- and out-of-process, artifact
builders, and a driver that walks a story to any status through the real services."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from storyflow.bootstrap import init_workspace, load_config, open_context
from storyflow.domain.statuses import Status
from storyflow.services import artifacts as artifact_service
from storyflow.services import stories as story_service
from storyflow.services import tokens as token_service
from storyflow.services import transitions
from storyflow.services.context import Context

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "artifacts"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"Result(code={self.code}, stdout={self.stdout[:400]!r}, stderr={self.stderr!r})"


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORYFLOW_")}
    env["STORYFLOW_ACTOR"] = "tester"
    env.update(extra or {})
    return env


def storyflow_command() -> list[str]:
    """The installed ``storyflow`` console script beside this Python, else ``-m storyflow``."""
    exe = Path(sys.executable).with_name("storyflow")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "storyflow"]


@dataclass
class Workspace:
    root: Path
    database_url: str | None
    _contexts: list[Context] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, database_url: str | None) -> Workspace:
        root.mkdir(parents=True, exist_ok=True)
        init_workspace(root, env=clean_env(cls._db_env(database_url)))
        return cls(root=root, database_url=database_url)

    @staticmethod
    def _db_env(database_url: str | None) -> dict[str, str]:
        return {"STORYFLOW_DATABASE_URL": database_url} if database_url else {}

    @property
    def env(self) -> dict[str, str]:
        return clean_env(self._db_env(self.database_url))

    def ctx(self, actor: str = "tester") -> Context:
        flags = {"database_url": self.database_url} if self.database_url else None
        config = load_config(workspace=self.root, flags=flags, env={})
        context = open_context(config, actor=actor)
        self._contexts.append(context)
        return context

    def close(self) -> None:
        for context in self._contexts:
            context.store.close()
        self._contexts.clear()

    # ---- the CLI --------------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 60) -> Result:
        """The storyflow executable, as a subprocess in the workspace."""
        done = subprocess.run(
            [*storyflow_command(), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def spawn(
        self, *args: str, extra_env: dict[str, str] | None = None, **popen: Any
    ) -> subprocess.Popen[str]:
        """The storyflow executable started in the workspace, not waited for (output piped
        unless ``popen`` says otherwise; ``extra_env`` added to its environment)."""
        options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        options.update(popen)
        env = {**self.env, **(extra_env or {})}
        return subprocess.Popen(
            [*storyflow_command(), *args], cwd=self.root, env=env, text=True, **options
        )

    def cli(self, *args: str) -> Result:
        """The same command line, in this process (fast; same code path after parsing)."""
        from storyflow.entrypoints.cli.main import main

        prefix = ["--workspace", str(self.root)]
        if self.database_url:
            prefix += ["--database-url", self.database_url]
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([*prefix, *args])
            except SystemExit as done:
                code = int(done.code or 0)
        return Result(code, out.getvalue(), err.getvalue())

    # ---- files ----------------------------------------------------------------------------

    def write(self, relative: str, data: Any) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    def snapshot(self) -> dict[str, bytes]:
        """Every file under the workspace except the database, for unchanged-ness checks."""
        files = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and ".storyflow" not in path.parts:
                files[path.relative_to(self.root).as_posix()] = path.read_bytes()
        return files


# ---- artifacts ------------------------------------------------------------------------------


def elaboration(verdict: str = "PASS", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "verdict": verdict,
        "summary": "scoped",
        "acceptance_criteria": ["it works"],
    }
    if verdict == "CONDITIONAL_PASS":
        data["conditions"] = ["a condition"]
    data.update(extra)
    return data


def plan(**extra: Any) -> dict[str, Any]:
    return {"approach": "do it", "steps": ["one"], "test_strategy": "unit", **extra}


BREAKING_PLAN = {
    "migration_path": "v1 -> v2 via adapter",
    "backward_compatibility": "v1 readers keep working for a release",
    "migration_tests": ["tests/migrations/test_v1_v2.py"],
}


def proof(**extra: Any) -> dict[str, Any]:
    return {
        "summary": "built it",
        "reuse_verification": {"packages_used": ["@repo/shared"]},
        "checks": {"lint": "pass", "typecheck": "pass", "tests": "pass"},
        "coverage": 80,
        **extra,
    }


def code_review(verdict: str = "PASS", coverage: float = 80, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"verdict": verdict, "coverage": coverage, "findings": []}
    if verdict == "FAIL":
        data["findings"] = [{"severity": "high", "message": "bug"}]
    data.update(extra)
    return data


def verification(verdict: str = "PASS", **extra: Any) -> dict[str, Any]:
    status = "pass" if verdict == "PASS" else "fail"
    data = {
        "verdict": verdict,
        "acceptance_criteria": [{"criterion": "it works", "status": status, "evidence": "t"}],
        "tests": {"unit": "pass", "integration": "pass"},
        **extra,
    }
    return data


def qa_gate(decision: str = "PASS", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "decision": decision,
        "checks": [{"name": "tests", "status": "pass"}],
        "issues": [],
    }
    if decision == "FAIL":
        data["checks"] = [{"name": "tests", "status": "fail"}]
    if decision == "CONCERNS":
        data["issues"] = [{"severity": "medium", "description": "docs"}]
    data.update(extra)
    return data


BUILDERS = {
    "elaboration": elaboration,
    "plan": plan,
    "proof": proof,
    "code_review": code_review,
    "verification": verification,
    "qa_gate": qa_gate,
}


class Driver:
    """Walks stories through the real services, providing the evidence each edge needs."""

    def __init__(self, ws: Workspace, ctx: Context) -> None:
        self.ws = ws
        self.ctx = ctx
        self._n = 0

    def submit(self, story_id: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        self._n += 1
        path = self.ws.write(f"inbox/{story_id}-{kind}-{self._n}.yaml", data)
        return artifact_service.submit(self.ctx, story_id, kind, path)

    def fill_story(self, story_id: str) -> None:
        """Write the story's Reuse Plan, as the generate phase would."""
        story = self.ctx.story(story_id)
        epic = self.ctx.epic(story.epic)
        path = self.ctx.files.story_file(epic, story)
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".md":
            marker = "## Reuse Plan\n\n"
            head, _, tail = text.partition(marker)
            rest = tail.split("\n## ", 1)
            text = head + marker + "Reuses @repo/shared.\n\n## " + rest[1]
        else:
            text = text.replace("reuse_plan: ''", "reuse_plan: Reuses @repo/shared.")
        path.write_text(text, encoding="utf-8")

    def tokens(self, story_id: str, *phases: str) -> None:
        for phase in phases or (
            "story_generation",
            "elaboration",
            "implementation",
            "code_review",
            "qa_verification",
        ):
            token_service.log_tokens(self.ctx, story_id, phase, input_tokens=100, output_tokens=50)

    def move(self, story_id: str, status: str, **kwargs: Any) -> transitions.MoveResult:
        return transitions.move(self.ctx, story_id, status, **kwargs)

    def evidence_for(self, story_id: str, target: Status) -> None:
        """Provide what the guard of the edge from the story's status to ``target`` needs."""
        story = self.ctx.story(story_id)
        source = story.status
        if source is Status.BLOCKED and target is story.blocked_from:
            return
        if target is Status.IN_ELABORATION:
            self.fill_story(story_id)
        elif target is Status.READY_TO_WORK:
            self.submit(story_id, "elaboration", elaboration("PASS"))
            epic = self.ctx.epic(story.epic)
            if epic.settings.require_approval:
                transitions.approve(self.ctx, story_id, by="pm")
        elif target is Status.NEEDS_REFINEMENT:
            self.submit(story_id, "elaboration", elaboration("NEEDS_REFINEMENT"))
        elif target is Status.NEEDS_SPLIT:
            self.submit(story_id, "elaboration", elaboration("SPLIT_REQUIRED"))
        elif target is Status.IN_PROGRESS and source in (Status.READY_TO_WORK, Status.BLOCKED):
            self.submit(story_id, "plan", plan(**(BREAKING_PLAN if story.breaking_change else {})))
        elif target is Status.IN_PROGRESS and source is Status.UAT:
            self.submit(story_id, "qa_gate", qa_gate("FAIL"))
        elif target is Status.READY_FOR_CODE_REVIEW:
            self.submit(story_id, "proof", proof())
        elif target is Status.CODE_REVIEW_FAILED:
            self.submit(story_id, "code_review", code_review("FAIL"))
        elif target is Status.READY_FOR_QA:
            if source is Status.IN_PROGRESS:
                self.submit(story_id, "proof", proof())
            self.submit(story_id, "code_review", code_review("PASS"))
        elif target is Status.UAT:
            self.submit(story_id, "verification", verification("PASS"))
        elif target is Status.NEEDS_WORK:
            self.submit(story_id, "verification", verification("FAIL"))
        elif target is Status.COMPLETED:
            self.submit(story_id, "qa_gate", qa_gate("PASS"))
            self.tokens(story_id)

    def step(self, story_id: str, target: Status) -> None:
        self.evidence_for(story_id, target)
        reason = "test" if target in (Status.BLOCKED, Status.CANCELLED) else None
        self.move(story_id, target.value, reason=reason)

    def drive_to(self, story_id: str, status: Status) -> None:
        """Walk a new (pending) story to ``status`` by legal, evidenced moves."""
        for target in PATHS[status]:
            if target is Status.SUPERSEDED:
                story_service.split_story(self.ctx, story_id, ["part one", "part two"])
            else:
                self.step(story_id, target)
        assert self.ctx.story(story_id).status is status


_S = Status
_TO_RTW = [_S.GENERATED, _S.IN_ELABORATION, _S.READY_TO_WORK]
_TO_RFCR = [*_TO_RTW, _S.IN_PROGRESS, _S.READY_FOR_CODE_REVIEW]
_TO_INQA = [*_TO_RFCR, _S.READY_FOR_QA, _S.IN_QA]
PATHS: dict[Status, list[Status]] = {
    _S.PENDING: [],
    _S.GENERATED: [_S.GENERATED],
    _S.IN_ELABORATION: [_S.GENERATED, _S.IN_ELABORATION],
    _S.NEEDS_REFINEMENT: [_S.GENERATED, _S.IN_ELABORATION, _S.NEEDS_REFINEMENT],
    _S.NEEDS_SPLIT: [_S.GENERATED, _S.IN_ELABORATION, _S.NEEDS_SPLIT],
    _S.READY_TO_WORK: _TO_RTW,
    _S.IN_PROGRESS: [*_TO_RTW, _S.IN_PROGRESS],
    _S.READY_FOR_CODE_REVIEW: _TO_RFCR,
    _S.CODE_REVIEW_FAILED: [*_TO_RFCR, _S.CODE_REVIEW_FAILED],
    _S.READY_FOR_QA: [*_TO_RFCR, _S.READY_FOR_QA],
    _S.IN_QA: _TO_INQA,
    _S.NEEDS_WORK: [*_TO_INQA, _S.NEEDS_WORK],
    _S.UAT: [*_TO_INQA, _S.UAT],
    _S.COMPLETED: [*_TO_INQA, _S.UAT, _S.COMPLETED],
    _S.BLOCKED: [*_TO_RTW, _S.BLOCKED],
    _S.CANCELLED: [_S.CANCELLED],
    _S.SUPERSEDED: [_S.GENERATED, _S.IN_ELABORATION, _S.NEEDS_SPLIT, _S.SUPERSEDED],
}
assert set(PATHS) == set(Status)


def new_story(ctx: Context, prefix: str = "FLOW", **kwargs: Any) -> str:
    return story_service.create_story(
        ctx, prefix, title=kwargs.pop("title", "A story"), **kwargs
    ).id


def assert_story_list_agrees_with_show(ws: Workspace) -> list[dict[str, Any]]:
    """`story list --json` (objects the database's triggers keep) against `story show
    --json` (built from the story row in Python), story by story, through the CLI."""
    listed = ws.cli("story", "list", "--json")
    assert listed.code == 0, listed
    stories: list[dict[str, Any]] = listed.json
    for listed_story in stories:
        shown = ws.cli("story", "show", listed_story["id"], "--json")
        assert shown.code == 0, shown
        assert listed_story == {key: shown.json[key] for key in listed_story}
        assert set(shown.json) > set(listed_story)  # show adds to the object, changes nothing
    return stories
