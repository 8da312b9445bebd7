"""storyflow sync through the executable: a fresh clone rebuilds the board, history and
budgets; hand edits go through the rules (an illegal status exits 3 with the report); a
deleted Agent Log row and a conflicting edit wait for --prefer; --dry-run writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from storyflow.domain.statuses import Status
from tests.acceptance._helpers import Flow, ok
from tests.support import Workspace, assert_story_list_agrees_with_show
from tests.sync_helpers import Clones, clones, other_database_url

__all__ = ["clones", "other_database_url"]  # fixtures


def _report(result: Any, exit_status: int) -> dict[str, Any]:
    assert result.code == exit_status, result
    data: dict[str, Any] = result.json
    assert set(data) >= {"changes", "conflicts", "problems", "files", "nothing_to_do"}, data
    assert data["exit_status"] == exit_status
    return data


def _seconds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows at the precision the files keep (whole seconds; the log row is written a
    moment after the transition row, so the second may differ by one: compare the rest)."""
    return [{k: v for k, v in row.items() if k != "created_at"} for row in rows]


def _no_time(artifact: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in artifact.items() if k != "submitted_at"}


def _path(ws: Workspace, story_id: str) -> Path:
    shown = ok(ws.cli("story", "show", story_id, "--json")).json
    return ws.root / shown["path"]


def _setup(ws: Workspace, layout: str = "staged") -> Flow:
    flow = Flow(ws)
    prefix = "FLOW" if layout == "staged" else "REVI"
    flow.epic(prefix, "--layout", layout, "--tz", "America/Denver")
    done = flow.story(prefix)
    flow.drive_to(done, Status.COMPLETED)
    blocked = flow.story(prefix, "--depends-on", done)
    flow.drive_to(blocked, Status.BLOCKED)
    fresh = flow.story(prefix, "--priority", "P1")
    flow.drive_to(fresh, Status.GENERATED)
    return flow


def test_a_fresh_clone_rebuilds_board_history_and_budgets(
    workspace: Workspace, clones: Clones
) -> None:
    _setup(workspace, "staged")
    _setup(workspace, "flat")
    fresh = clones.fresh(workspace)
    report = _report(fresh.run("sync", "--json"), 0)
    assert report["rebuilt"]["stories"] == 6
    assert report["rebuilt"]["epics"] == 2
    for command in (("board", "--json"), ("epic", "list", "--json")):
        assert ok(fresh.run(*command)).json == ok(workspace.run(*command)).json, command
    for story_id in ("FLOW-001", "FLOW-002", "FLOW-003", "REVI-001", "REVI-002", "REVI-003"):
        mine = ok(workspace.cli("story", "history", story_id, "--json")).json
        theirs = ok(fresh.cli("story", "history", story_id, "--json")).json
        assert _seconds(theirs) == _seconds(mine), story_id
        budget = ("budget", "show", story_id, "--json")
        assert ok(fresh.cli(*budget)).json == ok(workspace.cli(*budget)).json
        # Artifact versions whose files are in the folders; the story snapshots taken on
        # entering elaboration live in the database only (the story file is the story).
        listed = ("artifact", "list", story_id, "--json")
        mine_artifacts = [a for a in ok(workspace.cli(*listed)).json if a["kind"] != "story"]
        rebuilt = ok(fresh.cli(*listed)).json
        assert [_no_time(a) for a in rebuilt] == [_no_time(a) for a in mine_artifacts]
    rebuilt_list = assert_story_list_agrees_with_show(fresh)  # rows and links copied in
    assert [s["depends_on"] for s in rebuilt_list if s["id"] == "FLOW-002"] == [["FLOW-001"]]
    # Nothing more to do, and the human summary says so.
    again = fresh.run("sync")
    assert again.code == 0 and "nothing to do" in again.stdout


NOTES = [
    "Graph analysis added complexity",
    "three lines:\n```\n## Agent Log\n~~~ and a tab\t",
    "inline ``` fence and `code` " * 12,  # longer than a line: never folded
]


def _notes(ws: Workspace, story_id: str) -> list[str | None]:
    shown = ok(ws.cli("budget", "show", story_id, "--json")).json
    assert shown["entries"] == len(shown["measurements"])
    return [entry["note"] for entry in shown["measurements"]]


