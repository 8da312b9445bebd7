"""Acceptance helpers: assertions on the storyflow executable's results, a driver that walks
stories through the CLI (in-process, for setup), and readers for the story files."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from storyflow.domain.statuses import Status
from tests.support import BREAKING_PLAN, PATHS, Result, Workspace
from tests.support import code_review as review_data
from tests.support import elaboration as elaboration_data
from tests.support import plan as plan_data
from tests.support import proof as proof_data
from tests.support import qa_gate as gate_data
from tests.support import verification as verification_data

ALL_PHASES = ("story_generation", "elaboration", "implementation", "code_review", "qa_verification")
ERROR_KEYS = {"code", "message", "details", "hint"}
MOVE_RE = re.compile(r"^status: (?P<source>[a-z-]+) -> (?P<target>[a-z-]+)")


# ---- results --------------------------------------------------------------------------------


def ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


def error_body(result: Result, exit_status: int, code: str) -> dict[str, Any]:
    """The ``--json`` error contract: exactly {"error": {code, message, details, hint}}."""
    assert result.code == exit_status, result
    body = result.json
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], dict), error
    assert isinstance(error["hint"], str) and error["hint"], error
    return error


def human_error(result: Result, exit_status: int, code: str) -> None:
    assert result.code == exit_status, result
    assert f"error[{code}]" in result.stderr, result
    assert result.stdout == "", result


def failed_guards(error: dict[str, Any]) -> list[str]:
    return [f["guard"] for f in error["details"].get("failures", [])]


# ---- state ----------------------------------------------------------------------------------


def show(ws: Workspace, story_id: str) -> dict[str, Any]:
    data: dict[str, Any] = ok(ws.cli("story", "show", story_id, "--json")).json
    return data


def history(ws: Workspace, story_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = ok(ws.cli("story", "history", story_id, "--json")).json
    return rows


def moves(ws: Workspace, story_id: str) -> list[tuple[str, str]]:
    """(from, to) of every status change after creation, in order."""
    rows = history(ws, story_id)
    assert rows[0]["from_status"] is None and rows[0]["to_status"] == "pending", rows[0]
    return [(r["from_status"], r["to_status"]) for r in rows[1:]]


def status(ws: Workspace, story_id: str) -> str:
    value: str = show(ws, story_id)["status"]
    return value


def state(ws: Workspace, story_ids: tuple[str, ...]) -> dict[str, Any]:
    """Everything a refused command must leave alone: the stories as the engine shows them,
    their history, and every file of the workspace."""
    return {
        "stories": {sid: show(ws, sid) for sid in story_ids},
        "history": {sid: history(ws, sid) for sid in story_ids},
        "files": ws.snapshot(),
    }


def refused(
    ws: Workspace,
    story_id: str | tuple[str, ...],
    *args: str,
    exit_status: int,
    code: str,
    guard: str | None = None,
    human: bool = True,
) -> dict[str, Any]:
    """Run ``storyflow ARGS`` (human, unless ``human`` is false, then --json) as a subprocess;
    each must be refused with ``exit_status`` / ``code`` and leave the stories, their history
    and the files unchanged. Returns the JSON error."""
    ids = (story_id,) if isinstance(story_id, str) else story_id
    before = state(ws, ids)
    if human:
        human_error(ws.run(*args), exit_status, code)
    error = error_body(ws.run(*args, "--json"), exit_status, code)
    if guard is not None:
        assert guard in failed_guards(error), error
    assert state(ws, ids) == before
    return error


# ---- files ----------------------------------------------------------------------------------


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    assert text.startswith("---\n"), text[:80]
    front, _, body = text[4:].partition("\n---\n")
    data = yaml.safe_load(front)
    assert isinstance(data, dict)
    return data, body


def md_sections(body: str) -> dict[str, str]:
    """``## Title`` -> text, ignoring headings inside fenced code."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    fence = False
    for line in body.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif not fence and line.startswith("# "):
            current = None
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v).strip() for k, v in sections.items()}


