"""Bad input on the command line and in the configuration: a clear error with its stable
code and exit status, in both output modes, and nothing written.

Exit statuses: 0 ok, 1 internal, 2 usage, 3 refused by a rule, 4 refused by a budget,
5 conflict or locked, 6 not found, 7 invalid input.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from storyflow.domain.statuses import Status
from tests.cli.conftest import Seeded
from tests.cli.helpers import (
    assert_same,
    capture,
    check_json_error,
    check_plain_error,
    no_traceback,
    refuse,
    refuse_with,
    run_in,
    unchanged,
)
from tests.support import Result, Workspace, new_story

GOOD_ELABORATION = "verdict: PASS\nsummary: scoped\nacceptance_criteria:\n  - it works\n"


def listing(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))


# ---- story IDs with path characters -----------------------------------------------------------

BAD_STORY_IDS = [
    "../FLOW-001",
    "FLOW-001/x",
    "FLOW/../001",
    "",
    " ",
    "..",
    "/etc/passwd",
    "FLOW-001/../FLOW-002",
    "plans/flow/backlog/FLOW-001",
    "FLOW-001\\..\\x",
    "FLOW-001/",
    "FLOW-001 FLOW-002",
    "flow-001",
    "FLOW-1",
    "FLOW-0000001",
    "FLOW_001",
]

ID_COMMANDS: list[tuple[str, ...]] = [
    ("story", "show", "{id}"),
    ("story", "history", "{id}"),
    ("story", "move", "{id}", "generated"),
    ("story", "move", "{id}", "in-elaboration", "--force", "--reason", "r"),
    ("story", "block", "{id}", "--reason", "r"),
    ("story", "unblock", "{id}"),
    ("story", "cancel", "{id}", "--reason", "r"),
    ("story", "update", "{id}", "--priority", "P1"),
    ("story", "split", "{id}", "--into", "a", "--into", "b"),
    ("story", "render", "{id}"),
    ("approve", "{id}", "--by", "pm"),
    ("artifact", "submit", "{id}", "elaboration"),
    ("artifact", "submit", "{id}", "elaboration", "{path}"),
    ("artifact", "list", "{id}"),
    ("artifact", "show", "{id}", "elaboration"),
    ("token", "log", "{id}", "elaboration", "--input", "1", "--output", "1"),
    ("budget", "show", "{id}"),
]


@pytest.mark.parametrize("bad_id", BAD_STORY_IDS, ids=repr)
def test_story_id_with_path_characters_is_invalid(seeded: Seeded, bad_id: str) -> None:
    """Every command that takes a story ID refuses a malformed one with INVALID_ID (exit 7)
    before it touches a file: nothing is written, inside the workspace or beside it."""
    ws = seeded.ws
    path = str(ws.write("inbox/elaboration.yaml", GOOD_ELABORATION))
    outside = listing(ws.root.parent)
    with unchanged(ws):
        for command in ID_COMMANDS:
            args = [part.format(id=bad_id, path=path) for part in command]
            error = refuse(ws, *args, code="INVALID_ID")
            assert error["details"]["value"].strip() == bad_id.strip(), (args, error)
    assert listing(ws.root.parent) == outside


@pytest.mark.parametrize("bad_id", ["../FLOW-001", "FLOW-001/x", "FLOW/../001", ""], ids=repr)
def test_story_id_with_path_characters_through_the_executable(seeded: Seeded, bad_id: str) -> None:
    ws = seeded.ws
    with unchanged(ws):
        refuse(ws, "story", "show", bad_id, code="INVALID_ID", via="run")
        refuse(ws, "story", "move", bad_id, "generated", code="INVALID_ID", via="run")
        refuse(ws, "artifact", "submit", bad_id, "elaboration", code="INVALID_ID", via="run")


@pytest.mark.parametrize("bad_id", ["../FLOW-001", "FLOW-001/x", "FLOW/../001", "flow-001"])
def test_dependency_with_path_characters_is_invalid(seeded: Seeded, bad_id: str) -> None:
    ws = seeded.ws
    with unchanged(ws):
        refuse(
            ws, "story", "new", "FLOW", "--title", "x", "--depends-on", bad_id, code="INVALID_ID"
        )
        refuse(ws, "story", "update", "FLOW-003", "--depends-on", bad_id, code="INVALID_ID")


BAD_PREFIXES = ["../FLOW", "FLOW/..", "..", "/etc", "flow", "F", "FLOW-001", "A" * 13, "1FLOW"]


@pytest.mark.parametrize("prefix", BAD_PREFIXES, ids=repr)
def test_epic_prefix_with_path_characters_is_invalid(seeded: Seeded, prefix: str) -> None:
    ws = seeded.ws
    outside = listing(ws.root.parent)
    with unchanged(ws):
        for args in [
            ("epic", "new", prefix, "--title", "x"),
            ("epic", "show", prefix),
            ("epic", "update", prefix, "--title", "x"),
            ("story", "new", prefix, "--title", "x"),
            ("story", "list", "--epic", prefix),
            ("board", "--epic", prefix),
            ("next", "--epic", prefix),
        ]:
            error = refuse(ws, *args, code="INVALID_ID")
            assert error["details"]["value"] == prefix, (args, error)
        if "-" not in prefix:  # budget show takes a story ID or a prefix
            refuse(ws, "budget", "show", prefix, code="INVALID_ID")
    assert listing(ws.root.parent) == outside


def test_empty_prefix(seeded: Seeded) -> None:
    ws = seeded.ws
    with unchanged(ws):
        refuse(ws, "epic", "new", "", "--title", "x", code="INVALID_ID")
        refuse(ws, "story", "new", "", "--title", "x", code="INVALID_ID")
        refuse(ws, "epic", "show", "", code="INVALID_ID")


# ---- statuses -------------------------------------------------------------------------------

BAD_STATUSES = ["bogus", "", "../generated", "generated/..", "GENERATED!", "in progress now"]


@pytest.mark.parametrize("status", BAD_STATUSES, ids=repr)
def test_unknown_status(seeded: Seeded, status: str) -> None:
    ws = seeded.ws
    with unchanged(ws):
        error = refuse(ws, "story", "move", "FLOW-003", status, code="INVALID_STATUS")
        assert error["details"]["value"] == status
        assert "in-elaboration" in error["hint"]  # it lists the 17 statuses
        refuse(
            ws, "story", "move", "FLOW-003", "generated", "--from", status, code="INVALID_STATUS"
        )
        refuse(ws, "story", "list", "--status", status or "''", code="INVALID_STATUS")


def test_unknown_status_to_unblock(seeded: Seeded) -> None:
    ws = seeded.ws
    blocked = ws.cli("story", "block", "FLOW-002", "--reason", "waiting")
    assert blocked.code == 0, blocked
    with unchanged(ws):
        refuse(ws, "story", "unblock", "FLOW-002", "--to", "bogus", code="INVALID_STATUS")


def _warned(result: Result, text: str) -> None:
    no_traceback(result)
    assert f"storyflow: warning: {text}" in result.stderr.splitlines(), result


def test_legacy_status_name_is_accepted_with_a_warning(seeded: Seeded) -> None:
    """FLOW-003 is pending: ``backlog`` is the old name of ``generated``."""
    ws = seeded.ws
    moved = ws.cli("story", "move", "FLOW-003", "backlog", "--json")
    assert moved.code == 0, moved
    assert (moved.json["from"], moved.json["to"]) == ("pending", "generated")
    _warned(moved, "legacy status 'backlog' mapped to 'generated'")
    history = ws.cli("story", "history", "FLOW-003", "--json").json
    assert history[-1]["to_status"] == "generated"
    story_file = ws.root / seeded.story_file("FLOW-003")
    assert "status: generated\n" in story_file.read_text(encoding="utf-8")


def test_legacy_status_name_in_plain_mode(seeded: Seeded) -> None:
    ws = seeded.ws
    moved = ws.cli("story", "move", "FLOW-003", "draft", "--from", "new")
    # draft and new both mean pending: FLOW-003 is already there
    assert moved.code == 5, moved
    check_plain_error(moved, "ALREADY_IN_STATUS", 5)
    _warned(moved, "legacy status 'draft' mapped to 'pending'")
    _warned(moved, "legacy status 'new' mapped to 'pending'")


def test_legacy_in_progress_spelling(seeded: Seeded) -> None:
    ws, driver = seeded.ws, seeded.driver
    story = new_story(driver.ctx, "FLOW", title="Ready")
    driver.drive_to(story, Status.READY_TO_WORK)
    driver.evidence_for(story, Status.IN_PROGRESS)  # a plan
    moved = ws.cli("story", "move", story, "in_progress", "--json")
    assert moved.code == 0, moved
    assert moved.json["to"] == "in-progress"
    _warned(moved, "status 'in_progress' read as 'in-progress'; write 'in-progress'")


def test_legacy_done(seeded: Seeded) -> None:
    ws, driver = seeded.ws, seeded.driver
    story = new_story(driver.ctx, "FLOW", title="Almost done")
    driver.drive_to(story, Status.UAT)
    driver.evidence_for(story, Status.COMPLETED)  # a passing gate, tokens for every phase
    moved = ws.cli("story", "move", story, "done", "--json")
    assert moved.code == 0, moved
    assert (moved.json["from"], moved.json["to"]) == ("uat", "completed")
    _warned(moved, "legacy status 'done' mapped to 'completed'")


def test_legacy_status_name_on_an_illegal_edge(seeded: Seeded) -> None:
    """A legacy name is still only a name: ``done`` from pending has no edge."""
    ws = seeded.ws
    with unchanged(ws):
        error = refuse(ws, "story", "move", "FLOW-003", "done", code="TRANSITION_NOT_ALLOWED")
        assert error["details"]["to"] == "completed"
        _warned(
            ws.cli("story", "move", "FLOW-003", "done"),
            "legacy status 'done' mapped to 'completed'",
        )


# ---- artifact kinds -------------------------------------------------------------------------

BAD_KINDS = ["elab0ration", "", "../plan", "plan/..", "story.yaml", "qa gate", "tokens"]


@pytest.mark.parametrize("kind", BAD_KINDS, ids=repr)
def test_unknown_artifact_kind(seeded: Seeded, kind: str) -> None:
    ws = seeded.ws
    path = str(ws.write("inbox/elaboration.yaml", GOOD_ELABORATION))
    with unchanged(ws):
        error = refuse(ws, "artifact", "submit", "FLOW-001", kind, path, code="INVALID_KIND")
        assert error["details"]["value"] == kind
        assert "code_review" in error["hint"]  # it lists the kinds
        refuse(ws, "artifact", "submit", "FLOW-001", kind, code="INVALID_KIND")
        refuse(ws, "artifact", "show", "FLOW-001", kind, code="INVALID_KIND")
        refuse(ws, "artifact", "validate", path, "--kind", kind, code="INVALID_KIND", via="run")
        schema = ws.cli("artifact", "schema", kind)  # no --json: it prints a schema
        check_plain_error(schema, "INVALID_KIND", 7)


# ---- unknown epics, stories and event types in the read-only views -------------------------

UNKNOWN_IN_VIEWS: list[tuple[tuple[str, ...], str]] = [
    (("models", "show", "--story", "NOPE-001"), "STORY_NOT_FOUND"),
    (("models", "show", "--story", "FLOW-099"), "STORY_NOT_FOUND"),
    (("models", "show", "--epic", "NOPE"), "EPIC_NOT_FOUND"),
    (("models", "show", "--epic", "FLOW", "--story", "FLOW-099"), "STORY_NOT_FOUND"),
    (("trace", "FLOW-001", "--type", "bogus"), "INVALID_INPUT"),
    (("trace", "--workspace", "--type", "transition", "--type", "Transition"), "INVALID_INPUT"),
]


@pytest.mark.parametrize(
    ("args", "code"), UNKNOWN_IN_VIEWS, ids=[" ".join(args) for args, _ in UNKNOWN_IN_VIEWS]
)
def test_unknown_epic_story_or_event_type_in_a_view(
    seeded: Seeded, args: tuple[str, ...], code: str
) -> None:
    """Refused as every other command refuses them, not shown as an empty or default table."""
    with unchanged(seeded.ws):
        error = refuse(seeded.ws, *args, code=code)
    if code == "INVALID_INPUT":
        assert "phase_start" in error["hint"] and "transition" in error["hint"]  # the types


def test_models_show_for_a_known_epic_or_story(seeded: Seeded) -> None:
    ws = seeded.ws
    for args, scope in [(("--epic", "FLOW"), "FLOW"), (("--story", "REVI-001"), "REVI-001")]:
        shown = ws.cli("models", "show", *args, "--json")
        assert shown.code == 0, shown
        assert {row["scope"] for row in shown.json["effective"]} == {scope}


# ---- duplicates -------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["staged", "flat"])
def test_duplicate_epic(seeded: Seeded, layout: str) -> None:
    ws = seeded.ws
    with unchanged(ws):
        error = refuse(
            ws, "epic", "new", "FLOW", "--title", "Again", "--layout", layout, code="DUPLICATE_ID"
        )
    assert "FLOW" in error["message"]


@pytest.mark.parametrize(
    ("prefix", "stray"),
    [
        ("FLOW", "plans/flow/backlog/FLOW-004"),
        ("FLOW", "plans/flow/done/FLOW-004"),
        ("FLOW", "plans/flow/in-progress/FLOW-004"),
        ("REVI", "plans/stories/REVI-002"),
    ],
)
def test_stray_folder_for_the_next_story(seeded: Seeded, prefix: str, stray: str) -> None:
    """A folder already on disk under the next story's ID: refused, nothing written, and the
    number is not used up."""
    ws = seeded.ws
    ws.write(f"{stray}/notes.md", "# left over from another branch\n")
    with unchanged(ws):
        error = refuse(ws, "story", "new", prefix, "--title", "Next", code="DUPLICATE_ID")
    assert stray in error["message"], error
    shutil.rmtree(ws.root / stray)
    created = ws.cli("story", "new", prefix, "--title", "Next", "--json")
    assert created.code == 0, created
    assert created.json["id"] == stray.rsplit("/", 1)[1]


def test_stray_file_where_the_next_story_folder_goes(seeded: Seeded) -> None:
    ws = seeded.ws
    ws.write("plans/flow/backlog/FLOW-004", "not a folder\n")
    with unchanged(ws):
        error = refuse(ws, "story", "new", "FLOW", "--title", "Next", code="INVALID_INPUT")
    assert "FLOW-004" in error["message"], error


def test_story_folder_copied_into_another_stage(seeded: Seeded) -> None:
    """A copy of FLOW-002's folder in another stage: a move that takes the folder to a new
    stage cannot tell which one is the story. Refused before anything is stored."""
    ws = seeded.ws
    folder = ws.root / seeded.folder("FLOW-002")
    shutil.copytree(folder, ws.root / "plans/flow/in-progress/FLOW-002")
    with unchanged(ws):
        error = refuse(ws, "story", "move", "FLOW-002", "in-elaboration", code="DUPLICATE_ID")
    assert "FLOW-002 has 2 folders" in error["message"], error


def test_story_folder_in_two_stages(seeded: Seeded) -> None:
    """FLOW-002 (generated, so backlog) lives in two other stage folders: every command that
    would write its story file is refused."""
    ws = seeded.ws
    folder = ws.root / seeded.folder("FLOW-002")
    shutil.copytree(folder, ws.root / "plans/flow/in-progress/FLOW-002")
    (ws.root / "plans/flow/ready-to-work").mkdir(parents=True, exist_ok=True)
    folder.rename(ws.root / "plans/flow/ready-to-work/FLOW-002")
    path = str(ws.write("inbox/elaboration.yaml", GOOD_ELABORATION))
    with unchanged(ws):
        for args in [
            ("story", "show", "FLOW-002"),
            ("story", "move", "FLOW-002", "cancelled", "--reason", "x"),
            ("story", "block", "FLOW-002", "--reason", "x"),
            ("story", "update", "FLOW-002", "--priority", "P1"),
            ("token", "log", "FLOW-002", "elaboration", "--input", "1", "--output", "1"),
            ("artifact", "submit", "FLOW-002", "elaboration", path),
            ("story", "render", "FLOW-002"),
        ]:
            error = refuse(ws, *args, code="DUPLICATE_ID")
            assert "FLOW-002 has 2 folders" in error["message"], (args, error)


# ---- dependencies -----------------------------------------------------------------------------


def test_dependency_on_an_unknown_story(seeded: Seeded) -> None:
    ws = seeded.ws
    with unchanged(ws):
        error = refuse(
            ws,
            "story",
            "new",
            "FLOW",
            "--title",
            "x",
            "--depends-on",
            "FLOW-099",
            code="UNKNOWN_DEPENDENCY",
        )
        assert error["details"]["dependency"] == "FLOW-099"
        refuse(
            ws,
            "story",
            "new",
            "FLOW",
            "--title",
            "x",
            "--depends-on",
            "FLOW-001,NOPE-001",
            code="UNKNOWN_DEPENDENCY",
        )
        refuse(
            ws, "story", "update", "FLOW-003", "--depends-on", "REVI-999", code="UNKNOWN_DEPENDENCY"
        )


def test_dependency_cycle_of_two(seeded: Seeded) -> None:
    """FLOW-002 depends on FLOW-001; FLOW-001 may not depend on FLOW-002."""
    ws = seeded.ws
    with unchanged(ws):
        error = refuse(
            ws, "story", "update", "FLOW-001", "--depends-on", "FLOW-002", code="DEPENDENCY_CYCLE"
        )
    assert error["details"]["cycle"] == ["FLOW-001", "FLOW-002", "FLOW-001"]
    assert "FLOW-001 -> FLOW-002 -> FLOW-001" in error["message"]


def test_dependency_cycle_of_three(seeded: Seeded) -> None:
    """FLOW-003 -> FLOW-002 -> FLOW-001: FLOW-001 may not depend on FLOW-003."""
    ws = seeded.ws
    with unchanged(ws):
        error = refuse(
            ws,
            "story",
            "update",
            "FLOW-001",
            "--depends-on",
            "REVI-001,FLOW-003",
            code="DEPENDENCY_CYCLE",
        )
    cycle = error["details"]["cycle"]
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"FLOW-001", "FLOW-002", "FLOW-003"}


def test_dependency_on_itself(seeded: Seeded) -> None:
    ws = seeded.ws
    with unchanged(ws):
        error = refuse(
            ws, "story", "update", "FLOW-002", "--depends-on", "FLOW-002", code="DEPENDENCY_CYCLE"
        )
        assert "itself" in error["message"]
        refuse(
            ws,
            "story",
            "update",
            "FLOW-002",
            "--depends-on",
            "FLOW-001",
            "--depends-on",
            "FLOW-002",
            code="DEPENDENCY_CYCLE",
        )


def test_invalid_requirement_names(seeded: Seeded) -> None:
    ws = seeded.ws
    with unchanged(ws):
        for name in ["../etc", "a/../b", "..", "/abs", "''"]:
            refuse(
                ws, "story", "new", "FLOW", "--title", "x", "--requires", name, code="INVALID_INPUT"
            )
            refuse(ws, "story", "update", "FLOW-003", "--requires", name, code="INVALID_INPUT")
            refuse(ws, "requirement", "met", name, code="INVALID_INPUT")


# ---- configuration ----------------------------------------------------------------------------

CONFIG_CASES: dict[str, tuple[tuple[str, str], str]] = {
    # name: ((old text in the initial storyflow.yaml, new text), the key the error names)
    "unknown top-level key": (("version: 1\n", "version: 1\ncolour: blue\n"), "colour"),
    "unknown defaults key": (("defaults:\n", "defaults:\n  colour: blue\n"), "defaults.colour"),
    "unknown limits key": (("limits:\n", "limits:\n  max_stories: 3\n"), "limits.max_stories"),
    "coverage above 100": (
        ("coverage_threshold: 45", "coverage_threshold: 200"),
        "defaults.coverage_threshold",
    ),
    "coverage not a number": (
        ("coverage_threshold: 45", "coverage_threshold: lots"),
        "defaults.coverage_threshold",
    ),
    "unknown enforcement": (("enforcement: advisory", "enforcement: loud"), "defaults.enforcement"),
    "unknown layout": (("layout: staged", "layout: spiral"), "defaults.layout"),
    "unknown time zone": (("timezone: UTC", "timezone: Mars/Olympus"), "defaults.timezone"),
    "approval not a boolean": (
        ("require_approval: false", "require_approval: maybe"),
        "defaults.require_approval",
    ),
    "negative file limit": (
        ("max_file_bytes: 1048576", "max_file_bytes: -1"),
        "limits.max_file_bytes",
    ),
    "zero file limit": (("max_file_bytes: 1048576", "max_file_bytes: 0"), "limits.max_file_bytes"),
    "negative reconnect time": (
        ("database_reconnect_seconds: 60", "database_reconnect_seconds: -5"),
        "limits.database_reconnect_seconds",
    ),
    "NaN reconnect time": (
        ("database_reconnect_seconds: 60", "database_reconnect_seconds: .nan"),
        "limits.database_reconnect_seconds",
    ),
    "future version": (("version: 1\n", "version: 2\n"), "version"),
    "defaults not a mapping": (("defaults:\n", "defaults: [1, 2]\nold_defaults:\n"), "defaults"),
    "unknown budget phase": (
        ("version: 1\n", "version: 1\nbudgets:\n  thinking: {estimate: 1, warning: 2, hard: 3}\n"),
        "budgets.thinking",
    ),
    "budget warning above hard": (
        ("version: 1\n", "version: 1\nbudgets:\n  implementation: {warning: 10, hard: 5}\n"),
        "budgets.implementation",
    ),
    "model without prices": (
        ("version: 1\n", "version: 1\nmodels:\n  my-model: {provider: acme}\n"),
        "models.my-model.input",
    ),
    "negative model price": (
        ("version: 1\n", "version: 1\nmodels:\n  m: {provider: a, input: -1, output: 1}\n"),
        "models.m.input",
    ),
    # NaN and infinity would make every cost sum NaN or infinite
    "NaN model price": (
        ("version: 1\n", "version: 1\nmodels:\n  m: {provider: a, input: .nan, output: 1}\n"),
        "models.m.input",
    ),
    "infinite model price": (
        ("version: 1\n", "version: 1\nmodels:\n  m: {provider: a, input: 1, output: .inf}\n"),
        "models.m.output",
    ),
    # int(.inf) raised OverflowError: an internal error instead of one naming the key
    "infinite budget": (
        ("version: 1\n", "version: 1\nbudgets:\n  elaboration: {warning: .inf, hard: .inf}\n"),
        "budgets.elaboration.warning",
    ),
    "fractional budget": (
        ("version: 1\n", "version: 1\nbudgets:\n  elaboration: {hard: 2.5}\n"),
        "budgets.elaboration.hard",
    ),
    "infinite circuit breaker": (
        ("version: 1\n", "version: 1\nruns:\n  circuit_breaker: .inf\n"),
        "runs.circuit_breaker",
    ),
}


def _break_config(ws: Workspace, old: str, new: str) -> bytes:
    config = ws.root / "storyflow.yaml"
    text = config.read_text(encoding="utf-8")
    assert old in text, old
    config.write_text(text.replace(old, new, 1), encoding="utf-8")
    return config.read_bytes()


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_storyflow_yaml(seeded: Seeded, case: str) -> None:
    ws = seeded.ws
    (old, new), key = CONFIG_CASES[case]
    before = capture(ws)
    good = (ws.root / "storyflow.yaml").read_bytes()
    bad = _break_config(ws, old, new)
    for args in [
        ("story", "new", "FLOW", "--title", "x"),
        ("story", "move", "FLOW-003", "generated"),
        ("story", "list"),
    ]:
        error = refuse(ws, *args, code="CONFIG_INVALID")
        assert error["details"] == {"key": key, "source": "storyflow.yaml"}, error
        assert error["message"].startswith(f"storyflow.yaml: {key}: "), error
        assert key in error["hint"]
    assert (ws.root / "storyflow.yaml").read_bytes() == bad  # the command did not "fix" it
    (ws.root / "storyflow.yaml").write_bytes(good)
    assert_same(before, capture(ws))


@pytest.mark.parametrize(
    ("old", "new", "key", "guess", "listed"),
    [
        ("version: 1\n", "version: 1\ndatabse_url: x\n", "databse_url", "database_url", "runs"),
        ("version: 1\n", "version: 1\nruns: {workerz: 2}\n", "runs.workerz", "workers", "agents"),
        (
            "version: 1\n",
            "version: 1\nruns: {breaker_threshold: 2}\n",
            "runs.breaker_threshold",
            "circuit_breaker",
            "review_loop_cap",
        ),
        (
            "version: 1\n",
            "version: 1\nruns: {agents: {x: {type: command, command: [a], timout: 3}}}\n",
            "runs.agents.x.timout",
            "timeout",
            "prompt",
        ),
    ],
)
def test_an_unknown_config_key_names_the_closest_one_and_every_one(
    seeded: Seeded, old: str, new: str, key: str, guess: str, listed: str
) -> None:
    """A misspelt key: the hint says which key was probably meant and lists the keys that
    place takes, so nobody has to look them up."""
    ws = seeded.ws
    _break_config(ws, old, new)
    error = refuse(ws, "story", "list", code="CONFIG_INVALID")
    assert error["message"] == f"storyflow.yaml: {key}: unknown key", error
    assert f"did you mean {guess}? " in error["hint"], error
    assert f", {listed}" in error["hint"] or f"are: {listed}" in error["hint"], error


def test_malformed_storyflow_yaml(seeded: Seeded) -> None:
    ws = seeded.ws
    before = capture(ws)
    good = (ws.root / "storyflow.yaml").read_bytes()
    _break_config(ws, "layout: staged", "layout: [staged")
    error = refuse(ws, "story", "new", "FLOW", "--title", "x", code="INVALID_YAML")
    assert error["message"].startswith("storyflow.yaml:"), error
    assert error["details"]["file"] == "storyflow.yaml"
    (ws.root / "storyflow.yaml").write_bytes(good)
    assert_same(before, capture(ws))


def test_non_utf8_storyflow_yaml(seeded: Seeded) -> None:
    ws = seeded.ws
    before = capture(ws)
    config = ws.root / "storyflow.yaml"
    good = config.read_bytes()
    config.write_bytes(good + b"# \xff\xfe\n")
    refuse(ws, "story", "new", "FLOW", "--title", "x", code="NOT_UTF8")
    config.write_bytes(good)
    assert_same(before, capture(ws))


ENV_CASES = {
    "STORYFLOW_ENFORCEMENT": "loud",
    "STORYFLOW_COVERAGE_THRESHOLD": "200",
    "STORYFLOW_MAX_FILE_BYTES": "lots",
    "STORYFLOW_DEFAULT_TIMEZONE": "Nowhere/City",
    "STORYFLOW_DEFAULT_LAYOUT": "spiral",
    "STORYFLOW_REQUIRE_APPROVAL": "maybe",
}


@pytest.mark.parametrize("variable", sorted(ENV_CASES))
def test_bad_environment_variable(seeded: Seeded, variable: str) -> None:
    ws = seeded.ws
    with unchanged(ws):
        error = refuse(
            ws,
            "story",
            "new",
            "FLOW",
            "--title",
            "x",
            code="CONFIG_INVALID",
            via="env",
            env={variable: ENV_CASES[variable]},
        )
    assert error["details"] == {"key": variable, "source": "environment"}, error
    assert error["message"].startswith(f"environment: {variable}: "), error


def test_unsupported_database_url(seeded: Seeded) -> None:
    ws = seeded.ws
    with unchanged(ws):
        refuse(ws, "--database-url", "mysql://root@localhost/db", "story", "list", code="USAGE")


def test_a_sqlite_url_into_a_missing_folder_is_refused_not_created(
    seeded: Seeded, tmp_path: Path
) -> None:
    """A mistyped URL must not quietly give an empty workspace in a new folder tree."""
    ws = seeded.ws
    missing = tmp_path / "missing"
    url = f"sqlite:///{missing}/dir/storyflow.db"
    for via in ("cli", "run"):  # the Click path and the executable's fast path
        with unchanged(ws):
            error = refuse(
                ws, "--database-url", url, "story", "list", code="DATABASE_UNREACHABLE", via=via
            )
        assert str(missing) in error["message"]
    assert not missing.exists()


# ---- no workspace -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("story", "list"),
        ("story", "new", "FLOW", "--title", "x"),
        ("epic", "new", "FLOW", "--title", "x"),
        ("story", "move", "FLOW-001", "generated"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_no_workspace(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Outside any workspace: exit 2 WORKSPACE_NOT_FOUND, and no .storyflow/ appears."""
    empty = tmp_path / "nowhere"
    empty.mkdir()

    def call(*argv: str) -> Result:
        return run_in(empty, *argv)

    error = refuse_with(call, *args, code="WORKSPACE_NOT_FOUND")
    assert "storyflow init" in error["hint"]
    assert listing(tmp_path) == ["nowhere"]


