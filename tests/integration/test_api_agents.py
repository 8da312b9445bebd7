"""The API agents (anthropic, openai) through their real SDKs against a fake API
(tests/fakes/fake_llm_api.py) that streams the way the services do: a story driven to
completed, usage in the ledger, the files the reply carries written into the story folder,
and every failure of the agent contract."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from storyflow.adapters.agents.api import write_files
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.budgets import Enforcement
from storyflow.domain.statuses import Status
from storyflow.services.context import Context
from storyflow.services.run_context import RunEnv
from storyflow.services.workers import run_story
from tests.fakes.fake_llm_api import USAGE, State, serve
from tests.run_support import agent_request, configure, drive, env, epic_with, runs_of
from tests.support import Workspace

PROVIDERS = ("anthropic", "openai")
CATALOGUE = {
    "fake-model": {
        "provider": "acme",
        "name": "acme-model-7",
        "input": 3.0,
        "output": 15.0,
        "cache_read": 0.3,
        "cache_write": 3.75,
    }
}
NO_RETRIES = {
    code: {"retries": 0} for code in ("AGENT_TIMEOUT", "MALFORMED_OUTPUT", "EXTERNAL_SERVICE_DOWN")
}


def api_workspace(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    url: str,
    *,
    phases: tuple[str, ...] = (),
    timeout: float = 20,
    max_tokens: int | None = None,
    sdk_retries: int = 0,
    **runs: Any,
) -> None:
    """An agent ``llm`` of type ``provider`` at ``url``: the agent of every phase, or of
    ``phases`` only (the scripted agent does the rest)."""
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-123")
    base = url if provider == "anthropic" else url + "/v1"
    agent = {
        "type": provider,
        "base_url": base,
        "api_key_env": "FAKE_LLM_KEY",
        "timeout": timeout,
        "max_retries": sdk_retries,  # 0: every request the tests count is one attempt
    }
    if max_tokens is not None:
        agent["max_tokens"] = max_tokens
    settings: dict[str, Any] = {"agents": {"llm": agent}, "reviewers": {"names": []}, **runs}
    if phases:
        settings["phase_agents"] = dict.fromkeys(phases, "llm")
    else:
        settings["default_agent"] = "llm"
    configure(workspace, settings, models=CATALOGUE, assignments={"default": "fake-model"})


def one_story(workspace: Workspace, scripted: int = 1) -> tuple[Context, RunEnv, str]:
    """A FLOW story, its context and run env, after ``scripted`` phase runs (generate ..)."""
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    run_env = env(ctx)
    for _ in range(scripted):
        run_story(ctx, run_env, story)
    return ctx, run_env, story


def requests_of(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/_requests") as response:
        return list(json.loads(response.read()))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_api_agent_drives_a_story_to_completed(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    fake_api: tuple[str, State],
    provider: str,
) -> None:
    url, _ = fake_api
    api_workspace(workspace, monkeypatch, provider, url)
    ctx, run_env, story = one_story(workspace, scripted=0)
    assert drive(ctx, run_env, story) is Status.COMPLETED
    rows = runs_of(ctx, story)
    phases = ["generate", "elaborate", "plan", "implement", "review", "verify", "gate"]
    assert [r["phase"] for r in rows] == phases
    assert all(r["status"] == "succeeded" for r in rows)

    # what the SDK sent: the catalogue's model id, the key, the reply's cap, one prompt a run
    sent = requests_of(url)
    assert len(sent) == 7
    assert {r["model"] for r in sent} == {"acme-model-7"}
    assert {r["key"] for r in sent} == {"sk-test-123"}
    # anthropic needs a cap (16000 unless set); an OpenAI-compatible API gets none unless set
    assert {r["max_tokens"] for r in sent} == {16000 if provider == "anthropic" else None}
    assert all("cannot read or write files" in r["system"] for r in sent)
    elaborate = sent[1]["prompt"]
    assert f"This is the elaborate phase of {story}" in elaborate
    assert f"analyst elaborating story {story}" in elaborate  # the phase's template
    assert "````file: story.yaml\n" in elaborate  # the story file, quoted
    assert "What the story does and why" in elaborate  # as generate left it
    assert "````file: elaboration.yaml\n(the whole file)\n````" in elaborate

    # the ledger has the usage the stream reported, priced from the catalogue
    ledger = ctx.store.ledger(story)
    assert len(ledger) == 7
    cached_write = USAGE["cache_write"] if provider == "anthropic" else 0
    for entry in ledger:
        assert (entry.input_tokens, entry.output_tokens) == (USAGE["input"], USAGE["output"])
        assert entry.cache_read_tokens == USAGE["cache_read"]
        assert entry.cache_write_tokens == cached_write
        assert entry.model == "fake-model" and entry.agent == "llm"
    expected = (1000 * 3.0 + 250 * 15.0 + 200 * 0.3 + cached_write * 3.75) / 1e6
    assert ledger[1].cost_usd == pytest.approx(expected)

    # the reply's files are the story's artifacts; prompt and reply are kept for the run
    epic = ctx.epic(ctx.story(story).epic)
    folder = ctx.files.locate(epic, ctx.story(story))
    gate = folder / "qa-gate.yaml"
    assert json.loads(gate.read_text(encoding="utf-8"))["decision"] == "PASS"
    kept = workspace.root / ".storyflow" / "runs" / rows[1]["id"]
    assert (kept / "prompt.md").read_text(encoding="utf-8") == elaborate
    assert "````file: elaboration.yaml" in (kept / "reply.md").read_text(encoding="utf-8")
    assert workspace.cli("check").code == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_parallel_reviewers_through_an_api_agent(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    fake_api: tuple[str, State],
    provider: str,
) -> None:
    url, state = fake_api
    api_workspace(
        workspace,
        monkeypatch,
        provider,
        url,
        phases=("review",),
        reviewers={"names": ["lint", "security"]},
        review_loop_cap=1,
    )
    ctx, run_env, story = one_story(workspace, scripted=4)  # generate .. implement
    assert ctx.story(story).status is Status.READY_FOR_CODE_REVIEW
    state.mode = "reviewfail"
    outcome = run_story(ctx, run_env, story)
    assert (outcome.phase, outcome.verdict) == ("review", "FAIL")
    prompts = [r["prompt"] for r in requests_of(url)]
    assert len(prompts) == 2
    assert any("You are the lint reviewer" in p for p in prompts)
    assert any("You are the security reviewer" in p for p in prompts)
    review = ctx.store.latest_artifact(story, ArtifactKind.CODE_REVIEW)
    assert review is not None and review.verdict == "FAIL"
    assert "a bug" in json.dumps(review.content)


def test_a_reviewer_whose_service_is_down_fails_the_run_not_the_review(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, fake_api: tuple[str, State]
) -> None:
    """A 529 says nothing about the change: the review phase fails with the contract's
    EXTERNAL_SERVICE_DOWN (retried as configured), no code review is recorded and the story
    is not sent to a fix; once the service is back the review runs and passes."""
    url, state = fake_api
    api_workspace(
        workspace,
        monkeypatch,
        "anthropic",
        url,
        phases=("review",),
        reviewers={"names": ["lint", "security"]},
        retries=NO_RETRIES,
    )
    ctx, run_env, story = one_story(workspace, scripted=4)  # generate .. implement
    state.mode = "securitydown"
    outcome = run_story(ctx, run_env, story)
    assert (outcome.phase, outcome.status) == ("review", "blocked")
    assert outcome.error_code == "EXTERNAL_SERVICE_DOWN"
    assert "reviewer security:" in (outcome.message or "") and "529" in (outcome.message or "")
    assert ctx.store.latest_artifact(story, ArtifactKind.CODE_REVIEW) is None
    spent = [e for e in ctx.store.ledger(story) if e.run_id == outcome.run_id]
    assert [e.input_tokens for e in spent] == [USAGE["input"]]  # lint's reply was paid for
    assert workspace.cli("story", "unblock", story).code == 0
    state.mode = "ok"
    outcome = run_story(ctx, run_env, story)
    assert (outcome.phase, outcome.status, outcome.verdict) == ("review", "succeeded", "PASS")
    assert ctx.story(story).status is Status.READY_FOR_QA
    # the retry asked only the reviewer that was down; lint's PASS carried over
    prompts = [r["prompt"] for r in requests_of(url)]
    assert len(prompts) == 3 and "You are the security reviewer" in prompts[-1]
    review = ctx.store.latest_artifact(story, ArtifactKind.CODE_REVIEW)
    assert review is not None and review.content["summary"] == "lint PASS, security PASS"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("mode", "code", "words", "attempts"),
    [
        ("status:401", "AGENT_SPAWN_FAILED", "refused the request (401)", 1),
        ("status:404", "AGENT_SPAWN_FAILED", "check the model's name", 1),
        ("status:429", "EXTERNAL_SERVICE_DOWN", "answered 429", 2),
        ("status:500", "EXTERNAL_SERVICE_DOWN", "answered 500", 2),
        ("noblock", "MALFORMED_OUTPUT", "no ````file: block for elaboration.yaml", 2),
        ("truncated", "MALFORMED_OUTPUT", "the reply was cut at", 2),
        ("slow", "AGENT_TIMEOUT", "timed out", 2),
    ],
    ids=["401", "404", "429", "500", "no-files", "truncated", "timeout"],
)
def test_every_failure_type_through_an_api_agent(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    fake_api: tuple[str, State],
    provider: str,
    mode: str,
    code: str,
    words: str,
    attempts: int,
) -> None:
    """Each failure has its contract code; the retryable ones are retried (once here), the
    refused ones are not; the story ends blocked with the reason and no elaboration."""
    url, state = fake_api
    retries = {c: {"retries": 1, "backoff": 0.01} for c in NO_RETRIES}
    api_workspace(
        workspace, monkeypatch, provider, url, phases=("elaborate",), timeout=1, retries=retries
    )
    ctx, run_env, story = one_story(workspace)  # generate, scripted
    state.mode, state.delay = mode, 5.0
    began = time.monotonic()
    outcome = run_story(ctx, run_env, story)
    assert time.monotonic() - began < 8  # a timed-out stream is closed, not awaited
    assert (outcome.phase, outcome.status, outcome.error_code) == ("elaborate", "blocked", code)
    assert words in (outcome.message or ""), outcome.message
    assert len(requests_of(url)) == attempts
    shown = ctx.story(story)
    assert shown.status is Status.BLOCKED and code in (shown.blocked_reason or "")
    assert ctx.store.latest_artifact(story, ArtifactKind.ELABORATION) is None
    epic = ctx.epic(shown.epic)
    assert not (ctx.files.locate(epic, shown) / "elaboration.yaml").exists()


def test_an_unreachable_api_is_a_service_down(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = serve()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()  # nothing listens there any more
    api_workspace(
        workspace, monkeypatch, "anthropic", url, phases=("elaborate",), retries=NO_RETRIES
    )
    ctx, run_env, story = one_story(workspace)  # generate, scripted
    outcome = run_story(ctx, run_env, story)
    assert (outcome.status, outcome.error_code) == ("blocked", "EXTERNAL_SERVICE_DOWN")
    assert "cannot reach" in (outcome.message or "")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_hard_gate_closes_a_streaming_reply(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    fake_api: tuple[str, State],
    provider: str,
) -> None:
    """The usage at the start of the stream already crosses the hard limit: the stream is
    closed at once (the reply would drip for minutes) and the tokens are in the ledger."""
    url, state = fake_api
    api_workspace(
        workspace,
        monkeypatch,
        provider,
        url,
        phases=("elaborate",),
        timeout=120,
    )
    path = workspace.root / "storyflow.yaml"
    budgets = "budgets:\n  elaboration: {estimate: 500, warning: 800, hard: 1000}\n"
    path.write_text(path.read_text(encoding="utf-8") + budgets, encoding="utf-8")
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1, enforcement=Enforcement.HARD_GATE)
    run_env = env(ctx)
    run_story(ctx, run_env, story)
    state.mode, state.delay = "drip", 0.5
    began = time.monotonic()
    outcome = run_story(ctx, run_env, story)
    assert time.monotonic() - began < 10
    assert (outcome.status, outcome.error_code) == ("blocked", "BUDGET_HARD_LIMIT")
    spent = [e for e in ctx.store.ledger(story) if e.run_id == outcome.run_id]
    assert len(spent) == 1 and spent[0].input_tokens == USAGE["input"]


def test_a_reply_writes_only_the_files_the_phase_expects(tmp_path: Path) -> None:
    request = agent_request(tmp_path, "elaborate")
    reply = (
        "Here you go.\n\n"
        "````file: ../../../escape.yaml\nverdict: PASS\n````\n\n"
        "````file: story.yaml\nid: hijacked\n````\n\n"
        "```yaml file: elaboration.yaml\nverdict: FAIL\n```\n\n"
        "````file: elaboration.yaml\nverdict: PASS\nsummary: |\n  ```code```\n````\n"
    )
    assert write_files(request, reply) == []
    folder = request.story_dir
    assert sorted(p.name for p in folder.iterdir()) == ["elaboration.yaml"]
    assert not (tmp_path.parent / "escape.yaml").exists()
    # the last block of a name wins, and a shorter fence inside it does not end it
    text = (folder / "elaboration.yaml").read_text(encoding="utf-8")
    assert text == "verdict: PASS\nsummary: |\n  ```code```\n"
    assert write_files(request, "no blocks at all") == ["elaboration.yaml"]


def test_a_block_as_models_like_to_write_it_is_unwrapped(tmp_path: Path) -> None:
    """A quoted name, and the content fenced once more inside the block."""
    request = agent_request(tmp_path, "elaborate")
    reply = "````file: `elaboration.yaml`\n```yaml\nverdict: PASS\n```\n````\nDone.\n"
    assert write_files(request, reply) == []
    text = (request.story_dir / "elaboration.yaml").read_text(encoding="utf-8")
    assert text == "verdict: PASS\n"


def test_a_story_phase_gets_the_story_file_back(tmp_path: Path) -> None:
    request = agent_request(tmp_path, "generate")
    assert write_files(request, "````file: elaboration.yaml\nx: 1\n````\n") == ["story.yaml"]
    assert write_files(request, "````file: story.yaml\nid: FLOW-007\n````\n") == []
    assert (request.story_dir / "story.yaml").read_text(encoding="utf-8") == "id: FLOW-007\n"


def test_a_reply_that_outlasts_the_timeout_is_closed(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, fake_api: tuple[str, State]
) -> None:
    """Pieces keep arriving (no read timeout fires), but the whole reply takes longer than
    the agent's timeout: the engine closes the stream at the timeout."""
    url, state = fake_api
    api_workspace(
        workspace, monkeypatch, "openai", url, phases=("elaborate",), timeout=1, retries=NO_RETRIES
    )
    ctx, run_env, story = one_story(workspace)  # generate, scripted
    state.mode, state.delay = "drip", 0.6  # ~5 pieces: ~3 s for the whole reply
    began = time.monotonic()
    outcome = run_story(ctx, run_env, story)
    assert time.monotonic() - began < 2.5
    assert (outcome.status, outcome.error_code) == ("blocked", "AGENT_TIMEOUT")
    assert "no complete reply within 1 s" in (outcome.message or "")
    # what had arrived is kept beside the prompt, for whoever looks into the failure
    kept = workspace.root / ".storyflow" / "runs" / str(outcome.run_id) / "reply.md"
    assert kept.read_text(encoding="utf-8").startswith("````file: elaboration.yaml")