def md_table(text: str) -> list[dict[str, str]]:
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    header = [c.strip().split(" ")[0].lower() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if all(set(c) <= set("-: ") for c in cells):
            continue
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def md_yaml_block(text: str) -> Any:
    match = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert match, text
    return yaml.safe_load(match.group(1))


def read_story(path: Path) -> dict[str, Any]:
    """The story file as {meta, reuse_plan, token_budget, agent_log}, for either format."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        meta, body = split_front_matter(text)
        sections = md_sections(body)
        return {
            "meta": meta,
            "reuse_plan": sections.get("Reuse Plan"),
            "token_budget": md_yaml_block(sections["Token Budget"])["token_budget"],
            "agent_log": md_table(sections["Agent Log"]),
            "sections": list(sections),
        }
    data = yaml.safe_load(text)
    engine = {"reuse_plan", "token_budget", "agent_log"}
    return {
        "meta": {k: v for k, v in data.items() if k not in engine},
        "reuse_plan": data.get("reuse_plan"),
        "token_budget": data["token_budget"],
        "agent_log": data["agent_log"],
        "sections": [],
    }


def logged_moves(agent_log: list[dict[str, str]]) -> list[tuple[str, str]]:
    found = []
    for row in agent_log:
        match = MOVE_RE.match(row["action"])
        if match:
            found.append((match["source"], match["target"]))
    return found


REUSE_TEXT = "Reuses @repo/shared (packages/shared/src/index.ts)."


def fill_reuse_plan(path: Path, text: str = REUSE_TEXT) -> None:
    """Write the story's Reuse Plan by hand, as the generate phase (or a person) would."""
    original = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        updated = re.sub(
            r"(## Reuse Plan\n\n)<!--.*?-->", lambda m: m.group(1) + text, original, flags=re.S
        )
    else:
        updated = original.replace("reuse_plan: ''", f"reuse_plan: '{text}'")
    assert updated != original, "no empty Reuse Plan to fill"
    path.write_text(updated, encoding="utf-8")


def markdown_artifact(front: dict[str, Any], title: str, sections: dict[str, str]) -> str:
    """A flat-layout artifact: structured fields in front matter, prose in ## sections."""
    body = "".join(f"## {name}\n\n{text}\n\n" for name, text in sections.items())
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + f"---\n\n# {title}\n\n" + body


def minute_stamps(start: datetime, end: datetime, tz: str) -> set[str]:
    """Every YYYYMMDD-HHMM stamp in ``tz`` from a minute before ``start`` to a minute after
    ``end``."""
    zone = ZoneInfo(tz)
    at = (start - timedelta(minutes=1)).replace(second=0, microsecond=0)
    stamps = set()
    while at <= end + timedelta(minutes=1):
        stamps.add(at.astimezone(zone).strftime("%Y%m%d-%H%M"))
        at += timedelta(minutes=1)
    return stamps


def utc_now() -> datetime:
    return datetime.now(UTC)


# ---- a driver through the CLI (in-process) ---------------------------------------------------


class Flow:
    """Walks stories through ``storyflow`` in-process, providing each edge's evidence. For
    setup only: the commands a test asserts on go through ``Workspace.run``."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._n = 0

    def cli(self, *args: str) -> Result:
        return ok(self.ws.cli(*args))

    def epic(self, prefix: str = "FLOW", *options: str) -> None:
        self.cli("epic", "new", prefix, "--title", f"{prefix} epic", *options)

    def story(self, prefix: str = "FLOW", *options: str) -> str:
        created = self.cli("story", "new", prefix, "--title", "A story", *options, "--json")
        story_id: str = created.json["id"]
        return story_id

    def path(self, story_id: str) -> Path:
        return self.ws.root / str(show(self.ws, story_id)["path"])

    def draft(self, story_id: str, kind: str, data: dict[str, Any]) -> Path:
        self._n += 1
        return self.ws.write(f"inbox/{kind}-{self._n}.yaml", data)

    def submit(self, story_id: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        path = self.draft(story_id, kind, data)
        result: dict[str, Any] = self.cli(
            "artifact", "submit", story_id, kind, str(path), "--json"
        ).json
        return result

    def move(self, story_id: str, target: str, *options: str) -> None:
        self.cli("story", "move", story_id, target, *options)

    def tokens(self, story_id: str, *phases: str, input_tokens: int = 100) -> None:
        for phase in phases or ALL_PHASES:
            self.cli(
                "token", "log", story_id, phase, "--input", str(input_tokens), "--output", "50"
            )

    def evidence_for(self, story_id: str, target: Status) -> None:
        story = show(self.ws, story_id)
        source = Status(story["status"])
        if target is Status.IN_ELABORATION:
            fill_reuse_plan(self.path(story_id))
        elif target is Status.READY_TO_WORK:
            self.submit(story_id, "elaboration", elaboration_data("PASS"))
            epic = ok(self.ws.cli("epic", "show", story["epic"], "--json")).json
            if epic["settings"]["require_approval"]:
                self.cli("approve", story_id, "--by", "pm")
        elif target is Status.NEEDS_REFINEMENT:
            self.submit(story_id, "elaboration", elaboration_data("NEEDS_REFINEMENT"))
        elif target is Status.NEEDS_SPLIT:
            self.submit(story_id, "elaboration", elaboration_data("SPLIT_REQUIRED"))
        elif target is Status.IN_PROGRESS and source is Status.READY_TO_WORK:
            extra = BREAKING_PLAN if story["breaking_change"] else {}
            self.submit(story_id, "plan", plan_data(**extra))
        elif target is Status.READY_FOR_CODE_REVIEW:
            self.submit(story_id, "proof", proof_data())
        elif target is Status.CODE_REVIEW_FAILED:
            self.submit(story_id, "code_review", review_data("FAIL"))
        elif target is Status.READY_FOR_QA:
            self.submit(story_id, "code_review", review_data("PASS"))
        elif target is Status.UAT:
            self.submit(story_id, "verification", verification_data("PASS"))
        elif target is Status.NEEDS_WORK:
            self.submit(story_id, "verification", verification_data("FAIL"))
        elif target is Status.COMPLETED:
            self.submit(story_id, "qa_gate", gate_data("PASS"))
            self.tokens(story_id)

    def step(self, story_id: str, target: Status) -> None:
        self.evidence_for(story_id, target)
        reason = ("--reason", "test") if target in (Status.BLOCKED, Status.CANCELLED) else ()
        self.move(story_id, target.value, *reason)

    def drive_to(self, story_id: str, target: Status) -> None:
        """Walk a pending story to ``target`` by legal, evidenced moves."""
        for step in PATHS[target]:
            if step is Status.SUPERSEDED:
                self.cli("story", "split", story_id, "--into", "part one", "--into", "part two")
            else:
                self.step(story_id, step)
        assert status(self.ws, story_id) == target.value