def test_workspace_option_naming_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "missing"

    def call(*argv: str) -> Result:
        return run_in(tmp_path, "--workspace", str(missing), *argv)

    refuse_with(call, "story", "new", "FLOW", "--title", "x", code="WORKSPACE_NOT_FOUND")
    assert not missing.exists()


def test_workspace_option_naming_a_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x\n")

    def call(*argv: str) -> Result:
        return run_in(tmp_path, "--workspace", str(tmp_path / "a-file"), *argv)

    refuse_with(call, "story", "list", code="USAGE")
    assert listing(tmp_path) == ["a-file"]


# ---- epic options -----------------------------------------------------------------------------


@pytest.mark.parametrize("tz", ["Mars/Olympus", "UTC+5", "../../etc/passwd", "America/"])
def test_bad_time_zone(seeded: Seeded, tz: str) -> None:
    ws = seeded.ws
    with unchanged(ws):
        error = refuse(ws, "epic", "new", "NEW", "--title", "x", "--tz", tz, code="INVALID_INPUT")
        assert error["details"]["value"] == tz
        assert "IANA" in error["hint"]
        refuse(ws, "epic", "update", "FLOW", "--tz", tz, code="INVALID_INPUT")
    assert not (ws.root / "plans/new").exists()


@pytest.mark.parametrize(
    ("option", "value", "code"),
    [
        ("--root", "../outside", "INVALID_INPUT"),
        ("--root", "/absolute", "INVALID_INPUT"),
        ("--root", "plans/../../outside", "INVALID_INPUT"),
        ("--coverage-threshold", "101", "INVALID_INPUT"),
        ("--coverage-threshold", "-1", "INVALID_INPUT"),
        ("--coverage-threshold", "lots", "USAGE"),
        ("--enforcement", "loud", "INVALID_INPUT"),
        ("--layout", "spiral", "USAGE"),
        ("--title", "   ", "INVALID_INPUT"),
        ("--title", "x" * 201, "INVALID_INPUT"),
    ],
)
def test_bad_epic_options(seeded: Seeded, option: str, value: str, code: str) -> None:
    ws = seeded.ws
    outside = listing(ws.root.parent)
    args = ["epic", "new", "NEW", "--title", "New"]
    if option == "--title":
        args = ["epic", "new", "NEW"]
    with unchanged(ws):
        refuse(ws, *args, option, value, code=code)
    assert listing(ws.root.parent) == outside