def test_a_phase_without_a_model_says_how_to_assign_one(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, fake_api: tuple[str, State]
) -> None:
    url, _ = fake_api
    api_workspace(workspace, monkeypatch, "anthropic", url, phases=("elaborate",))
    path = workspace.root / "storyflow.yaml"
    # a model for another epic only: whether FLOW's stories have one is known per story
    other = "assignments:\n  epics:\n    OTHER: {default: fake-model}\n"
    text = path.read_text(encoding="utf-8").replace("assignments:\n  default: fake-model\n", other)
    path.write_text(text, encoding="utf-8")
    ctx, run_env, story = one_story(workspace)  # generate, scripted
    outcome = run_story(ctx, run_env, story)
    assert (outcome.status, outcome.error_code) == ("blocked", "AGENT_SPAWN_FAILED")
    assert "no model assigned to the elaborate phase" in (outcome.message or "")
    assert requests_of(url) == []


def test_an_api_agent_without_its_sdk_is_refused_with_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from storyflow.adapters.agents.api import require_sdk
    from storyflow.errors import UsageError
    from storyflow.run_settings import AgentSpec

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openai" else real(name, *a)
    )
    require_sdk(AgentSpec(name="claude", type="anthropic"))  # installed: fine
    with pytest.raises(UsageError) as refused:
        require_sdk(AgentSpec(name="local", type="openai"))
    assert refused.value.code == "EXTRA_MISSING" and refused.value.exit_status == 2
    assert refused.value.hint == "pip install 'storyflow[openai]'"
    assert "runs.agents.local" in refused.value.message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_max_tokens_caps_the_reply(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    fake_api: tuple[str, State],
    provider: str,
) -> None:
    url, state = fake_api
    api_workspace(
        workspace,
        monkeypatch,
        provider,
        url,
        phases=("elaborate",),
        max_tokens=3000,
        retries=NO_RETRIES,
    )
    ctx, run_env, story = one_story(workspace)  # generate, scripted
    state.mode = "truncated"
    outcome = run_story(ctx, run_env, story)
    assert (outcome.status, outcome.error_code) == ("blocked", "MALFORMED_OUTPUT")
    assert "the reply was cut at max_tokens 3000" in (outcome.message or "")
    (sent,) = requests_of(url)
    assert sent["max_tokens"] == 3000  # max_completion_tokens for an OpenAI-compatible API


