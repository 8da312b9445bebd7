"""A key written twice in a YAML mapping is refused (PyYAML would keep the last value, so a
second ``verdict:`` would silently win), a story ID is ASCII digits only, and a byte order
mark before a plan's front matter is not a missing front matter."""

from __future__ import annotations

import pytest

from tests.acceptance._helpers import ok
from tests.cli.conftest import Seeded
from tests.cli.helpers import refuse, unchanged
from tests.plan_support import SEEDS
from tests.support import Workspace

DUPLICATES = {
    # a FAIL review hidden under a PASS: the second verdict used to win
    "verdict": (
        "verdict: PASS\nsummary: scoped\nacceptance_criteria: [it works]\nverdict: FAIL\n",
        4,
    ),
    "nested": ("verdict: PASS\nsummary: s\nacceptance_criteria:\n  - {a: 1, a: 2}\n", 4),
    "through an alias": ("x: &x PASS\nverdict: *x\nsummary: s\nsummary: t\n", 4),
}


@pytest.mark.parametrize("case", sorted(DUPLICATES))
def test_an_artifact_with_a_key_written_twice_is_refused(seeded: Seeded, case: str) -> None:
    ws = seeded.ws
    text, line = DUPLICATES[case]
    path = str(ws.write("inbox/elaboration.yaml", text))
    with unchanged(ws):
        error = refuse(
            ws, "artifact", "submit", "FLOW-001", "elaboration", path, code="DUPLICATE_KEY"
        )
    assert error["message"].startswith(f"inbox/elaboration.yaml:{line}: the key "), error
    assert error["details"]["line"] == line and error["hint"]


def test_a_story_file_with_a_key_written_twice_refuses_the_move(seeded: Seeded) -> None:
    ws = seeded.ws
    story_file = ws.root / seeded.story_file("FLOW-002")
    text = story_file.read_text("utf-8")
    story_file.write_text(
        text.replace("status: generated\n", "status: generated\nstatus: completed\n", 1), "utf-8"
    )
    with unchanged(ws):
        error = refuse(ws, "story", "move", "FLOW-002", "in-elaboration", code="GUARD_FAILED")
    assert error["message"].endswith(":6: the key 'status' is written twice in one mapping")
    check = ws.run("check", "--json")
    assert check.code == 3, check
    (finding,) = check.json["findings"]
    assert (finding["code"], finding["line"]) == ("CHECK_UNREADABLE", 6)
    assert "written twice" in finding["message"]


def test_a_config_with_a_section_written_twice_is_refused(seeded: Seeded) -> None:
    ws = seeded.ws
    config = ws.root / "storyflow.yaml"
    config.write_text(config.read_text("utf-8") + "limits: {}\nlimits: {}\n", "utf-8")
    result = ws.run("story", "list", "--json")
    assert result.code == 7 and '"DUPLICATE_KEY"' in result.stdout, result


@pytest.mark.parametrize("text", ["FLOW-\u0660\u0660\u0661", "FLOW-\uff10\uff10\uff11"])
def test_a_story_id_with_digits_other_than_ascii_is_invalid(seeded: Seeded, text: str) -> None:
    ws = seeded.ws
    error = refuse(ws, "story", "show", text, code="INVALID_ID", via="run")
    assert error["hint"].startswith("a story ID is PREFIX-NNN")


def test_a_plan_saved_with_a_byte_order_mark_imports(workspace: Workspace) -> None:
    folder = workspace.root / "plans" / "revi"
    folder.mkdir(parents=True)
    plan = folder / "PLAN.exec.md"
    plan.write_bytes(b"\xef\xbb\xbf" + (SEEDS / "REVI.PLAN.exec.md").read_bytes())
    ok(workspace.run("plan", "import", "plans/revi"))
    assert ok(workspace.run("epic", "show", "REVI", "--json")).json["prefix"] == "REVI"
