"""The pure parts of sync: reading the Agent Log back as history, the log's state against the
database's, artifact names by layout, conflict markers, the epic file, and the YAML fast
paths a rebuild relies on (same data, same refusals as PyYAML's safe constructor)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storyflow.adapters.files import epic_file, yamlio
from storyflow.domain.artifacts import ArtifactKind, fingerprint, submitted_action
from storyflow.domain.layouts import LAYOUTS, LayoutName
from storyflow.domain.model import AgentLogRow, Epic, EpicSettings
from storyflow.domain.statuses import Status
from storyflow.errors import InvalidInput, StoryflowError
from storyflow.services.sync_history import replay
from storyflow.services.sync_merge import changed_by, log_state
from storyflow.services.sync_read import conflict_marker_line
from storyflow.services.sync_survey import Classifier

# ---- YAML: the fast constructor and the cheap depth bound ----------------------------------

DOCUMENTS = [
    "a: 1\nb: 2.5\nc: true\nd: null\ne: ~\nf: text\ng: '1'\nh: \"quoted\"\n",
    "on: yes\noff: no\nwhen: 2026-03-02\nstamp: 2026-03-02T15:04:05Z\n",
    "list:\n- 1\n- two\n- [3, 4]\n- {x: y}\nempty: []\nnone: {}\n",
    "1: int key\n2.5: float key\nnull: null key\ntrue: bool key\n",
    "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n",
    "text: |\n  line one\n  line two\nfolded: >\n  a\n  b\nhex: 0x1F\noct: 0o17\n",
    "nested:\n  deeper:\n    deepest:\n      - a: 1\n        b: [x, {y: z}]\n",
    "set: !!set {a, b}\nstr: !!str 123\n",
    "",
    "- just\n- a list\n",
    "inf: .inf\nnan_is: .nan\nneg: -12_000\n",
]


def _reference(text: str) -> object:
    loader = yamlio._Loader(text)
    try:
        return loader.get_single_data()  # PyYAML's own construct_document
    finally:
        loader.dispose()


@pytest.mark.parametrize("text", DOCUMENTS)
def test_fast_constructor_gives_what_pyyaml_gives(text: str) -> None:
    expected = _reference(text)
    found = yamlio.load_yaml(text, source="t")
    if expected != expected:  # pragma: no cover - nan never equals itself
        return
    assert repr(found) == repr(expected)


@pytest.mark.parametrize("text", ["dup: 1\ndup: 2\n", "a: &a 1\nb: *a\nb: 2\n", "1: x\n1: y\n"])
def test_a_key_written_twice_is_refused_by_both_constructors(text: str) -> None:
    for load in (_reference, lambda t: yamlio.load_yaml(t, source="t")):
        with pytest.raises((InvalidInput, yamlio._DuplicateKey)):
            load(text)
    with pytest.raises(InvalidInput) as caught:
        yamlio.load_yaml(text, source="t")
    assert caught.value.code == "DUPLICATE_KEY" and caught.value.details["line"] in (2, 3)


def test_fast_constructor_keeps_the_refusals() -> None:
    with pytest.raises(InvalidInput) as caught:
        yamlio.load_yaml("? [a, b]\n: unhashable\n", source="t")
    assert caught.value.code == "INVALID_YAML"
    with pytest.raises(InvalidInput):
        yamlio.load_yaml("x: !python/object:os.system echo\n", source="t")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    with pytest.raises(InvalidInput) as caught:
        yamlio.load_yaml(bomb, source="t")
    assert caught.value.code == "YAML_TOO_COMPLEX"


def _depth(text: str) -> int:
    """The document's real nesting depth, from PyYAML's (iterative) event parser."""
    import yaml

    depth = deepest = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            deepest = max(deepest, depth)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return deepest


def _nested(depth: int, inline: bool) -> str:
    if inline:
        return "- " * depth + "x\n"
    return "".join(" " * (2 * i) + f"k{i}:\n" for i in range(depth)) + " " * 2 * depth + "v\n"


@pytest.mark.parametrize(
    "text",
    [
        *DOCUMENTS,
        _nested(5, inline=False),
        _nested(60, inline=False),
        _nested(40, inline=True),
        "a: {b: {c: d}}\n" * 50,
        "x:\n" + "  - a: 1\n    b: 2\n" * 100,
        "? - a\n  - b\n: - c\n",
        "- - - - - - - - - - - - x\n" * 20,
    ],
)
def test_depth_bound_is_never_below_the_real_depth(text: str) -> None:
    assert yamlio._depth_bound(text) >= _depth(text)


def test_too_deep_documents_are_still_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        yamlio.load_yaml(_nested(150, inline=False), source="t")
    assert caught.value.code == "YAML_TOO_COMPLEX"
    with pytest.raises(InvalidInput):
        yamlio.load_yaml("[" * 200 + "]" * 200, source="t")


# ---- the Agent Log as history ---------------------------------------------------------------


def _row(
    action: str, outputs: str = "story.yaml", agent: str = "amy", minute: int = 0
) -> AgentLogRow:
    return AgentLogRow(
        timestamp=f"2026-03-02T10:{minute:02d}:00-07:00",
        agent=agent,
        action=action,
        outputs=outputs,
    )


def test_replay_reads_moves_reasons_forced_and_budget_confirmations() -> None:
    rows = [
        _row("story created (pending)"),
        _row("status: pending -> generated (worth it) [budget overrun confirmed]", minute=1),
        _row("elaboration v1 submitted: PASS", "elaboration.yaml", minute=2),
        _row("status: generated -> blocked (waiting on infra)", minute=3),
        _row("status: blocked -> generated", minute=4),
        _row("elaboration v2 submitted: PASS", "elaboration.yaml", agent="bob", minute=5),
        _row("elaboration v2 approved by pm", "looks right", minute=6),
        _row("status: generated -> in-progress (FORCED: hotfix (urgent))", minute=7),
        _row("status: in-progress -> code-review-failed", minute=8),
        _row("updated title, priority", ""),
    ]
    history = replay("FLOW-001", rows, Status.PENDING, "f")
    assert history.status is Status.CODE_REVIEW_FAILED
    moves = [
        (
            t["source"],
            t["target"],
            t["reason"],
            t["forced"],
            t["budget_confirmed"],
            t["story_version"],
        )
        for t in history.transitions
    ]
    assert moves == [
        (None, Status.PENDING, "created", False, False, 1),
        (Status.PENDING, Status.GENERATED, "worth it", False, True, 2),
        (Status.GENERATED, Status.BLOCKED, "waiting on infra", False, False, 4),
        (Status.BLOCKED, Status.GENERATED, None, False, False, 5),
        (Status.GENERATED, Status.IN_PROGRESS, "hotfix (urgent)", True, False, 8),
        (Status.IN_PROGRESS, Status.CODE_REVIEW_FAILED, None, False, False, 9),
    ]
    assert history.transitions[1]["at"] == datetime(2026, 3, 2, 17, 1, tzinfo=UTC)
    assert history.review_iterations == 1 and history.qa_iterations == 0
    assert history.blocked_from is None
    submission = history.submissions[(ArtifactKind.ELABORATION, "elaboration.yaml")]
    assert (submission.version, submission.agent, submission.story_version) == (2, "bob", 6)
    assert history.approvals[0]["version"] == 2 and history.approvals[0]["note"] == "looks right"


def test_a_submitted_row_carries_the_files_hash_and_replay_reads_it_back() -> None:
    text = "verdict: PASS\nsummary: narrowed\n"
    action = submitted_action(ArtifactKind.ELABORATION, 2, "PASS", text)
    assert action == f"elaboration v2 submitted: PASS (sha256 {fingerprint(text)})"
    assert submitted_action(ArtifactKind.PLAN, 1, None, text).startswith("plan v1 submitted (")
    # line ends converted on checkout are the same content; any other change is not
    assert fingerprint(text.replace("\n", "\r\n")) == fingerprint(text)
    assert fingerprint(text.replace("narrowed", "narrowed.")) != fingerprint(text)
    rows = [
        _row("story created (pending)"),
        _row(action, "elaboration.yaml", minute=1),
        _row(submitted_action(ArtifactKind.PLAN, 1, None, "x"), "plan.yaml", minute=2),
        _row("proof v1 submitted", "proof.md", minute=3),  # written before rows had the hash
    ]
    history = replay("FLOW-001", rows, Status.PENDING, "f")
    found = {
        kind: (s.version, s.verdict, s.fingerprint) for (kind, _), s in history.submissions.items()
    }
    assert found == {
        ArtifactKind.ELABORATION: (2, "PASS", fingerprint(text)),
        ArtifactKind.PLAN: (1, None, fingerprint("x")),
        ArtifactKind.PROOF: (1, None, None),
    }
    assert changed_by(rows[1:]) == set()  # submissions change no editable field


def test_replay_of_a_split_child_and_of_an_empty_log() -> None:
    child = replay("FLOW-004", [_row("story created (split from FLOW-002)")], Status.PENDING, "f")
    assert child.transitions[0]["reason"] == "split from FLOW-002"
    empty = replay("FLOW-005", [], Status.GENERATED, "f")
    assert empty.synthetic_creation and empty.status is Status.PENDING


# ---- the log's state against the database's -------------------------------------------------


def test_log_state_tells_behind_from_appended_from_tampered() -> None:
    db = [_row(f"step {i}", minute=i) for i in range(4)]
    assert log_state(db, db).tampered == [] and not log_state(db, db).behind
    behind = log_state(db[:2], db)
    assert behind.behind and behind.rows == 2 and not behind.tampered
    extra = _row("hand note", minute=9)
    ahead = log_state([*db, extra], db)
    assert ahead.appended == [extra] and not ahead.behind
    removed = log_state([db[0], db[2], db[3]], db)
    assert removed.tampered and "removed" in removed.tampered[0]
    edited = log_state([db[0], _row("changed", minute=1), db[2], db[3]], db)
    assert edited.tampered and "edited" in edited.tampered[0]
    # Two clones' rows after a common beginning, the file's side a row longer: diverged,
    # nothing to replay (its last row follows the other clone's row 4, not this one's).
    theirs = [*db[:3], _row("their step 3", minute=5), _row("their step 4", minute=6)]
    longer = log_state(theirs, db)
    assert longer.tampered and longer.diverged and longer.appended == []
    # Markdown collapses whitespace in cells: not an edit
    spaced = AgentLogRow(
        timestamp=db[1].timestamp, agent="amy", action="step  1", outputs="story.yaml"
    )
    assert not log_state([db[0], spaced, db[2], db[3]], db).tampered


def test_changed_by_reads_the_fields_later_rows_changed() -> None:
    assert changed_by([_row("updated priority, title", "")]) == {"priority", "title"}
    assert changed_by([_row("status: pending -> generated")]) == {"status"}
    assert changed_by([_row("tokens: elaboration +10 (reported)", "Token Budget")]) == set()
    assert "title" in changed_by([_row("something storyflow does not write")])


# ---- names, markers, epic files -----------------------------------------------------------------


def test_classifier_names_artifacts_by_layout() -> None:
    staged = Classifier(LAYOUTS[LayoutName.STAGED])
    assert staged.kind("code-review.yaml", "FLOW-001") is ArtifactKind.CODE_REVIEW
    assert staged.kind("REVIEW.yaml", "FLOW-001") is ArtifactKind.CODE_REVIEW  # legacy
    assert staged.kind("notes.md", "FLOW-001") is None
    flat = Classifier(LAYOUTS[LayoutName.FLAT])
    assert flat.kind("ELAB-REVI-001-20260302-1504.md", "REVI-001") is ArtifactKind.ELABORATION
    assert flat.kind("ELAB-REVI-001-20260302-1504-2.md", "REVI-001") is ArtifactKind.ELABORATION
    assert flat.kind("ELAB-REVI-002-20260302-1504.md", "REVI-001") is None  # another story's
    assert flat.kind("QA-GATE-REVI-001.yaml", "REVI-001") is ArtifactKind.QA_GATE


def test_conflict_markers_are_found_with_their_line() -> None:
    assert conflict_marker_line("a: 1\nb: 2\n") is None
    text = "a: 1\n<<<<<<< HEAD\nb: 2\n=======\nb: 3\n>>>>>>> theirs\n"
    assert conflict_marker_line(text) == 2
    assert conflict_marker_line("title: '<<<<<<< in a value'\n") is None
    # a rename/rename conflict (a story folder moved to two stages): eight-character markers
    renamed = (
        "a: 1\n<<<<<<<< HEAD:x/story.yaml\nb: 2\n========\nb: 3\n>>>>>>>> 054a6bf:y/story.yaml\n"
    )
    assert conflict_marker_line(renamed) == 2


def _epic() -> Epic:
    moment = datetime(2026, 3, 2, 15, 4, 5, 123456, tzinfo=UTC)
    return Epic(
        prefix="REVI",
        title="Revi",
        layout=LayoutName.FLAT,
        root="plans/stories",
        timezone="America/Denver",
        settings=EpicSettings(coverage_threshold=50.0, require_approval=True),
        created_at=moment,
        updated_at=moment,
        version=3,
    )


def test_epic_file_round_trip_and_errors_with_lines() -> None:
    text = epic_file.render(_epic())
    assert epic_file.parse(text, "plans/stories/REVI.epic.yaml", "plans/stories") == _epic()
    broken = text.replace("layout: flat", "layout: spiral")
    with pytest.raises(InvalidInput) as caught:
        epic_file.parse(broken, "plans/stories/REVI.epic.yaml", "plans/stories")
    line = broken.splitlines().index("layout: spiral") + 1
    assert caught.value.details["line"] == line
    with pytest.raises(InvalidInput):
        epic_file.parse(text, "plans/stories/FLOW.epic.yaml", "plans/stories")  # wrong name


def test_the_no_op_digests_see_what_the_full_scan_sees(tmp_path: Path) -> None:
    """digest_epic (the no-op index's walk) and scan_epic (the full survey's) agree on the
    folders and files of a staged root: stage folders, a story folder in the root, hidden
    files, sub-folders and other prefixes; a touched file changes only its folder's digest."""
    from storyflow.adapters.files import sync_scan

    root = tmp_path / "plans"
    for rel, text in {
        "FLOW.epic.yaml": "x",
        "backlog/FLOW-001/story.yaml": "a",
        "backlog/FLOW-001/.story.yaml.tmp": "hidden",
        "backlog/FLOW-001/notes/deep.md": "in a sub-folder",
        "done/FLOW-002/story.yaml": "bb",
        "done/FLOW-002/elaboration.yaml": "ccc",
        "FLOW-003/story.yaml": "in the root",
        "done/REVI-001/story.yaml": "another prefix",
        "misc/readme.md": "not a story",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    base = str(tmp_path)
    scan = sync_scan.scan_epic(base, "plans", staged=True, prefixes=["FLOW"])
    digests = sync_scan.digest_epic(base, "plans", staged=True, prefixes=["FLOW"])
    assert digests is not None
    expected = {
        f.story_id: (f.path, sync_scan.folder_digest((s.name, s.size, s.mtime_ns) for s in f.files))
        for f in scan.folders
    }
    assert digests.folders == expected
    assert set(expected) == {"FLOW-001", "FLOW-002", "FLOW-003"}
    assert digests.epic_files == {f.path: (f.size, f.mtime_ns) for f in scan.epic_files}
    touched = root / "done/FLOW-002/elaboration.yaml"
    touched.write_text("ccd", encoding="utf-8")
    os.utime(touched, ns=(1, 1))
    again = sync_scan.digest_epic(base, "plans", staged=True, prefixes=["FLOW"])
    assert again is not None
    changed = {k for k in expected if again.folders[k] != digests.folders[k]}
    assert changed == {"FLOW-002"}
    # two folders for one story: the full survey must decide
    (root / "backlog/FLOW-002").mkdir()
    assert sync_scan.digest_epic(base, "plans", staged=True, prefixes=["FLOW"]) is None


class _Listed:
    """What os.scandir returns, for entries listed before the test changed the folder."""

    def __init__(self, entries: list[os.DirEntry[str]]) -> None:
        self.entries = entries

    def __enter__(self) -> list[os.DirEntry[str]]:
        return self.entries

    def __exit__(self, *exc: object) -> None:
        return None

    def __iter__(self) -> Iterator[os.DirEntry[str]]:
        return iter(self.entries)


def test_the_walk_skips_what_disappears_between_the_listing_and_the_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's projection moves a story folder after the walk listed its stage folder,
    and a file goes after its folder was listed: both are simply not there, not
    WORKSPACE_UNREADABLE problems."""
    from storyflow.adapters.files import sync_scan

    root = tmp_path / "plans"
    for rel in ("backlog/FLOW-001/story.yaml", "backlog/FLOW-001/elaboration.yaml"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x", encoding="utf-8")
    (root / "backlog/FLOW-002").mkdir()
    (root / "backlog/FLOW-002/story.yaml").write_text("y", encoding="utf-8")
    real = os.scandir

    def scandir(path: str) -> _Listed:
        listed = _Listed(list(real(path)))
        if path.endswith("/backlog"):
            (root / "backlog/FLOW-002").rename(tmp_path / "moved-away")
        elif path.endswith("/FLOW-001"):
            (root / "backlog/FLOW-001/elaboration.yaml").unlink()
        return listed

    monkeypatch.setattr(sync_scan.os, "scandir", scandir)
    scan = sync_scan.scan_epic(str(tmp_path), "plans", staged=True, prefixes=["FLOW"])
    assert scan.problems == ()
    assert [(f.story_id, [s.name for s in f.files]) for f in scan.folders] == [
        ("FLOW-001", ["story.yaml"])
    ]


# ---- --prefer files: a log must be one history ---------------------------------------------


def _log(*actions: str) -> list[AgentLogRow]:
    return [
        AgentLogRow(timestamp=f"2026-03-02T15:04:0{i}Z", agent="a", action=a, outputs="x")
        for i, a in enumerate(actions)
    ]


@pytest.mark.parametrize(
    ("actions", "wrong"),
    [
        (
            (
                "story created (pending)",
                "status: pending -> generated",
                "status: pending -> generated",
            ),
            "row 3 moves it from pending, but the rows before it left it generated",
        ),
        (
            ("story created (pending)", "status: pending -> completed"),
            "row 2 records pending -> completed, which no edge allows",
        ),
        (
            ("story created (pending)", "plan v1 submitted", "plan v1 submitted"),
            "row 3 submits plan v1 after v1",
        ),
    ],
)
def test_prefer_files_refuses_a_log_that_is_not_one_history(
    actions: tuple[str, ...], wrong: str
) -> None:
    from storyflow.services.sync_rebuild import check_history

    rows = _log(*actions)
    history = replay("FLOW-001", rows, Status.PENDING, "story.yaml")
    with pytest.raises(StoryflowError) as refused:
        check_history("FLOW-001", history.transitions, rows, "story.yaml")
    assert refused.value.code == "AGENT_LOG_INVALID" and wrong in refused.value.message
    assert "--prefer files" in (refused.value.hint or "")


def test_prefer_files_takes_forced_moves_and_versions_in_order() -> None:
    from storyflow.services.sync_rebuild import check_history

    rows = _log(
        "story created (pending)",
        "status: pending -> completed (FORCED: done elsewhere)",
        "plan v1 submitted",
        "tokens: planning +10 (reported)",
        "plan v2 submitted",
    )
    history = replay("FLOW-001", rows, Status.COMPLETED, "story.yaml")
    check_history("FLOW-001", history.transitions, rows, "story.yaml")
