"""The scripted agent: deterministic, in-process, driven by a scenario (demos and tests).

It acts like a real agent: it "works" for the scenario's delay (ticking the monitor, and
streaming its usage when asked), then writes the phase's artifacts into the story folder as
files that pass the schemas and gates -- or acts out the scenario's failure.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from storyflow.adapters.agents.artifact_text import render_artifact, write_plain
from storyflow.adapters.agents.scenario import Scenario, Step
from storyflow.adapters.files.atomic import read_text
from storyflow.adapters.files.yamlio import splice_top_level
from storyflow.services.agents import (
    AgentFailure,
    AgentRequest,
    AgentResult,
    Monitor,
    ToolCall,
    Usage,
)

SLICE = 0.05  # seconds between monitor ticks while "working"
FAILURES = {
    "spawn": ("AGENT_SPAWN_FAILED", "the scripted agent was told not to start"),
    "unavailable": ("EXTERNAL_SERVICE_DOWN", "the scripted agent's service is down"),
    "precondition": ("PRECONDITION_FAILED", "the scripted agent found a precondition unmet"),
    "crash": ("EXTERNAL_SERVICE_DOWN", "the scripted agent crashed half-way"),
}


class ScriptedAgent:
    name = "scripted"
    default_model: str | None = "scripted"

    def __init__(self, scenario: Scenario, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.scenario = scenario
        self.sleep = sleep

    def run(self, request: AgentRequest, monitor: Monitor) -> AgentResult:
        context = request.context
        step = self.scenario.step(
            story=request.story_id,
            number=int(context.get("number", 0)),
            split_child=bool(context.get("split_from")),
            phase=request.phase,
            iteration=request.iteration,
            attempt=request.attempt,
        )
        usage = _usage(step)
        if step.fail in ("spawn", "unavailable", "precondition"):
            code, message = FAILURES[step.fail]
            raise AgentFailure(code, message)
        self._work(request, monitor, step, usage)
        monitor.usage(usage, final=True)
        model = request.model or self.default_model
        if request.reviewer is not None:
            verdict = step.reviewers.get(request.reviewer, "PASS").upper()
            if verdict == "TIMEOUT":
                raise AgentFailure(
                    "AGENT_TIMEOUT", f"reviewer {request.reviewer} timed out", usage=usage
                )
            findings: tuple[dict[str, str], ...] = ()
            if verdict == "FAIL":
                findings = (
                    {
                        "severity": "high",
                        "message": f"{request.reviewer}: {_FINDING.get(request.reviewer, 'fails')}",
                    },
                )
            return AgentResult(
                usage=usage,
                model=model,
                verdict=verdict,
                findings=findings,
                coverage=step.coverage,
                summary=f"{request.reviewer}: {verdict}",
                tool_calls=_tool_calls(step),
            )
        self._write(request, step)
        return AgentResult(
            usage=usage,
            model=model,
            verdict=step.verdict,
            coverage=step.coverage,
            tool_calls=_tool_calls(step),
        )

    def _work(self, request: AgentRequest, monitor: Monitor, step: Step, usage: Usage) -> None:
        delay = step.delay
        timed_out = step.fail == "timeout" or delay > request.timeout
        if step.fail == "crash":
            delay /= 2
        if timed_out:
            delay = min(delay, request.timeout) if step.fail != "timeout" else request.timeout
        spent = 0.0
        calls = list(_tool_calls(step, request.reviewer))
        made: list[ToolCall] = []  # those a failure had started, for its record
        while True:
            while calls and (calls[0].started or 0.0) <= spent:
                made.append(calls.pop(0))
                monitor.tool(made[-1])  # as it starts: the live board shows it
            if spent >= delay:
                break
            chunk = min(SLICE, delay - spent)
            self.sleep(chunk)
            spent += chunk
            if step.stream and delay:
                monitor.usage(_scaled(usage, spent / delay))
            monitor.tick()
        partial = _scaled(usage, 0.5)
        if timed_out:
            raise AgentFailure(
                "AGENT_TIMEOUT",
                f"the scripted agent did not finish within {request.timeout:g} s",
                usage=partial,
                tool_calls=made,
            )
        if step.fail == "crash":
            code, message = FAILURES["crash"]
            raise AgentFailure(code, message, usage=partial, tool_calls=made)

    def _write(self, request: AgentRequest, step: Step) -> None:
        phase = request.phase
        if phase in ("generate", "refine"):
            _write_story(request)
            return
        for kind in request.produces:
            path = request.artifact_files[kind]
            if step.fail == "garbage":
                write_plain(path, "{{{ this is not: [valid yaml\n")
                continue
            content = _CONTENT[kind](request, step)
            if step.fail == "malformed":
                content["verdict" if "verdict" in content else "story_id"] = "MAYBE?"
            write_plain(path, render_artifact(path, content))


_FINDING = {
    "lint": "unused import in the new module",
    "style": "a 140-line function; split it",
    "syntax": "a syntax error under Python 3.11",
    "security": "user input reaches a shell command unescaped",
    "typecheck": "an untyped public function",
    "build": "the package does not build",
}


def _tool_calls(step: Step, reviewer: str | None = None) -> tuple[ToolCall, ...]:
    """The step's tools, called one after another over its delay."""
    share = step.delay / len(step.tools) if step.tools else 0.0
    return tuple(
        ToolCall(
            name=tool.name,
            detail=tool.detail,
            ok=tool.ok,
            started=share * index,
            duration_ms=int(share * 1000),
            reviewer=reviewer,
        )
        for index, tool in enumerate(step.tools)
    )


