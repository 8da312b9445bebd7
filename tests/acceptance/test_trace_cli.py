"""The trace through the storyflow executable: a story walked through the CLI leaves JSONL
lines with trace and span ids, `storyflow trace` prints them (table or JSONL, filtered,
followed), `storyflow models check` refuses bad assignments with its findings, and the
spans export over OTLP/HTTP."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
import yaml

from tests.acceptance._helpers import error_body, human_error, ok
from tests.support import (
    Workspace,
    code_review,
    elaboration,
    plan,
    proof,
    qa_gate,
    storyflow_command,
    verification,
)

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
PHASES = ("story_generation", "elaboration", "implementation", "code_review", "qa_verification")


def _walk(ws: Workspace, sid: str = "FLOW-001") -> None:
    """pending -> completed, every step a storyflow subprocess."""
    ok(ws.run("story", "move", sid, "generated"))
    story_file = next(ws.root.glob(f"plans/flow/*/{sid}/story.yaml"))
    text = story_file.read_text("utf-8").replace("reuse_plan: ''", "reuse_plan: Reuses shared.")
    story_file.write_text(text, "utf-8")
    ok(ws.run("story", "move", sid, "in-elaboration"))
    steps: list[tuple[str, dict[str, Any], str | None, str]] = [
        ("elaboration", elaboration(), "elaboration", "ready-to-work"),
        ("plan", plan(), None, "in-progress"),
        ("proof", proof(), "implementation", "ready-for-code-review"),
        ("code_review", code_review(), "code_review", "ready-for-qa"),
        ("verification", verification(), "qa_verification", None),
        ("qa_gate", qa_gate(), "story_generation", "completed"),
    ]
    for kind, data, phase, target in steps:
        if kind == "verification":
            ok(ws.run("story", "move", sid, "in-qa"))
        path = ws.write(f"inbox/{kind}.yaml", data)
        ok(ws.run("artifact", "submit", sid, kind, str(path)))
        if phase:
            ok(
                ws.run(
                    *("token", "log", sid, phase, "--input", "1000", "--output", "250"),
                    *("--model", "claude-sonnet-4"),
                )
            )
        ok(ws.run("story", "move", sid, target or "uat"))


@pytest.fixture
def walked(workspace: Workspace) -> Workspace:
    ok(workspace.run("epic", "new", "FLOW", "--title", "Flow"))
    ok(workspace.run("story", "new", "FLOW", "--title", "Traced"))
    ok(workspace.run("story", "new", "FLOW", "--title", "Untouched"))
    _walk(workspace)
    return workspace


def _jsonl(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def test_a_walked_story_has_a_jsonl_trace_with_trace_and_span_ids(walked: Workspace) -> None:
    ws = walked
    lines = _jsonl(ok(ws.run("trace", "FLOW-001", "--json")).stdout)
    # the stored file, line for line
    stored = (ws.root / ".storyflow/trace/stories/FLOW-001.jsonl").read_text("utf-8")
    assert lines == _jsonl(stored)
    for line in lines:
        assert HEX32.match(line["trace_id"]) and HEX16.match(line["span_id"]), line
        assert line["story"] == "FLOW-001" and line["epic"] == "FLOW"
        assert line["actor"] == "tester"
        assert line["ts"].endswith("Z")
    assert len({line["span_id"] for line in lines}) == len(lines)
    # every command is its own process: its own trace id
    assert len({line["trace_id"] for line in lines}) >= 20
    assert [line["ts"] for line in lines] == sorted(line["ts"] for line in lines)
    moves = [(line["from"], line["to"]) for line in lines if line["type"] == "transition"]
    history = ok(ws.run("story", "history", "FLOW-001", "--json")).json
    assert moves == [(r["from_status"], r["to_status"]) for r in history[1:]]
    assert lines[0]["type"] == "story_created"
    kinds = [line["kind"] for line in lines if line["type"] == "artifact"]
    assert kinds == ["elaboration", "plan", "proof", "code_review", "verification", "qa_gate"]
    tokens = [line for line in lines if line["type"] == "tokens"]
    assert sorted(t["phase"] for t in tokens) == sorted(PHASES)

    # the workspace trace holds the same lines, and the events of other stories and none
    everything = _jsonl(ok(ws.run("trace", "--workspace", "--json")).stdout)
    assert [line for line in everything if line["story"] == "FLOW-001"] == lines
    assert {line["type"] for line in everything if line["story"] is None} == {"epic_created"}
    assert [line["story"] for line in everything if line["type"] == "story_created"] == [
        "FLOW-001",
        "FLOW-002",
    ]

    # METRICS.yaml written at completion: its figures are the ledger's
    done = ws.root / "plans/flow/done/FLOW-001/METRICS.yaml"
    metrics = yaml.safe_load(done.read_text("utf-8"))
    budget = ok(ws.run("budget", "show", "FLOW-001", "--json")).json
    assert metrics["tokens"]["total"] == budget["total_used"] == 5 * 1250
    assert metrics["tokens"]["cost_usd"] == pytest.approx(budget["cost_usd"], abs=1e-6)
    assert metrics["status"] == "completed" and metrics["cycle_time_seconds"] > 0
    shown = ok(ws.run("metrics", "FLOW-001", "--json")).json
    assert shown["tokens"]["by_phase"] == metrics["tokens"]["by_phase"]


def test_the_human_table_and_the_filters(walked: Workspace) -> None:
    ws = walked
    table = ok(ws.run("trace", "FLOW-001")).stdout.splitlines()
    count = len(_jsonl(ok(ws.run("trace", "FLOW-001", "--json")).stdout))
    assert table[0].split() == ["TIME", "TYPE", "PHASE", "SPAN", "DETAIL"]
    assert len(table) == count + 1
    assert any("uat -> completed" in row for row in table)
    assert any("kind=code_review version=1 verdict=PASS" in row for row in table)
    transitions = _jsonl(ok(ws.run("trace", "FLOW-001", "--type", "transition", "--json")).stdout)
    assert {line["type"] for line in transitions} == {"transition"} and len(transitions) == 9
    both = ok(ws.run("trace", "FLOW-001", "--type", "artifact", "--type", "tokens", "--json"))
    assert len(_jsonl(both.stdout)) == 11
    last = _jsonl(ok(ws.run("trace", "FLOW-001", "--json", "--tail", "2")).stdout)
    assert [line["type"] for line in last] == ["tokens", "transition"]
    assert last[-1]["to"] == "completed"
    assert ok(ws.run("trace", "FLOW-001", "--tail", "0", "--json")).stdout == ""
    workspace_table = ok(ws.run("trace", "--workspace")).stdout.splitlines()
    assert workspace_table[0].split()[:3] == ["TIME", "TYPE", "STORY"]


def test_trace_refusals(walked: Workspace) -> None:
    ws = walked
    human_error(ws.run("trace"), 2, "USAGE")
    error_body(ws.run("trace", "FLOW-001", "--workspace", "--json"), 2, "USAGE")
    error_body(ws.run("trace", "FLOW-404", "--json"), 6, "STORY_NOT_FOUND")
    error_body(ws.run("trace", "../etc/passwd", "--json"), 7, "INVALID_ID")
    # a story without events yet (a fresh clone has no trace): nothing, not an error
    (ws.root / ".storyflow/trace/stories/FLOW-002.jsonl").unlink()
    assert ok(ws.run("trace", "FLOW-002", "--json")).stdout == ""


def test_follow_prints_new_lines_until_interrupted(walked: Workspace) -> None:
    ws = walked
    # As from a terminal: a suite started in the background (``cmd &``) inherits SIGINT
    # ignored, which Python and its children keep, so Ctrl-C would never reach the follower.
    # A handled signal is reset to the default in a child at exec.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [*storyflow_command(), "trace", "FLOW-002", "--follow", "--json"],
            cwd=ws.root,
            env=ws.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    lines: list[dict[str, Any]] = []
    reader = threading.Thread(
        target=lambda: lines.extend(json.loads(row) for row in iter(process.stdout.readline, "")),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        _wait(lambda: len(lines) >= 1)  # the existing line: story_created
        ok(ws.run("story", "move", "FLOW-002", "generated"))
        ok(ws.run("story", "block", "FLOW-002", "--reason", "waiting for infra"))
        _wait(lambda: len(lines) >= 3)
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    reader.join(timeout=10)
    assert process.returncode == 0, err
    assert [line["type"] for line in lines] == ["story_created", "transition", "transition"]
    assert lines[2]["to"] == "blocked" and lines[2]["reason"] == "waiting for infra"


def _wait(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ---- models ---------------------------------------------------------------------------------


def test_models_show_and_check_through_the_executable(workspace: Workspace) -> None:
    ws = workspace
    ok(ws.run("epic", "new", "FLOW", "--title", "Flow"))
    ok(ws.run("story", "new", "FLOW", "--title", "One"))  # models show --story needs it
    (ws.root / "models.yaml").write_text(
        yaml.safe_dump(
            {
                "models": {
                    "house": {"provider": "acme", "name": "acme-2", "input": 1, "output": 2}
                },
                "assignments": {
                    "default": "claude-sonnet-4",
                    "phases": {"review": "house"},
                    "stories": {"FLOW-001": {"roles": {"qa": "gpt-4o"}}},
                },
            }
        ),
        "utf-8",
    )
    shown = ok(ws.run("models", "show", "--json")).json
    review = next(r for r in shown["effective"] if r["phase"] == "review")
    assert (review["agent"], review["agent_type"]) == ("scripted", "scripted")  # runs: default
    assert (review["model"], review["provider_model"], review["decided_by"]) == (
        "house",
        "acme-2",
        "assignments.phases.review",
    )
    assert ok(ws.run("models", "check", "--json")).json["ok"] is True
    table = ok(ws.run("models", "show", "--story", "FLOW-001")).stdout
    assert "assignments.stories.FLOW-001.roles.qa" in table

    text = (ws.root / "models.yaml").read_text("utf-8")
    (ws.root / "models.yaml").write_text(
        text.replace("review: house", "review: gpt-9").replace("qa: gpt-4o", "tester: gpt-4o"),
        "utf-8",
    )
    error = error_body(ws.run("models", "check", "--json"), 3, "MODEL_ASSIGNMENT_INVALID")
    assert [(f["key"], f["problem"]) for f in error["details"]["findings"]] == [
        ("assignments.phases.review", "unknown model 'gpt-9'"),
        ("assignments.stories.FLOW-001.roles.tester", "unknown role 'tester'"),
    ]
    human = ws.run("models", "check")
    assert human.code == 3
    assert "assignments.phases.review" in human.stdout and "2 finding(s)" in human.stdout
    assert "error[MODEL_ASSIGNMENT_INVALID]" in human.stderr
    # every other command refuses the invalid configuration loudly, naming the key
    refused = error_body(ws.run("story", "list", "--json"), 7, "CONFIG_INVALID")
    assert refused["details"]["key"] == "assignments.phases.review"
    assert refused["details"]["source"] == "models.yaml"
    shown = ws.run("models", "show")
    assert shown.code == 0 and "unknown model 'gpt-9'" in shown.stderr
    shown = ws.run("models", "show", "--story", "FLOW-001")  # its check reads the same config
    assert shown.code == 0 and "unknown model 'gpt-9'" in shown.stderr


# ---- OpenTelemetry --------------------------------------------------------------------------


class _Collector(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).bodies.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    bodies: list[tuple[str, bytes]] = []
    handler = type("Handler", (_Collector,), {"bodies": bodies})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_spans_export_over_otlp(
    walked: Workspace, collector: tuple[str, list[tuple[str, bytes]]]
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    endpoint, bodies = collector
    lines = _jsonl(ok(walked.run("trace", "FLOW-001", "--json")).stdout)
    result = ok(walked.run("trace", "FLOW-001", "--export-otlp", endpoint, "--json")).json
    assert result == {"exported_spans": len(lines), "endpoint": endpoint}
    assert [path for path, _ in bodies] == ["/v1/traces"]
    request = ExportTraceServiceRequest()
    request.ParseFromString(bodies[0][1])
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.span_id.hex() for s in spans) == sorted(line["span_id"] for line in lines)
    assert {s.trace_id.hex() for s in spans} == {line["trace_id"] for line in lines}
    names = {s.name for s in spans}
    assert "transition" in names and "tokens elaboration" in names
    service = request.resource_spans[0].resource.attributes
    assert any(a.key == "service.name" and a.value.string_value == "storyflow" for a in service)
