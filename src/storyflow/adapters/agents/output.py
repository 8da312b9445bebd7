"""Reading what a headless coding-agent CLI prints: usage, cost, result, verdict.

Understood shapes: one JSON result object (Claude Code ``--output-format json``:
``usage.input_tokens``, ``output_tokens``, ``cache_read_input_tokens``,
``cache_creation_input_tokens``, ``total_cost_usd``, ``result``, ``is_error``), a JSON list of
messages ending with such a result, and JSON lines (``stream-json``) whose assistant messages
carry usage as they stream. OpenAI-style ``prompt_tokens`` / ``completion_tokens`` (with
``prompt_tokens_details.cached_tokens``) also count, as do Codex's ``exec --json`` lines
(``turn.completed`` usage with ``cached_input_tokens``) and Gemini CLI's ``stats`` (per
model ``tokens``: prompt, candidates, cached, thoughts; or flat in its stream's result).
The tools the agent called come from the same messages: ``tool_use`` content blocks and the
``tool_result`` blocks that answer them (Anthropic), or a message's ``tool_calls`` and the
``tool`` messages that answer them (OpenAI).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from storyflow.domain.budgets import MAX_TOKENS
from storyflow.services.agents import AgentFailure, AgentRequest, AgentResult, ToolCall, Usage

MAX_COST_USD = 10.0**9
MAX_TOOL_CALLS = 1000  # kept per agent run (an event each); later ones are left out
DETAIL_KEYS = ("command", "file_path", "path", "pattern", "url", "query", "description")
DETAIL_CHARS = 200
_VERDICT_LINE = re.compile(r"\bVERDICT:\s*(PASS|FAIL)\b", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # tabs and line breaks: spaces
# Terminal escape sequences (colours, cursor moves, titles): CSI, OSC and two-character ones.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


@dataclass(frozen=True, kw_only=True)
class Parsed:
    usage: Usage
    result: str = ""
    is_error: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)  # the result object, if any
    tool_calls: tuple[ToolCall, ...] = ()
    # the result's usage or cost figures that are no count (negative, NaN, infinite, absurd)
    bad_figures: tuple[str, ...] = ()


def _count(raw: Mapping[str, Any], *keys: str) -> int:
    """The first of ``keys`` that holds a count (see ``_finite``), else 0."""
    for key in keys:
        value = raw.get(key)
        if _finite(value, MAX_TOKENS):
            return int(value)
    return 0


def usage_of(raw: Any) -> Usage | None:
    """A usage object: Anthropic's (input without the cache reads), OpenAI's and Codex's
    (input *with* the cached tokens, named apart: they become cache reads, taken out of the
    input so the total counts them once), or camelCase (Gemini's stream result)."""
    if not isinstance(raw, Mapping):
        return None
    input_tokens = _count(raw, "input_tokens", "prompt_tokens", "inputTokens")
    cache_read = _count(raw, "cache_read_input_tokens", "cache_read_tokens")
    if not cache_read:
        details = [raw.get(key) for key in ("prompt_tokens_details", "input_tokens_details")]
        cached = max(
            [_count(raw, "cached_input_tokens")]
            + [_count(d, "cached_tokens") for d in details if isinstance(d, Mapping)]
        )
        cache_read = min(cached, input_tokens)
        input_tokens -= cache_read
    return Usage(
        input_tokens=input_tokens,
        output_tokens=_count(raw, "output_tokens", "completion_tokens", "outputTokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=_count(raw, "cache_creation_input_tokens", "cache_write_tokens"),
    )


def _gemini_usage(stats: Any) -> Usage | None:
    """Gemini CLI's ``--output-format json`` stats: per model, ``prompt`` (the cached tokens
    among them), ``candidates`` and ``thoughts`` (billed as output)."""
    models = stats.get("models") if isinstance(stats, Mapping) else None
    if not isinstance(models, Mapping):
        return None
    total = Usage()
    for figures in models.values():
        tokens = figures.get("tokens") if isinstance(figures, Mapping) else None
        if not isinstance(tokens, Mapping):
            continue
        prompt = _count(tokens, "prompt")
        cached = min(_count(tokens, "cached"), prompt)
        total = total + Usage(
            input_tokens=prompt - cached,
            output_tokens=_count(tokens, "candidates") + _count(tokens, "thoughts"),
            cache_read_tokens=cached,
        )
    return total


def reported_usage(obj: Mapping[str, Any]) -> Usage | None:
    """The usage a result object reports, in any shape understood; None when it has none:
    ``usage`` (Claude Code, OpenAI, Codex) or ``stats`` (Gemini CLI)."""
    usage = usage_of(obj.get("usage"))
    if usage is not None:
        return usage
    stats = obj.get("stats")
    return _gemini_usage(stats) or usage_of(stats)


USAGE_KEYS = (
    "input_tokens",
    "prompt_tokens",
    "output_tokens",
    "completion_tokens",
    "cache_read_input_tokens",
    "cache_read_tokens",
    "cache_creation_input_tokens",
    "cache_write_tokens",
)


GEMINI_KEYS = ("prompt", "candidates", "cached", "thoughts")


def bad_figures(result: Mapping[str, Any]) -> tuple[str, ...]:
    """The figures of a result object that are there but are no count: the run cannot
    trust its accounting (a budget would pass on the zero they count as)."""
    usage = result.get("usage")
    found = [
        f"usage.{key}={usage[key]!r}"
        for key in USAGE_KEYS
        if isinstance(usage, Mapping) and key in usage and not _finite(usage[key], MAX_TOKENS)
    ]
    stats = result.get("stats")
    models = stats.get("models") if isinstance(stats, Mapping) else None
    for name, figures in models.items() if isinstance(models, Mapping) else ():
        tokens = figures.get("tokens") if isinstance(figures, Mapping) else None
        found += [
            f"stats.models.{name}.tokens.{key}={tokens[key]!r}"
            for key in GEMINI_KEYS
            if isinstance(tokens, Mapping)
            and key in tokens
            and not _finite(tokens[key], MAX_TOKENS)
        ]
    found += [
        f"{key}={result[key]!r}"
        for key in ("total_cost_usd", "cost_usd")
        if key in result and result[key] is not None and not _finite(result[key], MAX_COST_USD)
    ]
    return tuple(found)


def _cost(obj: Mapping[str, Any]) -> float | None:
    for key in ("total_cost_usd", "cost_usd"):
        value = obj.get(key)
        if _finite(value, MAX_COST_USD):
            return float(value)
    return None


def _finite(value: Any, limit: float) -> TypeGuard[int | float]:
    """A number an agent may report: not a bool, not negative, not NaN or infinite (Python's
    json reads ``NaN`` and ``Infinity``) and not absurdly large. Anything else is ignored,
    like a missing key, so it cannot poison the ledger's sums."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 <= value <= limit  # False for NaN


def _with_cost(usage: Usage, cost: float | None) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cost_usd=cost,
    )


class ToolCalls:
    """The tool calls in an agent's messages, in the order they were made. ``clock`` (seconds
    since the agent started) stamps each call and result as it is seen, for output read
    while the agent works."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._calls: dict[str, dict[str, Any]] = {}
        self.count = 0

    def take(self, obj: Mapping[str, Any]) -> None:
        """Read one message (or a stream line holding one under ``message``)."""
        inner = obj.get("message")
        message: Mapping[str, Any] = inner if isinstance(inner, Mapping) else obj
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if not isinstance(block, Mapping):
                    continue
                if block.get("type") == "tool_use":
                    self._call(block.get("id"), block.get("name"), block.get("input"))
                elif block.get("type") == "tool_result":
                    self._result(block.get("tool_use_id"), ok=not block.get("is_error"))
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                self._call(call.get("id"), function.get("name"), function.get("arguments"))
        if message.get("role") == "tool":
            self._result(message.get("tool_call_id"), ok=True)

    def _call(self, key: Any, name: Any, arguments: Any) -> None:
        if not isinstance(name, str) or not name.strip():
            return
        if key is not None and str(key) in self._calls:
            return  # the same message seen again (a stream repeats it as it grows)
        self.count += 1
        if len(self._calls) >= MAX_TOOL_CALLS:
            return
        key = str(key) if key is not None else f"#{self.count}"
        at = self._clock() if self._clock else None
        self._calls[key] = {"name": _one_line(name, 100), "detail": _detail(arguments), "at": at}

    def _result(self, key: Any, *, ok: bool) -> None:
        call = self._calls.get(str(key))
        if call is None or "ok" in call:
            return
        call["ok"] = ok
        if self._clock and call["at"] is not None:
            call["ms"] = int((self._clock() - call["at"]) * 1000)

    @property
    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(
                name=c["name"],
                detail=c["detail"],
                ok=c.get("ok"),
                started=c["at"],
                duration_ms=c.get("ms"),
            )
            for c in self._calls.values()
        )


