"""Configuration: defaults < storyflow.yaml < STORYFLOW_* environment < flags; every error
names the key (or the variable, or the flag) that is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from storyflow import config
from storyflow.config import DEFAULT_MODELS, Config, ModelPrice
from storyflow.domain.budgets import DEFAULT_BUDGETS, BudgetPhase, Enforcement, PhaseBudget
from storyflow.domain.layouts import LayoutName
from storyflow.errors import InvalidInput, UsageError


def _workspace(tmp_path: Path, data: dict[str, Any] | str | None) -> Path:
    if data is not None:
        text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
        (tmp_path / "storyflow.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def _load(
    root: Path, env: dict[str, str] | None = None, flags: dict[str, Any] | None = None
) -> Config:
    return config.load(cwd=root, workspace=root, env=env or {}, flags=flags)


def _nested(path: str, value: Any) -> dict[str, Any]:
    head, _, tail = path.partition(".")
    return {head: _nested(tail, value) if tail else value}


# key path, attribute, env var, default, then (raw, parsed) for file, env and flag; each layer
# differs from the one below it so every step of the precedence is visible.
SETTINGS: list[tuple[str, str, str, Any, tuple[Any, Any], tuple[str, Any], tuple[Any, Any]]] = [
    (
        "database_url",
        "database_url",
        "STORYFLOW_DATABASE_URL",
        None,
        ("sqlite:///file.db", "sqlite:///file.db"),
        ("postgresql+psycopg://u@h/env", "postgresql+psycopg://u@h/env"),
        ("sqlite:///flag.db", "sqlite:///flag.db"),
    ),
    (
        "actor",
        "actor",
        "STORYFLOW_ACTOR",
        None,
        ("file-actor", "file-actor"),
        ("env-actor", "env-actor"),
        ("flag-actor", "flag-actor"),
    ),
    (
        "defaults.layout",
        "default_layout",
        "STORYFLOW_DEFAULT_LAYOUT",
        LayoutName.STAGED,
        ("flat", LayoutName.FLAT),
        ("staged", LayoutName.STAGED),
        ("flat", LayoutName.FLAT),
    ),
    (
        "defaults.timezone",
        "default_timezone",
        "STORYFLOW_DEFAULT_TIMEZONE",
        "UTC",
        ("America/Denver", "America/Denver"),
        ("Europe/Paris", "Europe/Paris"),
        ("Asia/Tokyo", "Asia/Tokyo"),
    ),
    (
        "defaults.coverage_threshold",
        "coverage_threshold",
        "STORYFLOW_COVERAGE_THRESHOLD",
        45.0,
        (50, 50.0),
        ("60.5", 60.5),
        (70, 70.0),
    ),
    (
        "defaults.enforcement",
        "enforcement",
        "STORYFLOW_ENFORCEMENT",
        Enforcement.ADVISORY,
        ("warning", Enforcement.WARNING),
        ("soft_gate", Enforcement.SOFT_GATE),
        ("hard_gate", Enforcement.HARD_GATE),
    ),
    (
        "defaults.require_approval",
        "require_approval",
        "STORYFLOW_REQUIRE_APPROVAL",
        False,
        (True, True),
        ("no", False),
        (True, True),
    ),
    (
        "limits.max_file_bytes",
        "max_file_bytes",
        "STORYFLOW_MAX_FILE_BYTES",
        1_048_576,
        (2_000, 2_000),
        ("3000", 3_000),
        (4_000, 4_000),
    ),
    (
        "limits.database_reconnect_seconds",
        "database_reconnect_seconds",
        "STORYFLOW_DATABASE_RECONNECT_SECONDS",
        60.0,
        (300, 300.0),
        ("0", 0.0),
        ("2.5", 2.5),
    ),
]


def test_the_table_covers_every_scalar_setting() -> None:
    assert {s[0] for s in SETTINGS} == set(config.SCALARS)
    for key, attr, env_name, *_ in SETTINGS:
        assert config.SCALARS[key][:2] == (attr, env_name)


@pytest.mark.parametrize("setting", SETTINGS, ids=[s[0] for s in SETTINGS])
def test_precedence_defaults_file_env_flags(tmp_path: Path, setting: tuple[Any, ...]) -> None:
    key, attr, env_name, default, (file_raw, file_value), env_layer, flag_layer = setting
    env_raw, env_value = env_layer
    flag_raw, flag_value = flag_layer

    bare = tmp_path / "bare"
    bare.mkdir()
    _workspace(bare, "version: 1\n")
    assert getattr(_load(bare), attr) == default

    root = tmp_path / "ws"
    root.mkdir()
    _workspace(root, {"version": 1, **_nested(key, file_raw)})
    assert getattr(_load(root), attr) == file_value
    assert getattr(_load(root, env={env_name: env_raw}), attr) == env_value
    loaded = _load(root, env={env_name: env_raw}, flags={attr: flag_raw})
    assert getattr(loaded, attr) == flag_value
    # A flag that is not given (None) and an empty variable fall through to the layer below.
    assert getattr(_load(root, env={env_name: ""}, flags={attr: None}), attr) == file_value
    # Without the file, the environment still beats the default.
    assert getattr(_load(bare, env={env_name: env_raw}), attr) == env_value
    assert getattr(_load(bare, flags={attr: flag_raw}), attr) == flag_value


def test_unrelated_environment_variables_are_ignored(tmp_path: Path) -> None:
    root = _workspace(tmp_path, {"version": 1})
    loaded = _load(root, env={"STORYFLOW_COLOUR": "red", "PATH": "/bin", "storyflow_actor": "x"})
    assert loaded.actor is None


def test_defaults_without_a_file(tmp_path: Path) -> None:
    loaded = config.load(cwd=tmp_path, env={}, require_file=False)
    assert loaded.root == tmp_path.resolve()
    assert loaded.default_layout is LayoutName.STAGED
    assert loaded.coverage_threshold == 45.0
    assert loaded.budgets == DEFAULT_BUDGETS
    assert loaded.models == DEFAULT_MODELS
    assert (
        loaded.effective_database_url == f"sqlite:///{tmp_path.resolve()}/.storyflow/storyflow.db"
    )


def test_missing_workspace(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as error:
        config.load(cwd=tmp_path, env={})
    assert error.value.code == "WORKSPACE_NOT_FOUND"
    with pytest.raises(UsageError) as explicit:
        config.load(cwd=tmp_path, workspace=tmp_path, env={})
    assert explicit.value.code == "WORKSPACE_NOT_FOUND"


def test_the_workspace_is_found_above_the_current_directory(tmp_path: Path) -> None:
    root = _workspace(tmp_path, {"version": 1, "actor": "found"})
    deep = root / "a" / "b"
    deep.mkdir(parents=True)
    loaded = config.load(cwd=deep, env={})
    assert loaded.root == root.resolve() and loaded.actor == "found"


def test_the_initial_file_loads_to_the_defaults(tmp_path: Path) -> None:
    text = config.render_initial(
        database_url=None, layout=LayoutName.FLAT, timezone="America/Denver"
    )
    loaded = _load(_workspace(tmp_path, text))
    assert loaded.default_layout is LayoutName.FLAT
    assert loaded.default_timezone == "America/Denver"
    assert loaded.coverage_threshold == 45.0
    assert loaded.enforcement is Enforcement.ADVISORY
    assert loaded.require_approval is False
    assert loaded.max_file_bytes == 1_048_576
    assert loaded.database_url is None


# ---- errors name the key ------------------------------------------------------------------


def _file_error(tmp_path: Path, data: dict[str, Any] | str) -> InvalidInput:
    root = _workspace(tmp_path, data)
    with pytest.raises(InvalidInput) as error:
        _load(root)
    assert error.value.code == "CONFIG_INVALID"
    assert error.value.exit_status == 7
    assert error.value.details["source"] == "storyflow.yaml"
    return error.value


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"defaults": {"colour": "red"}}, "defaults.colour"),
        ({"limits": {"max_lines": 3}}, "limits.max_lines"),
        ({"colour": "red"}, "colour"),
        ({"defaults": ["layout"]}, "defaults"),
        ({"budgets": {"elaboration": {"soft": 3}}}, "budgets.elaboration.soft"),
        ({"budgets": {"lunch": {"hard": 3}}}, "budgets.lunch"),
        (
            {"models": {"m": {"provider": "x", "input": 1, "output": 2, "extra": 1}}},
            "models.m.extra",
        ),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(
    tmp_path: Path, data: dict[str, Any], key: str
) -> None:
    error = _file_error(tmp_path, data)
    assert error.details["key"] == key
    assert f"storyflow.yaml: {key}:" in error.message
    assert key in (error.hint or "")


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"defaults": {"coverage_threshold": 200}}, "defaults.coverage_threshold"),
        ({"defaults": {"coverage_threshold": -1}}, "defaults.coverage_threshold"),
        ({"defaults": {"coverage_threshold": "lots"}}, "defaults.coverage_threshold"),
        ({"defaults": {"enforcement": "loud"}}, "defaults.enforcement"),
        ({"defaults": {"timezone": "Mars/Base"}}, "defaults.timezone"),
        ({"defaults": {"layout": "nested"}}, "defaults.layout"),
        ({"defaults": {"require_approval": "maybe"}}, "defaults.require_approval"),
        ({"limits": {"max_file_bytes": -1}}, "limits.max_file_bytes"),
        ({"limits": {"max_file_bytes": 0}}, "limits.max_file_bytes"),
        ({"limits": {"max_file_bytes": True}}, "limits.max_file_bytes"),
        ({"database_url": ""}, "database_url"),
        ({"actor": 12}, "actor"),
        ({"version": 2}, "version"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, data: dict[str, Any], key: str) -> None:
    error = _file_error(tmp_path, data)
    assert error.details["key"] == key
    assert error.message.startswith(f"storyflow.yaml: {key}: ")


def test_timezone_error_says_what_is_wrong(tmp_path: Path) -> None:
    error = _file_error(tmp_path, {"defaults": {"timezone": "Mars/Base"}})
    assert "Mars/Base" in error.message


@pytest.mark.parametrize(
    ("budgets", "key"),
    [
        ({"elaboration": {"warning": 90_000, "hard": 80_000}}, "budgets.elaboration"),
        # Only the warning given: it is checked against the default hard limit (60k).
        ({"elaboration": {"warning": 70_000}}, "budgets.elaboration"),
        ({"code_review": {"hard": 0}}, "budgets.code_review.hard"),
        ({"code_review": {"estimate": "many"}}, "budgets.code_review.estimate"),
        ({"code_review": 5}, "budgets.code_review"),
        (["elaboration"], "budgets"),
    ],
)
def test_invalid_budgets_name_the_key(tmp_path: Path, budgets: Any, key: str) -> None:
    error = _file_error(tmp_path, {"budgets": budgets})
    assert error.details["key"] == key


@pytest.mark.parametrize(
    ("models", "key"),
    [
        ({"m": {"provider": "acme", "input": 1.0}}, "models.m.output"),
        ({"m": {"input": 1.0, "output": 2.0}}, "models.m.provider"),
        ({"m": {"provider": "acme", "input": -1, "output": 2}}, "models.m.input"),
        ({"m": {"provider": "acme", "input": 1, "output": "cheap"}}, "models.m.output"),
        ({"m": {"provider": "acme", "input": 1, "output": True}}, "models.m.output"),
        ({"m": "free"}, "models.m"),
        (["m"], "models"),
    ],
)
def test_invalid_models_name_the_key(tmp_path: Path, models: Any, key: str) -> None:
    error = _file_error(tmp_path, {"models": models})
    assert error.details["key"] == key


def test_malformed_file_is_invalid_yaml(tmp_path: Path) -> None:
    root = _workspace(tmp_path, "version: 1\ndefaults: [unclosed\n")
    with pytest.raises(InvalidInput) as error:
        _load(root)
    assert error.value.code == "INVALID_YAML"
    assert error.value.details == {"file": "storyflow.yaml", "line": 3}


@pytest.mark.parametrize(
    ("env_name", "value"),
    [
        ("STORYFLOW_COVERAGE_THRESHOLD", "200"),
        ("STORYFLOW_COVERAGE_THRESHOLD", "abc"),
        ("STORYFLOW_ENFORCEMENT", "loud"),
        ("STORYFLOW_DEFAULT_TIMEZONE", "Mars/Base"),
        ("STORYFLOW_DEFAULT_LAYOUT", "nested"),
        ("STORYFLOW_REQUIRE_APPROVAL", "perhaps"),
        ("STORYFLOW_MAX_FILE_BYTES", "-1"),
        ("STORYFLOW_DATABASE_URL", "   "),
    ],
)
def test_environment_errors_name_the_variable(tmp_path: Path, env_name: str, value: str) -> None:
    root = _workspace(tmp_path, {"version": 1})
    with pytest.raises(InvalidInput) as error:
        _load(root, env={env_name: value})
    assert error.value.code == "CONFIG_INVALID"
    assert error.value.details == {"key": env_name, "source": "environment"}
    assert error.value.message.startswith(f"environment: {env_name}: ")
    assert env_name in (error.value.hint or "")


@pytest.mark.parametrize(
    ("attr", "value", "flag"),
    [
        ("coverage_threshold", 101, "--coverage-threshold"),
        ("enforcement", "loud", "--enforcement"),
        ("default_timezone", "Mars/Base", "--default-timezone"),
        ("database_url", "", "--database-url"),
    ],
)
def test_flag_errors_name_the_flag(tmp_path: Path, attr: str, value: Any, flag: str) -> None:
    root = _workspace(tmp_path, {"version": 1})
    with pytest.raises(InvalidInput) as error:
        _load(root, flags={attr: value})
    assert error.value.code == "CONFIG_INVALID"
    assert error.value.details == {"key": flag, "source": "flags"}


# ---- budgets and models merge with the defaults -------------------------------------------


def test_budget_overrides_merge_with_the_defaults(tmp_path: Path) -> None:
    root = _workspace(
        tmp_path,
        {
            "version": 1,
            "budgets": {
                "implementation": {"hard": 600_000},
                "pm_story": {"estimate": 1, "warning": 2, "hard": 3},
            },
        },
    )
    budgets = _load(root).budgets
    assert budgets[BudgetPhase.IMPLEMENTATION] == PhaseBudget(
        estimate=50_000, warning=200_000, hard=600_000
    )
    assert budgets[BudgetPhase.STORY_GENERATION] == PhaseBudget(estimate=1, warning=2, hard=3)
    for phase in (BudgetPhase.ELABORATION, BudgetPhase.CODE_REVIEW, BudgetPhase.QA_VERIFICATION):
        assert budgets[phase] == DEFAULT_BUDGETS[phase]
    assert set(budgets) == set(BudgetPhase)
    # The module defaults are not modified by a workspace's overrides.
    assert DEFAULT_BUDGETS[BudgetPhase.IMPLEMENTATION].hard == 500_000


def test_model_overrides_merge_with_the_defaults(tmp_path: Path) -> None:
    root = _workspace(
        tmp_path,
        {
            "version": 1,
            "models": {
                "my-model": {"provider": "acme", "input": 1, "output": 2.5, "cache_read": 0.1},
                "gpt-4o": {"provider": "openai", "input": 2.0, "output": 8.0},
            },
        },
    )
    models = _load(root).models
    assert models["my-model"] == ModelPrice(
        provider="acme", input=1.0, output=2.5, cache_read=0.1, cache_write=0.0
    )
    assert models["gpt-4o"] == ModelPrice(provider="openai", input=2.0, output=8.0)
    assert set(DEFAULT_MODELS) <= set(models)
    assert models["claude-sonnet-4"] == DEFAULT_MODELS["claude-sonnet-4"]
    assert DEFAULT_MODELS["gpt-4o"].input == 2.5


def test_model_price_cost() -> None:
    price = ModelPrice(provider="p", input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
    assert price.cost(input=1_000_000, output=0, cache_read=0, cache_write=0) == pytest.approx(3.0)
    assert price.cost(input=0, output=0, cache_read=0, cache_write=0) == 0.0
    assert price.cost(
        input=2_000, output=1_000, cache_read=10_000, cache_write=4_000
    ) == pytest.approx((2_000 * 3.0 + 1_000 * 15.0 + 10_000 * 0.3 + 4_000 * 3.75) / 1_000_000)
    free = DEFAULT_MODELS["scripted"]
    assert free.cost(input=10**9, output=10**9, cache_read=0, cache_write=0) == 0.0


def test_config_is_frozen(tmp_path: Path) -> None:
    loaded = _load(_workspace(tmp_path, {"version": 1}))
    with pytest.raises(AttributeError):
        loaded.actor = "someone"  # type: ignore[misc]


def test_runs_and_assignments_default_when_the_workspace_sets_neither(tmp_path: Path) -> None:
    """Without a runs: or assignments: section (nor a STORYFLOW_RUNS_* variable) load()
    leaves them to their defaults, built when first read."""
    from storyflow.domain.assignments import Assignments
    from storyflow.run_settings import RunSettings

    loaded = _load(_workspace(tmp_path, {"version": 1}))
    assert loaded.runs_given is None and loaded.assignments_given is None
    assert loaded.runs == RunSettings()
    assert loaded.runs is loaded.runs  # built once
    assert loaded.assignments == Assignments()


def test_a_runs_variable_alone_is_read_and_checked(tmp_path: Path) -> None:
    root = _workspace(tmp_path, {"version": 1})
    assert _load(root, env={"STORYFLOW_RUNS_WORKERS": "3"}).runs.workers == 3
    with pytest.raises(InvalidInput) as error:
        _load(root, env={"STORYFLOW_RUNS_WORKERS": "0"})
    assert error.value.code == "CONFIG_INVALID"
    assert error.value.details == {"key": "STORYFLOW_RUNS_WORKERS", "source": "environment"}


def test_every_runs_variable_carries_the_prefix_load_looks_for() -> None:
    from storyflow.run_settings import SCALARS as RUN_SCALARS

    names = [env_name for _, env_name, _ in RUN_SCALARS.values()]
    assert names and all(name.startswith(config.RUNS_ENV_PREFIX) for name in names)
