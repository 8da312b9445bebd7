"""The agent port: what the run engine asks of an agent and what it gets back.

One protocol for every agent (``scripted``, ``command``, and the SDK adapters ``anthropic``
and ``openai``). An agent works
in the story folder, writes the artifacts the phase produces, and reports its token usage.
It fails by raising ``AgentFailure`` with a code of the error contract (DESIGN §4):
AGENT_SPAWN_FAILED, AGENT_TIMEOUT, MALFORMED_OUTPUT, PRECONDITION_FAILED,
EXTERNAL_SERVICE_DOWN -- or BUDGET_HARD_LIMIT / RUN_INTERRUPTED when the monitor stopped it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, kw_only=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None  # as the agent reported it; None: priced from the catalogue

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        cost = None
        if self.cost_usd is not None or other.cost_usd is not None:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost_usd=cost,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "input": self.input_tokens,
            "output": self.output_tokens,
            "cache_read": self.cache_read_tokens,
            "cache_write": self.cache_write_tokens,
        }


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    """One tool an agent called while it worked (a shell command, a file edit, a search),
    as its output reported it; a ``tool_call`` event each."""

    name: str
    detail: str = ""  # what it acted on: the command, the file, the pattern (shortened)
    ok: bool | None = None  # None: the agent's output gave no result for the call
    started: float | None = None  # seconds after the agent started, when it was seen
    duration_ms: int | None = None
    reviewer: str | None = None  # parallel review: the reviewer whose agent called it

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": self.name,
            "detail": self.detail or None,
            "ok": self.ok,
            "duration_ms": self.duration_ms,
            "reviewer": self.reviewer,
        }


@dataclass(frozen=True, kw_only=True)
class AgentRequest:
    run_id: str
    story_id: str
    epic: str
    title: str
    phase: str
    role: str
    iteration: int
    attempt: int
    model: str | None
    workspace: Path
    story_dir: Path
    story_file: Path
    produces: tuple[str, ...]  # artifact kinds the phase expects
    artifact_files: Mapping[str, Path]  # kind -> where the layout wants it written
    timeout: float
    reviewer: str | None = None  # parallel review: the one reviewer this request is for
    resume: bool = False  # an earlier attempt of this iteration did not finish
    writes_story: bool = False  # the phase's output is the story file itself (generate, refine)
    context: Mapping[str, Any] = field(default_factory=dict)  # story facts for the prompt


@dataclass(frozen=True, kw_only=True)
class AgentResult:
    usage: Usage
    model: str | None = None
    verdict: str | None = None  # reviewers report theirs; phases read the artifact
    findings: tuple[Mapping[str, Any], ...] = ()
    summary: str = ""
    coverage: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class AgentFailure(Exception):
    """An agent's failure, with the contract's code and whatever usage it had run up (and the
    tools it had called); a failed review phase also says how each parallel reviewer ended
    (PASSes carry over)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        usage: Usage | None = None,
        reviewers: Mapping[str, str] | None = None,
        tool_calls: Sequence[ToolCall] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.usage = usage or Usage()
        self.reviewers = dict(reviewers) if reviewers else None
        self.tool_calls = tuple(tool_calls)  # what it did before it failed


class Monitor(Protocol):
    """What a running agent reports to the engine. ``tick`` keeps the lease alive and
    raises ``AgentFailure`` when the agent must stop (budget, shutdown, lease lost)."""

    def tick(self) -> None: ...

    def usage(self, so_far: Usage, *, final: bool = False) -> None:
        """Usage streamed so far by this agent (cumulative); may raise to stop it. ``final``:
        the agent has finished and this is all it used."""
        ...

    def tool(self, call: ToolCall) -> None:
        """A tool the agent has just called, as it works (the live board shows it)."""
        ...


class AgentPort(Protocol):
    name: str
    default_model: str | None

    def run(self, request: AgentRequest, monitor: Monitor) -> AgentResult: ...
