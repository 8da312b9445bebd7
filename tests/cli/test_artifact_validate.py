"""storyflow artifact validate judges a file as storyflow artifact submit would: the same
schema (a missing story_id is submit's to fill in), and, once the story is known (--story, or
the story folder the file lies in), the same ownership checks and the story's epic's coverage
threshold. It never writes anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Seeded
from tests.cli.helpers import refuse, refuse_with, run_in, unchanged
from tests.support import EXAMPLES, Result, Workspace, code_review, elaboration

# examples/artifacts/<name>.yaml -> the kind it is an example of
EXAMPLE_KINDS = {
    "code-review.yaml": "code_review",
    "code-review-fail.yaml": "code_review",
    "elaboration.yaml": "elaboration",
    "plan.yaml": "plan",
    "proof.yaml": "proof",
    "qa-gate.yaml": "qa_gate",
    "verification.yaml": "verification",
}


def test_every_example_file_is_mapped_to_its_kind() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir()) == sorted(EXAMPLE_KINDS)


@pytest.mark.parametrize("name", sorted(EXAMPLE_KINDS))
def test_every_example_artifact_validates_with_its_kind(tmp_path: Path, name: str) -> None:
    """README: examples/artifacts/ "holds valid artifacts of each kind" (none names its
    story: submit fills story_id in). Outside any workspace, as the README's reader runs it."""
    kind = EXAMPLE_KINDS[name]
    result = run_in(tmp_path, "artifact", "validate", str(EXAMPLES / name), "--kind", kind)
    assert result.code == 0, result
    assert result.stdout == f"{EXAMPLES / name}: valid {kind}\n"
    data = run_in(
        tmp_path, "artifact", "validate", str(EXAMPLES / name), "--kind", kind, "--json"
    ).json
    assert (data["kind"], data["story"], data["valid"]) == (kind, None, True)
    assert "story_id" not in data["content"]  # no placeholder leaks out
    assert not (tmp_path / ".storyflow").exists()


@pytest.mark.parametrize("name", sorted(EXAMPLE_KINDS))
def test_every_example_artifact_validates_in_a_workspace(seeded: Seeded, name: str) -> None:
    with unchanged(seeded.ws):
        result = seeded.ws.cli(
            "artifact", "validate", str(EXAMPLES / name), "--kind", EXAMPLE_KINDS[name]
        )
    assert result.code == 0, result


def test_a_missing_story_id_is_still_checked_for_every_other_field(tmp_path: Path) -> None:
    path = tmp_path / "elaboration.yaml"
    path.write_text("verdict: PASS\nacceptance_criteria: not a list\n", "utf-8")

    def call(*args: str) -> Result:
        return run_in(tmp_path, *args)

    error = refuse_with(
        call, "artifact", "validate", str(path), "--kind", "elaboration", code="SCHEMA_INVALID"
    )
    assert [e["field"] for e in error["details"]["errors"]] == ["acceptance_criteria"]


# ---- the epic's coverage threshold ------------------------------------------------------------


def _epic_with_threshold_90(ws: Workspace) -> None:
    assert (
        ws.cli("epic", "new", "GATE", "--title", "Strict", "--coverage-threshold", "90").code == 0
    )
    assert ws.cli("story", "new", "GATE", "--title", "One").code == 0


def test_validate_and_submit_agree_on_the_epics_threshold(workspace: Workspace) -> None:
    """In an epic whose threshold is 90, a PASS review with coverage 82 is refused by both
    commands alike, and one with coverage 95 is accepted by both."""
    ws = workspace
    _epic_with_threshold_90(ws)
    low = str(ws.write("inbox/review.yaml", code_review("PASS", coverage=82)))
    with unchanged(ws):
        judged = refuse(
            ws, "artifact", "validate", low, "--kind", "code_review", "--story", "GATE-001",
            code="GATE_CONTRADICTION",
        )  # fmt: skip
    submitted = refuse(
        ws, "artifact", "submit", "GATE-001", "code_review", low, code="GATE_CONTRADICTION"
    )
    assert judged == submitted
    assert "below the threshold 90%" in judged["message"]

    high = str(ws.write("inbox/review-95.yaml", code_review("PASS", coverage=95)))
    with unchanged(ws):
        valid = ws.cli(
            "artifact", "validate", high, "--kind", "code_review", "--story", "GATE-001", "--json"
        )
    assert valid.code == 0, valid
    assert (valid.json["story"], valid.json["content"]["story_id"]) == ("GATE-001", "GATE-001")
    assert ws.cli("artifact", "submit", "GATE-001", "code_review", high).code == 0


