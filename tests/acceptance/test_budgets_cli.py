"""Token budgets through the storyflow executable: the four enforcement levels, the multiplier,
the /cost before/after method, roll-ups and USD cost (DESIGN §5).

Defaults (REVI): elaboration warns at 30,000 and stops at 60,000 tokens; its forward edge is
in-elaboration -> ready-to-work.
"""

from __future__ import annotations

import pytest

from storyflow.domain.statuses import Status
from tests.acceptance._helpers import Flow, history, ok, read_story, refused, show
from tests.support import Workspace, code_review, elaboration, proof, verification

S = Status
WARNING_LINE = "storyflow: warning: "


@pytest.fixture
def flow(workspace: Workspace) -> Flow:
    flow = Flow(workspace)
    flow.epic("FLOW")
    return flow


def log(flow: Flow, sid: str, phase: str, tokens: int) -> None:
    """Setup: ``tokens`` of usage for ``phase`` (input only, so the total is exact)."""
    flow.cli("token", "log", sid, phase, "--input", str(tokens), "--output", "0")


def at_elaboration_gate(flow: Flow, tokens: int, *options: str) -> str:
    """A story in in-elaboration with a PASS elaboration and ``tokens`` spent elaborating."""
    sid = flow.story("FLOW", *options)
    flow.drive_to(sid, S.IN_ELABORATION)
    flow.submit(sid, "elaboration", elaboration("PASS"))
    if tokens:
        log(flow, sid, "elaboration", tokens)
    return sid


def test_advisory_records_only(workspace: Workspace, flow: Flow) -> None:
    sid = at_elaboration_gate(flow, 70_000, "--enforcement", "advisory")
    moved = workspace.run("story", "move", sid, "ready-to-work", "--json")
    ok(moved)
    assert WARNING_LINE not in moved.stderr
    budget = moved.json["budget"]
    assert budget == {
        "phase": "elaboration",
        "enforcement": "advisory",
        "used": 70_000,
        "warning_limit": 30_000,
        "hard_limit": 60_000,
        "state": "over",
        "action": "none",
    }
    assert moved.json["warnings"] == []
    assert history(workspace, sid)[-1]["budget_confirmed"] is False
    # The overrun is recorded, not hidden.
    assert show(workspace, sid)["budget"]["phases"]["elaboration"]["state"] == "over"


def test_warning_warns_once_over_the_warning_limit(workspace: Workspace, flow: Flow) -> None:
    under = at_elaboration_gate(flow, 29_999, "--enforcement", "warning")
    moved = ok(workspace.run("story", "move", under, "ready-to-work", "--json"))
    assert WARNING_LINE not in moved.stderr
    assert moved.json["warnings"] == []

    for tokens in (30_000, 70_000):  # at the warning limit, and over the hard limit
        sid = at_elaboration_gate(flow, 0, "--enforcement", "warning")
        logged = ok(
            workspace.run(
                "token", "log", sid, "elaboration", "--input", str(tokens), "--output", "0"
            )
        )
        assert f"{WARNING_LINE}{sid}: elaboration has used {tokens:,} tokens" in logged.stderr
        moved = ok(workspace.run("story", "move", sid, "ready-to-work", "--json"))
        expected = (
            f"{sid}: elaboration used {tokens:,} tokens (warning 30,000, hard 60,000, warning): "
            "over the warning limit"
        )
        assert moved.json["warnings"] == [expected]
        assert moved.stderr.count(WARNING_LINE) == 1
        assert f"{WARNING_LINE}{expected}" in moved.stderr
        assert moved.json["budget"]["action"] == "warn"
        assert show(workspace, sid)["status"] == "ready-to-work"


def test_soft_gate_needs_confirmation_with_reason(workspace: Workspace, flow: Flow) -> None:
    sid = at_elaboration_gate(flow, 70_000, "--enforcement", "soft_gate")
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "ready-to-work",
        exit_status=4,
        code="BUDGET_CONFIRMATION_REQUIRED",
    )
    assert error["details"] == {
        "story": sid,
        "phase": "elaboration",
        "enforcement": "soft_gate",
        "used": 70_000,
        "warning_limit": 30_000,
        "hard_limit": 60_000,
        "state": "over",
        "action": "confirm",
    }
    assert "--confirm-budget" in error["hint"]
    refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "ready-to-work",
        "--confirm-budget",
        exit_status=3,
        code="REASON_REQUIRED",
    )
    moved = ok(
        workspace.run(
            "story",
            "move",
            sid,
            "ready-to-work",
            "--confirm-budget",
            "--reason",
            "the spec was larger than planned",
        )
    )
    assert moved.stdout.strip() == f"{sid}: in-elaboration -> ready-to-work"
    last = history(workspace, sid)[-1]
    assert (last["to_status"], last["budget_confirmed"], last["forced"]) == (
        "ready-to-work",
        True,
        False,
    )
    assert last["reason"] == "the spec was larger than planned"
    action = read_story(flow.path(sid))["agent_log"][-1]["action"]
    assert action.endswith("[budget overrun confirmed]"), action
    assert "budget confirmed" in ok(workspace.run("story", "history", sid)).stdout

    # Between the limits, soft_gate only warns.
    between = at_elaboration_gate(flow, 45_000, "--enforcement", "soft_gate")
    moved = ok(workspace.run("story", "move", between, "ready-to-work", "--json"))
    assert moved.json["budget"]["action"] == "warn"
    assert moved.json["warnings"] and WARNING_LINE in moved.stderr


