"""What a headless coding agent prints, read: the tool calls, in the shapes Claude Code
(``stream-json`` lines, or ``--output-format json --verbose``: one list of messages) and
OpenAI-style APIs give, and the usage, in the shapes of Claude Code, OpenAI, Codex and
Gemini CLI."""

from __future__ import annotations

import json

from storyflow.adapters.agents.output import DETAIL_CHARS, MAX_TOOL_CALLS, parse_output
from storyflow.services.agents import Usage


def _use(key: str, name: str, arguments: object) -> dict[str, object]:
    block = {"type": "tool_use", "id": key, "name": name, "input": arguments}
    return {"type": "assistant", "message": {"id": f"m-{key}", "content": [block]}}


def _result(key: str, *, is_error: bool = False) -> dict[str, object]:
    block = {"type": "tool_result", "tool_use_id": key, "is_error": is_error}
    return {"type": "user", "message": {"role": "user", "content": [block]}}


FINAL = {"type": "result", "result": "done", "usage": {"input_tokens": 10, "output_tokens": 2}}


def test_a_list_of_messages_gives_each_call_and_its_outcome() -> None:
    messages = [
        _use("t1", "Bash", {"command": "pytest -q", "timeout": 60}),
        _result("t1"),
        _use("t2", "Write", {"file_path": "src/a.py", "content": "x = 1\n"}),
        _result("t2", is_error=True),
        _use("t3", "TodoWrite", {"todos": [{"content": "a"}]}),  # no result: ok unknown
        FINAL,
    ]
    parsed = parse_output(json.dumps(messages))
    assert parsed is not None and parsed.result == "done"
    assert [(c.name, c.detail, c.ok) for c in parsed.tool_calls] == [
        ("Bash", "pytest -q", True),
        ("Write", "src/a.py", False),
        ("TodoWrite", '{"todos": [{"content": "a"}]}', None),
    ]
    assert all(c.started is None for c in parsed.tool_calls)  # no clock: printed at the end


def test_stream_json_lines_count_a_repeated_message_once() -> None:
    lines = [_use("t1", "Grep", {"pattern": "def main"}), _use("t1", "Grep", {}), _result("t1")]
    text = "\n".join(json.dumps(line) for line in [*lines, FINAL])
    parsed = parse_output(text)
    assert parsed is not None
    assert [(c.name, c.detail, c.ok) for c in parsed.tool_calls] == [("Grep", "def main", True)]


def test_openai_tool_calls_and_their_tool_messages() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}}
    call["function"]["arguments"] = json.dumps({"query": "lease expiry"})
    messages = [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "3 hits"},
        {**FINAL},
    ]
    parsed = parse_output(json.dumps(messages))
    assert parsed is not None
    assert [(c.name, c.detail, c.ok) for c in parsed.tool_calls] == [
        ("search", "lease expiry", True)
    ]


def test_long_details_are_shortened_and_calls_past_the_cap_left_out() -> None:
    messages = [_use(f"t{i}", "Bash", {"command": "echo " + "x" * 500}) for i in range(1005)]
    parsed = parse_output(json.dumps([*messages, FINAL]))
    assert parsed is not None
    assert len(parsed.tool_calls) == MAX_TOOL_CALLS
    detail = parsed.tool_calls[0].detail
    assert len(detail) == DETAIL_CHARS and detail.startswith("echo xxx") and detail[-1] == "\u2026"


def test_a_block_without_a_tool_name_is_no_call() -> None:
    messages = [_use("t1", "", {"command": "ls"}), _use("t2", None, {}), FINAL]  # type: ignore[arg-type]
    parsed = parse_output(json.dumps(messages))
    assert parsed is not None and parsed.tool_calls == ()


def test_control_characters_never_reach_the_terminal() -> None:
    # an agent's output is untrusted: an escape sequence in a command would be printed raw
    # by `storyflow trace` (here: clear the screen, then a bell)
    messages = [_use("t1", "Ba\x1bsh\n", {"command": "rm -rf build\x1b[2J\r\nls\x07"}), FINAL]
    parsed = parse_output(json.dumps(messages))
    assert parsed is not None
    (call,) = parsed.tool_calls
    assert (call.name, call.detail) == ("Ba?sh", "rm -rf build ls?")  # the sequence dropped


