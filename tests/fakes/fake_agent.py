#!/usr/bin/env python3
"""A fake headless coding agent for the command adapter's tests (stdlib only).

    fake_agent.py MODE [SECONDS]

MODE: ok (write the phase's artifact, print a Claude-Code-style JSON result), sleep (sleep
SECONDS first, then ok), garbage (print what is not JSON), exit1 (print a coloured error, exit 1),
stream (print stream-json usage lines, SECONDS apart, forever), noartifact (a result, no
file), error (a JSON result with is_error), nonfinite (write the artifact, report Infinity,
NaN and 1e300 as usage and cost: Python's json prints and reads them), tools (stream-json
with tool calls and their results, SECONDS between a call and its result; the second call
fails; a reviewer calls one tool), toolhang (a tool call that never returns), forkchild
(leaves a child running that writes orphan.txt in the workspace 1.5 s later), gemini and
codex (write the artifact, report the usage as Gemini CLI's JSON and Codex's JSON lines do),
signals (ok, after printing the SigIgn line of /proc/self/status on stderr).
The phase, story and folder come from the STORYFLOW_* variables the command agent sets; the
prompt arrives on stdin.
"""

import json
import os
import subprocess
import sys
import time

ARTIFACTS = {
    "elaborate": (
        "elaboration.yaml",
        {"verdict": "PASS", "summary": "ok", "acceptance_criteria": ["works"]},
    ),
    "plan": ("plan.yaml", {"approach": "do it", "steps": ["one"], "test_strategy": "unit"}),
    "implement": (
        "proof.yaml",
        {
            "summary": "built it",
            "reuse_verification": {"packages_used": ["@repo/shared"]},
            "checks": {"lint": "pass", "typecheck": "pass", "tests": "pass"},
            "coverage": 80,
        },
    ),
    "verify": (
        "verification.yaml",
        {
            "verdict": "PASS",
            "acceptance_criteria": [{"criterion": "works", "status": "pass", "evidence": "e2e"}],
            "tests": {"unit": "pass"},
        },
    ),
    "gate": ("qa-gate.yaml", {"decision": "PASS", "checks": [{"name": "tests", "status": "pass"}]}),
}
ARTIFACTS["fix"] = ARTIFACTS["implement"]


def result(usage_scale: int = 1, **extra: object) -> str:
    return json.dumps(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": "done",
            "usage": {
                "input_tokens": 1200 * usage_scale,
                "output_tokens": 300 * usage_scale,
                "cache_read_input_tokens": 5000,
                "cache_creation_input_tokens": 700,
            },
            "total_cost_usd": 0.0123,
            **extra,
        }
    )


def write_artifact() -> None:
    phase = os.environ["STORYFLOW_PHASE"]
    folder = os.environ["STORYFLOW_STORY_DIR"]
    story = os.environ["STORYFLOW_STORY"]
    if phase in ("generate", "refine"):
        path = os.path.join(folder, "story.yaml")
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        text = text.replace("reuse_plan: ''", "reuse_plan: Reuses @repo/shared.")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    name, content = ARTIFACTS[phase]
    with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
        json.dump({"story_id": story, **content}, handle)


def line(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def tool_use(key: str, name: str, arguments: dict[str, object]) -> None:
    content = [{"type": "tool_use", "id": key, "name": name, "input": arguments}]
    usage = {"input_tokens": 100, "output_tokens": 20}
    line(type="assistant", message={"id": f"m-{key}", "content": content, "usage": usage})


def tool_result(key: str, is_error: bool = False) -> None:
    content = [{"type": "tool_result", "tool_use_id": key, "content": "...", "is_error": is_error}]
    line(type="user", message={"role": "user", "content": content})


def tools(seconds: float) -> int:
    line(type="system", subtype="init")
    reviewer = os.environ.get("STORYFLOW_REVIEWER")
    if reviewer:
        tool_use("toolu_r", "Bash", {"command": f"{reviewer} check src/"})
        tool_result("toolu_r")
        print(result(review=True, verdict="PASS", findings=[], coverage=81))
        return 0
    tool_use("toolu_1", "Bash", {"command": "pytest -q", "description": "run the tests"})
    time.sleep(seconds)
    tool_result("toolu_1")
    tool_use("toolu_2", "Edit", {"file_path": "src/feature.py", "old_string": "a"})
    tool_result("toolu_2", is_error=True)
    write_artifact()
    print(result())
    return 0


def main() -> int:
    mode = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    sys.stdin.read()  # the prompt
    if mode == "garbage":
        print("I had a think and here is my answer: maybe?")
        return 0
    if mode == "exit1":
        print("\x1b[1;31mAPI Error:\x1b[0m 529 overloaded", file=sys.stderr)  # coloured
        return 1
    if mode == "error":
        print(json.dumps({"type": "result", "is_error": True, "result": "rate limited"}))
        return 0
    if mode == "stream":
        n = 0
        while True:
            n += 1
            line = {
                "type": "assistant",
                "message": {"id": f"m{n}", "usage": {"input_tokens": 40000, "output_tokens": 2000}},
            }
            print(json.dumps(line), flush=True)
            time.sleep(seconds or 0.1)
    if mode == "nonfinite":
        write_artifact()
        usage = {
            "input_tokens": float("inf"),
            "output_tokens": float("nan"),
            "cache_read_input_tokens": 1e300,
            "cache_creation_input_tokens": 700,
        }
        print(
            json.dumps(
                {"type": "result", "result": "done", "usage": usage, "total_cost_usd": float("inf")}
            )
        )
        return 0
    if mode == "signals":  # which signals it was started ignoring, on stderr
        with open("/proc/self/status", encoding="ascii") as status:
            ignored = next(line for line in status if line.startswith("SigIgn:"))
        print(ignored.strip(), file=sys.stderr)
        mode = "ok"
    if mode == "gemini":  # gemini --output-format json: usage per model under stats
        write_artifact()
        tokens = {"prompt": 3000, "candidates": 200, "cached": 2000, "thoughts": 50, "tool": 0}
        print(
            json.dumps(
                {"response": "done", "stats": {"models": {"gemini-pro": {"tokens": tokens}}}}
            )
        )
        return 0
    if mode == "codex":  # codex exec --json: event lines, the usage with turn.completed
        write_artifact()
        usage = {"input_tokens": 3000, "cached_input_tokens": 2000, "output_tokens": 250}
        for event in (
            {"type": "thread.started", "thread_id": "t"},
            {"type": "item.completed", "item": {"id": "1", "type": "agent_message", "text": "ok"}},
            {"type": "turn.completed", "usage": usage},
        ):
            print(json.dumps(event), flush=True)
        return 0
    if mode == "tools":
        return tools(seconds)
    if mode == "forkchild":  # leaves a child behind that writes orphan.txt a moment later
        late = "import sys, time; time.sleep(1.5); open('orphan.txt', 'w').write('late')"
        subprocess.Popen([sys.executable, "-c", late])
        write_artifact()
        print(result())
        return 0
    if mode == "toolhang":  # starts a tool that never returns
        tool_use("toolu_h", "Bash", {"command": "npm install"})
        time.sleep(3600)
    if mode == "sleep":
        time.sleep(seconds)
    if os.environ.get("STORYFLOW_REVIEWER"):
        print(result(review=True, verdict="PASS", findings=[], coverage=81))
        return 0
    if mode != "noartifact":
        write_artifact()
    print(result())
    return 0


if __name__ == "__main__":
    sys.exit(main())