# ---- story options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "code"),
    [
        ("--priority", "P9", "INVALID_INPUT"),
        ("--priority", "urgent", "INVALID_INPUT"),
        ("--priority", "", "INVALID_INPUT"),
        ("--phase", "-1", "INVALID_INPUT"),
        ("--phase", "two", "USAGE"),
        ("--budget-multiplier", "0", "INVALID_INPUT"),
        ("--budget-multiplier", "-1", "INVALID_INPUT"),
        ("--budget-multiplier", "101", "INVALID_INPUT"),
        ("--budget-multiplier", "nan", "INVALID_INPUT"),
        ("--enforcement", "loud", "INVALID_INPUT"),
        ("--title", "  ", "INVALID_INPUT"),
    ],
)
def test_bad_story_options(seeded: Seeded, option: str, value: str, code: str) -> None:
    ws = seeded.ws
    with unchanged(ws):
        args = ["story", "new", "FLOW"] + ([] if option == "--title" else ["--title", "x"])
        refuse(ws, *args, option, value, code=code)
        if option not in ("--phase", "--title"):
            refuse(ws, "story", "update", "FLOW-003", option, value, code=code)


def test_update_without_changes(seeded: Seeded) -> None:
    ws = seeded.ws
    with unchanged(ws):
        refuse(ws, "story", "update", "FLOW-003", code="INVALID_INPUT")


