"""A story from pending to completed through the storyflow executable, in both layouts.

Every command here is what a user (or an agent) types: the epic, the story, hand edits of the
story file, artifact files written and submitted, token logging, and each move. The walk
includes a failed code review and its fix round.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from storyflow.domain.statuses import Status
from tests.acceptance._helpers import (
    REUSE_TEXT,
    Flow,
    fill_reuse_plan,
    logged_moves,
    markdown_artifact,
    minute_stamps,
    ok,
    read_story,
    utc_now,
)
from tests.support import Workspace
from tests.support import elaboration as elaboration_data

# The walk, with the stage folder a staged story lives in after each move (DESIGN §2).
WALK = [
    ("generated", "backlog"),
    ("in-elaboration", "elaboration"),
    ("ready-to-work", "ready-to-work"),
    ("in-progress", "in-progress"),
    ("ready-for-code-review", "in-progress"),
    ("code-review-failed", "in-progress"),
    ("in-progress", "in-progress"),
    ("ready-for-code-review", "in-progress"),
    ("ready-for-qa", "UAT"),
    ("in-qa", "UAT"),
    ("uat", "UAT"),
    ("completed", "done"),
]
EXPECTED_MOVES = list(
    zip(["pending"] + [t for t, _ in WALK[:-1]], [t for t, _ in WALK], strict=True)
)

# Token usage per phase that ran: (phase, input, output), logged in this order.
TOKENS = [
    ("story_generation", 1200, 800),
    ("elaboration", 9000, 3000),
    ("implementation", 40000, 12000),
    ("code_review", 7000, 1500),
    ("implementation", 15000, 5000),
    ("code_review", 6000, 1000),
    ("qa_verification", 8000, 2000),
]


class Walker:
    """Runs the storyflow executable and records what the test expects to find."""

    def __init__(self, ws: Workspace, story_id: str) -> None:
        self.ws = ws
        self.id = story_id
        self.logged: list[tuple[str, int, int]] = []
        self.submitted: list[dict[str, Any]] = []
        self.walked = 0

    def move(self, target: str) -> dict[str, Any]:
        expected_target, _ = WALK[self.walked]
        assert target == expected_target
        result = ok(self.ws.run("story", "move", self.id, target, "--json"))
        data: dict[str, Any] = result.json
        source = "pending" if self.walked == 0 else WALK[self.walked - 1][0]
        assert (data["story"], data["from"], data["to"]) == (self.id, source, target)
        assert data["forced"] is False
        self.walked += 1
        return data

    def tokens(self, phase: str) -> None:
        index = len(self.logged)
        assert TOKENS[index][0] == phase
        _, inp, out = TOKENS[index]
        result = ok(
            self.ws.run(
                "token", "log", self.id, phase, "--input", str(inp), "--output", str(out), "--json"
            )
        )
        assert result.json["tokens"] == inp + out
        assert result.json["source"] == "reported"
        self.logged.append((phase, inp, out))

    def submit(self, kind: str, path: Path | None = None) -> dict[str, Any]:
        args = ["artifact", "submit", self.id, kind] + ([str(path)] if path else []) + ["--json"]
        before = utc_now()
        result = ok(self.ws.run(*args))
        after = utc_now()
        data: dict[str, Any] = result.json
        assert data["story"] == self.id and data["kind"] == kind and not data["unchanged"]
        self.submitted.append({**data, "before": before, "after": after, "source": path})
        return data


def _check_end_state(ws: Workspace, walker: Walker, story_file: Path) -> dict[str, Any]:
    """What both layouts promise once the story is completed."""
    sid = walker.id
    shown = ok(ws.run("story", "show", sid, "--json")).json
    assert shown["status"] == "completed"
    assert shown["review_iterations"] == 1
    assert shown["qa_iterations"] == 0

    story = read_story(story_file)
    assert story["meta"]["status"] == "completed"
    assert story["meta"]["id"] == sid
    assert story["reuse_plan"] == REUSE_TEXT

    # One history entry per move, in order; one Agent Log row per move, in the same order.
    rows = ok(ws.run("story", "history", sid, "--json")).json
    assert rows[0]["from_status"] is None and rows[0]["to_status"] == "pending"
    history_moves = [(r["from_status"], r["to_status"]) for r in rows[1:]]
    assert history_moves == EXPECTED_MOVES
    assert not any(r["forced"] or r["budget_confirmed"] for r in rows)
    assert logged_moves(story["agent_log"]) == history_moves
    actions = [row["action"] for row in story["agent_log"]]
    assert actions[0] == "story created (pending)"
    for kind in ("elaboration", "plan", "proof", "code_review", "verification", "qa_gate"):
        assert any(a.startswith(f"{kind} v") for a in actions), (kind, actions)

    # The Token Budget section lists the ledger; budget show totals are the sums logged.
    measured = [
        (m["phase"], m["input"], m["output"], m["tokens_used"], m["source"])
        for m in story["token_budget"]["actual_measurements"]
    ]
    assert measured == [(p, i, o, i + o, "reported") for p, i, o in walker.logged]
    total = sum(i + o for _, i, o in walker.logged)
    assert story["token_budget"]["total_used"] == total
    budget = ok(ws.run("budget", "show", sid, "--json")).json
    assert budget["total_used"] == total
    assert budget["entries"] == len(walker.logged)
    for phase in {p for p, _, _ in walker.logged}:
        used = sum(i + o for p, i, o in walker.logged if p == phase)
        assert budget["phases"][phase]["used"] == used, phase
    return story


def test_staged_lifecycle_pending_to_completed(workspace: Workspace) -> None:
    ws = workspace
    ok(ws.run("epic", "new", "FLOW", "--title", "Flow sync", "--layout", "staged"))
    created = ok(ws.run("story", "new", "FLOW", "--title", "Validate artifacts", "--json")).json
    sid = created["id"]
    assert sid == "FLOW-001"
    assert created["status"] == "pending"
    root = ws.root / "plans" / "flow"
    assert created["path"] == "plans/flow/backlog/FLOW-001/story.yaml"

    def folder(stage: str) -> Path:
        found = [p for p in root.glob(f"*/{sid}") if p.is_dir()]
        assert found == [root / stage / sid], found
        return found[0]

    def write(kind_file: str, data: dict[str, Any]) -> None:
        # An agent writes the artifact under its conventional name in the story folder.
        (folder(stage) / kind_file).write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")

    walker = Walker(ws, sid)
    stage = "backlog"
    fill_reuse_plan(folder(stage) / "story.yaml")

    def move(target: str) -> None:
        nonlocal stage
        walker.move(target)
        stage = WALK[walker.walked - 1][1]
        folder(stage)

    move("generated")
    walker.tokens("story_generation")
    move("in-elaboration")
    write("elaboration.yaml", {"verdict": "PASS", "summary": "clear", "acceptance_criteria": ["a"]})
    assert walker.submit("elaboration")["path"] == "elaboration.yaml"
    walker.tokens("elaboration")
    move("ready-to-work")
    write("plan.yaml", {"approach": "wire the schemas", "steps": ["one"], "test_strategy": "unit"})
    assert walker.submit("plan")["verdict"] is None
    move("in-progress")
    proof = {
        "summary": "first attempt",
        "reuse_verification": {"packages_used": ["@repo/shared"]},
        "checks": {"lint": "pass", "typecheck": "pass", "tests": "pass"},
        "coverage": 50,
    }
    write("proof.yaml", proof)
    assert walker.submit("proof")["version"] == 1
    walker.tokens("implementation")
    move("ready-for-code-review")
    write(
        "code-review.yaml",
        {"verdict": "FAIL", "coverage": 50, "findings": [{"severity": "high", "message": "bug"}]},
    )
    assert walker.submit("code_review")["verdict"] == "FAIL"
    walker.tokens("code_review")
    move("code-review-failed")
    move("in-progress")
    agent_log_mid = read_story(folder(stage) / "story.yaml")["agent_log"]
    write("proof.yaml", {**proof, "summary": "fixed the bug", "coverage": 82})
    assert walker.submit("proof")["version"] == 2
    walker.tokens("implementation")
    move("ready-for-code-review")
    write("code-review.yaml", {"verdict": "PASS", "coverage": 82, "findings": []})
    review = walker.submit("code_review")
    assert (review["version"], review["verdict"]) == (2, "PASS")
    walker.tokens("code_review")
    move("ready-for-qa")
    move("in-qa")
    write(
        "verification.yaml",
        {
            "verdict": "PASS",
            "acceptance_criteria": [{"criterion": "a", "status": "pass", "evidence": "t.py"}],
            "tests": {"unit": "pass", "integration": "pass"},
        },
    )
    walker.submit("verification")
    walker.tokens("qa_verification")
    move("uat")
    write("qa-gate.yaml", {"decision": "PASS", "checks": [{"name": "tests", "status": "pass"}]})
    assert walker.submit("qa_gate")["verdict"] == "PASS"
    move("completed")

    done = folder("done")
    assert stage == "done"
    story = _check_end_state(ws, walker, done / "story.yaml")
    # The Agent Log is append-only: every row written by the middle of the walk is still there.
    assert story["agent_log"][: len(agent_log_mid)] == agent_log_mid
    # Every artifact keeps its fixed FLOW name in the story folder, which moved as a whole;
    # the engine wrote METRICS.yaml there at completion.
    assert sorted(p.name for p in done.iterdir()) == sorted(
        [
            "METRICS.yaml",
            "story.yaml",
            "elaboration.yaml",
            "plan.yaml",
            "proof.yaml",
            "code-review.yaml",
            "verification.yaml",
            "qa-gate.yaml",
        ]
    )
    assert {p.name for p in root.iterdir()} <= {
        "FLOW.epic.yaml",  # the epic file (storyflow sync rebuilds the epic from it)
        "backlog",
        "elaboration",
        "ready-to-work",
        "in-progress",
        "UAT",
        "done",
    }
    assert all(not any(p.iterdir()) for p in root.iterdir() if p.is_dir() and p.name != "done")
    assert yaml.safe_load((done / "code-review.yaml").read_text("utf-8"))["verdict"] == "PASS"
    artifacts = ok(ws.run("artifact", "list", sid, "--json")).json
    versions = {(a["kind"], a["version"]) for a in artifacts}
    assert ("proof", 2) in versions and ("code_review", 2) in versions


def test_flat_lifecycle_pending_to_completed(workspace: Workspace) -> None:
    ws = workspace
    tz = "America/Denver"
    epic = ok(
        ws.run("epic", "new", "REVI", "--title", "Review", "--layout", "flat", "--tz", tz, "--json")
    ).json
    assert (epic["layout"], epic["timezone"], epic["root"]) == ("flat", tz, "plans/stories")
    created = ok(ws.run("story", "new", "REVI", "--title", "Review flow", "--json")).json
    sid = created["id"]
    assert sid == "REVI-001"
    folder = ws.root / "plans" / "stories" / sid
    story_file = folder / f"{sid}.md"
    assert created["path"] == f"plans/stories/{sid}/{sid}.md"
    assert story_file.is_file()
    initial = read_story(story_file)
    assert initial["meta"]["status"] == "pending"
    assert {"Reuse Plan", "Token Budget", "Agent Log"} <= set(initial["sections"])
    fill_reuse_plan(story_file)

    drafts = ws.root / "drafts"
    drafts.mkdir()
    walker = Walker(ws, sid)
    raw_by_submission: list[str] = []

    def submit_md(kind: str, name: str, front: dict[str, Any], sections: dict[str, str]) -> str:
        text = markdown_artifact({"story_id": sid, **front}, f"{kind} for {sid}", sections)
        path = drafts / name
        path.write_text(text, "utf-8")
        raw_by_submission.append(text)
        return str(walker.submit(kind, path)["path"])

    walker.move("generated")
    walker.tokens("story_generation")
    walker.move("in-elaboration")
    elab = submit_md(
        "elaboration",
        "elab.md",
        {"verdict": "PASS", "summary": "clear scope", "acceptance_criteria": ["it reviews"]},
        {"Scope": "The review command and its report."},
    )
    assert elab.startswith(f"ELAB-{sid}-")
    walker.tokens("elaboration")
    walker.move("ready-to-work")
    submit_md(
        "plan",
        "plan.md",
        {"approach": "add a command", "steps": ["parse", "report"]},
        {"Test Strategy": "unit tests per step"},
    )
    walker.move("in-progress")
    proof_front = {
        "summary": "first attempt",
        "checks": {"lint": "pass", "typecheck": "pass", "tests": "pass"},
        "coverage": 60,
    }
    submit_md("proof", "proof.md", proof_front, {"Reuse Verification": REUSE_TEXT})
    # The body's ## Reuse Verification is the proof's reuse_verification field.
    shown = ok(ws.run("artifact", "show", sid, "proof", "--json")).json
    assert shown["content"]["reuse_verification"] == REUSE_TEXT
    walker.tokens("implementation")
    walker.move("ready-for-code-review")
    submit_md(
        "code_review",
        "review.md",
        {"verdict": "FAIL", "coverage": 60, "findings": [{"severity": "high", "message": "bug"}]},
        {"Summary": "one blocking finding"},
    )
    walker.tokens("code_review")
    walker.move("code-review-failed")
    walker.move("in-progress")
    submit_md(
        "proof",
        "proof-2.md",
        {**proof_front, "summary": "fixed", "coverage": 85},
        {"Reuse Verification": REUSE_TEXT},
    )
    walker.tokens("implementation")
    walker.move("ready-for-code-review")
    submit_md(
        "code_review",
        "review-2.md",
        {"verdict": "PASS", "coverage": 85, "findings": []},
        {"Summary": "clean"},
    )
    walker.tokens("code_review")
    walker.move("ready-for-qa")
    walker.move("in-qa")
    submit_md(
        "verification",
        "verify.md",
        {
            "verdict": "PASS",
            "acceptance_criteria": [{"criterion": "it reviews", "status": "pass"}],
            "tests": {"unit": "pass"},
        },
        {"Summary": "verified against the criteria"},
    )
    walker.tokens("qa_verification")
    walker.move("uat")
    gate_text = yaml.safe_dump(
        {"story_id": sid, "decision": "PASS", "checks": [{"name": "tests", "status": "pass"}]}
    )
    (drafts / "gate.yaml").write_text(gate_text, "utf-8")
    raw_by_submission.append(gate_text)
    assert walker.submit("qa_gate", drafts / "gate.yaml")["path"] == f"QA-GATE-{sid}.yaml"
    walker.move("completed")

    story = _check_end_state(ws, walker, story_file)
    assert story_file.is_file()

    # File names: ELAB/PLAN/PROOF/CODE-REVIEW/QA-VERIFY stamped with the minute of submission
    # in the epic's time zone; the QA gate is QA-GATE-<ID>.yaml.
    prefixes = {
        "elaboration": "ELAB",
        "plan": "PLAN",
        "proof": "PROOF",
        "code_review": "CODE-REVIEW",
        "verification": "QA-VERIFY",
    }
    latest_raw: dict[str, str] = {}
    stamped: list[str] = []
    for entry, raw in zip(walker.submitted, raw_by_submission, strict=True):
        name = entry["path"]
        latest_raw[name] = raw
        if entry["kind"] == "qa_gate":
            assert name == f"QA-GATE-{sid}.yaml"
            continue
        stamped.append(name)
        head = f"{prefixes[entry['kind']]}-{sid}-"
        assert name.startswith(head) and name.endswith(".md"), name
        stamp = name[len(head) : -len(".md")]
        # a second submission of a kind in the same minute gets -2, -3, ...
        assert stamp[:13] in minute_stamps(entry["before"], entry["after"], tz), (name, entry)
        assert stamp[13:] == "" or (stamp[13] == "-" and int(stamp[14:]) >= 2), name
    # Every stamped submission keeps its own file: nothing is overwritten.
    assert len(stamped) == len(set(stamped)), stamped
    # The folder holds the story file, the submitted artifacts and, written by the engine at
    # completion, METRICS.yaml; nothing else.
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        {story_file.name, *latest_raw, "METRICS.yaml"}
    )
    for name, raw in latest_raw.items():
        assert (folder / name).read_text("utf-8") == raw, name
    # No loose story files: plans/ holds only the stories folder, which holds only the story.
    assert [p.name for p in (ws.root / "plans").iterdir()] == ["stories"]
    assert sorted(p.name for p in (ws.root / "plans" / "stories").iterdir()) == [
        sid,
        "REVI.epic.yaml",  # the epic file
    ]

    # Agent Log timestamps are in the epic's time zone.
    zone = ZoneInfo(tz)
    for row in story["agent_log"]:
        at = datetime.fromisoformat(row["timestamp"])
        assert at.utcoffset() == at.astimezone(zone).utcoffset(), row


def test_flat_layout_stores_a_yaml_submission_as_markdown_with_front_matter(
    workspace: Workspace,
) -> None:
    """The flat layout's artifacts are Markdown files: a YAML file submitted to it is stored
    with its fields (and comments) as the front matter, so the stored file validates and
    reads back as what was submitted; submitting the stored file again changes nothing."""
    flow = Flow(workspace)
    flow.epic("REVI", "--layout", "flat")
    sid = flow.story("REVI")
    flow.drive_to(sid, Status.IN_ELABORATION)
    source = workspace.root / "elab.yaml"
    source.write_text(
        "# what the analyst found\n" + yaml.safe_dump(elaboration_data("PASS")), encoding="utf-8"
    )
    submitted = ok(
        workspace.run("artifact", "submit", sid, "elaboration", str(source), "--json")
    ).json
    stored = flow.path(sid).parent / submitted["path"]
    assert stored.name.startswith(f"ELAB-{sid}-") and stored.suffix == ".md"
    text = stored.read_text(encoding="utf-8")
    assert text.startswith(f"---\nstory_id: {sid}\n# what the analyst found\n"), text
    assert f"\n---\n\n# {sid}: elaboration\n" in text
    valid = workspace.run("artifact", "validate", str(stored), "--kind", "elaboration", "--json")
    assert valid.code == 0, valid
    shown = ok(workspace.run("artifact", "show", sid, "elaboration", "--json")).json
    assert {k: shown["content"][k] for k in elaboration_data("PASS")} == elaboration_data("PASS")
    again = ok(workspace.run("artifact", "submit", sid, "elaboration", str(stored), "--json")).json
    assert again["unchanged"] is True and again["version"] == 1
    assert ok(workspace.run("check", "--json")).code == 0