def test_measurement_notes_travel_in_both_layouts_whatever_their_text(
    workspace: Workspace, clones: Clones
) -> None:
    """The seed's actual_measurements carry notes: storyflow renders them, check and sync
    read them back, a fresh clone gets them. In a Markdown story file they sit in a code
    fence, which no note may close."""
    flow = Flow(workspace)
    ids = []
    for prefix, layout in (("FLOW", "staged"), ("REVI", "flat")):
        flow.epic(prefix, "--layout", layout)
        story_id = flow.story(prefix)
        for note in NOTES:
            logged = ("token", "log", story_id, "elaboration", "--input", "7", "--output", "3")
            ok(workspace.cli(*logged, "--note", note))
        ok(workspace.cli("token", "log", story_id, "elaboration", "--before", "5", "--after", "9"))
        ids.append(story_id)
        assert _notes(workspace, story_id) == [*NOTES, None]
    text = _path(workspace, "REVI-001").read_text(encoding="utf-8")
    assert text.count("\n## Agent Log") == 1 and "## Token Budget" in text
    ok(workspace.cli("check"))
    assert _report(workspace.run("sync", "--json"), 0)["nothing_to_do"]
    fresh = clones.fresh(workspace)
    _report(fresh.run("sync", "--json"), 0)
    for story_id in ids:
        assert _notes(fresh, story_id) == [*NOTES, None], story_id
    ok(fresh.cli("check"))


SEED_MEASUREMENT = """\
  - phase: elaboration
    date: "2026-02-05"
    tokens_used: 12847
    notes: "Graph analysis added complexity"
"""


def _append_measurements(path: Path, entries: str) -> str:
    """Append entries to the file's actual_measurements as the seed's process does by hand;
    the file's text after."""
    text = path.read_text(encoding="utf-8").replace(
        "  actual_measurements: []\n", "  actual_measurements:\n"
    )  # no entry yet: the seed's starting point
    assert text.count("\n  total_used:") == 1
    edited = text.replace("\n  total_used:", "\n" + entries.rstrip("\n") + "\n  total_used:")
    path.write_text(edited, encoding="utf-8")
    return edited


def test_measurements_added_to_the_token_budget_by_hand_are_logged(
    workspace: Workspace, clones: Clones
) -> None:
    """The seed's measurement process ends with "add to story's actual_measurements": sync
    records such entries as token log would (a /cost delta, or reported counts priced by
    the catalogue), with an Agent Log row, and renders the file."""
    flow = Flow(workspace)
    flow.epic("FLOW", "--layout", "staged")
    story_id = flow.story("FLOW")
    ok(workspace.cli("token", "log", story_id, "elaboration", "--input", "10", "--output", "5"))
    path = _path(workspace, story_id)
    _append_measurements(
        path,
        SEED_MEASUREMENT
        + "  - phase: code_review\n    input: 1000\n    output: 200\n"
        + "    model: claude-sonnet-4\n    agent: reviewer-bot\n",
    )
    found = workspace.run("check", "--json")
    assert found.code == 3, found
    [finding] = found.json["findings"]
    assert "actual_measurements: 2 entries after the ledger's, not logged" in finding["message"]
    assert finding["hint"].startswith("storyflow sync logs the entries added"), finding
    report = _report(workspace.run("sync", "--json"), 0)
    [change] = report["changes"]
    assert (change["action"], change["story"]) == ("tokens_logged", story_id), report
    assert change["measurements"] == [
        {"phase": "elaboration", "tokens": 12847, "source": "measured", "model": None},
        {"phase": "code_review", "tokens": 1200, "source": "reported", "model": "claude-sonnet-4"},
    ]
    assert report["problems"] == [], report
    shown = ok(workspace.cli("budget", "show", story_id, "--json")).json
    added = shown["measurements"][1:]
    assert [(m["tokens"], m["source"], m["note"], m["agent"]) for m in added] == [
        (12847, "measured", "Graph analysis added complexity", "tester"),
        (1200, "reported", None, "reviewer-bot"),
    ]
    assert added[1]["cost_usd"] and added[1]["cost_usd"] > 0  # priced by the catalogue
    assert added[0]["date"] == "2026-02-05T00:00:00Z"  # the date written down; none: now
    assert added[1]["date"] >= shown["measurements"][0]["date"]
    assert shown["phases"]["elaboration"]["used"] == 15 + 12847
    text = path.read_text(encoding="utf-8")
    assert "tokens: elaboration +12,847 (measured)" in text  # the Agent Log says so
    assert "tokens_used: 12847\n    input: 0" in text  # rendered as storyflow writes it
    ok(workspace.cli("check"))
    assert _report(workspace.run("sync", "--json"), 0)["nothing_to_do"]
    fresh = clones.fresh(workspace)
    _report(fresh.run("sync", "--json"), 0)
    budget = ("budget", "show", story_id, "--json")
    assert ok(fresh.cli(*budget)).json == ok(workspace.cli(*budget)).json
    # An entry added after an edited one is not logged: the block was edited (as check
    # says), and sync puts the ledger's back.
    before = ok(workspace.cli(*budget)).json
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("agent: reviewer-bot", "agent: someone", 1), encoding="utf-8")
    _append_measurements(path, SEED_MEASUREMENT)
    report = _report(workspace.run("sync", "--json"), 0)
    assert [p["code"] for p in report["problems"]] == ["PROJECTION_EDITED"], report
    assert [c["action"] for c in report["changes"]] == ["rendered"], report
    assert ok(workspace.cli(*budget)).json == before
    assert path.read_text(encoding="utf-8") == text


