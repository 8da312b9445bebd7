"""The ``runs:`` section of storyflow.yaml: agents, leases, retries, breaker, reviewers.

Parsed by ``config.load`` into one frozen ``RunSettings``; unknown keys and invalid values
are errors that name the key. Scalars also read ``STORYFLOW_RUNS_*`` variables.

    runs:
      default_agent: scripted          # the agent of every phase, unless phase_agents says
      phase_agents: {review: claude}
      agents:
        claude:
          type: command
          command: [claude, -p, --output-format, json, --model, "{model}"]
          timeout: 1800                # seconds; the agent's process group is killed after
          prompt: stdin                # stdin | file ({prompt_file} only)
        sonnet:
          type: anthropic              # or openai: any OpenAI-compatible Chat Completions API
          base_url: https://api.anthropic.com   # optional: a proxy or a compatible server
          api_key_env: ANTHROPIC_API_KEY        # the variable that holds the key
          max_tokens: 16000            # the reply's cap (anthropic: 16000 unless set)
          max_retries: 2               # the SDK's retries of a 429/5xx/lost connection
      scenario: scenario.yaml          # the scripted agent's scenario (default: built in)
      prompts: prompts                 # <phase>.md here overrides the shipped templates
      lease_seconds: 60
      heartbeat_seconds: 10
      retries: {AGENT_TIMEOUT: {retries: 1, backoff: 2}}
      circuit_breaker: 3               # consecutive failed runs that block a story
      review_loop_cap: 3               # failed reviews (or QA rounds) before blocking
      reviewers: {names: [lint, style, syntax, security, typecheck, build],
                  required: all, allow_timeouts: 0, rerun_always: [typecheck, build]}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from storyflow.config import config_error as _bad
from storyflow.config import seconds as _seconds
from storyflow.config import unknown_key

AGENT_TYPES = ("scripted", "command", "anthropic", "openai")
API_AGENT_TYPES = ("anthropic", "openai")  # a model behind an LLM API, through its SDK
PROMPT_MODES = ("stdin", "file")
PLACEHOLDERS = ("story", "phase", "model", "story_dir", "prompt_file", "reviewer", "run_id")
FAILURE_CODES = (
    "AGENT_SPAWN_FAILED",
    "AGENT_TIMEOUT",
    "MALFORMED_OUTPUT",
    "PRECONDITION_FAILED",
    "EXTERNAL_SERVICE_DOWN",
)
REVIEWERS = ("lint", "style", "syntax", "security", "typecheck", "build")


@dataclass(frozen=True, kw_only=True)
class AgentSpec:
    name: str
    type: str
    command: tuple[str, ...] = ()
    timeout: float | None = None  # None: RunSettings.agent_timeout
    prompt: str = "stdin"
    env: Mapping[str, str] = field(default_factory=dict)
    # API agents (anthropic, openai): where, with which key, how long a reply may be
    base_url: str | None = None
    api_key_env: str | None = None
    max_tokens: int | None = None
    max_retries: int = 2  # the SDK's own retries of a 429, 5xx or lost connection, in a run


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    retries: int
    backoff: float  # seconds before the first retry; doubles each time


@dataclass(frozen=True, kw_only=True)
class ReviewerPolicy:
    """Parallel reviewers and how their results aggregate into one code review."""

    names: tuple[str, ...] = REVIEWERS
    required: tuple[str, ...] | None = None  # None: every reviewer must pass
    allow_timeouts: int = 0  # timeouts forgiven (as long as the reviewer is not required)
    rerun_always: tuple[str, ...] = ("typecheck", "build")
    timeout: float | None = None  # per reviewer; None: the agent's timeout

    def must_pass(self, name: str) -> bool:
        return self.required is None or name in self.required


DEFAULT_RETRIES: dict[str, RetryPolicy] = {
    "AGENT_SPAWN_FAILED": RetryPolicy(retries=0, backoff=1.0),
    "AGENT_TIMEOUT": RetryPolicy(retries=1, backoff=2.0),
    "MALFORMED_OUTPUT": RetryPolicy(retries=2, backoff=1.0),
    "PRECONDITION_FAILED": RetryPolicy(retries=0, backoff=1.0),
    "EXTERNAL_SERVICE_DOWN": RetryPolicy(retries=3, backoff=5.0),
}


def _default_agents() -> dict[str, AgentSpec]:
    return {"scripted": AgentSpec(name="scripted", type="scripted")}


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    default_agent: str = "scripted"
    phase_agents: Mapping[str, str] = field(default_factory=dict)
    agents: Mapping[str, AgentSpec] = field(default_factory=_default_agents)
    scenario: str | None = None
    prompts: str = "prompts"
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    poll_seconds: float = 0.5
    agent_timeout: float = 1800.0
    retries: Mapping[str, RetryPolicy] = field(default_factory=lambda: dict(DEFAULT_RETRIES))
    backoff_max: float = 60.0
    circuit_breaker: int = 3
    review_loop_cap: int = 3
    reviewers: ReviewerPolicy = field(default_factory=ReviewerPolicy)
    workers: int = 1

    def agent_for(self, phase: str) -> AgentSpec:
        return self.agents[self.phase_agents.get(phase, self.default_agent)]

    def timeout_of(self, agent: AgentSpec) -> float:
        return agent.timeout if agent.timeout is not None else self.agent_timeout


def _positive_seconds(value: Any) -> float:
    number = _seconds(value)
    if number <= 0:
        raise ValueError("must be above 0 seconds")
    return number


def _count(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be a whole number")  # 2.5, .nan or .inf
    number = int(value)  # a string that is not a whole number raises ValueError here
    if not 0 <= number <= 1000:
        raise ValueError("must be between 0 and 1000")
    return number


def _positive_count(value: Any) -> int:
    number = _count(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _max_tokens(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be a whole number of tokens")
    number = int(value)
    if not 1 <= number <= 1_000_000:
        raise ValueError("must be between 1 and 1000000 tokens")
    return number


_BASE_KEYS = frozenset({"type", "timeout"})
_AGENT_KEYS: dict[str, frozenset[str]] = {
    "scripted": _BASE_KEYS | {"command", "prompt", "env"},
    "command": _BASE_KEYS | {"command", "prompt", "env"},
    "anthropic": _BASE_KEYS | {"base_url", "api_key_env", "max_tokens", "max_retries"},
    "openai": _BASE_KEYS | {"base_url", "api_key_env", "max_tokens", "max_retries"},
}
_API_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


# key: (attribute, env var, parser)
SCALARS: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "default_agent": ("default_agent", "STORYFLOW_RUNS_DEFAULT_AGENT", _name),
    "scenario": ("scenario", "STORYFLOW_RUNS_SCENARIO", _name),
    "prompts": ("prompts", "STORYFLOW_RUNS_PROMPTS", _name),
    "lease_seconds": ("lease_seconds", "STORYFLOW_RUNS_LEASE_SECONDS", _positive_seconds),
    "heartbeat_seconds": (
        "heartbeat_seconds",
        "STORYFLOW_RUNS_HEARTBEAT_SECONDS",
        _positive_seconds,
    ),
    "poll_seconds": ("poll_seconds", "STORYFLOW_RUNS_POLL_SECONDS", _positive_seconds),
    "agent_timeout": ("agent_timeout", "STORYFLOW_RUNS_AGENT_TIMEOUT", _positive_seconds),
    "backoff_max": ("backoff_max", "STORYFLOW_RUNS_BACKOFF_MAX", _seconds),
    "circuit_breaker": ("circuit_breaker", "STORYFLOW_RUNS_CIRCUIT_BREAKER", _positive_count),
    "review_loop_cap": ("review_loop_cap", "STORYFLOW_RUNS_REVIEW_LOOP_CAP", _positive_count),
    "workers": ("workers", "STORYFLOW_RUNS_WORKERS", _positive_count),
}
SECTION_KEYS = frozenset({*SCALARS, "phase_agents", "agents", "retries", "reviewers"})


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def value(self, key: str, parser: Callable[[Any], Any], raw: Any) -> Any:
        try:
            return parser(raw)
        except (ValueError, TypeError, OverflowError) as exc:  # OverflowError: int(.inf)
            raise _bad(key, str(exc) or f"invalid value {raw!r}", self.source) from None

    def mapping(self, key: str, raw: Any) -> Mapping[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise _bad(key, "must be a mapping", self.source)
        return raw

    def names(self, key: str, raw: Any, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        if not isinstance(raw, list | tuple):
            raise _bad(key, "must be a list of names", self.source)
        names = tuple(self.value(key, _name, item) for item in raw)
        for name in names:
            if allowed is not None and name not in allowed:
                raise _bad(key, f"unknown name {name!r} (one of {', '.join(allowed)})", self.source)
        return names

    def agent(self, name: str, raw: Any) -> AgentSpec:
        key = f"runs.agents.{name}"
        spec = self.mapping(key, raw)
        kind = spec.get("type", "command" if "command" in spec else None)
        if kind not in AGENT_TYPES:
            raise _bad(f"{key}.type", f"must be one of {', '.join(AGENT_TYPES)}", self.source)
        unknown_key(key, spec, _AGENT_KEYS[kind], self.source)  # the keys of its type
        timeout = spec.get("timeout")
        timeout_s = None if timeout is None else self.value(f"{key}.timeout", _seconds, timeout)
        if kind in API_AGENT_TYPES:
            return self._api_agent(key, name, kind, spec, timeout_s)
        command: tuple[str, ...] = ()
        if kind == "command":
            raw_command = spec.get("command")
            if not isinstance(raw_command, list) or not raw_command:
                raise _bad(f"{key}.command", "must be a non-empty list (argv)", self.source)
            command = tuple(str(part) for part in raw_command)
            _check_placeholders(f"{key}.command", command, self.source)
        prompt = spec.get("prompt", "stdin")
        if prompt not in PROMPT_MODES:
            raise _bad(f"{key}.prompt", f"must be one of {', '.join(PROMPT_MODES)}", self.source)
        env = self.mapping(f"{key}.env", spec.get("env"))
        return AgentSpec(
            name=name,
            type=kind,
            command=command,
            timeout=timeout_s,
            prompt=prompt,
            env={str(k): str(v) for k, v in env.items()},
        )

    def _api_agent(
        self, key: str, name: str, kind: str, spec: Mapping[str, Any], timeout: float | None
    ) -> AgentSpec:
        base_url = spec.get("base_url")
        if base_url is not None and (
            not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
        ):
            raise _bad(f"{key}.base_url", "must be an http:// or https:// URL", self.source)
        key_env = spec.get("api_key_env", _API_KEY_ENV[kind])
        if not isinstance(key_env, str) or not _ENV_NAME.fullmatch(key_env):
            raise _bad(f"{key}.api_key_env", "must be an environment variable name", self.source)
        max_tokens = spec.get("max_tokens")
        return AgentSpec(
            name=name,
            type=kind,
            timeout=timeout,
            base_url=base_url.rstrip("/") if base_url else None,
            api_key_env=key_env,
            max_tokens=None
            if max_tokens is None
            else self.value(f"{key}.max_tokens", _max_tokens, max_tokens),
            max_retries=self.value(f"{key}.max_retries", _count, spec.get("max_retries", 2)),
        )

    def retries(self, raw: Any) -> dict[str, RetryPolicy]:
        policies = dict(DEFAULT_RETRIES)
        for code, spec in self.mapping("runs.retries", raw).items():
            key = f"runs.retries.{code}"
            if code not in FAILURE_CODES:
                raise _bad(key, f"unknown failure (one of {', '.join(FAILURE_CODES)})", self.source)
            if not isinstance(spec, Mapping):
                spec = {"retries": spec}
            unknown_key(key, spec, {"retries", "backoff"}, self.source)
            base = policies[code]
            policies[code] = RetryPolicy(
                retries=self.value(f"{key}.retries", _count, spec.get("retries", base.retries)),
                backoff=self.value(f"{key}.backoff", _seconds, spec.get("backoff", base.backoff)),
            )
        return policies

    def reviewers(self, raw: Any) -> ReviewerPolicy:
        spec = self.mapping("runs.reviewers", raw)
        known = {"names", "required", "allow_timeouts", "rerun_always", "timeout"}
        unknown_key("runs.reviewers", spec, known, self.source)
        names = self.names("runs.reviewers.names", spec["names"]) if "names" in spec else REVIEWERS
        required = spec.get("required", "all")
        if required == "all" or required is None:
            must: tuple[str, ...] | None = None
        else:
            must = self.names("runs.reviewers.required", required, names)
        rerun = spec.get("rerun_always", ["typecheck", "build"])
        timeout = spec.get("timeout")
        return ReviewerPolicy(
            names=names,
            required=must,
            allow_timeouts=self.value(
                "runs.reviewers.allow_timeouts", _count, spec.get("allow_timeouts", 0)
            ),
            rerun_always=tuple(n for n in self.names("runs.reviewers.rerun_always", rerun)),
            timeout=None
            if timeout is None
            else self.value("runs.reviewers.timeout", _positive_seconds, timeout),
        )


def _check_placeholders(key: str, argv: tuple[str, ...], source: str) -> None:
    import string

    for part in argv:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(part) if f is not None]
        except ValueError as exc:
            raise _bad(key, f"{part!r}: {exc}", source) from None
        for name in fields:
            if name not in PLACEHOLDERS:
                raise _bad(
                    key,
                    f"unknown placeholder {{{name}}} (one of "
                    + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                    + ")",
                    source,
                )


def parse_run_settings(raw: Any, env: Mapping[str, str], source: str) -> RunSettings:
    """The ``runs:`` section (may be None), then ``STORYFLOW_RUNS_*`` variables on top."""
    parser = _Parser(source)
    section = parser.mapping("runs", raw)
    unknown_key("runs", section, SECTION_KEYS, source)
    values: dict[str, Any] = {}
    for key, (attr, env_name, parse) in SCALARS.items():
        if section.get(key) is not None:
            values[attr] = parser.value(f"runs.{key}", parse, section[key])
        if env.get(env_name):
            values[attr] = _Parser("environment").value(env_name, parse, env[env_name])
    agents = _default_agents()
    for name, spec in parser.mapping("runs.agents", section.get("agents")).items():
        agents[str(name)] = parser.agent(str(name), spec)
    phase_agents = {
        str(k): parser.value(f"runs.phase_agents.{k}", _name, v)
        for k, v in parser.mapping("runs.phase_agents", section.get("phase_agents")).items()
    }
    for phase, agent in {**phase_agents, "": values.get("default_agent", "scripted")}.items():
        where = f"runs.phase_agents.{phase}" if phase else "runs.default_agent"
        if phase:
            # imported only when there is a phase name to check: every command loads the
            # config, and the phase graph is validated when its module is imported
            from storyflow.domain.phases import PhaseName

            if phase not in {p.value for p in PhaseName}:
                raise _bad(where, "unknown phase (one of " + ", ".join(PhaseName) + ")", source)
        if agent not in agents:
            raise _bad(where, f"no agent {agent!r} under runs.agents", source)
    heartbeat = values.get("heartbeat_seconds", 10.0)
    lease = values.get("lease_seconds", 60.0)
    if heartbeat >= lease:
        values["heartbeat_seconds"] = lease / 3  # a heartbeat must come before expiry
    return RunSettings(
        agents=agents,
        phase_agents=phase_agents,
        retries=parser.retries(section.get("retries")),
        reviewers=parser.reviewers(section.get("reviewers")),
        **values,
    )
