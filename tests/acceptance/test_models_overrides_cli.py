"""`storyflow models check` holds the epic and story overrides of `assignments:` against the
workspace's database: an override naming an epic or story that does not exist never applies,
so it is a finding (exit 3) whose hint names the closest existing one or says how to create
it. A database with no epic yet, or one that cannot be opened, leaves the overrides unchecked
(a warning, `overrides_checked: false`) while the other findings are still listed; `run` and
every other command stay lenient about such overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.acceptance._helpers import error_body, ok
from tests.support import Workspace

NOT_CHECKED = "assignments.epics and assignments.stories were not checked against the workspace"


def _assign(ws: Workspace, **assignments: Any) -> None:
    (ws.root / "models.yaml").write_text(
        yaml.safe_dump({"assignments": {"default": "claude-sonnet-4", **assignments}}), "utf-8"
    )


def _epic(ws: Workspace, prefix: str, stories: int = 0) -> None:
    """Setup in-process (fast); the commands under test run as subprocesses."""
    ok(ws.cli("epic", "new", prefix, "--title", prefix.title()))
    for number in range(1, stories + 1):
        ok(ws.cli("story", "new", prefix, "--title", f"Story {number}"))


def _findings(error: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(f["key"], f["problem"], f["hint"]) for f in error["details"]["findings"]]


def test_misspelt_epic_and_story_overrides_are_findings_naming_the_closest(
    workspace: Workspace,
) -> None:
    ws = workspace
    _epic(ws, "FLOW", stories=9)
    _assign(
        ws,
        epics={"FLWO": {"default": "gpt-4o"}},
        stories={"FLOW-099": {"phases": {"review": "gpt-9"}}},
    )

    error = error_body(ws.run("models", "check", "--json"), 3, "MODEL_ASSIGNMENT_INVALID")
    assert _findings(error) == [
        # the config's own finding first, then the overrides held against the database
        (
            "assignments.stories.FLOW-099.phases.review",
            "unknown model 'gpt-9'",
            error["details"]["findings"][0]["hint"],
        ),
        (
            "assignments.epics.FLWO",
            "unknown epic 'FLWO'",
            "did you mean FLOW? storyflow epic list shows the epics",
        ),
        (
            "assignments.stories.FLOW-099",
            "unknown story 'FLOW-099'",
            "did you mean FLOW-009? storyflow story list shows the stories",
        ),
    ]
    assert error["details"]["overrides_checked"] is True
    assert (
        error["message"]
        == "assignments.stories.FLOW-099.phases.review: unknown model 'gpt-9' (+2 more)"
    )

    human = ws.run("models", "check")
    assert human.code == 3, human
    assert "3 finding(s)" in human.stdout
    assert "unknown epic 'FLWO'" in human.stdout and "did you mean FLOW?" in human.stdout
    assert "did you mean FLOW-009?" in human.stdout
    assert "error[MODEL_ASSIGNMENT_INVALID]" in human.stderr

    # models show lists them too (JSON findings; warnings on stderr), and still exits 0
    shown = ok(ws.run("models", "show", "--json")).json
    assert [f["key"] for f in shown["findings"]][1:] == [
        "assignments.epics.FLWO",
        "assignments.stories.FLOW-099",
    ]
    shown = ok(ws.run("models", "show"))
    assert "warning: assignments.epics.FLWO: unknown epic 'FLWO'" in shown.stderr
    assert "did you mean FLOW-009?" in shown.stderr


def test_an_override_for_a_missing_epic_or_story_says_how_to_create_it(
    workspace: Workspace,
) -> None:
    ws = workspace
    _epic(ws, "FLOW", stories=2)
    _epic(ws, "REVI")  # an epic with no story yet
    _assign(
        ws,
        epics={"ZZZZ": {"default": "gpt-4o"}},
        stories={"REVI-001": {"default": "gpt-4o"}, "ZZZZ-001": {"default": "gpt-4o"}},
    )
    error = error_body(ws.run("models", "check", "--json"), 3, "MODEL_ASSIGNMENT_INVALID")
    assert _findings(error) == [
        (
            "assignments.epics.ZZZZ",
            "unknown epic 'ZZZZ'",
            "storyflow epic new ZZZZ creates it; storyflow epic list shows the epics",
        ),
        (
            "assignments.stories.REVI-001",
            "unknown story 'REVI-001'",
            "storyflow story new REVI creates the epic's next story; use its ID",
        ),
        (
            "assignments.stories.ZZZZ-001",
            "unknown story 'ZZZZ-001'",
            "no epic ZZZZ: storyflow epic new ZZZZ, then storyflow story new ZZZZ",
        ),
    ]
    # the overrides never apply, but they stop nothing else: runs stay lenient about them
    assert [s["id"] for s in ok(ws.run("story", "list", "--json")).json] == [
        "FLOW-001",
        "FLOW-002",
    ]


def test_overrides_for_existing_epics_and_stories_pass(workspace: Workspace) -> None:
    ws = workspace
    _epic(ws, "FLOW", stories=2)
    _epic(ws, "REVI")
    _assign(
        ws,
        epics={"FLOW": {"default": "gpt-4o"}, "REVI": {"roles": {"qa": "claude-opus-4"}}},
        stories={"FLOW-002": {"phases": {"review": "claude-opus-4"}}},
    )
    data = ok(ws.run("models", "check", "--json")).json
    assert data == {
        "ok": True,
        "assignments": 4,
        "models": data["models"],
        "overrides_checked": True,
        "findings": [],
    }
    human = ok(ws.run("models", "check"))
    assert human.stdout.startswith("ok: 4 assignment(s)")
    assert human.stderr == ""
    table = ok(ws.run("models", "show", "--story", "FLOW-002")).stdout
    assert "assignments.stories.FLOW-002.phases.review" in table


def test_a_database_with_no_epic_yet_leaves_the_overrides_unchecked(
    workspace: Workspace,
) -> None:
    """A fresh clone before storyflow sync: every override would look missing."""
    ws = workspace
    _assign(ws, epics={"FLOW": {"default": "gpt-4o"}}, stories={"FLOW-001": {"default": "x"}})
    error = error_body(ws.run("models", "check", "--json"), 3, "MODEL_ASSIGNMENT_INVALID")
    assert [(f["key"], f["problem"]) for f in error["details"]["findings"]] == [
        ("assignments.stories.FLOW-001.default", "unknown model 'x'"),
    ]
    assert error["details"]["overrides_checked"] is False

    _assign(ws, epics={"FLOW": {"default": "gpt-4o"}}, stories={"FLOW-001": {"default": "gpt-4o"}})
    result = ok(ws.run("models", "check", "--json"))
    assert result.json["overrides_checked"] is False and result.json["findings"] == []
    assert f"warning: {NOT_CHECKED}: the database has no epic yet" in result.stderr
    human = ok(ws.run("models", "check"))
    assert human.stdout.startswith("ok: 3 assignment(s)")
    assert "storyflow sync fills it from the story files" in human.stderr


def test_a_database_that_cannot_be_opened_leaves_the_overrides_unchecked(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = workspace
    _epic(ws, "FLOW", stories=1)
    if ws.database_url:  # PostgreSQL: a server that is not there
        unopenable = ("--database-url", "postgresql://postgres@127.0.0.1:1/storyflow")
        code = "DATABASE_UNREACHABLE"
    else:
        broken = tmp_path / "broken.db"
        broken.write_text("not a SQLite database\n" * 8, "utf-8")
        unopenable = ("--database-url", f"sqlite:///{broken}")
        code = "DATABASE_CORRUPT"
    _assign(ws, default="gpt-9", epics={"FLWO": {"default": "gpt-4o"}})

    error = error_body(
        ws.run(*unopenable, "models", "check", "--json"), 3, "MODEL_ASSIGNMENT_INVALID"
    )
    assert [f["key"] for f in error["details"]["findings"]] == ["assignments.default"]
    assert error["details"]["overrides_checked"] is False

    _assign(ws, epics={"FLWO": {"default": "gpt-4o"}})
    result = ok(ws.run(*unopenable, "models", "check", "--json"))
    assert result.json["overrides_checked"] is False
    assert f"{NOT_CHECKED}: the database cannot be opened ({code})" in result.stderr
    assert "Traceback" not in result.stderr
    assert "FLWO" in ok(ws.run(*unopenable, "models", "show")).stdout
    # the same workspace with its own database: the override is found misspelt
    error_body(ws.run("models", "check", "--json"), 3, "MODEL_ASSIGNMENT_INVALID")

    # without epic or story overrides the database is not opened at all
    _assign(ws)
    result = ok(ws.run(*unopenable, "models", "check", "--json"))
    assert result.json["overrides_checked"] is True and result.stderr == ""
