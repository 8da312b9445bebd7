"""Configuration: one loader, one frozen object.

Precedence: built-in defaults < ``storyflow.yaml`` < ``STORYFLOW_*`` environment < flags.
Unknown keys and invalid values are errors that name the key.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyflow.domain.budgets import (
    DEFAULT_BUDGETS,
    MAX_TOKENS,
    BudgetPhase,
    Enforcement,
    PhaseBudget,
    parse_phase,
)
from storyflow.domain.layouts import LayoutName
from storyflow.errors import InvalidInput, UsageError

if TYPE_CHECKING:
    from storyflow.domain.assignments import Assignments, Finding
    from storyflow.run_settings import RunSettings

CONFIG_FILE = "storyflow.yaml"
MODELS_FILE = "models.yaml"  # optional, beside storyflow.yaml: models: and assignments:
STATE_DIR = ".storyflow"
CONFIG_VERSION = 1
RUNS_ENV_PREFIX = "STORYFLOW_RUNS_"  # the runs: section's variables (run_settings.SCALARS)


@dataclass(frozen=True, kw_only=True)
class ModelPrice:
    """USD per million tokens."""

    provider: str
    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0
    name: str | None = None  # the provider's model ID, when it differs from the catalogue key

    def cost(self, *, input: int, output: int, cache_read: int, cache_write: int) -> float:
        return (
            input * self.input
            + output * self.output
            + cache_read * self.cache_read
            + cache_write * self.cache_write
        ) / 1_000_000


# List prices at the time of writing; every workspace can override or extend them.
DEFAULT_MODELS: dict[str, ModelPrice] = {
    "claude-opus-4": ModelPrice(
        provider="anthropic", input=15.0, output=75.0, cache_read=1.5, cache_write=18.75
    ),
    "claude-sonnet-4": ModelPrice(
        provider="anthropic", input=3.0, output=15.0, cache_read=0.3, cache_write=3.75
    ),
    "claude-haiku-3-5": ModelPrice(
        provider="anthropic", input=0.8, output=4.0, cache_read=0.08, cache_write=1.0
    ),
    "gpt-4o": ModelPrice(provider="openai", input=2.5, output=10.0, cache_read=1.25),
    "gpt-4o-mini": ModelPrice(provider="openai", input=0.15, output=0.6, cache_read=0.075),
    "scripted": ModelPrice(provider="storyflow", input=0.0, output=0.0),
}


@dataclass(frozen=True, kw_only=True)
class Config:
    root: Path
    database_url: str | None = None
    default_layout: LayoutName = LayoutName.STAGED
    default_timezone: str = "UTC"
    coverage_threshold: float = 45.0
    enforcement: Enforcement = Enforcement.ADVISORY
    require_approval: bool = False
    max_file_bytes: int = 1_048_576
    database_reconnect_seconds: float = 60.0  # a lost PostgreSQL connection, tried again
    actor: str | None = None
    budgets: dict[BudgetPhase, PhaseBudget] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    models: dict[str, ModelPrice] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    # The assignments: and runs: sections as load() parsed and checked them; None when the
    # workspace sets neither (nor a STORYFLOW_RUNS_* variable), and then ``assignments`` and
    # ``runs`` are the defaults, built on first use: every command loads the config, few
    # read these, and defining their value objects is a fifth of a read command's start-up.
    assignments_given: Assignments | None = None
    # Problems found with strict_assignments=False (storyflow models check); else empty.
    assignment_findings: tuple[Finding, ...] = ()
    runs_given: RunSettings | None = None

    @cached_property
    def assignments(self) -> Assignments:
        if self.assignments_given is not None:
            return self.assignments_given
        from storyflow.domain.assignments import Assignments

        return Assignments()

    @cached_property
    def runs(self) -> RunSettings:
        """The runs: section (agents, retries, leases, reviewers)."""
        if self.runs_given is not None:
            return self.runs_given
        from storyflow.run_settings import RunSettings

        return RunSettings()

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_dir / 'storyflow.db'}"


# Scalar settings: file key path -> (env var, parser). Every one also has a CLI flag where a
# command uses it; the root command takes --database-url.
def _float_pct(value: Any) -> float:
    number = float(value)
    if not 0 <= number <= 100:
        raise ValueError("must be between 0 and 100")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be a positive integer")  # 2.7 or .inf, not silently cut
    number = int(value)
    if not 0 < number <= MAX_TOKENS:
        raise ValueError(f"must be a positive integer up to {MAX_TOKENS:,}")
    return number


def seconds(value: Any) -> float:
    """A number of seconds, from 0 to a week (a NaN fails the range too)."""
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds")
    number = float(value)
    if not 0 <= number <= 7 * 86_400:
        raise ValueError("must be between 0 and 604800 seconds")
    return number


def _timezone(value: Any) -> str:
    return validate_timezone(str(value))


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


SCALARS: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    # key path: (attribute, env var, parser)
    "database_url": ("database_url", "STORYFLOW_DATABASE_URL", _str),
    "actor": ("actor", "STORYFLOW_ACTOR", _str),
    "defaults.layout": ("default_layout", "STORYFLOW_DEFAULT_LAYOUT", LayoutName),
    "defaults.timezone": ("default_timezone", "STORYFLOW_DEFAULT_TIMEZONE", _timezone),
    "defaults.coverage_threshold": (
        "coverage_threshold",
        "STORYFLOW_COVERAGE_THRESHOLD",
        _float_pct,
    ),
    "defaults.enforcement": ("enforcement", "STORYFLOW_ENFORCEMENT", Enforcement),
    "defaults.require_approval": ("require_approval", "STORYFLOW_REQUIRE_APPROVAL", _bool),
    "limits.max_file_bytes": ("max_file_bytes", "STORYFLOW_MAX_FILE_BYTES", _positive_int),
    "limits.database_reconnect_seconds": (
        "database_reconnect_seconds",
        "STORYFLOW_DATABASE_RECONNECT_SECONDS",
        seconds,
    ),
}
SECTIONS = {
    "version",
    "database_url",
    "actor",
    "defaults",
    "limits",
    "budgets",
    "models",
    "assignments",
    "runs",
}
MODELS_SECTIONS = {"version", "models", "assignments"}


def validate_timezone(name: str) -> str:
    if name == "UTC":  # the default: valid everywhere, and zoneinfo costs a command ~3 ms
        return name
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(name)
    except (LookupError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise InvalidInput(
            f"unknown time zone {name!r}",
            hint="use an IANA name such as UTC or America/Denver",
            details={"value": name},
        ) from exc
    return name


def config_error(key: str, problem: str, source: str) -> InvalidInput:
    """CONFIG_INVALID, naming the key (a dotted path) and where it was set."""
    return InvalidInput(
        f"{source}: {key}: {problem}",
        code="CONFIG_INVALID",
        hint=f"fix {key} in {source}" if source != "environment" else f"fix or unset {key}",
        details={"key": key, "source": source},
    )


_bad = config_error


def unknown_key(where: str, found: Collection[Any], known: Collection[str], source: str) -> None:
    """Raise CONFIG_INVALID for the first of the keys ``found`` under ``where`` (a dotted
    path, or "" at the top) that is not ``known``: the hint names the closest known key, if
    one is close, and all of them."""
    unknown = [str(key) for key in found if key not in known]
    if not unknown:
        return
    from difflib import get_close_matches  # only on this error's path

    name, keys = unknown[0], sorted(known)  # the first in the file
    path = f"{where}.{name}" if where else name
    words = set(name.split("_")) - {""}
    close = (
        get_close_matches(name, keys, n=1, cutoff=0.6)
        or [key for key in keys if words & set(key.split("_"))][:1]
    )
    guess = f"did you mean {close[0]}? " if close else ""
    error = config_error(path, "unknown key", source)
    error.hint = (
        f"{error.hint}: {guess}the keys {'of ' + where if where else 'at the top'} are: "
        + ", ".join(keys)
    )
    raise error


def _parse(key: str, parser: Callable[[Any], Any], value: Any, source: str) -> Any:
    try:
        return parser(value)
    except (ValueError, TypeError, OverflowError, InvalidInput) as exc:
        message = exc.message if isinstance(exc, InvalidInput) else str(exc)
        raise _bad(key, message or f"invalid value {value!r}", source) from None


def _flatten(
    data: Mapping[str, Any], source: str, sections: set[str] | None = None
) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        unknown_key("", [key], SECTIONS if sections is None else sections, source)
        if key in {"defaults", "limits"}:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise _bad(key, "must be a mapping", source)
            known = {path.split(".", 1)[1] for path in SCALARS if path.startswith(f"{key}.")}
            unknown_key(key, value, known, source)
            for sub, subvalue in value.items():
                flat[f"{key}.{sub}"] = subvalue
        elif key in {"budgets", "models", "version"}:
            flat[key] = value
        else:
            flat[key] = value
    return flat


def _budgets(value: Any, source: str) -> dict[BudgetPhase, PhaseBudget]:
    budgets = dict(DEFAULT_BUDGETS)
    if value is None:
        return budgets
    if not isinstance(value, Mapping):
        raise _bad("budgets", "must be a mapping of phase to estimate/warning/hard", source)
    for name, spec in value.items():
        key = f"budgets.{name}"
        try:
            phase = parse_phase(str(name))
        except InvalidInput:
            raise _bad(key, "unknown phase", source) from None
        if not isinstance(spec, Mapping):
            raise _bad(key, "must be a mapping with estimate, warning, hard", source)
        unknown_key(key, spec, {"estimate", "warning", "hard"}, source)
        base = budgets[phase]
        values = {
            f: _parse(f"{key}.{f}", _positive_int, spec.get(f, getattr(base, f)), source)
            for f in ("estimate", "warning", "hard")
        }
        if values["warning"] > values["hard"]:
            raise _bad(key, "warning must not exceed hard", source)
        budgets[phase] = PhaseBudget(**values)
    return budgets


MODEL_KEYS = frozenset({"provider", "name", "input", "output", "cache_read", "cache_write"})


def _models(value: Any, source: str) -> dict[str, ModelPrice]:
    models = dict(DEFAULT_MODELS)
    if value is None:
        return models
    if not isinstance(value, Mapping):
        raise _bad("models", "must be a mapping of model name to prices", source)
    for name, spec in value.items():
        key = f"models.{name}"
        if not isinstance(spec, Mapping):
            raise _bad(key, "must be a mapping with provider, input, output", source)
        unknown_key(key, spec, MODEL_KEYS, source)
        for required in ("provider", "input", "output"):
            if required not in spec:
                raise _bad(f"{key}.{required}", "missing", source)
        prices = {}
        for price in ("input", "output", "cache_read", "cache_write"):
            raw = spec.get(price, 0.0)
            number = _parse(f"{key}.{price}", float, raw, source)
            if isinstance(raw, bool) or not (math.isfinite(number) and number >= 0):
                raise _bad(f"{key}.{price}", "must be a non-negative number", source)
            prices[price] = number
        model_id = None
        if spec.get("name") is not None:
            model_id = _parse(f"{key}.name", _str, spec["name"], source)
        models[str(name)] = ModelPrice(provider=str(spec["provider"]), name=model_id, **prices)
    return models


def _file_values(
    path: Path, cache: Path, display: str = CONFIG_FILE, sections: set[str] | None = None
) -> dict[str, Any]:
    """storyflow.yaml's values, flattened and checked. The parsed form is cached as JSON keyed
    by the file's checksum, so read-only commands skip PyYAML (~15 ms to import)."""
    import json
    import zlib

    from storyflow.adapters.files.atomic import read_text

    text = read_text(path, display=display)
    checksum = f"{zlib.crc32(text.encode('utf-8')):08x}:{len(text)}"
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("checksum") == checksum and isinstance(cached.get("values"), dict):
            return dict(cached["values"])
    except (OSError, ValueError):
        pass
    from storyflow.adapters.files.yamlio import load_mapping

    values = _flatten(load_mapping(text, source=display), display, sections)
    if cache.parent.is_dir():
        try:
            from storyflow.adapters.files.atomic import write_atomic

            write_atomic(cache, json.dumps({"checksum": checksum, "values": values}))
        except (OSError, TypeError, ValueError):
            pass  # a cache only: never a reason to fail
    return values