def test_validate_uses_the_epics_threshold_for_a_file_in_the_story_folder(
    workspace: Workspace,
) -> None:
    ws = workspace
    _epic_with_threshold_90(ws)
    path = str(ws.write("plans/gate/backlog/GATE-001/code-review.yaml", code_review(coverage=82)))
    with unchanged(ws):
        refuse(ws, "artifact", "validate", path, "--kind", "code_review", code="GATE_CONTRADICTION")
        # an explicit threshold is the reader's own question
        lenient = ws.cli(
            "artifact", "validate", path, "--kind", "code_review", "--coverage-threshold", "80"
        )
    assert lenient.code == 0, lenient
    assert lenient.stdout == f"{path}: valid code_review for GATE-001\n"


# ---- the story: named, or inferred from the folder --------------------------------------------


def test_a_file_the_engine_stored_validates(seeded: Seeded) -> None:
    """An artifact written into the story folder without story_id and submitted from there
    is stored as it is: validate knows its story from the folder."""
    ws = seeded.ws
    path = ws.write(f"{seeded.folder('FLOW-001')}/elaboration.yaml", elaboration("PASS"))
    assert ws.cli("artifact", "submit", "FLOW-001", "elaboration").code == 0
    with unchanged(ws):
        result = ws.cli("artifact", "validate", str(path), "--kind", "elaboration", "--json")
    assert result.code == 0, result
    assert result.json["story"] == "FLOW-001"
    assert result.json["content"]["story_id"] == "FLOW-001"


def test_validate_refuses_a_file_for_another_story_as_submit_does(seeded: Seeded) -> None:
    ws = seeded.ws
    claims = str(ws.write("inbox/elaboration.yaml", elaboration("PASS", story_id="FLOW-002")))
    in_folder = str(ws.write(f"{seeded.folder('FLOW-001')}/plan.yaml", "approach: reuse\n"))
    cases = [
        (claims, "elaboration", "FLOW-001"),  # its story_id names another story
        (in_folder, "plan", "FLOW-002"),  # it lies in another story's folder
    ]
    for path, kind, story in cases:
        with unchanged(ws):
            judged = refuse(
                ws, "artifact", "validate", path, "--kind", kind, "--story", story,
                code="ARTIFACT_STORY_MISMATCH",
            )  # fmt: skip
        submitted = refuse(
            ws, "artifact", "submit", story, kind, path, code="ARTIFACT_STORY_MISMATCH"
        )
        assert judged == submitted
    # inferred from the folder: FLOW-001's folder, a file that says it is FLOW-002's
    path = str(
        ws.write(
            f"{seeded.folder('FLOW-001')}/proof.yaml", {"story_id": "FLOW-002", "summary": "x"}
        )
    )
    with unchanged(ws):
        refuse(ws, "artifact", "validate", path, "--kind", "proof", code="ARTIFACT_STORY_MISMATCH")


def test_validate_for_an_unknown_story(seeded: Seeded, tmp_path: Path) -> None:
    ws = seeded.ws
    path = str(ws.write("inbox/elaboration.yaml", elaboration("PASS")))
    with unchanged(ws):
        refuse(
            ws, "artifact", "validate", path, "--kind", "elaboration", "--story", "FLOW-099",
            code="STORY_NOT_FOUND",
        )  # fmt: skip
        refuse(
            ws, "artifact", "validate", path, "--kind", "elaboration", "--story", "../x",
            code="INVALID_ID",
        )  # fmt: skip

    def outside(*args: str) -> Result:
        return run_in(tmp_path, *args)

    refuse_with(
        outside, "artifact", "validate", path, "--kind", "elaboration", "--story", "FLOW-001",
        code="WORKSPACE_NOT_FOUND",
    )  # fmt: skip
    assert not (tmp_path / ".storyflow").exists()


def test_a_story_named_folder_that_is_not_the_storys_is_judged_alone(seeded: Seeded) -> None:
    """Not inferred: a copy of a story folder elsewhere, a folder of a story the database
    does not know. The file is judged on its own, with a warning saying why."""
    ws = seeded.ws
    review = code_review(coverage=50)
    for relative, why in [
        ("inbox/FLOW-001/code-review.yaml", "is not FLOW-001's story folder"),
        ("plans/flow/backlog/FLOW-042/code-review.yaml", "FLOW-042 is not a story"),
    ]:
        path = str(ws.write(relative, review))
        with unchanged(ws):
            result = ws.cli("artifact", "validate", path, "--kind", "code_review")
        assert result.code == 0, result
        assert result.stdout == f"{path}: valid code_review\n"
        assert why in result.stderr, result
