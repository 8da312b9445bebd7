"""The plan rules as tables: phrase -> setting, naming table -> layout, estimates, index
fields, conflict markers, and the index rendering (pure; small plans written to tmp)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from storyflow.adapters.files.plan_parser import PlanFiles
from storyflow.domain.budgets import DEFAULT_BUDGETS
from storyflow.domain.layouts import LayoutName
from storyflow.domain.model import AcceptancePart, EpicSettings, Story
from storyflow.domain.plan_index import ready_to_start, render_index
from storyflow.domain.plan_model import PlannedRequirement, conflict_markers, parse_fields
from storyflow.domain.plan_rules import DerivedPlan, derive, parse_estimate
from storyflow.domain.plan_stories import mentions
from storyflow.domain.statuses import Status
from storyflow.errors import InvalidInput

FRONT = "---\ndoc_type: plan_exec\ntitle: Test plan\nstory_prefix: TEST\n---\n\n# Test\n\n"


def _derive(tmp_path: Path, body: str, index: str | None = None) -> DerivedPlan:
    folder = tmp_path / "plans" / "test"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "PLAN.exec.md").write_text(FRONT + body, encoding="utf-8")
    if index is not None:
        (folder / "stories.index.md").write_text(index, encoding="utf-8")
    source = PlanFiles(tmp_path, max_bytes=100_000).read(folder)
    return derive(source, default_layout=LayoutName.STAGED, budgets=DEFAULT_BUDGETS)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("~5k", 5_000),
        ("~105k", 105_000),
        ("12,000", 12_000),
        ("1.5M", 1_500_000),
        ("~2.5k tokens", 2_500),
        (7_000, 7_000),
        ("lots", None),
        (True, None),
        (-3, None),
    ],
)
def test_estimates(text: object, tokens: int | None) -> None:
    assert parse_estimate(text) == tokens


def test_conflict_markers_and_the_setext_underline() -> None:
    conflict = "a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> branch\n"
    assert conflict_markers(conflict) == [2, 4, 6]
    assert conflict_markers("Summary\n=======\n\ntext\n") == []  # a Markdown heading
    assert conflict_markers("x\n>>>>>>> theirs\n") == [2]
    assert conflict_markers("<<<<<<<< eight is not a marker\n") == []


def test_fields_own_the_list_below_them() -> None:
    lines = list(
        enumerate(
            [
                "**Status:** ready",
                "- **Phase:** 2",
                "**Gates:**",
                "- one",
                "1. two",
                "",
                "A stray sentence.",
                "- not owned",
            ],
            start=10,
        )
    )
    fields, stray = parse_fields(lines)
    assert [(f.key, f.value, f.items, f.line) for f in fields] == [
        ("status", "ready", (), 10),
        ("phase", "2", (), 11),
        ("gates", "", ("one", "two"), 12),
    ]
    assert stray == [(16, "A stray sentence."), (17, "- not owned")]


def test_the_naming_table_picks_the_layout_from_the_registry(tmp_path: Path) -> None:
    flat = _derive(
        tmp_path,
        "## Artifact Naming Convention\n\n| A | F |\n|---|---|\n| Story | `TEST-NNN.md` |\n"
        "| Proof | `PROOF-TEST-001-20260101-0930.md` |\n\n"
        "Artifacts go under `work/items/TEST-XXX/`. Timestamp (Europe/Paris).\n",
    )
    assert (flat.layout, flat.root, flat.timezone) == (
        LayoutName.FLAT,
        "work/items",
        "Europe/Paris",
    )
    staged = _derive(tmp_path, "## Naming Convention\n\n`story.yaml`, `qa-gate.yaml`\n")
    assert (staged.layout, staged.root) == (LayoutName.STAGED, "plans/test")
    silent = _derive(tmp_path, "## Notes\n\nNothing about files.\n")
    assert silent.layout is LayoutName.STAGED  # the workspace default, with a warning
    assert any("no artifact naming table" in w.message for w in silent.warnings)


def test_acceptance_phrases_gates_and_coverage(tmp_path: Path) -> None:
    plan = _derive(
        tmp_path,
        "## Story Acceptance Rule\n\n- All artifacts follow naming conventions\n"
        "- Token budget is recorded\n\n"
        "## Workflow\n\n### Phase 1: Elaboration\n\n**Gate:** automatic\n\n"
        "### Phase 2: QA\n\n**Gate:** PASS / FAIL\n\nCoverage must be at least 60% overall.\n",
    )
    assert plan.settings["acceptance"] == [AcceptancePart.NAMING, AcceptancePart.TOKENS]
    assert plan.settings["require_approval"] is False  # the elaboration gate asks no review
    assert plan.settings["qa_gate"] == ["PASS", "FAIL"]
    assert plan.settings["coverage_threshold"] == 60.0
    assert "reuse_gate" not in plan.settings  # not stated: the default stays


def test_index_fields_are_read_leniently_with_lines(tmp_path: Path) -> None:
    index = (
        "---\ndoc_type: stories_index\n---\n\n"
        "## TEST-001: One\n\n**Status:** finished-ish\n**Phase:** two\n**Priority:** urgent\n"
        "**Depends On:** TEST-1\n**Colour:** red\nfree text\n\n"
        "## TEST-002: Two\n\n**Status:** wip <!-- exported: ready-to-work -->\n"
        "**Gates:** a; b\n"
    )
    plan = _derive(tmp_path, "", index=index)
    one, two = plan.stories
    assert (one.status, one.phase, one.priority, one.depends_on) == (None, None, None, ())
    messages = {(w.line, w.message) for w in plan.warnings if w.file.endswith("index.md")}
    assert (7, "TEST-001: unknown status 'finished-ish'; status not changed") in messages
    assert (8, "TEST-001: phase 'two' is not a number; ignored") in messages
    assert (11, "TEST-001: unknown field **Colour:** ignored") in messages
    assert any(line == 12 and "free text" in m for line, m in messages)
    assert (two.status, two.exported_status) == (Status.IN_PROGRESS, Status.READY_TO_WORK)
    assert two.details == {"gates": ["a", "b"]}


def test_duplicate_sections_name_both_lines(tmp_path: Path) -> None:
    index = "---\ndoc_type: stories_index\n---\n\n## TEST-001: A\n\n## TEST-001: B\n"
    with pytest.raises(InvalidInput) as refused:
        _derive(tmp_path, "", index=index)
    assert refused.value.code == "DUPLICATE_SECTION"
    assert refused.value.details == {
        "file": "plans/test/stories.index.md",
        "line": 7,
        "first_line": 5,
    }


def test_a_rule_section_twice_at_one_level_under_one_heading(tmp_path: Path) -> None:
    repeats = (
        "## Workflow\n\n### Phase 1: Elaboration\n\n### Phase 2: Development\n\n"
        "### Reuse Gate\n\n## Other\n\n### Reuse Gate\n\n#### Reuse gate\n\n"
        "## Token Budget Rule\n\n## Token Budget\n"
    )
    assert _derive(tmp_path, repeats).settings["reuse_gate"] is True
    with pytest.raises(InvalidInput) as refused:
        _derive(tmp_path, repeats + "\n## Naming Convention\n\n## naming convention\n")
    assert refused.value.code == "DUPLICATE_SECTION"
    assert refused.value.details == {
        "file": "plans/test/PLAN.exec.md",
        "line": 29,
        "first_line": 27,
        "section": "naming convention",
    }


@pytest.mark.parametrize(
    ("text", "mentioned"),
    [
        ("PostgreSQL, DB schema 002", True),
        ("needs db-schema-002", True),
        ("the 002_workflow_tables migration", True),
        ("writes workflow_plans", True),
        ("schema 2", True),
        ("schema 020", False),
        ("db-schema-0021", False),
        ("Orchestrator runtime", False),
    ],
)
def test_infrastructure_mentions(text: str, mentioned: bool) -> None:
    requirement = PlannedRequirement(
        name="db-schema-002",
        tables=("workflow_plans",),
        migration="db/migrations/002_workflow_tables.sql",
        source="PLAN.exec.md",
        line=1,
    )
    assert mentions(requirement, text) is mentioned


def _story(number: int, status: Status, priority: str, **extra: object) -> Story:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Story(
        id=f"TEST-{number:03d}",
        epic="TEST",
        number=number,
        title=f"Story {number}",
        status=status,
        priority=priority,
        created_at=now,
        updated_at=now,
        status_changed_at=now,
        **extra,  # type: ignore[arg-type]
    )


def test_the_index_is_deterministic_and_ready_follows_the_graph() -> None:
    stories = [
        _story(1, Status.COMPLETED, "P2"),
        _story(2, Status.READY_TO_WORK, "P2", depends_on=("TEST-001",)),
        _story(3, Status.READY_TO_WORK, "P0", requires=("db",)),
        _story(4, Status.READY_TO_WORK, "P1", depends_on=("TEST-002",)),
        _story(5, Status.READY_TO_WORK, "P1", details={"gates": ["g1"], "goal": "x  y"}),
    ]
    statuses = {s.id: s.status for s in stories}
    assert [s.id for s in ready_to_start(stories, statuses, set())] == ["TEST-005", "TEST-002"]
    assert next(s.id for s in ready_to_start(stories, statuses, {"db"})) == "TEST-003"
    ready = ready_to_start(stories, statuses, set())
    first = render_index(prefix="TEST", stories=stories, ready=ready, multipliers=False)
    again = render_index(
        prefix="TEST", stories=list(reversed(stories)), ready=ready, multipliers=False
    )
    assert first == again
    assert "**Status:** completed <!-- exported: completed -->\n" in first
    assert "**Goal:** x y\n**Gates:**\n- g1\n" in first
    assert "| ready-to-work | 4 |\n| completed | 1 |\n| **total** | **5** |\n" in first


def test_epic_settings_from_rows_written_before_plans() -> None:
    old_row = {
        "coverage_threshold": 50,
        "require_approval": True,
        "enforcement": "warning",
        "reuse_gate": False,
        "budgets": {},
    }
    settings = EpicSettings.from_json(old_row)
    assert settings.acceptance == tuple(AcceptancePart)  # the whole rule, as before
    assert (settings.harness, settings.breaking_change_stories, settings.plan_dir) == (
        False,
        (),
        None,
    )
    assert EpicSettings.from_json(settings.to_json()) == settings


def test_the_fixture_seeds_are_the_shared_seeds() -> None:
    shared = Path("/work/shared/seeds")
    if not shared.is_dir():
        pytest.skip("the shared seeds are not on this machine")
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "plans" / "seeds"
    for name in ("FLOW.PLAN.exec.md", "REVI.PLAN.exec.md"):
        assert (fixtures / name).read_bytes() == (shared / name).read_bytes()