def test_hard_gate_refuses_even_when_confirmed(workspace: Workspace, flow: Flow) -> None:
    sid = at_elaboration_gate(flow, 60_000, "--enforcement", "hard_gate")
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "ready-to-work",
        exit_status=4,
        code="BUDGET_HARD_LIMIT",
    )
    assert (error["details"]["used"], error["details"]["hard_limit"]) == (60_000, 60_000)
    refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        "ready-to-work",
        "--confirm-budget",
        "--reason",
        "please",
        exit_status=4,
        code="BUDGET_HARD_LIMIT",
    )
    below = at_elaboration_gate(flow, 59_999, "--enforcement", "hard_gate")
    ok(workspace.run("story", "move", below, "ready-to-work"))


# The forward edge of every other phase, and the status a story leaves by it.
PHASE_EDGES = [
    ("story_generation", S.PENDING, "generated", 100_000),
    ("implementation", S.IN_PROGRESS, "ready-for-code-review", 500_000),
    ("code_review", S.READY_FOR_CODE_REVIEW, "ready-for-qa", 100_000),
    ("qa_verification", S.IN_QA, "uat", 100_000),
]


@pytest.mark.parametrize(
    ("phase", "source", "target", "hard"), PHASE_EDGES, ids=[e[0] for e in PHASE_EDGES]
)
def test_hard_gate_on_each_phase_forward_edge(
    workspace: Workspace, flow: Flow, phase: str, source: Status, target: str, hard: int
) -> None:
    sid = flow.story("FLOW", "--enforcement", "hard_gate")
    flow.drive_to(sid, source)
    evidence = {
        "ready-for-code-review": ("proof", proof()),
        "ready-for-qa": ("code_review", code_review("PASS")),
        "uat": ("verification", verification("PASS")),
    }
    if target in evidence:
        flow.submit(sid, *evidence[target])
    log(flow, sid, phase, hard)
    error = refused(
        workspace,
        sid,
        "story",
        "move",
        sid,
        target,
        exit_status=4,
        code="BUDGET_HARD_LIMIT",
    )
    assert (error["details"]["phase"], error["details"]["hard_limit"]) == (phase, hard)


def test_multiplier_scales_the_limits(workspace: Workspace, flow: Flow) -> None:
    doubled = at_elaboration_gate(
        flow, 100_000, "--enforcement", "hard_gate", "--budget-multiplier", "2"
    )
    limits = show(workspace, doubled)["budget"]["phases"]["elaboration"]
    assert (limits["warning_limit"], limits["hard_limit"], limits["estimate"]) == (
        60_000,
        120_000,
        30_000,
    )
    assert read_story(flow.path(doubled))["token_budget"]["limits"]["elaboration"] == {
        "warning": 60_000,
        "hard": 120_000,
    }
    moved = ok(workspace.run("story", "move", doubled, "ready-to-work", "--json")).json
    assert (moved["budget"]["hard_limit"], moved["budget"]["state"]) == (120_000, "warning")

    plain = at_elaboration_gate(flow, 100_000, "--enforcement", "hard_gate")
    refused(
        workspace,
        plain,
        "story",
        "move",
        plain,
        "ready-to-work",
        exit_status=4,
        code="BUDGET_HARD_LIMIT",
    )
    halved = at_elaboration_gate(
        flow, 30_000, "--enforcement", "hard_gate", "--budget-multiplier", "0.5"
    )
    error = refused(
        workspace,
        halved,
        "story",
        "move",
        halved,
        "ready-to-work",
        exit_status=4,
        code="BUDGET_HARD_LIMIT",
    )
    assert (error["details"]["warning_limit"], error["details"]["hard_limit"]) == (15_000, 30_000)