def _usage(step: Step) -> Usage:
    return Usage(
        input_tokens=step.usage.get("input", 0),
        output_tokens=step.usage.get("output", 0),
        cache_read_tokens=step.usage.get("cache_read", 0),
        cache_write_tokens=step.usage.get("cache_write", 0),
    )


def _scaled(usage: Usage, share: float) -> Usage:
    return Usage(
        input_tokens=int(usage.input_tokens * share),
        output_tokens=int(usage.output_tokens * share),
        cache_read_tokens=int(usage.cache_read_tokens * share),
        cache_write_tokens=int(usage.cache_write_tokens * share),
    )


REUSE_PLAN = "Reuses the shared workflow packages (@repo/shared); no new package."
_REUSE_SECTION = re.compile(r"(^## Reuse Plan[ \t]*\n)(.*?)(?=^## |\Z)", re.S | re.M)


def _write_story(request: AgentRequest) -> None:
    path = request.story_file
    text = read_text(path, display=path.name)
    plan = f"{REUSE_PLAN} ({request.title})"
    if path.suffix == ".md":
        if _REUSE_SECTION.search(text):
            text = _REUSE_SECTION.sub(lambda m: m.group(1) + "\n" + plan + "\n\n", text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n## Reuse Plan\n\n" + plan + "\n"
    else:
        text = splice_top_level(
            text,
            {
                "description": f"{request.title}: what it does and why, as the PM wrote it.",
                "acceptance_criteria": [f"{request.title} works end to end", "tests cover it"],
                "reuse_plan": plan,
            },
        )
    write_plain(path, text)


def _elaboration(request: AgentRequest, step: Step) -> dict[str, Any]:
    verdict = step.verdict or "PASS"
    content: dict[str, Any] = {
        "story_id": request.story_id,
        "verdict": verdict,
        "summary": f"Elaborated {request.title}",
        "acceptance_criteria": [f"{request.title} works end to end", "tests cover it"],
    }
    if verdict == "CONDITIONAL_PASS":
        content["conditions"] = ["confirm the API shape with the platform team"]
    if verdict == "SPLIT_REQUIRED":
        content["split_into"] = [t.replace("{title}", request.title) for t in step.split_into]
    return content


def _plan(request: AgentRequest, step: Step) -> dict[str, Any]:
    content: dict[str, Any] = {
        "story_id": request.story_id,
        "approach": f"Implement {request.title} on the shared packages",
        "steps": ["write the failing tests", "implement", "document"],
        "test_strategy": "unit and integration tests",
    }
    if request.context.get("breaking_change"):
        content["migration_path"] = "v1 -> v2 through an adapter"
        content["backward_compatibility"] = "v1 readers keep working for one release"
        content["migration_tests"] = ["tests/migrations/test_v1_to_v2.py"]
    return content


def _proof(request: AgentRequest, step: Step) -> dict[str, Any]:
    threshold = float(request.context.get("coverage_threshold", 45.0))
    fixes = request.context.get("findings") or []
    summary = f"Implemented {request.title}"
    if fixes:
        summary += "; fixed: " + "; ".join(str(f) for f in fixes)
    return {
        "story_id": request.story_id,
        "summary": summary,
        "files_changed": [f"src/{request.story_id.lower()}.py"],
        "reuse_verification": {"packages_used": ["@repo/shared"]},
        "checks": {"lint": "pass", "typecheck": "pass", "tests": "pass"},
        "coverage": max(step.coverage, threshold),
    }


def _code_review(request: AgentRequest, step: Step) -> dict[str, Any]:
    threshold = float(request.context.get("coverage_threshold", 45.0))
    verdict = step.verdict or "PASS"
    findings = []
    if verdict == "FAIL":
        findings = [{"severity": "high", "message": "an unhandled error path"}]
    return {
        "story_id": request.story_id,
        "verdict": verdict,
        "coverage": max(step.coverage, threshold),
        "findings": findings,
    }


def _verification(request: AgentRequest, step: Step) -> dict[str, Any]:
    verdict = step.verdict or "PASS"
    status = "pass" if verdict == "PASS" else "fail"
    content: dict[str, Any] = {
        "story_id": request.story_id,
        "verdict": verdict,
        "acceptance_criteria": [
            {"criterion": f"{request.title} works end to end", "status": status, "evidence": "e2e"}
        ],
        "tests": {"unit": "pass", "integration": "pass" if status == "pass" else "fail"},
    }
    if request.context.get("graph_integration"):
        content["scenarios"] = [
            {"name": "real orchestrator graph", "status": status, "evidence": "run 42"}
        ]
    return content


def _qa_gate(request: AgentRequest, step: Step) -> dict[str, Any]:
    decision = step.verdict or "PASS"
    checks = [{"name": "tests", "status": "pass"}, {"name": "lint", "status": "pass"}]
    issues: list[dict[str, str]] = []
    if decision == "FAIL":
        checks[0]["status"] = "fail"
    if decision == "CONCERNS":
        issues = [{"severity": "medium", "description": "the error messages need a docs pass"}]
    return {
        "story_id": request.story_id,
        "decision": decision,
        "checks": checks,
        "issues": issues,
        "reviewer": "qa (scripted)",
    }


_CONTENT: dict[str, Callable[[AgentRequest, Step], dict[str, Any]]] = {
    "elaboration": _elaboration,
    "plan": _plan,
    "proof": _proof,
    "code_review": _code_review,
    "verification": _verification,
    "qa_gate": _qa_gate,
}