# ---- token counts -----------------------------------------------------------------------------

TOKEN_CASES: list[tuple[tuple[str, ...], str]] = [
    (("--input", "-5", "--output", "3"), "INVALID_INPUT"),
    (("--input", "5", "--output", "-3"), "INVALID_INPUT"),
    (("--input", "5", "--output", "3", "--cache-read", "-1"), "INVALID_INPUT"),
    (("--input", "5", "--output", "3", "--cache-write", "-1"), "INVALID_INPUT"),
    (("--input", str(10**13), "--output", "3"), "INVALID_INPUT"),
    (("--before", "100", "--after", "50"), "INVALID_INPUT"),
    (("--before", "-100", "--after", "50"), "INVALID_INPUT"),
    (
        (
            "--before",
            "100",
        ),
        "INVALID_INPUT",
    ),
    (("--input", "5", "--output", "3", "--before", "1", "--after", "2"), "INVALID_INPUT"),
    ((), "INVALID_INPUT"),
    (("--input", "5", "--output", "3", "--cost-usd", "-0.5"), "INVALID_INPUT"),
    (("--input", "5", "--output", "3", "--cost-usd", "nan"), "INVALID_INPUT"),
    (("--input", "5", "--output", "3", "--cost-usd", "inf"), "INVALID_INPUT"),
    (("--input", "5", "--output", "3", "--model", "gpt-99"), "UNKNOWN_MODEL"),
    (("--input", "five", "--output", "3"), "USAGE"),
    (("--input", "1.5", "--output", "3"), "USAGE"),
]