def test_a_fresh_clone_logs_the_measurements_added_by_hand_after_its_rebuild(
    workspace: Workspace, clones: Clones
) -> None:
    """A rebuild reads the entries the Agent Log's "tokens: …" rows logged; those a person
    added after them (not synced where they were written) are logged through the rules."""
    flow = Flow(workspace)
    flow.epic("REVI", "--layout", "flat")
    story_id = flow.story("REVI")
    ok(workspace.cli("token", "log", story_id, "elaboration", "--input", "10", "--output", "5"))
    _append_measurements(_path(workspace, story_id), SEED_MEASUREMENT)
    fresh = clones.fresh(workspace)
    report = _report(fresh.run("sync", "--json"), 0)
    assert report["rebuilt"]["stories"] == 1, report
    assert [(c["action"], c["story"]) for c in report["changes"] if c["story"]] == [
        ("imported", story_id),
        ("tokens_logged", story_id),
    ], report
    measurements = ok(fresh.cli("budget", "show", story_id, "--json")).json["measurements"]
    assert [(m["tokens"], m["source"], m["note"]) for m in measurements] == [
        (15, "reported", None),
        (12847, "measured", "Graph analysis added complexity"),
    ]
    assert "tokens: elaboration +12,847 (measured)" in _path(fresh, story_id).read_text("utf-8")
    ok(fresh.cli("check"))
    assert _report(fresh.run("sync", "--json"), 0)["nothing_to_do"]


def test_a_measurement_added_by_hand_that_cannot_be_logged_is_reported_and_kept(
    workspace: Workspace,
) -> None:
    flow = Flow(workspace)
    flow.epic("FLOW", "--layout", "staged")
    story_id = flow.story("FLOW")
    path = _path(workspace, story_id)
    budget = ("budget", "show", story_id, "--json")
    before = ok(workspace.cli(*budget)).json
    refused = {
        "    tokens_used: 5\n": ("INVALID_MEASUREMENT", "phase is missing"),
        "    input: 10\n    output: 5\n    tokens_used: 99\n": (
            "INVALID_MEASUREMENT",
            "tokens_used 99 is not input + output + cache (15)",
        ),
        "    tokens_used: 5\n    model: nonesuch\n": ("UNKNOWN_MODEL", "unknown model"),
        "    tokens_used: 5\n    date: last tuesday\n": (
            "INVALID_MEASUREMENT",
            "'last tuesday' is not an ISO-8601 time",
        ),
        "    tokens_used: 5\n    date: '2999-01-01'\n": ("INVALID_INPUT", "in the future"),
    }
    for body, (code, words) in refused.items():
        phase = "" if "phase" in words else "    phase: implementation\n"
        entry = "  - " + (phase + body)[4:]
        text = _append_measurements(path, SEED_MEASUREMENT + entry)
        report = _report(workspace.run("sync", "--json"), 7)
        [problem] = report["problems"]
        assert (problem["code"], problem["story"]) == (code, story_id), report
        assert words in problem["message"] and "measurement 2" in problem["message"], problem
        assert report["changes"] == [], report  # nothing of the story, not even the good one
        assert path.read_text(encoding="utf-8") == text  # the person's entries stay
        assert ok(workspace.cli(*budget)).json == before
        # --prefer db drops them: the file is the ledger's again
        report = _report(workspace.run("sync", "--prefer", "db", "--json"), 0)
        assert [p["code"] for p in report["problems"]] == ["PROJECTION_EDITED"], report
        assert "tokens_used: 12847" not in path.read_text(encoding="utf-8")
        assert ok(workspace.cli(*budget)).json == before
        ok(workspace.cli("check"))