def test_unblocking_a_story_starts_the_circuit_breakers_count_again(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, fake_api: tuple[str, State]
) -> None:
    """The breaker blocked the story after three failures in a row; a person unblocks it
    once the service is back. One more blip must be retried as the policy says, not
    counted as the fourth failure in a row and blocked at once."""
    url, state = fake_api
    retries = {"EXTERNAL_SERVICE_DOWN": {"retries": 9, "backoff": 0.01}}
    api_workspace(
        workspace,
        monkeypatch,
        "openai",
        url,
        phases=("elaborate",),
        retries=retries,
        circuit_breaker=3,
    )
    ctx, run_env, story = one_story(workspace)  # generate, scripted
    state.mode = "status:529"
    outcome = run_story(ctx, run_env, story)
    assert (outcome.status, outcome.error_code) == ("blocked", "EXTERNAL_SERVICE_DOWN")
    reason = ctx.story(story).blocked_reason or ""
    assert reason.startswith("circuit breaker: 3 consecutive failed runs")
    assert workspace.cli("story", "unblock", story).code == 0
    state.mode, state.fail_next = "onefail", 1
    outcome = run_story(ctx, run_env, story)
    assert (outcome.phase, outcome.status, outcome.verdict) == ("elaborate", "succeeded", "PASS")
    statuses = [r["status"] for r in runs_of(ctx, story) if r["phase"] == "elaborate"]
    assert statuses == ["failed"] * 4 + ["succeeded"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_sdk_retries_a_blip_within_the_run(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    fake_api: tuple[str, State],
    provider: str,
) -> None:
    """With max_retries (2 by default) a 529 is retried by the SDK inside the run: one run,
    succeeded, two requests; no failed run for the breaker to count."""
    url, state = fake_api
    api_workspace(workspace, monkeypatch, provider, url, phases=("elaborate",), sdk_retries=2)
    ctx, run_env, story = one_story(workspace)  # generate, scripted
    state.mode, state.fail_next = "onefail", 1
    outcome = run_story(ctx, run_env, story)
    assert (outcome.phase, outcome.status, outcome.verdict) == ("elaborate", "succeeded", "PASS")
    assert [r["status"] for r in runs_of(ctx, story) if r["phase"] == "elaborate"] == ["succeeded"]
    assert len(requests_of(url)) == 2


def test_a_pass_carried_from_an_earlier_review_survives_a_failed_retry(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, fake_api: tuple[str, State]
) -> None:
    """Iteration 1: lint passes, security fails. Iteration 2 asks security only (lint's
    PASS carries), and security is down: the failed run keeps lint's carried PASS, so the
    retry asks security only again."""
    url, state = fake_api
    api_workspace(
        workspace,
        monkeypatch,
        "openai",
        url,
        phases=("review",),
        reviewers={"names": ["lint", "security"]},
        retries=NO_RETRIES,
    )
    ctx, run_env, story = one_story(workspace, scripted=4)  # generate .. implement
    state.mode = "securityfail"
    assert run_story(ctx, run_env, story).verdict == "FAIL"
    run_story(ctx, run_env, story)  # fix, scripted
    state.mode = "securitydown"
    failed = run_story(ctx, run_env, story)
    assert (failed.status, failed.error_code) == ("blocked", "EXTERNAL_SERVICE_DOWN")
    assert workspace.cli("story", "unblock", story).code == 0
    state.mode = "ok"
    outcome = run_story(ctx, run_env, story)
    assert (outcome.phase, outcome.verdict) == ("review", "PASS")
    asked = [
        "lint" if "You are the lint reviewer" in r["prompt"] else "security"
        for r in requests_of(url)
    ]
    assert asked.count("lint") == 1 and asked[2:] == ["security", "security"]