# Numbers past a database integer (2**63) raised OverflowError from the driver: an internal
# error (exit 1) instead of the refusal with its code.
HUGE = str(10**20)
NUMBER_CASES: list[tuple[tuple[str, ...], str]] = [
    (("story", "new", "FLOW", "--title", "x", "--phase", HUGE), "INVALID_INPUT"),
    (("story", "new", "FLOW", "--title", "x", "--phase", "10000"), "INVALID_INPUT"),
    (("story", "update", "FLOW-001", "--phase", HUGE), "INVALID_INPUT"),
    (("story", "update", "FLOW-001", "--phase", "-1"), "INVALID_INPUT"),
    (("artifact", "show", "FLOW-001", "story", "--version", HUGE), "ARTIFACT_NOT_FOUND"),
    (("artifact", "show", "FLOW-001", "story", "--version", "0"), "USAGE"),
]


@pytest.mark.parametrize(
    ("args", "code"), NUMBER_CASES, ids=[" ".join(a[:2] + a[-2:]) for a, _ in NUMBER_CASES]
)
def test_numbers_out_of_range(seeded: Seeded, args: tuple[str, ...], code: str) -> None:
    ws = seeded.ws
    with unchanged(ws):
        refuse(ws, *args, code=code)


@pytest.mark.parametrize(
    ("options", "code"), TOKEN_CASES, ids=[" ".join(o) or "nothing" for o, _ in TOKEN_CASES]
)
def test_bad_token_counts(seeded: Seeded, options: tuple[str, ...], code: str) -> None:
    ws = seeded.ws
    with unchanged(ws):
        refuse(ws, "token", "log", "FLOW-001", "elaboration", *options, code=code)


