#!/usr/bin/env python3
"""A fake LLM API for the API agents' tests (stdlib only): the Anthropic Messages API
(``POST /v1/messages``) and the OpenAI Chat Completions API (``POST /v1/chat/completions``),
both streaming server-sent events the way the real services do, so that the real SDKs talk
to it.

    fake_llm_api.py [MODE]      # prints "port N" and serves until killed

It reads the phase, the story and the files the reply contract asks for from the prompt,
and replies with those files (JSON is YAML) and a summary. ``POST /_mode`` with
``{"mode": M, "delay": S}`` switches the behaviour; ``GET /_requests`` lists what it got
(path, model, max_tokens, key, prompt). Modes: ok, noblock (a reply without the files),
truncated (cut at max_tokens), status:NNN (that HTTP status with an error body), slow (the
usage, then ``delay`` seconds of silence, then the reply), drip (the reply in pieces ``delay``
seconds apart), reviewfail (reviewers say FAIL), securityfail (the security reviewer says
FAIL), flaky (every third request gets a 529), securitydown (the security reviewer gets a
529), onefail (the first request after the switch gets a 529).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USAGE = {"input": 1000, "output": 250, "cache_read": 200, "cache_write": 100}

ARTIFACTS: dict[str, dict[str, Any]] = {
    "elaborate": {"verdict": "PASS", "summary": "ok", "acceptance_criteria": ["works"]},
    "plan": {"approach": "do it", "steps": ["one"], "test_strategy": "unit"},
    "implement": {
        "summary": "built it",
        "reuse_verification": {"packages_used": ["@repo/shared"]},
        "checks": {"lint": "pass", "typecheck": "pass", "tests": "pass"},
        "coverage": 80,
    },
    "review": {"verdict": "PASS", "coverage": 80, "findings": []},
    "verify": {
        "verdict": "PASS",
        "acceptance_criteria": [{"criterion": "works", "status": "pass", "evidence": "e2e"}],
        "tests": {"unit": "pass"},
    },
    "gate": {"decision": "PASS", "checks": [{"name": "tests", "status": "pass"}]},
}
ARTIFACTS["fix"] = ARTIFACTS["implement"]
STORY_FIELDS = {
    "description": "What the story does and why, as the PM wrote it.",
    "acceptance_criteria": ["it works end to end", "tests cover it"],
    "reuse_plan": "Reuses the shared packages; no new package.",
}

_PHASE = re.compile(r"This is the (\w+) phase of ([\w-]+)")
_WANTED = re.compile(r"^````file: (.+)\n\(the whole file\)\n````$", re.M)
_QUOTED = re.compile(r"^````file: (.+?)\n(.*?)\n````$", re.M | re.S)


class State:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.delay = 0.0
        self.fail_next = 1  # onefail: requests still to fail
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()


def reply_text(prompt: str, mode: str) -> str:
    """The model's answer: the files the contract asks for, then a summary."""
    found = _PHASE.search(prompt)
    phase, story = (found.group(1), found.group(2)) if found else ("", "")
    if "reviewer: reply with the JSON object" in prompt:
        security = "You are the security reviewer" in prompt
        verdict = (
            "FAIL" if mode == "reviewfail" or (mode == "securityfail" and security) else "PASS"
        )
        findings = [{"severity": "high", "message": "a bug"}] if verdict == "FAIL" else []
        return json.dumps({"verdict": verdict, "findings": findings, "coverage": 80})
    if mode == "noblock":
        return "I could not write the files, sorry."
    contract = prompt.split("## Reply contract", 1)[-1]
    quoted = dict(_QUOTED.findall(prompt.split("## Reply contract", 1)[0]))
    parts = []
    for name in _WANTED.findall(contract):
        if phase in ("generate", "refine"):
            body = quoted.get(name, "")
            for key, value in STORY_FIELDS.items():
                line = f"{key}: {json.dumps(value)}"
                body, n = re.subn(rf"^{key}:.*$", line.replace("\\", "\\\\"), body, flags=re.M)
                body += "" if n else "\n" + line
        else:
            body = json.dumps({"story_id": story, **ARTIFACTS.get(phase, {})}, indent=2)
        parts.append(f"````file: {name}\n{body.rstrip()}\n````")
    return "\n\n".join(parts) + f"\n\nDone: the {phase} of {story}.\n"


class Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/_requests":
            with self.state.lock:
                self._json(200, self.state.requests)
        else:
            self._json(404, {"error": {"message": "no such path"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/_mode":
            self.state.mode = body.get("mode", "ok")
            self.state.delay = float(body.get("delay", 0))
            self.state.fail_next = 1
            self._json(200, {"mode": self.state.mode})
            return
        anthropic = self.path.endswith("/messages")
        if not anthropic and not self.path.endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no such path {self.path}"}})
            return
        messages = body.get("messages") or []
        prompt = str(messages[-1].get("content", "")) if messages else ""
        key = self.headers.get("x-api-key") or self.headers.get("authorization", "")
        with self.state.lock:
            self.state.requests.append(
                {
                    "path": self.path,
                    "model": body.get("model"),
                    "max_tokens": body.get("max_tokens") or body.get("max_completion_tokens"),
                    "key": key.removeprefix("Bearer "),
                    "system": body.get("system")
                    or next((m["content"] for m in messages if m.get("role") == "system"), ""),
                    "prompt": prompt,
                }
            )
        mode = self.state.mode
        with self.state.lock:
            count = len(self.state.requests)
        if mode == "flaky":  # every third request fails with a 529, the rest succeed
            mode = "status:529" if count % 3 == 0 else "ok"
        if mode == "onefail":  # the first request after the switch fails, the rest succeed
            with self.state.lock:
                first, self.state.fail_next = self.state.fail_next, 0
            mode = "status:529" if first else "ok"
        if mode == "securitydown":  # the security reviewer's service is down
            mode = "status:529" if "You are the security reviewer" in prompt else "ok"
        if mode.startswith("status:"):
            status = int(mode.split(":", 1)[1])
            error = {"type": "api_error", "message": f"fake failure {status}"}
            self._json(status, {"type": "error", "error": error})
            return
        text = reply_text(prompt, mode)
        stop = "end_turn"
        if mode == "truncated":
            text, stop = text[: len(text) // 2], "max_tokens"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        try:
            if anthropic:
                self._anthropic(body, text, stop, mode)
            else:
                self._openai(body, text, stop, mode)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client closed the stream: a stopped agent

    def _send(self, event: str | None, data: Any) -> None:
        head = f"event: {event}\n" if event else ""
        payload = data if isinstance(data, str) else json.dumps(data)
        self.wfile.write(f"{head}data: {payload}\n\n".encode())
        self.wfile.flush()

    def _pieces(self, text: str, mode: str) -> list[str]:
        if mode != "drip":
            return [text[i : i + 400] for i in range(0, len(text), 400)] or [""]
        return [text[i : i + 40] for i in range(0, len(text), 40)]

    def _pause(self, mode: str, slow: bool) -> None:
        if (mode == "slow" and slow) or (mode == "drip" and not slow):
            time.sleep(self.state.delay)

    def _anthropic(self, body: dict[str, Any], text: str, stop: str, mode: str) -> None:
        usage = {
            "input_tokens": USAGE["input"],
            "output_tokens": 1,
            "cache_read_input_tokens": USAGE["cache_read"],
            "cache_creation_input_tokens": USAGE["cache_write"],
        }
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": body.get("model"),
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        self._send("message_start", {"type": "message_start", "message": message})
        self._pause(mode, slow=True)
        start = {"type": "content_block_start", "index": 0}
        self._send("content_block_start", {**start, "content_block": {"type": "text", "text": ""}})
        for piece in self._pieces(text, mode):
            delta = {"type": "text_delta", "text": piece}
            self._send(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
            self._pause(mode, slow=False)
        self._send("content_block_stop", {"type": "content_block_stop", "index": 0})
        self._send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": USAGE["output"]},
            },
        )
        self._send("message_stop", {"type": "message_stop"})

    def _openai(self, body: dict[str, Any], text: str, stop: str, mode: str) -> None:
        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body.get("model"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        self._send(None, chunk({"role": "assistant", "content": ""}, None))
        self._pause(mode, slow=True)
        for piece in self._pieces(text, mode):
            self._send(None, chunk({"content": piece}, None))
            self._pause(mode, slow=False)
        self._send(None, chunk({}, "length" if stop == "max_tokens" else "stop"))
        prompt_tokens = USAGE["input"] + USAGE["cache_read"]
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": USAGE["output"],
            "total_tokens": prompt_tokens + USAGE["output"],
            "prompt_tokens_details": {"cached_tokens": USAGE["cache_read"]},
        }
        self._send(
            None,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body.get("model"),
                "choices": [],
                "usage": usage,
            },
        )
        self._send(None, "[DONE]")


def serve(mode: str = "ok") -> tuple[ThreadingHTTPServer, State]:
    """Start the fake on a free port in a daemon thread."""
    state = State(mode)
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


if __name__ == "__main__":
    server, _ = serve(sys.argv[1] if len(sys.argv) > 1 else "ok")
    print(f"port {server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