def _uninitialised_clone(ws: Workspace, clones: Clones, name: str = "first") -> Workspace:
    """A clone as git gives it: storyflow.yaml and plans/, no .storyflow/, no init run; on
    the embedded default (the local database is what a clone lacks: a team's PostgreSQL
    database is shared, and the test suite's are made with the schema in place)."""
    root = clones.tmp / name
    shutil.copytree(ws.root / "plans", root / "plans")
    shutil.copy2(ws.root / "storyflow.yaml", root / "storyflow.yaml")
    assert "\ndatabase_url:" not in (root / "storyflow.yaml").read_text("utf-8")
    made = Workspace(root=root, database_url=None)
    clones.made.append(made)
    return made


def test_a_read_on_a_new_database_says_sync_rebuilds_it(
    workspace: Workspace, clones: Clones
) -> None:
    """A fresh clone's first read creates an empty database: the board is empty, and the
    command says why and what to run; sync, the command that fills it, does not warn."""
    _setup(workspace, "staged")
    first = _uninitialised_clone(workspace, clones)
    listed = first.run("story", "list", "--json")
    assert listed.code == 0 and listed.json == []
    assert "new, empty database" in listed.stderr and "storyflow sync" in listed.stderr
    assert "new, empty database" not in first.run("board").stderr  # only when created
    second = _uninitialised_clone(workspace, clones, "second")
    synced = second.run("sync", "--json")
    assert synced.code == 0 and synced.json["rebuilt"]["stories"] == 3
    assert "warning" not in synced.stderr
    third = _uninitialised_clone(workspace, clones, "third")
    initialised = ok(third.run("init"))
    assert "next: storyflow sync rebuilds the new database" in initialised.stdout
    assert "storyflow sync" not in ok(third.run("init")).stdout  # the database exists now
    assert [s["id"] for s in ok(second.run("story", "list", "--json")).json] == [
        "FLOW-001",
        "FLOW-002",
        "FLOW-003",
    ]


def test_hand_edited_status_legal_and_illegal(workspace: Workspace) -> None:
    _setup(workspace)
    ok(workspace.run("sync"))
    path = _path(workspace, "FLOW-003")
    text = path.read_text(encoding="utf-8")
    # illegal: generated -> completed is no edge; reported, not applied, exit 3
    path.write_text(text.replace("status: generated", "status: completed"), encoding="utf-8")
    report = _report(workspace.run("sync", "--json"), 3)
    assert [(p["code"], p["story"]) for p in report["problems"]] == [
        ("TRANSITION_NOT_ALLOWED", "FLOW-003")
    ]
    assert report["problems"][0]["file"] == path.relative_to(workspace.root).as_posix()
    assert ok(workspace.cli("story", "show", "FLOW-003", "--json")).json["status"] == "generated"
    human = workspace.run("sync")
    assert human.code == 3 and "error[TRANSITION_NOT_ALLOWED]" in human.stdout
    # legal: generated -> in-elaboration (the Reuse Plan is written): applied with history
    filled = text.replace("reuse_plan: ''", "reuse_plan: Reuses @repo/shared.")
    path.write_text(filled.replace("status: generated", "status: in-elaboration"))
    report = _report(workspace.run("sync", "--json", "--actor", "editor"), 0)
    assert [(c["action"], c["from"], c["to"]) for c in report["changes"]] == [
        ("moved", "generated", "in-elaboration")
    ]
    last = ok(workspace.cli("story", "history", "FLOW-003", "--json")).json[-1]
    assert (last["to_status"], last["actor"]) == ("in-elaboration", "editor")


def test_deleted_agent_log_row_waits_for_prefer_db(workspace: Workspace) -> None:
    _setup(workspace, "flat")
    ok(workspace.run("sync"))
    path = _path(workspace, "REVI-001")
    text = path.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if "status: in-qa -> uat" in line]
    assert len(rows) == 1
    cut = text.replace(rows[0] + "\n", "")
    path.write_text(cut, encoding="utf-8")
    report = _report(workspace.run("sync", "--json"), 5)
    assert [p["code"] for p in report["problems"]] == ["AGENT_LOG_EDITED"]
    assert path.read_text(encoding="utf-8") == cut
    report = _report(workspace.run("sync", "--prefer", "db", "--json"), 0)
    assert path.read_text(encoding="utf-8") == text
    _report(workspace.run("sync", "--json"), 0)