@pytest.mark.parametrize("phase", ["thinking", "", "../elaboration", "elaboration/x"], ids=repr)
def test_unknown_budget_phase(seeded: Seeded, phase: str) -> None:
    ws = seeded.ws
    with unchanged(ws):
        refuse(
            ws,
            "token",
            "log",
            "FLOW-001",
            phase,
            "--input",
            "1",
            "--output",
            "1",
            code="UNKNOWN_PHASE",
        )


# ---- usage errors -----------------------------------------------------------------------------

USAGE_CASES: list[tuple[str, ...]] = [
    ("story", "move", "FLOW-001"),
    ("story", "frobnicate"),
    ("frobnicate",),
    ("story", "list", "--colour", "red"),
    ("story", "new", "FLOW"),
    ("story", "new", "FLOW", "--title", "x", "--phase", "two"),
    ("epic", "new", "NEW", "--title", "x", "--layout", "spiral"),
    ("next", "--limit", "ten"),
    ("next", "--limit", "-1"),
    ("story", "show", "FLOW-001", "FLOW-002"),
]


@pytest.mark.parametrize("args", USAGE_CASES, ids=" ".join)
def test_usage_errors(seeded: Seeded, args: tuple[str, ...]) -> None:
    """Exit 2: the JSON error body with --json, one line on stderr without it."""
    ws = seeded.ws
    with unchanged(ws):
        error = refuse(ws, *args, code="USAGE")
    assert error["details"] == {}