def find_root(start: Path) -> Path | None:
    for candidate in (start, *start.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def load(
    *,
    cwd: Path,
    workspace: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    require_file: bool = True,
    strict_assignments: bool = True,
) -> Config:
    """Build the Config for the workspace at ``workspace`` (or found above ``cwd``).
    ``strict_assignments=False`` keeps model-assignment problems as findings on the Config
    (``storyflow models check`` lists them) instead of refusing."""
    env = os.environ if env is None else env
    root = workspace.resolve() if workspace else find_root(cwd.resolve())
    if root is None:
        if require_file:
            raise UsageError(
                f"no {CONFIG_FILE} in {cwd} or any parent directory",
                code="WORKSPACE_NOT_FOUND",
                hint="run 'storyflow init' at the repository root, or pass --workspace DIR",
            )
        root = cwd.resolve()
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise InvalidInput(
            f"the workspace {root} cannot be read",
            code="WORKSPACE_UNREADABLE",
            hint="fix the directory's permissions",
        )
    path = root / CONFIG_FILE
    file_values: dict[str, Any] = {}
    if path.is_file():
        file_values = _file_values(path, root / STATE_DIR / "config-cache.json")
        version = file_values.pop("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise _bad("version", f"this storyflow reads version {CONFIG_VERSION}", CONFIG_FILE)
    elif require_file:
        raise UsageError(
            f"{path} does not exist",
            code="WORKSPACE_NOT_FOUND",
            hint="run 'storyflow init' there first",
        )
    sources = _merge_models_file(root, file_values)
    values: dict[str, Any] = {}
    for key, (attr, env_name, parser) in SCALARS.items():
        if key in file_values and file_values[key] is not None:
            values[attr] = _parse(key, parser, file_values[key], CONFIG_FILE)
        if env.get(env_name):
            values[attr] = _parse(env_name, parser, env[env_name], "environment")
        if flags and flags.get(attr) is not None:
            values[attr] = _parse(f"--{attr.replace('_', '-')}", parser, flags[attr], "flags")
    models = _models(file_values.get("models"), sources["models"])
    runs: RunSettings | None = None
    if file_values.get("runs") is not None or any(
        name.startswith(RUNS_ENV_PREFIX) and value for name, value in env.items()
    ):
        from storyflow.run_settings import parse_run_settings

        runs = parse_run_settings(file_values.get("runs"), env, CONFIG_FILE)
    assignments: Assignments | None = None
    findings: tuple[Finding, ...] = ()
    if file_values.get("assignments") is not None:
        if runs is None:
            from storyflow.run_settings import RunSettings

            runs = RunSettings()
        assignments, findings = _assignments(
            file_values.get("assignments"),
            models,
            frozenset(runs.agents),
            sources["assignments"],
            strict_assignments,
        )
    return Config(
        root=root,
        budgets=_budgets(file_values.get("budgets"), CONFIG_FILE),
        models=models,
        assignments_given=assignments,
        assignment_findings=findings,
        runs_given=runs,
        **values,
    )


def _merge_models_file(root: Path, file_values: dict[str, Any]) -> dict[str, str]:
    """Fold models.yaml (beside storyflow.yaml) into ``file_values``; return which file each
    of its sections came from. A section may be set in one of the two files only."""
    sources = {"models": CONFIG_FILE, "assignments": CONFIG_FILE}
    path = root / MODELS_FILE
    if not path.is_file():
        if os.path.lexists(path):  # a folder (or a dangling link) would be ignored silently
            raise InvalidInput(
                f"{MODELS_FILE} is not a file",
                code="CONFIG_INVALID",
                hint=f"make {MODELS_FILE} a YAML file (models:, assignments:) or remove it",
                details={"file": MODELS_FILE},
            )
        return sources
    extra = _file_values(path, root / STATE_DIR / "models-cache.json", MODELS_FILE, MODELS_SECTIONS)
    version = extra.pop("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise _bad("version", f"this storyflow reads version {CONFIG_VERSION}", MODELS_FILE)
    for section, value in extra.items():
        if file_values.get(section) is not None:
            raise _bad(section, f"is also set in {CONFIG_FILE}; keep it in one file", MODELS_FILE)
        file_values[section] = value
        sources[section] = MODELS_FILE
    return sources


def _assignments(
    value: Any,
    models: Mapping[str, ModelPrice],
    agents: frozenset[str],
    source: str,
    strict: bool,
) -> tuple[Assignments, tuple[Finding, ...]]:
    """Parse and check ``assignments:``. A malformed section is always refused; an unknown
    model, phase, role or agent is refused too unless ``strict`` is off."""
    from storyflow.domain import assignments as rules

    parsed, shape = rules.parse(value)
    if shape:
        raise _bad(shape[0].key, shape[0].problem, source)
    findings: list[Finding] = []
    if not parsed.empty:
        phases, roles = rules.vocabulary()
        findings = rules.check(parsed, models=models, phases=phases, roles=roles, agents=agents)
    if findings and strict:
        first = findings[0]
        error = _bad(first.key, first.problem, source)
        error.hint = f"fix {first.key} in {source}: {first.hint}"
        error.details["findings"] = [f.to_json() for f in findings]
        raise error
    return parsed, tuple(findings)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_+./-]*")
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n", "null"})


def _quoted(value: str) -> str:
    """``value`` as a YAML scalar that reads back exactly as given: plain when it is a plain
    word (a layout, a time zone), else double-quoted (a JSON string is one, once the
    characters YAML will not take raw are escaped): a '#' or ': ' in a URL must not end it."""
    if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    text = json.dumps(value, ensure_ascii=False)
    return re.sub("[\x7f-\x9f\u2028\u2029]", lambda m: f"\\u{ord(m.group()):04x}", text)


def _commented(line: str, comment: str) -> str:
    """``line`` and its comment, aligned with the comments of the lines written as they are."""
    return f"{line.ljust(29)} # {comment}"


def render_initial(*, database_url: str | None, layout: LayoutName, timezone: str) -> str:
    """The storyflow.yaml that `storyflow init` writes: every setting, commented."""
    db_line = (
        f"database_url: {_quoted(database_url)}"
        if database_url
        else (
            "# database_url: postgresql+psycopg://user@host/db   (default: .storyflow/storyflow.db;"
            "\n#   STORYFLOW_DATABASE_URL overrides)"
        )
    )
    layout_line = _commented(
        "  layout: " + _quoted(layout.value), "staged (FLOW) or flat (REVI), for new epics"
    )
    timezone_line = _commented(
        "  timezone: " + _quoted(timezone), "Agent Log and flat file-name stamps, for new epics"
    )
    return f"""# storyflow workspace configuration.
# Precedence: defaults < this file < STORYFLOW_* environment variables < command-line flags.
version: {CONFIG_VERSION}
{db_line}
defaults:
{layout_line}
{timezone_line}
  coverage_threshold: 45      # code review coverage minimum, percent
  enforcement: advisory       # advisory | warning | soft_gate | hard_gate
  require_approval: false     # PM/UX approval of elaborations before ready-to-work
limits:
  max_file_bytes: 1048576
  database_reconnect_seconds: 60  # how long a lost PostgreSQL connection is tried again
# budgets:                    # per phase: estimate / warning / hard (tokens)
#   implementation: {{estimate: 50000, warning: 200000, hard: 500000}}
# models:                     # USD per million tokens (also in models.yaml beside this file)
#   my-model: {{provider: acme, input: 1.0, output: 2.0, cache_read: 0.1, cache_write: 1.2}}
# assignments:                # which model runs what: story > epic > workspace, and within
#   default: claude-sonnet-4  #   each: phases > roles > agents > default
#   phases: {{review: claude-opus-4}}
#   epics: {{FLOW: {{roles: {{developer: claude-opus-4}}}}}}
#   stories: {{FLOW-007: {{phases: {{implement: claude-opus-4}}}}}}
# runs:                       # storyflow run / storyflow worker
#   default_agent: scripted   # or an agent below, e.g. a coding agent in headless mode
#   agents:
#     claude: {{type: command, command: [claude, -p, --output-format, json, --model, '{{model}}']}}
#     sonnet: {{type: anthropic}}  # the Messages API, key in $ANTHROPIC_API_KEY (or type: openai,
#                                #   base_url: ..., for any OpenAI-compatible API)
#   lease_seconds: 60
#   circuit_breaker: 3        # consecutive failed runs that block a story
#   review_loop_cap: 3
"""