# ---- usage, in the shapes other CLIs print ---------------------------------------------------


def test_claude_code_usage_counts_cache_reads_apart_from_the_input() -> None:
    claude = {
        "type": "result",
        "result": "done",
        "total_cost_usd": 0.0123,
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 700,
            "cache_read_input_tokens": 5000,
            "output_tokens": 300,
        },
    }
    parsed = parse_output(json.dumps(claude))
    assert parsed is not None
    assert parsed.usage == Usage(
        input_tokens=12,
        output_tokens=300,
        cache_read_tokens=5000,
        cache_write_tokens=700,
        cost_usd=0.0123,
    )


def test_openai_style_cached_tokens_are_cache_reads_counted_once() -> None:
    """OpenAI's prompt_tokens include the cached ones: they become cache reads, and the
    total stays the tokens the API counted."""
    result = {
        "type": "result",
        "result": "done",
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 800},
        },
    }
    parsed = parse_output(json.dumps(result))
    assert parsed is not None
    assert (parsed.usage.input_tokens, parsed.usage.cache_read_tokens) == (200, 800)
    assert parsed.usage.total == 1050


def test_codex_exec_json_lines() -> None:
    """``codex exec --json``: the usage comes with turn.completed (cached_input_tokens among
    the input), the answer is the last agent_message."""
    events = [
        {"type": "thread.started", "thread_id": "t"},
        {"type": "turn.started"},
        {"type": "item.completed", "item": {"id": "0", "type": "reasoning", "text": "hm"}},
        {"type": "item.completed", "item": {"id": "1", "type": "agent_message", "text": "ok"}},
        {
            "type": "turn.completed",
            "usage": {"input_tokens": 24763, "cached_input_tokens": 24448, "output_tokens": 122},
        },
    ]
    parsed = parse_output("\n".join(json.dumps(e) for e in events))
    assert parsed is not None and parsed.result == "ok"
    assert parsed.usage == Usage(input_tokens=315, output_tokens=122, cache_read_tokens=24448)


def test_gemini_cli_json_stats_per_model() -> None:
    """``gemini --output-format json``: no usage object, but stats per model (the cached
    tokens among the prompt's, thoughts billed as output) and the answer as response. Read
    as zero, a Gemini agent's phases would pass every budget unseen."""
    output = {
        "response": "VERDICT: PASS",
        "stats": {
            "models": {
                "gemini-2.5-pro": {
                    "api": {"totalRequests": 2},
                    "tokens": {
                        "prompt": 24939,
                        "candidates": 20,
                        "total": 25113,
                        "cached": 21263,
                        "thoughts": 154,
                        "tool": 0,
                    },
                },
                "gemini-2.5-flash": {"tokens": {"prompt": 100, "candidates": 10}},
            },
            "tools": {"totalCalls": 1},
        },
    }
    parsed = parse_output(json.dumps(output))
    assert parsed is not None and parsed.result == "VERDICT: PASS"
    assert parsed.usage == Usage(
        input_tokens=24939 - 21263 + 100, output_tokens=20 + 154 + 10, cache_read_tokens=21263
    )


def test_gemini_cli_stream_json_result_stats() -> None:
    events = [
        {"type": "init", "session_id": "s", "model": "gemini-2.5-pro"},
        {"type": "message", "role": "assistant", "content": "ok", "delta": True},
        {"type": "result", "status": "success", "stats": {"input_tokens": 40, "output_tokens": 9}},
    ]
    parsed = parse_output("\n".join(json.dumps(e) for e in events))
    assert parsed is not None
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (40, 9)


def test_gemini_figures_that_are_no_count_are_named() -> None:
    """The rule for Claude Code's usage holds for Gemini's stats: a figure that is no count
    (NaN, infinite, negative) is named, so the run fails instead of counting it as zero."""
    tokens = {"prompt": float("nan"), "candidates": 20, "cached": -1, "thoughts": 3}
    output = {"response": "done", "stats": {"models": {"gemini-pro": {"tokens": tokens}}}}
    parsed = parse_output(json.dumps(output))
    assert parsed is not None
    assert parsed.bad_figures == (
        "stats.models.gemini-pro.tokens.prompt=nan",
        "stats.models.gemini-pro.tokens.cached=-1",
    )
