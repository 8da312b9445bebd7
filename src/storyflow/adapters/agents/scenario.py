"""Scenarios for the scripted agent: per story and phase, what it answers and how.

A scenario is YAML (see ``scenarios/default.yaml``): ``defaults`` and ``phases`` give the
baseline step, ``rules`` (first match wins) change it for chosen stories, iterations,
attempts and reviewers. A step says the verdict, the token usage, a delay, whether the
usage streams during the delay, the tools the agent calls (``tools``: ``Name`` or
``Name: what it acts on`` strings, or mappings of ``name``, ``detail``, ``ok``), and a
failure to act out: ``timeout``, ``malformed`` (an artifact that does not validate),
``garbage`` (one that does not parse), ``crash``, ``spawn``, ``unavailable`` or
``precondition``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from storyflow.errors import InvalidInput

FAILS = ("timeout", "malformed", "garbage", "crash", "spawn", "unavailable", "precondition")
STEP_KEYS = frozenset(
    {
        "verdict",
        "usage",
        "delay",
        "stream",
        "fail",
        "reviewers",
        "split_into",
        "coverage",
        "tools",
    }
)
MATCH_KEYS = frozenset(
    {"stories", "numbers", "every", "offset", "split_children", "phase", "iteration", "attempt"}
)
USAGE_KEYS = ("input", "output", "cache_read", "cache_write")
DEFAULT_USAGE = {"input": 1000, "output": 300, "cache_read": 0, "cache_write": 0}


@dataclass(frozen=True, kw_only=True)
class Step:
    verdict: str | None = None
    usage: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_USAGE))
    delay: float = 0.0
    stream: bool = False
    fail: str | None = None
    reviewers: Mapping[str, str] = field(default_factory=dict)
    split_into: tuple[str, ...] = ()
    coverage: float = 82.0
    tools: tuple[ScriptedTool, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ScriptedTool:
    name: str
    detail: str = ""
    ok: bool = True


@dataclass(frozen=True, kw_only=True)
class Rule:
    stories: frozenset[str] | None = None
    numbers: frozenset[int] | None = None
    every: int | None = None
    offset: int = 0
    split_children: bool | None = None
    phase: str | None = None
    iteration: int | None = None
    attempt: int | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)

    def matches(
        self,
        *,
        story: str,
        number: int,
        split_child: bool,
        phase: str,
        iteration: int,
        attempt: int,
    ) -> bool:
        if self.stories is not None and story not in self.stories:
            return False
        if self.numbers is not None and number not in self.numbers:
            return False
        if self.every is not None and number % self.every != self.offset:
            return False
        children_ok = self.split_children
        if children_ok is None:
            children_ok = self.stories is not None  # number rules skip split children
        if split_child and not children_ok:
            return False
        return (
            (self.phase is None or self.phase == phase)
            and (self.iteration is None or self.iteration == iteration)
            and (self.attempt is None or self.attempt == attempt)
        )


@dataclass(frozen=True, kw_only=True)
class Scenario:
    source: str
    base: Step
    phases: Mapping[str, Step]
    rules: tuple[Rule, ...]

    def step(
        self,
        *,
        story: str,
        number: int,
        split_child: bool,
        phase: str,
        iteration: int,
        attempt: int,
    ) -> Step:
        step = self.phases.get(phase, self.base)
        for rule in self.rules:
            if rule.matches(
                story=story,
                number=number,
                split_child=split_child,
                phase=phase,
                iteration=iteration,
                attempt=attempt,
            ):
                return _apply(step, rule.changes, f"{self.source}: rule", keep_reviewers=True)
        return step


def _bad(source: str, problem: str) -> InvalidInput:
    return InvalidInput(
        f"{source}: {problem}",
        code="CONFIG_INVALID",
        hint="see the scripted agent's scenario format (storyflow/adapters/agents/scenarios)",
        details={"file": source},
    )


def _usage(raw: Any, base: Mapping[str, int], source: str) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        raise _bad(source, "usage must be a mapping of input/output/cache_read/cache_write")
    usage = dict(base)
    for key, value in raw.items():
        if key not in USAGE_KEYS or isinstance(value, bool) or not isinstance(value, int):
            raise _bad(source, f"usage.{key}: must be one of {USAGE_KEYS} with a whole number")
        if value < 0:
            raise _bad(source, f"usage.{key}: must not be negative")
        usage[key] = value
    return usage


def _apply(step: Step, raw: Mapping[str, Any], source: str, *, keep_reviewers: bool) -> Step:
    unknown = set(raw) - STEP_KEYS
    if unknown:
        raise _bad(source, f"unknown key {sorted(unknown)[0]!r}")
    changes: dict[str, Any] = {}
    if "verdict" in raw:
        changes["verdict"] = str(raw["verdict"]).upper()
    if "usage" in raw:
        changes["usage"] = _usage(raw["usage"], step.usage, source)
    for key, limit in (("delay", 86_400.0), ("coverage", 100.0)):
        if key in raw:
            value = raw[key]
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not 0 <= value <= limit:  # also refuses NaN; .inf is above
                raise _bad(source, f"{key} must be a number from 0 to {limit:g}")
            changes[key] = float(value)
    if "stream" in raw:
        changes["stream"] = bool(raw["stream"])
    if "fail" in raw:
        if raw["fail"] not in FAILS:
            raise _bad(source, f"fail must be one of {', '.join(FAILS)}")
        changes["fail"] = raw["fail"]
    if "reviewers" in raw:
        if not isinstance(raw["reviewers"], Mapping):
            raise _bad(source, "reviewers must map a reviewer to PASS, FAIL or timeout")
        merged = dict(step.reviewers) if keep_reviewers else {}
        merged.update({str(k): str(v) for k, v in raw["reviewers"].items()})
        changes["reviewers"] = merged
    if "tools" in raw:
        changes["tools"] = _tools(raw["tools"], source)
    if "split_into" in raw:
        if not isinstance(raw["split_into"], list):
            raise _bad(source, "split_into must be a list of titles")
        changes["split_into"] = tuple(str(t) for t in raw["split_into"])
    return replace(step, **changes)


def _tools(raw: Any, source: str) -> tuple[ScriptedTool, ...]:
    if not isinstance(raw, list):
        raise _bad(source, "tools must be a list of tool calls")
    tools = []
    for index, item in enumerate(raw):
        if isinstance(item, str) and item.strip():
            name, _, detail = item.partition(":")
            tools.append(ScriptedTool(name=name.strip(), detail=detail.strip()))
        elif (
            isinstance(item, Mapping)
            and isinstance(item.get("name"), str)
            and item["name"].strip()
            and set(item) <= {"name", "detail", "ok"}
            and isinstance(item.get("ok", True), bool)
        ):
            tools.append(
                ScriptedTool(
                    name=item["name"].strip(),
                    detail=str(item.get("detail") or ""),
                    ok=item.get("ok", True),
                )
            )
        else:
            raise _bad(
                source,
                f"tools[{index}]: a tool call is 'Name', 'Name: detail' or a mapping of "
                "name, detail and ok (true/false)",
            )
    return tuple(tools)


def _rule(raw: Any, index: int, source: str) -> Rule:
    where = f"{source}: rules[{index}]"
    if not isinstance(raw, Mapping):
        raise _bad(where, "a rule is a mapping")
    match = {k: v for k, v in raw.items() if k in MATCH_KEYS}
    changes = {k: v for k, v in raw.items() if k not in MATCH_KEYS}
    _apply(Step(), changes, where, keep_reviewers=True)  # validate now, apply later
    try:
        return Rule(
            stories=frozenset(str(s) for s in match["stories"]) if "stories" in match else None,
            numbers=frozenset(int(n) for n in match["numbers"]) if "numbers" in match else None,
            every=int(match["every"]) if "every" in match else None,
            offset=int(match.get("offset", 0)),
            split_children=(bool(match["split_children"]) if "split_children" in match else None),
            phase=str(match["phase"]) if "phase" in match else None,
            iteration=int(match["iteration"]) if "iteration" in match else None,
            attempt=int(match["attempt"]) if "attempt" in match else None,
            changes=changes,
        )
    except (TypeError, ValueError) as exc:
        raise _bad(where, f"bad match: {exc}") from None


def parse_scenario(data: Any, source: str) -> Scenario:
    if not isinstance(data, Mapping):
        raise _bad(source, "a scenario is a mapping with defaults, phases and rules")
    unknown = set(data) - {"version", "defaults", "phases", "rules"}
    if unknown:
        raise _bad(source, f"unknown key {sorted(unknown)[0]!r}")
    base = _apply(Step(), data.get("defaults") or {}, f"{source}: defaults", keep_reviewers=False)
    phases_raw = data.get("phases") or {}
    if not isinstance(phases_raw, Mapping):
        raise _bad(source, "phases must map a phase to a step")
    phases = {
        str(name): _apply(base, spec or {}, f"{source}: phases.{name}", keep_reviewers=False)
        for name, spec in phases_raw.items()
    }
    rules_raw = data.get("rules") or []
    if not isinstance(rules_raw, list):
        raise _bad(source, "rules must be a list")
    rules = tuple(_rule(raw, i, source) for i, raw in enumerate(rules_raw))
    return Scenario(source=source, base=base, phases=phases, rules=rules)


def load_scenario(path: Path | None, *, max_bytes: int) -> Scenario:
    """The scenario at ``path``, or the built-in default."""
    from storyflow.adapters.files.atomic import read_text
    from storyflow.adapters.files.yamlio import load_mapping

    if path is None:
        text = resources.files(__package__).joinpath("scenarios/default.yaml").read_text("utf-8")
        source = "scripted scenario (built in)"
    else:
        source = path.name
        text = read_text(path, max_bytes=max_bytes, display=str(path))
    return parse_scenario(load_mapping(text, source=source), source)