def _detail(arguments: Any) -> str:
    """What a call acted on, in a line: its command, file or pattern, else its arguments."""
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)  # OpenAI gives the arguments as JSON text
    if isinstance(arguments, Mapping):
        for key in DETAIL_KEYS:
            if isinstance(arguments.get(key), str) and arguments[key].strip():
                arguments = arguments[key]
                break
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, default=str)
    return _one_line(text, DETAIL_CHARS)


def plain_text(text: str) -> str:
    """What an agent printed, for a message a person reads: its colours and other terminal
    escapes removed, any other control character (but tabs and line breaks) as ``?``."""
    return _CONTROL.sub("?", _ESCAPES.sub("", text)).replace("\x0b", "?").replace("\x0c", "?")


def _one_line(text: str, limit: int) -> str:
    """``text`` on one line of at most ``limit`` characters, without control characters:
    an agent's output is untrusted, and ``storyflow trace`` prints this on a terminal."""
    text = " ".join(plain_text(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class StreamUsage:
    """Cumulative usage from JSON lines as they arrive (per message id, last one wins), and
    the tools called in them."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._per_message: dict[str, Usage] = {}
        self._anonymous = Usage()
        self.final: Mapping[str, Any] | None = None
        self._buffer = ""
        self.tools = ToolCalls(clock)
        self.said = ""

    def feed(self, text: str) -> bool:
        """Add output; True when the cumulative usage changed."""
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        changed = False
        for line in lines:
            changed |= self._line(line)
        return changed

    def _line(self, line: str) -> bool:
        line = line.strip()
        if not line.startswith("{"):
            return False
        try:
            obj = json.loads(line)
        except ValueError:
            return False
        if not isinstance(obj, dict):
            return False
        self.tools.take(obj)
        item = obj.get("item")
        if isinstance(item, Mapping) and item.get("type") == "agent_message":
            self.said = str(item.get("text") or "")  # Codex: its last message is its answer
        if obj.get("type") == "result":
            self.final = obj
            return True
        message = obj.get("message")
        if isinstance(message, Mapping) and usage_of(message.get("usage")) is not None:
            usage = usage_of(message.get("usage"))
            assert usage is not None
            self._per_message[str(message.get("id", len(self._per_message)))] = usage
            return True
        usage = usage_of(obj.get("usage"))
        if usage is not None:
            self._anonymous = self._anonymous + usage
            return True
        return False

    @property
    def usage(self) -> Usage:
        if self.final is not None:
            final = reported_usage(self.final)
            if final is not None:
                return _with_cost(final, _cost(self.final))
        total = self._anonymous
        for usage in self._per_message.values():
            total = total + usage
        return total


def parse_output(text: str) -> Parsed | None:
    """The agent's result, or None when stdout holds no JSON result at all."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        data = None
    tools = ToolCalls()
    if isinstance(data, list):
        for item in data:
            if isinstance(item, Mapping):
                tools.take(item)
        results = [d for d in data if isinstance(d, Mapping) and d.get("type") == "result"]
        data = results[-1] if results else None
    if isinstance(data, Mapping):
        usage = reported_usage(data) or Usage()
        return Parsed(
            usage=_with_cost(usage, _cost(data)),
            result=str(data.get("result") or data.get("response") or ""),  # Gemini: response
            is_error=bool(data.get("is_error")),
            data=data,
            tool_calls=tools.calls,
            bad_figures=bad_figures(data),
        )
    stream = StreamUsage()
    stream.feed(stripped + "\n")
    if stream.final is None and not stream.usage.total:
        return None
    final = stream.final or {}
    return Parsed(
        usage=stream.usage,
        result=str(final.get("result") or stream.said),
        is_error=bool(final.get("is_error")),
        data=final,
        tool_calls=stream.tools.calls,
        bad_figures=bad_figures(final),
    )


def reviewer_result(
    request: AgentRequest, parsed: Parsed, *, where: str, summary: str
) -> AgentResult:
    """A parallel reviewer's result from what its agent gave (``parsed``); MALFORMED_OUTPUT
    when it holds no verdict (``where`` names what was read: the result, the reply)."""
    review = review_of(parsed)
    if review is None:
        raise AgentFailure(
            "MALFORMED_OUTPUT",
            f"reviewer {request.reviewer}: no verdict (PASS/FAIL) in {where}",
            usage=parsed.usage,
        )
    return AgentResult(
        usage=parsed.usage,
        model=request.model,
        verdict=review["verdict"],
        findings=tuple(review["findings"]),
        coverage=review["coverage"],
        summary=summary,
        tool_calls=parsed.tool_calls,
    )


def review_of(parsed: Parsed) -> dict[str, Any] | None:
    """A reviewer's verdict, findings and coverage: top-level keys of the result object,
    a JSON object in the result text, or a ``VERDICT: PASS|FAIL`` line."""
    candidates: list[Mapping[str, Any]] = [parsed.data]
    text = parsed.result.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            inner = json.loads(text[start : end + 1])
        except ValueError:
            inner = None
        if isinstance(inner, Mapping):
            candidates.insert(0, inner)
    for candidate in candidates:
        verdict = str(candidate.get("verdict") or "").upper()
        if verdict in ("PASS", "FAIL"):
            findings = candidate.get("findings")
            coverage = candidate.get("coverage")
            return {
                "verdict": verdict,
                "findings": [f for f in findings if isinstance(f, Mapping)]
                if isinstance(findings, list)
                else [],
                # out of 0-100 (or NaN) counts as not reported: the coverage check fails
                "coverage": float(coverage) if _finite(coverage, 100) else None,
            }
    match = _VERDICT_LINE.search(parsed.result)
    if match:
        return {"verdict": match.group(1).upper(), "findings": [], "coverage": None}
    return None