def test_conflicting_edit_on_both_sides(workspace: Workspace, clones: Clones) -> None:
    _setup(workspace)
    ok(workspace.run("sync"))
    mate = clones.teammate(workspace)
    ok(mate.cli("story", "update", "FLOW-003", "--priority", "P3"))
    path = _path(workspace, "FLOW-003")
    edited = path.read_text(encoding="utf-8").replace("priority: P1", "priority: P0")
    path.write_text(edited, encoding="utf-8")
    report = _report(workspace.run("sync", "--json"), 5)
    assert [
        (c["field"], c["file_value"], c["db_value"], c["resolution"]) for c in report["conflicts"]
    ] == [("priority", "P0", "P3", None)]
    assert path.read_text(encoding="utf-8") == edited
    assert ok(workspace.cli("story", "show", "FLOW-003", "--json")).json["priority"] == "P3"
    dry = _report(workspace.run("sync", "--prefer", "files", "--dry-run", "--json"), 0)
    assert dry["dry_run"] and [c["resolution"] for c in dry["conflicts"]] == ["files"]
    assert ok(workspace.cli("story", "show", "FLOW-003", "--json")).json["priority"] == "P3"
    _report(workspace.run("sync", "--prefer", "files", "--json"), 0)
    assert ok(workspace.cli("story", "show", "FLOW-003", "--json")).json["priority"] == "P0"


def test_new_artifact_file_and_noop(workspace: Workspace) -> None:
    _setup(workspace)
    ok(workspace.run("sync"))
    folder = _path(workspace, "FLOW-003").parent
    (folder / "elaboration.yaml").write_text(
        yaml.safe_dump({"verdict": "NEEDS_REFINEMENT", "summary": "unclear"}), encoding="utf-8"
    )
    report = _report(workspace.run("sync", "--json"), 0)
    assert [(c["action"], c["kind"], c["version"]) for c in report["changes"]] == [
        ("submitted", "elaboration", 1)
    ]
    shown = ok(workspace.cli("artifact", "list", "FLOW-003", "--json")).json
    assert any(a["kind"] == "elaboration" and a["verdict"] == "NEEDS_REFINEMENT" for a in shown)
    noop = _report(workspace.run("sync", "--json"), 0)
    assert noop["nothing_to_do"] and noop["files"]["read"] == 0


def test_a_story_folder_renamed_by_hand_is_not_rendered_anew_beside_it(
    workspace: Workspace,
) -> None:
    """FLOW-003's folder renamed to FLOW-009: sync says so and does not render FLOW-003 again
    from the database (which would put an empty copy where the folder is to go back, the
    text written in the file left beside it). Renamed back, nothing was lost."""
    _setup(workspace)
    path = _path(workspace, "FLOW-003")
    path.write_text(
        path.read_text("utf-8").replace("description: ''", "description: The PM's text."),
        "utf-8",
    )
    ok(workspace.run("sync"))
    written = path.read_text("utf-8")
    renamed = path.parent.with_name("FLOW-009")
    path.parent.rename(renamed)
    report = _report(workspace.run("sync", "--json"), 7)
    problems = {(p["code"], p["story"]): p for p in report["problems"]}
    assert set(problems) == {
        ("ARTIFACT_STORY_MISMATCH", "FLOW-009"),
        ("ARTIFACT_STORY_MISMATCH", "FLOW-003"),
    }, report
    left = problems[("ARTIFACT_STORY_MISMATCH", "FLOW-003")]
    assert "not rendered again from the database" in left["message"], left
    folder, back = (p.relative_to(workspace.root) for p in (renamed, path.parent))
    moved = f"git mv {folder} {back}"
    assert moved in left["hint"], left
    assert not path.parent.exists()  # nothing rendered where the folder is to go back
    assert [c for c in report["changes"] if c.get("story") == "FLOW-003"] == [], report
    # check says the same: the missing folder is the renamed one, not a file to render anew
    checked = workspace.run("check", "--json")
    assert checked.code == 3, checked
    hints = {(f["code"], f["story"]): f["hint"] for f in checked.json["findings"]}
    assert hints[("CHECK_MISSING_STORY_FILE", "FLOW-003")] == (
        f"give the folder its story's name: {moved}"
    ), hints
    assert "says it is FLOW-003" in hints[("CHECK_UNTRACKED_STORY", "FLOW-009")], hints
    renamed.rename(path.parent)
    again = _report(workspace.run("sync", "--json"), 0)
    assert again["problems"] == [], again
    assert path.read_text("utf-8") == written
    ok(workspace.run("check"))