@pytest.mark.parametrize("args", USAGE_CASES[:3], ids=" ".join)
def test_usage_errors_through_the_executable(seeded: Seeded, args: tuple[str, ...]) -> None:
    ws = seeded.ws
    with unchanged(ws):
        refuse(ws, *args, code="USAGE", via="run")


def test_usage_error_names_the_command_to_ask_for_help(seeded: Seeded) -> None:
    result = seeded.ws.cli("story", "move", "FLOW-001")
    line = check_plain_error(result, "USAGE", 2)
    assert "Missing argument 'STATUS'" in line
    assert "storyflow story move --help" in line


# ---- the error contract, across codes ---------------------------------------------------------

CONTRACT_CASES: list[tuple[tuple[str, ...], str]] = [
    (("story", "show", "FLOW-999"), "STORY_NOT_FOUND"),
    (("epic", "show", "NOPE"), "EPIC_NOT_FOUND"),
    (("artifact", "show", "FLOW-002", "plan"), "ARTIFACT_NOT_FOUND"),
    (("artifact", "submit", "FLOW-002", "plan"), "ARTIFACT_NOT_FOUND"),
    (("story", "move", "FLOW-003", "completed"), "TRANSITION_NOT_ALLOWED"),
    (("story", "move", "FLOW-003", "pending"), "ALREADY_IN_STATUS"),
    (("story", "move", "FLOW-003", "blocked"), "GUARD_FAILED"),
    (("story", "move", "FLOW-003", "generated", "--from", "in-qa"), "VERSION_CONFLICT"),
    (("story", "move", "FLOW-003", "uat", "--force"), "REASON_REQUIRED"),
]


