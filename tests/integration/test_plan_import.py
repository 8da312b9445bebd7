"""storyflow plan import / export through the services, on a real database: the rules the
two seed plans state, the index fixture, re-import, round trips, and the guards on
imported stories."""

from __future__ import annotations

import pytest

from storyflow.domain.model import AcceptancePart
from storyflow.domain.statuses import Status
from storyflow.errors import RuleViolation
from storyflow.services import epics, requirements, transitions
from storyflow.services.stories import create_story
from tests.plan_support import (
    FLOW_INDEX,
    board_state,
    edit_field,
    plan_folder,
    run_export,
    run_import,
    set_status,
    stated,
)
from tests.support import Driver, Workspace, plan, qa_gate

FLOW_TABLES = [
    "workflow_stories",
    "workflow_elaborations",
    "workflow_plans",
    "workflow_verification",
    "workflow_proof",
    "workflow_token_logs",
]


# ---- the seeds ------------------------------------------------------------------------------


def test_flow_seed_gives_its_rules(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    report = run_import(ctx, plan_folder(workspace, "FLOW"))
    assert report.created and report.epic == "FLOW" and not report.stories
    # FLOW's plan states no stories: the empty epic is said, with how its stories come
    (warning,) = report.warnings
    assert warning.file.endswith("PLAN.exec.md") and warning.line is None
    assert "the plan states no stories" in warning.message
    assert "storyflow story new FLOW" in warning.message
    epic = ctx.epic("FLOW")
    assert epic.title == "FLOW — Execution Plan"
    assert epic.layout.value == "staged"  # the naming table lists story.yaml, plan.yaml, …
    assert epic.root == "plans/future/flow-sync"  # stage folders beside the plan
    assert epic.timezone == "UTC"  # the plan names none: the workspace default
    s = epic.settings
    assert {p.value: b.estimate for p, b in s.budgets.items()} == {
        "story_generation": 5_000,  # ~5k
        "elaboration": 15_000,
        "implementation": 50_000,
        "code_review": 20_000,
        "qa_verification": 15_000,
    }
    assert s.budgets[next(iter(s.budgets))].warning > 0
    assert s.coverage_threshold == 45.0  # "Test coverage (minimum 45%)"
    assert s.require_approval is True  # "Gate: PM and UX review" after elaboration
    assert s.phase_gates == {
        "elaboration": "PM and UX review; move to next phase if ready",
        "qa_verification": "PASS / CONCERNS / FAIL",
    }
    assert s.qa_gate == ("PASS", "CONCERNS", "FAIL")
    assert s.reuse_gate is True
    assert s.acceptance == (AcceptancePart.REUSE,)  # FLOW's acceptance rule is reuse only
    assert s.enforcement.value == "advisory" and "enforcement" not in stated(report)
    assert s.requirements == {"db-schema-002": tuple(FLOW_TABLES)}
    assert s.breaking_change_stories == ("FLOW-002", "FLOW-003", "FLOW-007")
    assert s.graph_integration_stories == ("FLOW-014", "FLOW-015")
    assert s.harness is False and s.per_story_multiplier is False
    assert s.plan_dir == "plans/future/flow-sync"
    assert {"coverage_threshold", "require_approval", "budgets", "acceptance"} <= stated(report)
    (requirement,) = requirements.list_requirements(ctx)
    assert requirement["name"] == "db-schema-002" and requirement["met"] is False
    assert "002_workflow_tables.sql" in requirement["note"]
    assert "workflow_token_logs" in requirement["note"]


def test_stories_created_later_get_the_plans_flags(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    run_import(ctx, plan_folder(workspace, "FLOW"))
    made = [create_story(ctx, "FLOW", title=f"Story {n}") for n in range(1, 16)]
    again = run_import(ctx, plan_folder(workspace, "FLOW"))
    assert again.warnings == []  # the epic has its stories now
    assert [s.id for s in made if s.breaking_change] == ["FLOW-002", "FLOW-003", "FLOW-007"]
    assert [s.id for s in made if s.graph_integration] == ["FLOW-014", "FLOW-015"]
    # the breaking-change rule then acts: a plan without a migration path is refused
    driver = Driver(workspace, ctx)
    driver.drive_to("FLOW-002", Status.READY_TO_WORK)
    driver.submit("FLOW-002", "plan", plan())
    with pytest.raises(RuleViolation) as refused:
        driver.move("FLOW-002", "in-progress")
    assert "migration_path" in refused.value.message


def test_the_acceptance_rule_applies_only_the_parts_the_plan_names(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    run_import(ctx, plan_folder(workspace, "FLOW"))  # acceptance: reuse only
    epics.create_epic(ctx, "DFLT", title="Default rule")  # all four parts
    driver = Driver(workspace, ctx)
    for prefix in ("FLOW", "DFLT"):
        story = create_story(ctx, prefix, title="Done without tokens").id
        driver.drive_to(story, Status.UAT)
        driver.submit(story, "qa_gate", qa_gate("PASS"))
    driver.move("FLOW-001", "completed")  # no tokens recorded: FLOW does not ask
    with pytest.raises(RuleViolation) as refused:
        driver.move("DFLT-001", "completed")
    messages = [f["message"] for f in refused.value.details["failures"]]
    assert any("no tokens recorded" in m for m in messages), messages


def test_revi_seed_gives_its_rules_and_stories(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    report = run_import(ctx, plan_folder(workspace, "REVI"))
    assert report.warnings == []
    epic = ctx.epic("REVI")
    assert (epic.layout.value, epic.root, epic.timezone) == (
        "flat",
        "plans/stories",
        "America/Denver",
    )
    s = epic.settings
    assert s.enforcement.value == "advisory" and "enforcement" in stated(report)
    assert s.per_story_multiplier is True
    assert s.acceptance == tuple(AcceptancePart)  # reuse, checks, naming, tokens
    assert s.reuse_gate is True and s.harness is True
    assert s.budgets == {}  # REVI has no estimate template: the workspace's apply
    assert "coverage_threshold" not in stated(report) and "require_approval" not in stated(report)
    assert s.breaking_change_stories == () and s.requirements == {}
    stories = {st.id: st for st in ctx.store.list_stories(epic="REVI")}
    assert sorted(stories) == [f"REVI-{n:03d}" for n in range(16)]
    assert [c.change for c in report.stories] == ["added"] * 16
    harness = stories["REVI-000"]
    assert harness.title == "Harness Validation" and harness.depends_on == ()
    assert "structural harness" in harness.details["notes"][0]
    phases = {st.id: st.phase for st in stories.values() if st.id != "REVI-000"}
    assert phases == {f"REVI-{n:03d}": 1 if n <= 5 else 2 if n <= 11 else 3 for n in range(1, 16)}
    for story in stories.values():
        assert story.status is Status.PENDING
        if story.id != "REVI-000":
            assert story.depends_on == ("REVI-000",)
            assert story.details["deliverable"] == story.title
    assert stories["REVI-001"].title.startswith("Synchronization infrastructure")
    assert stories["REVI-006"].title == "Complete state machine (17 statuses, all transitions)"
    assert stories["REVI-015"].title == "Test fixtures and testing guidance"
    assert stories["REVI-002"].details["gates"][1] == "Pre-commit hook runs without errors"
    assert (
        stories["REVI-012"].details["gates"][0]
        == "Model assignments audit complete and centralized"
    )
    story_file = workspace.root / "plans/stories/REVI-007/REVI-007.md"
    text = story_file.read_text(encoding="utf-8")
    assert "details:\n  deliverable: State machine documentation in Claude workflow" in text
    rows = ctx.store.history("REVI-007")
    assert [(r["from_status"], r["to_status"], r["reason"]) for r in rows] == [
        (None, "pending", "imported from PLAN.exec.md")
    ]
    # the harness gates the rest: REVI-001 cannot start before REVI-000 is completed
    driver = Driver(workspace, ctx)
    driver.drive_to("REVI-001", Status.READY_TO_WORK)
    driver.submit("REVI-001", "plan", plan())
    with pytest.raises(RuleViolation) as refused:
        driver.move("REVI-001", "in-progress")
    assert "REVI-000" in refused.value.message
    assert create_story(ctx, "REVI", title="Later").depends_on == ("REVI-000",)


def test_plan_meta_beside_the_plan_adds_its_rules(workspace: Workspace) -> None:
    folder = plan_folder(workspace, "REVI")
    (folder / "PLAN.meta.md").write_text(
        "---\ndoc_type: plan_meta\nstory_prefix: REVI\n---\n\n# REVI meta\n\n"
        "## Quality\n\n- Test coverage (minimum 60%)\n\n"
        "## Database Dependencies\n\n- Required: `db/migrations/003_runs.sql`\n"
        "- Tables needed:\n  - runs\n  - run_events\n",
        encoding="utf-8",
    )
    ctx = workspace.ctx()
    report = run_import(ctx, folder)
    settings = ctx.epic("REVI").settings
    assert settings.coverage_threshold == 60.0 and "coverage_threshold" in stated(report)
    assert settings.requirements == {"db-schema-003": ("runs", "run_events")}
    assert [(c.name, c.change) for c in report.requirements] == [("db-schema-003", "added")]


# ---- the index fixture ------------------------------------------------------------------------


def test_index_fixture_gives_stories_statuses_links_and_warnings(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    report = run_import(ctx, plan_folder(workspace, "FLOW", index=FLOW_INDEX))
    stories = {s.id: s for s in ctx.store.list_stories(epic="FLOW")}
    assert len(stories) == 20 and report.counts()["added"] == 20
    status = {i: s.status.value for i, s in stories.items()}
    assert status == {
        "FLOW-001": "completed",  # done
        "FLOW-002": "completed",
        "FLOW-003": "ready-for-code-review",  # in-review
        "FLOW-004": "ready-to-work",  # ready
        "FLOW-005": "ready-to-work",
        "FLOW-006": "in-progress",  # wip
        "FLOW-007": "generated",  # backlog
        "FLOW-008": "pending",  # draft
        "FLOW-009": "in-elaboration",  # elaboration
        "FLOW-010": "uat",
        "FLOW-011": "blocked",
        "FLOW-012": "cancelled",  # canceled
        "FLOW-013": "pending",
        "FLOW-014": "ready-to-work",
        "FLOW-015": "pending",
        "FLOW-016": "ready-for-qa",  # qa
        "FLOW-017": "in-qa",  # testing
        "FLOW-018": "needs-work",
        "FLOW-019": "code-review-failed",  # changes-requested
        "FLOW-020": "ready-to-work",
    }
    assert stories["FLOW-004"].depends_on == ("FLOW-001", "FLOW-002")
    assert stories["FLOW-013"].depends_on == ("FLOW-011", "FLOW-012")
    assert stories["FLOW-001"].depends_on == ()
    requiring = sorted(i for i, s in stories.items() if s.requires == ("db-schema-002",))
    assert requiring == ["FLOW-002", "FLOW-004", "FLOW-010", "FLOW-016", "FLOW-020"]
    assert [i for i, s in stories.items() if s.breaking_change] == [
        "FLOW-002",
        "FLOW-003",
        "FLOW-007",
    ]
    assert [i for i, s in stories.items() if s.graph_integration] == ["FLOW-014", "FLOW-015"]
    assert stories["FLOW-004"].priority == "P1" and stories["FLOW-004"].phase == 2
    assert stories["FLOW-002"].details == {
        "feature": "Persist stories",
        "goal": "Stories survive restarts",
        "risk_notes": "Changes the story file format (breaking)",
        "infrastructure": "PostgreSQL, DB schema 002 (workflow_stories)",
    }
    assert stories["FLOW-011"].blocked_reason == "imported as blocked from stories.index.md"
    # no forged lifecycle walk: one transition from None, saying where the status came from
    history = ctx.store.history("FLOW-017")
    assert [(r["from_status"], r["to_status"], r["reason"]) for r in history] == [
        (None, "in-qa", "imported from stories.index.md")
    ]
    folder = workspace.root / "plans/future/flow-sync"
    assert (folder / "UAT/FLOW-017/story.yaml").is_file()
    assert (folder / "done/FLOW-001/story.yaml").is_file()
    assert (folder / "archive/FLOW-012/story.yaml").is_file()
    warnings = {(w.line, w.message) for w in report.warnings}
    assert (93, "FLOW-008: unknown field **Owner:** ignored") in warnings
    assert (191, "unknown section 'Open Questions' skipped") in warnings
    assert (22, "FLOW-001: legacy status 'done' mapped to 'completed'") in warnings
    assert all(w.file == "plans/future/flow-sync/stories.index.md" for w in report.warnings)


def test_round_trip_import_export_import_changes_nothing(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    folder = plan_folder(workspace, "FLOW", index=FLOW_INDEX)
    run_import(ctx, folder)
    before = board_state(ctx, "FLOW")
    exported = run_export(ctx, "FLOW")
    assert exported["written"] and exported["path"] == "plans/future/flow-sync/stories.index.md"
    first = (folder / "stories.index.md").read_bytes()
    again = run_import(ctx, folder)
    assert not again.changed and again.warnings == []
    assert {c.change for c in again.stories} == {"unchanged"} and not again.moves
    assert board_state(ctx, "FLOW") == before
    second = run_export(ctx, "FLOW")
    assert second["written"] is False  # the same bytes: not rewritten
    assert (folder / "stories.index.md").read_bytes() == first
    text = first.decode()
    assert "| ready-to-work | 4 |" in text and "| **total** | **20** |" in text
    ready = text.split("## Ready to Start\n\n")[1].split("\n\n")[0]
    assert ready == "- FLOW-014: Graph node wiring (P1)"  # 004 and 020 wait for the schema
    requirements.set_requirement(ctx, "db-schema-002", met=True)
    ready_now = run_export(ctx, "FLOW")
    assert ready_now["written"]
    text = (folder / "stories.index.md").read_text(encoding="utf-8")
    assert text.split("## Ready to Start\n\n")[1].split("\n\n")[0].splitlines() == [
        "- FLOW-020: Schema health check (P0)",
        "- FLOW-004: Plan persistence (P1)",
        "- FLOW-014: Graph node wiring (P1)",
    ]


def test_revi_round_trip_keeps_phases_deliverables_and_gates(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    folder = plan_folder(workspace, "REVI")
    run_import(ctx, folder)
    before = board_state(ctx, "REVI")
    run_export(ctx, "REVI")
    first = (folder / "stories.index.md").read_bytes()
    assert b"**Gates:**\n- All sync scripts pass linting and tests\n" in first
    again = run_import(ctx, folder)  # now with the index beside the plan
    assert not again.changed and again.warnings == []
    assert board_state(ctx, "REVI") == before
    assert run_export(ctx, "REVI")["written"] is False
    # REVI declares per-story multipliers: the index may carry one, and export keeps it
    index = folder / "stories.index.md"
    text = index.read_text(encoding="utf-8")
    line = "**Priority:** P2\n"
    at = text.index(line, text.index("## REVI-003:")) + len(line)
    index.write_text(text[:at] + "**Token Budget Multiplier:** 1.5\n" + text[at:], "utf-8")
    changed = run_import(ctx, folder)
    assert [(c.id, c.fields) for c in changed.stories if c.change == "updated"] == [
        ("REVI-003", ["token_budget_multiplier"])
    ]
    assert ctx.story("REVI-003").token_budget_multiplier == 1.5
    edited = index.read_bytes()
    assert run_export(ctx, "REVI")["written"] is False  # the export writes that very line
    assert index.read_bytes() == edited
    assert not run_import(ctx, folder).changed


def test_reimport_is_idempotent(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    folder = plan_folder(workspace, "FLOW", index=FLOW_INDEX)
    run_import(ctx, folder)
    before = board_state(ctx, "FLOW")
    epic_version = ctx.epic("FLOW").version
    second = run_import(ctx, folder)
    assert second.created is False and not second.changed
    assert second.counts() == {"added": 0, "updated": 0, "unchanged": 20, "moved": 0, "refused": 0}
    assert {c.change for c in [*second.epic_fields, *second.settings, *second.requirements]} == {
        "unchanged"
    }
    assert board_state(ctx, "FLOW") == before
    assert ctx.epic("FLOW").version == epic_version
    assert len(ctx.store.list_stories(epic="FLOW")) == 20


def test_reimport_reports_field_changes_and_applies_them(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    folder = plan_folder(workspace, "FLOW", index=FLOW_INDEX)
    run_import(ctx, folder)
    index = folder / "stories.index.md"
    text = index.read_text(encoding="utf-8")
    text = text.replace("## FLOW-005: Proof persistence", "## FLOW-005: Proof storage")
    text = edit_field(text, "FLOW-005", "Priority", "P0")
    text = edit_field(text, "FLOW-005", "Depends On", "FLOW-003, FLOW-001")
    index.write_text(text, encoding="utf-8")
    report = run_import(ctx, folder)
    changes = {c.id: c for c in report.stories}
    assert changes["FLOW-005"].change == "updated"
    assert changes["FLOW-005"].fields == ["title", "priority", "depends_on"]
    assert report.counts()["unchanged"] == 19
    story = ctx.story("FLOW-005")
    assert (story.title, story.priority, story.depends_on) == (
        "Proof storage",
        "P0",
        ("FLOW-001", "FLOW-003"),
    )
    story_file = workspace.root / "plans/future/flow-sync/ready-to-work/FLOW-005/story.yaml"
    assert "title: Proof storage\n" in story_file.read_text(encoding="utf-8")


def test_a_reimport_that_changes_the_budgets_re_renders_every_story_file(
    workspace: Workspace,
) -> None:
    """The Token Budget sections follow the plan's budget template: a re-import that
    changes it re-renders the stories it did not otherwise touch, so check finds no drift."""
    from storyflow.services.check import run_check

    ctx = workspace.ctx()
    folder = plan_folder(workspace, "FLOW", index=FLOW_INDEX)
    run_import(ctx, folder)
    plan_file = folder / "PLAN.exec.md"
    text = plan_file.read_text(encoding="utf-8")
    assert "    implementation: ~50k\n" in text
    plan_file.write_text(text.replace("implementation: ~50k", "implementation: ~70k"), "utf-8")
    report = run_import(ctx, folder)
    assert report.counts()["unchanged"] == 20  # no story changed: only the epic's budgets
    story_file = workspace.root / "plans/future/flow-sync/ready-to-work/FLOW-005/story.yaml"
    assert "    implementation: 70000\n" in story_file.read_text(encoding="utf-8")
    codes = {f.code for f in run_check(workspace.ctx()).findings}
    assert codes and "CHECK_TOKEN_BUDGET_DRIFT" not in codes  # (the index's stories lack
    # Reuse Plans: those findings stay)


def test_status_changes_in_the_index_go_through_the_rules(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    folder = plan_folder(workspace, "FLOW", index=FLOW_INDEX)
    run_import(ctx, folder)
    run_export(ctx, "FLOW")
    index = folder / "stories.index.md"
    text = index.read_text(encoding="utf-8")
    text = set_status(text, "FLOW-013", "generated")  # legal: pending -> generated
    text = set_status(text, "FLOW-008", "in-progress")  # no such edge from pending
    text = set_status(text, "FLOW-005", "in-progress")  # an edge, but its guards fail
    index.write_text(text, encoding="utf-8")
    preview = run_import(ctx, folder, dry_run=True)
    assert {m.story: m.result for m in preview.moves} == {
        "FLOW-005": "refused",
        "FLOW-008": "refused",
        "FLOW-013": "allowed",
    }
    assert ctx.story("FLOW-013").status is Status.PENDING  # the dry run moved nothing
    report = run_import(ctx, folder)
    moves = {m.story: m for m in report.moves}
    assert moves["FLOW-013"].result == "applied"
    assert (moves["FLOW-008"].result, moves["FLOW-008"].code) == (
        "refused",
        "TRANSITION_NOT_ALLOWED",
    )
    assert (moves["FLOW-005"].result, moves["FLOW-005"].code) == ("refused", "GUARD_FAILED")
    assert ctx.story("FLOW-013").status is Status.GENERATED
    assert ctx.story("FLOW-008").status is Status.PENDING
    assert ctx.story("FLOW-005").status is Status.READY_TO_WORK
    last = ctx.store.history("FLOW-013")[-1]
    assert (last["from_status"], last["to_status"], last["reason"]) == (
        "pending",
        "generated",
        "requested by stories.index.md",
    )
    line = next(
        n for n, t in enumerate(text.splitlines(), 1) if "in-progress <!-- exported: pending" in t
    )
    warned = [w for w in report.warnings if "FLOW-008" in w.message]
    assert [(w.line, "TRANSITION_NOT_ALLOWED" in w.message) for w in warned] == [(line, True)]
    # a line export wrote and nobody edited asks for nothing, even after the board moved on
    transitions.move(ctx, "FLOW-014", "blocked", reason="waiting")
    quiet = run_import(ctx, folder)
    assert "FLOW-014" not in {m.story for m in quiet.moves}
    assert ctx.story("FLOW-014").status is Status.BLOCKED


def test_guards_act_on_imported_stories(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    run_import(ctx, plan_folder(workspace, "FLOW", index=FLOW_INDEX))
    driver = Driver(workspace, ctx)
    driver.submit("FLOW-004", "plan", plan())
    with pytest.raises(RuleViolation) as refused:
        driver.move("FLOW-004", "in-progress")
    assert refused.value.code == "GUARD_FAILED"
    assert "db-schema-002" in refused.value.message
    requirements.set_requirement(ctx, "db-schema-002", met=True)
    driver.move("FLOW-004", "in-progress")
    # imported in elaboration: the import is its entry, so it needs a fresh elaboration,
    # and FLOW's PM/UX approval, before ready-to-work
    driver.fill_story("FLOW-009")
    with pytest.raises(RuleViolation):
        driver.move("FLOW-009", "ready-to-work")
    driver.submit("FLOW-009", "elaboration", {"verdict": "PASS", "summary": "ok"})
    with pytest.raises(RuleViolation) as unapproved:
        driver.move("FLOW-009", "ready-to-work")
    assert [f["guard"] for f in unapproved.value.details["failures"]] == ["approval"]
    transitions.approve(ctx, "FLOW-009", by="pm")
    driver.move("FLOW-009", "ready-to-work")


def test_dry_run_writes_nothing(workspace: Workspace) -> None:
    ctx = workspace.ctx()
    folder = plan_folder(workspace, "FLOW", index=FLOW_INDEX)
    before = workspace.snapshot()
    report = run_import(ctx, folder, dry_run=True)
    assert report.dry_run and report.created and report.counts()["added"] == 20
    assert len(report.warnings) == len(run_import(ctx, folder, dry_run=True).warnings)
    assert workspace.snapshot() == before
    assert ctx.store.get_epic("FLOW") is None and ctx.store.list_stories() == []
    assert ctx.store.requirements() == []
    assert not (workspace.root / "plans/future/flow-sync/backlog").exists()