def test_epic_enforcement_applies_to_its_stories(workspace: Workspace, flow: Flow) -> None:
    ok(workspace.run("epic", "new", "SOFT", "--title", "Soft", "--enforcement", "soft_gate"))
    inherited = flow.story("SOFT")
    overridden = flow.story("SOFT", "--enforcement", "advisory")
    for sid in (inherited, overridden):
        flow.drive_to(sid, S.IN_ELABORATION)
        flow.submit(sid, "elaboration", elaboration("PASS"))
        log(flow, sid, "elaboration", 65_000)
    budget = ok(workspace.run("budget", "show", inherited, "--json")).json
    assert budget["enforcement"] == "soft_gate"
    assert read_story(flow.path(inherited))["token_budget"]["enforcement"] == "soft_gate"
    refused(
        workspace,
        inherited,
        "story",
        "move",
        inherited,
        "ready-to-work",
        exit_status=4,
        code="BUDGET_CONFIRMATION_REQUIRED",
    )
    ok(workspace.run("story", "move", overridden, "ready-to-work"))


def test_token_log_cost_method_before_after(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    logged = ok(
        workspace.run(
            "token",
            "log",
            sid,
            "implementation",
            "--before",
            "120000",
            "--after",
            "165500",
            "--json",
        )
    ).json
    assert (logged["tokens"], logged["source"], logged["input"], logged["output"]) == (
        45_500,
        "measured",
        0,
        0,
    )
    entry = read_story(flow.path(sid))["token_budget"]["actual_measurements"][-1]
    assert (entry["phase"], entry["tokens_used"], entry["source"]) == (
        "implementation",
        45_500,
        "measured",
    )
    budget = ok(workspace.run("budget", "show", sid, "--json")).json
    assert budget["phases"]["implementation"]["used"] == 45_500
    assert budget["total_used"] == 45_500
    bad_options = [
        ("--before", "200", "--after", "100"),
        ("--before", "100"),
        ("--before", "100", "--after", "200", "--input", "5"),
        ("--input", "-5", "--output", "1"),
    ]
    for n, bad in enumerate(bad_options):
        refused(
            workspace,
            sid,
            "token",
            "log",
            sid,
            "implementation",
            *bad,
            exit_status=7,
            code="INVALID_INPUT",
            human=n == 0,
        )
    refused(
        workspace,
        sid,
        "token",
        "log",
        sid,
        "deployment",
        "--input",
        "1",
        "--output",
        "1",
        exit_status=7,
        code="UNKNOWN_PHASE",
    )


def test_budget_show_epic_roll_up(workspace: Workspace, flow: Flow) -> None:
    a, b, c = flow.story(), flow.story(), flow.story()
    entries = [
        (a, "story_generation", 4_000),
        (a, "elaboration", 12_000),
        (a, "elaboration", 20_000),  # 32,000: over the warning limit
        (b, "implementation", 510_000),  # over the hard limit
        (b, "code_review", 9_000),
        (c, "qa_verification", 1_500),
    ]
    for sid, phase, tokens in entries:
        log(flow, sid, phase, tokens)
    data = ok(workspace.run("budget", "show", "FLOW", "--json")).json
    assert data["epic"] == "FLOW"
    assert data["total_used"] == sum(t for _, _, t in entries)
    per_story = {s["story"]: s["total_used"] for s in data["stories"]}
    assert per_story == {sid: sum(t for s, _, t in entries if s == sid) for sid in (a, b, c)}
    for phase, used in data["phases"].items():
        assert used == sum(t for _, p, t in entries if p == phase), phase
    assert data["total_estimated"] == 3 * 105_000
    overruns = {(o["story"], o["phase"], o["state"], o["used"]) for o in data["overruns"]}
    assert overruns == {
        (a, "elaboration", "warning", 32_000),
        (b, "implementation", "over", 510_000),
    }
    for sid in (a, b, c):
        story = ok(workspace.run("budget", "show", sid, "--json")).json
        assert story["total_used"] == per_story[sid]
        assert story["entries"] == sum(1 for s, _, _ in entries if s == sid)
    human = ok(workspace.run("budget", "show", "FLOW")).stdout
    assert "over limits:" in human and b in human


def test_a_storys_budget_lists_its_measurements_with_their_notes(
    workspace: Workspace, flow: Flow
) -> None:
    sid = flow.story()
    assert ok(workspace.run("budget", "show", sid, "--json")).json["measurements"] == []
    assert "measurements:" not in ok(workspace.run("budget", "show", sid)).stdout
    note = "graph analysis\nadded complexity"
    flow.cli(
        "token", "log", sid, "elaboration", "--input", "900", "--output", "100", "--note", note
    )
    flow.cli("token", "log", sid, "implementation", "--before", "10", "--after", "2010")
    data = ok(workspace.run("budget", "show", sid, "--json")).json
    assert [(m["phase"], m["tokens"], m["source"], m["note"]) for m in data["measurements"]] == [
        ("elaboration", 1000, "reported", note),
        ("implementation", 2000, "measured", None),
    ]
    assert data["entries"] == 2 and sum(m["tokens"] for m in data["measurements"]) == 3000
    lines = ok(workspace.run("budget", "show", sid)).stdout.splitlines()
    at = lines.index("measurements:")
    assert lines[at + 1].split() == ["DATE", "PHASE", "TOKENS", "SOURCE", "MODEL", "AGENT", "NOTE"]
    agent = data["measurements"][0]["agent"]
    first = ["elaboration", "1,000", "reported", "-", agent, *note.split()]  # on one line
    assert lines[at + 2].split()[1:] == first
    assert lines[at + 3].split()[1:] == ["implementation", "2,000", "measured", "-", agent, "-"]


def test_token_log_used_at_dates_a_measurement_written_down_earlier(
    workspace: Workspace, flow: Flow
) -> None:
    sid = flow.story()
    measured = ("token", "log", sid, "elaboration", "--before", "100", "--after", "350")
    logged = ok(workspace.run(*measured, "--used-at", "2026-02-05T14:30:00-07:00", "--json"))
    assert logged.json["tokens"] == 250
    ok(workspace.run(*measured, "--used-at", "2026-02-06"))
    dates = [
        m["date"] for m in ok(workspace.run("budget", "show", sid, "--json")).json["measurements"]
    ]
    assert dates == ["2026-02-05T21:30:00Z", "2026-02-06T00:00:00Z"]
    listed = read_story(flow.path(sid))["token_budget"]["actual_measurements"]
    assert [m["date"] for m in listed] == dates  # the story file says so
    before = ok(workspace.run("budget", "show", sid, "--json")).json
    for value, words in (("2999-01-01", "in the future"), ("last week", "not an ISO-8601")):
        result = workspace.run(*measured, "--used-at", value, "--json")
        assert result.code == 7 and words in result.json["error"]["message"], result
        assert result.json["error"]["code"] == "INVALID_INPUT"
    assert ok(workspace.run("budget", "show", sid, "--json")).json == before


def test_usd_cost_from_the_model_catalogue(workspace: Workspace, flow: Flow) -> None:
    sid = flow.story()
    other = flow.story()
    logged = ok(
        workspace.run(
            "token",
            "log",
            sid,
            "implementation",
            "--input",
            "1000000",
            "--output",
            "200000",
            "--model",
            "claude-sonnet-4",
            "--json",
        )
    ).json
    assert logged["cost_usd"] == pytest.approx(3.0 + 3.0)  # $3/M input, $15/M output
    ok(
        workspace.run(
            "token",
            "log",
            sid,
            "code_review",
            "--input",
            "20000",
            "--output",
            "4000",
            "--model",
            "claude-sonnet-4",
        )
    )
    ok(
        workspace.run(
            "token",
            "log",
            other,
            "elaboration",
            "--input",
            "500000",
            "--output",
            "0",
            "--model",
            "claude-sonnet-4",
        )
    )
    # Unpriced: no model, and a /cost delta has no input/output split to price.
    log(flow, sid, "elaboration", 1_000)
    flow.cli(
        "token",
        "log",
        sid,
        "qa_verification",
        "--before",
        "0",
        "--after",
        "10",
        "--model",
        "claude-sonnet-4",
    )
    budget = ok(workspace.run("budget", "show", sid, "--json")).json
    review_cost = 20_000 * 3 / 1e6 + 4_000 * 15 / 1e6
    assert budget["cost_usd"] == pytest.approx(6.0 + review_cost)
    assert budget["phases"]["implementation"]["cost_usd"] == pytest.approx(6.0)
    assert budget["phases"]["code_review"]["cost_usd"] == pytest.approx(review_cost)
    assert budget["unpriced_entries"] == 2
    block = read_story(flow.path(sid))["token_budget"]
    assert block["cost_usd"] == pytest.approx(6.0 + review_cost)
    assert block["actual_measurements"][0]["model"] == "claude-sonnet-4"
    epic = ok(workspace.run("budget", "show", "FLOW", "--json")).json
    assert epic["cost_usd"] == pytest.approx(6.0 + review_cost + 1.5)
    assert epic["unpriced_entries"] == 2

    error = refused(
        workspace,
        sid,
        "token",
        "log",
        sid,
        "implementation",
        "--input",
        "10",
        "--output",
        "10",
        "--model",
        "gpt-17-ultra",
        exit_status=7,
        code="UNKNOWN_MODEL",
    )
    assert error["details"] == {"model": "gpt-17-ultra"}
    assert "claude-sonnet-4" in error["hint"]