def test_dry_run_on_an_empty_database_writes_nothing(workspace: Workspace, clones: Clones) -> None:
    _setup(workspace)
    fresh = clones.fresh(workspace)
    before = fresh.snapshot()
    report = _report(fresh.run("sync", "--dry-run", "--json"), 0)
    assert report["rebuilt"]["stories"] == 3
    assert ok(fresh.run("board", "--json")).json["total"] == 0
    assert fresh.snapshot() == before
    shutil.rmtree(fresh.root / "plans")
    empty = _report(fresh.run("sync", "--json"), 0)
    assert empty["nothing_to_do"]


def _key(path: Path, key: str) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))[key]


def test_a_hand_edit_waiting_for_sync_survives_the_engines_changes(
    workspace: Workspace,
) -> None:
    """A person edits a story file's title and priority; before any sync, the engine moves
    the story, a run takes a phase, a story update sets another field and a split rewires
    the story's dependencies. Each re-renders the file: the edits stay, beside what each
    change wrote, and the next sync applies them."""
    flow = Flow(workspace)
    flow.epic("FLOW")
    story = flow.story("FLOW")
    other = flow.story("FLOW")
    ok(workspace.run("story", "update", story, "--depends-on", other))
    ok(workspace.run("sync"))
    path = _path(workspace, story)
    text = path.read_text(encoding="utf-8")
    edited = text.replace("title: A story", "title: Renamed by hand", 1).replace(
        "priority: P2", "priority: P0", 1
    )
    assert edited.count("Renamed by hand") == 1 and "priority: P0" in edited
    path.write_text(edited, encoding="utf-8")

    ok(workspace.run("story", "move", story, "generated"))
    path = _path(workspace, story)
    assert (_key(path, "status"), _key(path, "title"), _key(path, "priority")) == (
        "generated",
        "Renamed by hand",
        "P0",
    )
    updated = ok(workspace.run("story", "update", story, "--phase", "3"))
    assert (_key(path, "phase"), _key(path, "title")) == (3, "Renamed by hand")
    assert "warning" not in updated.stderr  # the edits it leaves alone are not its business
    # the dependency splits: the rewiring writes depends_on, and only that
    flow.drive_to(other, Status.NEEDS_SPLIT)
    ok(workspace.run("story", "split", other, "--into", "core", "--into", "edges"))
    children = ok(workspace.run("story", "show", other, "--json")).json["superseded_by"]
    path = _path(workspace, story)
    assert (sorted(_key(path, "depends_on")), _key(path, "title")) == (
        sorted(children),
        "Renamed by hand",
    )
    shown = ok(workspace.run("story", "show", story, "--json")).json
    assert (shown["title"], shown["priority"]) != ("Renamed by hand", "P0")  # not synced yet

    report = _report(workspace.run("sync", "--json"), 0)
    assert [(c["action"], c["story"]) for c in report["changes"]] == [("updated", story)]
    shown = ok(workspace.run("story", "show", story, "--json")).json
    assert (shown["title"], shown["priority"], shown["phase"]) == ("Renamed by hand", "P0", 3)
    assert sorted(shown["depends_on"]) == sorted(children)
    assert ok(workspace.run("check")).code == 0


def test_an_update_of_a_field_edited_by_hand_says_it_replaced_the_edit(
    workspace: Workspace,
) -> None:
    """The command's value wins over an unsynced hand edit of the same field, with a
    warning naming what the file said; the file's other pending edit stays."""
    flow = Flow(workspace)
    flow.epic("FLOW")
    story = flow.story("FLOW")
    path = _path(workspace, story)
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("title: A story", "title: Renamed by hand", 1).replace(
            "priority: P2", "priority: P0", 1
        ),
        encoding="utf-8",
    )
    updated = ok(workspace.run("story", "update", story, "--title", "Named by command"))
    assert (
        f"warning: {story}: the story file had title 'Renamed by hand', not yet synced; "
        "the update replaced it with 'Named by command'"
    ) in updated.stderr
    assert (_key(path, "title"), _key(path, "priority")) == ("Named by command", "P0")
    report = _report(workspace.run("sync", "--json"), 0)
    assert [c.get("fields") for c in report["changes"]] == [{"priority": "P0"}]
    shown = ok(workspace.run("story", "show", story, "--json")).json
    assert (shown["title"], shown["priority"]) == ("Named by command", "P0")
