"""The tool calls read from what a headless coding agent prints: the shapes Claude Code
(``stream-json`` lines, or ``--output-format json --verbose``: one list of messages) and
OpenAI-style APIs give."""

from __future__ import annotations

import json

from storyflow.adapters.agents.output import DETAIL_CHARS, MAX_TOOL_CALLS, parse_output


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