@pytest.mark.parametrize(
    ("args", "code"), CONTRACT_CASES, ids=[" ".join(a) for a, _ in CONTRACT_CASES]
)
def test_error_contract(seeded: Seeded, args: tuple[str, ...], code: str) -> None:
    """Every refusal, whatever its kind, has the same two shapes and changes nothing."""
    ws = seeded.ws
    with unchanged(ws):
        refuse(ws, *args, code=code)


def test_not_found_through_the_executable(seeded: Seeded) -> None:
    ws = seeded.ws
    check_plain_error(ws.run("story", "show", "FLOW-999"), "STORY_NOT_FOUND", 6)
    check_json_error(ws.run("story", "show", "FLOW-999", "--json"), "STORY_NOT_FOUND", 6)


def test_an_unexpected_failure_is_one_line_not_a_traceback(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 1, code INTERNAL, one line, unless STORYFLOW_DEBUG asks for the traceback."""
    ws = seeded.ws
    from storyflow.services import story_reads

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.delenv("STORYFLOW_DEBUG", raising=False)
    monkeypatch.setattr(story_reads, "list_stories", boom)
    monkeypatch.setattr(story_reads, "list_stories_json", boom)
    with unchanged(ws, with_views=False):
        error = refuse(ws, "story", "list", code="INTERNAL")
    assert "RuntimeError: boom" in error["message"]
    assert "STORYFLOW_DEBUG" in error["hint"]


# ---- extra arguments after an option's value ---------------------------------------------------

EXTRA_ARGUMENTS = [
    (
        ("story", "new", "FLOW", "--title", "Fix", "the", "thing"),
        "quote a value with spaces: --title 'Fix the thing'",
    ),
    (("story", "new", "FLOW", "--title=Fix", "it"), "quote a value with spaces: --title 'Fix it'"),
    (
        ("story", "block", "FLOW-003", "--reason", "waiting", "for", "infra"),
        "quote a value with spaces: --reason 'waiting for infra'",
    ),
    (
        ("story", "split", "FLOW-001", "--into", "the", "core", "--into", "edges"),
        "quote a value with spaces: --into 'the core'",
    ),
    (
        ("story", "new", "FLOW", "--title", "x", "--depends-on", "FLOW-001", "FLOW-002"),
        "give several values with commas (--depends-on A,B) or repeat --depends-on",
    ),
    (
        ("story", "new", "FLOW", "--title", "x", "--requires", "db", "api"),
        "give several values with commas (--requires A,B) or repeat --requires",
    ),
    # a value that is not words, and an argument that follows no option: the usual hint
    (
        ("story", "new", "FLOW", "--title", "x", "--priority", "P1", "oops"),
        "storyflow story new --help shows usage",
    ),
    (("story", "new", "FLOW", "extra", "--title", "x"), "storyflow story new --help shows usage"),
]


@pytest.mark.parametrize(
    ("args", "hint"), EXTRA_ARGUMENTS, ids=[" ".join(a) for a, _ in EXTRA_ARGUMENTS]
)
def test_extra_arguments_hint_at_what_was_meant(
    seeded: Seeded, args: tuple[str, ...], hint: str
) -> None:
    """An unquoted title or reason, or several IDs after one --depends-on, is a usage error
    (exit 2, nothing written) whose hint says how to write it."""
    with unchanged(seeded.ws):
        error = refuse(seeded.ws, *args, code="USAGE")
    assert error["hint"] == hint
    assert "Got unexpected extra argument" in error["message"]


def test_extra_arguments_hint_through_the_executable(seeded: Seeded) -> None:
    args = ("story", "new", "FLOW", "--title", "x", "--depends-on", "FLOW-001", "FLOW-002")
    with unchanged(seeded.ws):
        error = refuse(seeded.ws, *args, code="USAGE", via="run")
    assert (
        error["hint"] == "give several values with commas (--depends-on A,B) or repeat --depends-on"
    )
