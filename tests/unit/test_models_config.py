"""Model assignments: loaded from storyflow.yaml or models.yaml, refused loudly when they
name an unknown model, phase or role (the error names the key), resolved most specific
first (story > epic > workspace; phases > roles > agents > default)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from storyflow import config
from storyflow.config import Config
from storyflow.domain.layouts import LayoutName
from storyflow.domain.model import Epic, EpicSettings, Story
from storyflow.domain.phases import PHASES, PhaseName, Role
from storyflow.domain.statuses import Status
from storyflow.errors import InvalidInput
from storyflow.services.models import check, explain_model, provider_model_id, resolve_model, show


def _load(
    root: Path,
    data: dict[str, Any] | None = None,
    models_file: dict[str, Any] | None = None,
    *,
    strict: bool = True,
) -> Config:
    if data is not None:
        (root / "storyflow.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    if models_file is not None:
        (root / "models.yaml").write_text(yaml.safe_dump(models_file), encoding="utf-8")
    return config.load(cwd=root, workspace=root, env={}, strict_assignments=strict)


def _refused(root: Path, data: dict[str, Any], models_file: dict[str, Any] | None = None) -> Any:
    with pytest.raises(InvalidInput) as error:
        _load(root, data, models_file)
    assert error.value.code == "CONFIG_INVALID"
    assert error.value.exit_status == 7
    return error.value


# ---- loud validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignments", "key"),
    [
        ({"default": "gpt-9"}, "assignments.default"),
        ({"phases": {"review": "gpt-9"}}, "assignments.phases.review"),
        ({"roles": {"reviewer": "gpt-9"}}, "assignments.roles.reviewer"),
        ({"agents": {"claude": "gpt-9"}}, "assignments.agents.claude"),
        ({"epics": {"FLOW": {"phases": {"gate": "gpt-9"}}}}, "assignments.epics.FLOW.phases.gate"),
        ({"stories": {"FLOW-001": {"default": "gpt-9"}}}, "assignments.stories.FLOW-001.default"),
    ],
)
def test_an_unknown_model_is_an_error_naming_the_key(
    tmp_path: Path, assignments: dict[str, Any], key: str
) -> None:
    error = _refused(tmp_path, {"assignments": assignments, "runs": CLAUDE_AGENT})
    assert error.details["key"] == key
    assert error.message == f"storyflow.yaml: {key}: unknown model 'gpt-9'"
    assert "claude-sonnet-4" in (error.hint or "")  # says what is known
    assert error.details["findings"] == [
        {
            "key": key,
            "problem": "unknown model 'gpt-9'",
            "hint": error.details["findings"][0]["hint"],
        }
    ]


@pytest.mark.parametrize(
    ("assignments", "key", "problem"),
    [
        ({"phases": {"deploy": "claude-opus-4"}}, "assignments.phases.deploy", "unknown phase"),
        ({"roles": {"tester": "claude-opus-4"}}, "assignments.roles.tester", "unknown role"),
        (
            {"epics": {"FLOW": {"roles": {"boss": "claude-opus-4"}}}},
            "assignments.epics.FLOW.roles.boss",
            "unknown role",
        ),
        ({"agents": {"claud": "claude-opus-4"}}, "assignments.agents.claud", "unknown agent"),
    ],
)
def test_an_unknown_phase_role_or_agent_is_an_error_naming_the_key(
    tmp_path: Path, assignments: dict[str, Any], key: str, problem: str
) -> None:
    error = _refused(tmp_path, {"assignments": assignments})
    assert error.details["key"] == key
    assert problem in error.message


@pytest.mark.parametrize(
    ("assignments", "key"),
    [
        (["claude-opus-4"], "assignments"),
        ({"models": {"x": "y"}}, "assignments.models"),
        ({"phases": ["review"]}, "assignments.phases"),
        ({"phases": {"review": 3}}, "assignments.phases.review"),
        ({"default": ""}, "assignments.default"),
        ({"epics": {"flow": {"default": "claude-opus-4"}}}, "assignments.epics.flow"),
        ({"epics": ["FLOW"]}, "assignments.epics"),
        ({"stories": {"FLOW-1": {"default": "claude-opus-4"}}}, "assignments.stories.FLOW-1"),
        ({"stories": {"FLOW-001": "claude-opus-4"}}, "assignments.stories.FLOW-001"),
        (
            {"stories": {"FLOW-001": {"epics": {"FLOW": {}}}}},
            "assignments.stories.FLOW-001.epics",
        ),
    ],
)
def test_a_malformed_section_is_an_error_naming_the_key(
    tmp_path: Path, assignments: Any, key: str
) -> None:
    assert _refused(tmp_path, {"assignments": assignments}).details["key"] == key


def test_every_problem_is_listed_and_the_first_is_raised(tmp_path: Path) -> None:
    data = {
        "assignments": {
            "default": "gpt-9",
            "phases": {"deploy": "claude-opus-4", "review": "gpt-10"},
        }
    }
    error = _refused(tmp_path, data)
    assert [(f["key"], f["problem"]) for f in error.details["findings"]] == [
        ("assignments.default", "unknown model 'gpt-9'"),
        ("assignments.phases.deploy", "unknown phase 'deploy'"),
        ("assignments.phases.review", "unknown model 'gpt-10'"),
    ]
    lenient = _load(tmp_path, strict=False)
    assert [f.key for f in lenient.assignment_findings] == [
        "assignments.default",
        "assignments.phases.deploy",
        "assignments.phases.review",
    ]


def test_a_model_added_to_the_catalogue_may_be_assigned(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        {
            "models": {
                "house-model": {
                    "provider": "acme",
                    "name": "acme-large-2026",
                    "input": 1,
                    "output": 2,
                }
            },
            "assignments": {"phases": {"implement": "house-model"}},
        },
    )
    assert loaded.models["house-model"].name == "acme-large-2026"
    assert resolve_model(loaded, "FLOW", "FLOW-001", "implement", "developer") == "house-model"
    assert provider_model_id(loaded, "house-model") == "acme-large-2026"
    assert provider_model_id(loaded, "claude-opus-4") == "claude-opus-4"  # no name: the key


# ---- models.yaml --------------------------------------------------------------------------


def test_models_yaml_beside_storyflow_yaml(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        {"version": 1},
        {
            "models": {"house-model": {"provider": "acme", "input": 1, "output": 2}},
            "assignments": {"default": "house-model"},
        },
    )
    assert "house-model" in loaded.models and "claude-opus-4" in loaded.models
    assert resolve_model(loaded, None, None, "review", "reviewer") == "house-model"


def test_models_yaml_errors_name_the_file_and_key(tmp_path: Path) -> None:
    error = _refused(tmp_path, {"version": 1}, {"assignments": {"default": "gpt-9"}})
    assert error.details == {
        "key": "assignments.default",
        "source": "models.yaml",
        "findings": error.details["findings"],
    }
    assert error.message.startswith("models.yaml: assignments.default:")
    unknown = _refused(tmp_path, {"version": 1}, {"defaults": {"layout": "flat"}})
    assert (unknown.details["key"], unknown.details["source"]) == ("defaults", "models.yaml")


def test_a_section_in_both_files_is_refused(tmp_path: Path) -> None:
    error = _refused(
        tmp_path,
        {"assignments": {"default": "claude-opus-4"}},
        {"assignments": {"default": "gpt-4o"}},
    )
    assert error.details["key"] == "assignments"
    assert "storyflow.yaml" in error.message


def test_no_assignments_resolve_to_none(tmp_path: Path) -> None:
    loaded = _load(tmp_path, {"version": 1})
    assert loaded.assignments.empty
    for name, phase in PHASES.items():
        assert resolve_model(loaded, "FLOW", "FLOW-001", name, phase.role) is None


# ---- precedence -----------------------------------------------------------------------------

# A command agent named claude (runs.agents), which assignments may name.
CLAUDE_AGENT = {"agents": {"claude": {"type": "command", "command": ["claude", "-p"]}}}
LAYERED = {
    "runs": CLAUDE_AGENT,
    "assignments": {
        "default": "claude-sonnet-4",
        "agents": {"claude": "claude-haiku-3-5"},
        "roles": {"reviewer": "gpt-4o"},
        "phases": {"review": "claude-opus-4"},
        "epics": {
            "FLOW": {
                "default": "gpt-4o-mini",
                "roles": {"qa": "claude-haiku-3-5"},
            },
            "REVI": {"phases": {"gate": "scripted"}},
        },
        "stories": {"FLOW-007": {"phases": {"verify": "claude-opus-4"}}},
    },
}


@pytest.mark.parametrize(
    ("epic", "story", "phase", "role", "agent", "model", "key"),
    [
        # workspace level: phase > role > agent > default
        (None, None, "review", "reviewer", "claude", "claude-opus-4", "assignments.phases.review"),
        (None, None, "fix", "reviewer", "claude", "gpt-4o", "assignments.roles.reviewer"),
        (None, None, "fix", "developer", "claude", "claude-haiku-3-5", "assignments.agents.claude"),
        (None, None, "fix", "developer", None, "claude-sonnet-4", "assignments.default"),
        # an epic's level wins over the workspace's, even its default over a workspace phase
        ("FLOW", None, "review", "reviewer", None, "gpt-4o-mini", "assignments.epics.FLOW.default"),
        ("FLOW", None, "verify", "qa", None, "claude-haiku-3-5", "assignments.epics.FLOW.roles.qa"),
        # an epic without a matching entry falls through to the workspace
        ("REVI", None, "review", "reviewer", None, "claude-opus-4", "assignments.phases.review"),
        ("REVI", None, "gate", "qa", None, "scripted", "assignments.epics.REVI.phases.gate"),
        # a story's level wins over its epic's; its epic comes from the ID
        (
            None,
            "FLOW-007",
            "verify",
            "qa",
            None,
            "claude-opus-4",
            "assignments.stories.FLOW-007.phases.verify",
        ),
        (
            None,
            "FLOW-007",
            "gate",
            "qa",
            None,
            "claude-haiku-3-5",
            "assignments.epics.FLOW.roles.qa",
        ),
        (
            "FLOW",
            "FLOW-008",
            "verify",
            "qa",
            None,
            "claude-haiku-3-5",
            "assignments.epics.FLOW.roles.qa",
        ),
    ],
)
def test_overrides_precedence(
    tmp_path: Path,
    epic: str | None,
    story: str | None,
    phase: str,
    role: str,
    agent: str | None,
    model: str,
    key: str,
) -> None:
    loaded = _load(tmp_path, LAYERED)
    resolution = explain_model(loaded, epic, story, phase, role, agent)
    assert (resolution.model, resolution.key) == (model, key)
    assert resolve_model(loaded, epic, story, phase, role, agent) == model


def test_resolve_takes_the_domain_objects(tmp_path: Path) -> None:
    loaded = _load(tmp_path, LAYERED)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    epic = Epic(
        prefix="FLOW",
        title="Flow",
        layout=LayoutName.STAGED,
        root="plans/flow",
        timezone="UTC",
        settings=EpicSettings(),
        created_at=now,
        updated_at=now,
        version=1,
    )
    story = Story(
        id="FLOW-007",
        epic="FLOW",
        number=7,
        title="Seven",
        status=Status.IN_QA,
        created_at=now,
        updated_at=now,
        status_changed_at=now,
    )
    assert resolve_model(loaded, epic, story, PhaseName.VERIFY, Role.QA) == "claude-opus-4"
    assert resolve_model(loaded, epic, None, PhaseName.VERIFY, Role.QA) == "claude-haiku-3-5"


def test_a_leniently_loaded_unknown_model_is_never_silently_used(tmp_path: Path) -> None:
    loaded = _load(tmp_path, {"assignments": {"phases": {"review": "gpt-9"}}}, strict=False)
    with pytest.raises(InvalidInput) as error:
        resolve_model(loaded, "FLOW", None, "review", "reviewer")
    assert error.value.code == "UNKNOWN_MODEL"
    assert error.value.details["key"] == "assignments.phases.review"
    assert resolve_model(loaded, "FLOW", None, "fix", "developer") is None


# ---- the views ------------------------------------------------------------------------------


def test_show_lists_the_catalogue_and_the_effective_table(tmp_path: Path) -> None:
    data = show(_load(tmp_path, LAYERED))
    assert {m["model"] for m in data["catalogue"]} >= {"claude-opus-4", "scripted"}
    workspace = {r["phase"]: r for r in data["effective"] if r["scope"] == "workspace"}
    assert list(workspace) == [p.value for p in PhaseName]
    assert workspace["review"]["model"] == "claude-opus-4"
    assert workspace["review"]["role"] == "reviewer"
    assert workspace["implement"]["decided_by"] == "assignments.default"
    # override scopes list only what differs from the workspace
    revi = [r for r in data["effective"] if r["scope"] == "REVI"]
    assert [(r["phase"], r["model"]) for r in revi] == [("gate", "scripted")]
    story = [r for r in data["effective"] if r["scope"] == "FLOW-007"]
    assert ("verify", "claude-opus-4") in [(r["phase"], r["model"]) for r in story]
    narrowed = show(_load(tmp_path, LAYERED), story="FLOW-007")["effective"]
    assert len(narrowed) == len(PhaseName) and {r["scope"] for r in narrowed} == {"FLOW-007"}


def test_the_effective_table_resolves_for_the_agent_that_runs_each_phase(
    tmp_path: Path,
) -> None:
    """assignments.agents applies to the phases runs: gives that agent; the table said
    'default' for them when it resolved without the agent."""
    layered = {**LAYERED, "runs": {**CLAUDE_AGENT, "phase_agents": {"implement": "claude"}}}
    rows = show(_load(tmp_path, layered))["effective"]
    workspace = {r["phase"]: r for r in rows if r["scope"] == "workspace"}
    implement, plan = workspace["implement"], workspace["plan"]
    assert (implement["agent"], implement["agent_type"]) == ("claude", "command")
    assert implement["model"] == "claude-haiku-3-5"
    assert implement["decided_by"] == "assignments.agents.claude"
    assert (plan["agent"], plan["model"]) == ("scripted", "claude-sonnet-4")
    loaded = _load(tmp_path, layered)
    ran = resolve_model(loaded, None, None, "implement", "developer", "claude")
    assert ran == implement["model"]  # what a run of the phase gets


def test_check_passes_a_clean_config_and_refuses_with_findings(tmp_path: Path) -> None:
    assert check(_load(tmp_path, LAYERED, strict=False))["ok"] is True
    bad = _load(tmp_path, {"assignments": {"roles": {"tester": "gpt-9"}}}, strict=False)
    from storyflow.errors import RuleViolation

    with pytest.raises(RuleViolation) as error:
        check(bad)
    assert error.value.code == "MODEL_ASSIGNMENT_INVALID"
    assert error.value.exit_status == 3
    assert [f["problem"] for f in error.value.details["findings"]] == [
        "unknown model 'gpt-9'",
        "unknown role 'tester'",
    ]


def test_an_override_is_matched_against_the_epics_and_stories_by_closeness() -> None:
    """The hint's suggestion: the closest story of the same epic when that epic exists (an
    epic without stories suggests none from another epic), else of any epic."""
    from storyflow.domain.assignments import AssignmentLevel, Assignments, check_scopes

    level = AssignmentLevel(default="gpt-4o")
    overrides = Assignments(
        epics={"FLOW": level, "FLWO": level},
        stories={"FLOW-001": level, "FLOW-0001": level, "FLOX-001": level, "FLWO-002": level},
    )
    hints = {
        f.key: f.hint
        for f in check_scopes(overrides, epics={"FLOW", "FLOX"}, stories={"FLOW-001", "FLOW-002"})
    }
    assert hints == {
        "assignments.epics.FLWO": "did you mean FLOW? storyflow epic list shows the epics",
        "assignments.stories.FLOW-0001": "did you mean FLOW-001? "
        "storyflow story list shows the stories",
        "assignments.stories.FLOX-001": "storyflow story new FLOX creates the epic's next "
        "story; use its ID",
        "assignments.stories.FLWO-002": "did you mean FLOW-002? "
        "storyflow story list shows the stories",
    }
