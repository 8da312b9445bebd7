"""An API agent as a user sets one up: `storyflow run --epic` with a model behind the
Anthropic or OpenAI API (here the fake of tests/fakes/fake_llm_api.py, which the real SDKs
talk to), a missing key refused before any story is touched, a bad agent entry named."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.integration.test_api_agents import CATALOGUE, api_workspace, requests_of
from tests.run_support import epic_with
from tests.support import Workspace


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_run_an_epic_with_an_api_agent(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    fake_api: tuple[str, Any],
    provider: str,
) -> None:
    url, _ = fake_api
    api_workspace(workspace, monkeypatch, provider, url, reviewers={"names": ["lint", "build"]})
    epic_with(workspace.ctx(), 3)
    result = workspace.run("run", "--epic", "FLOW", "--workers", "2", "--json", timeout=120)
    assert result.code == 0, result
    summary = result.json
    assert summary["status_counts"] == {"completed": 3}
    assert len(summary["runs"]) == 21
    assert summary["tokens"]["total"] == sum(r["tokens"]["total"] for r in summary["runs"])
    # 7 runs a story; the review phase asks its two reviewers
    assert len(requests_of(url)) == 3 * 8
    assert workspace.run("check").code == 0


def test_a_missing_key_is_refused_before_any_story_is_claimed(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, fake_api: tuple[str, Any]
) -> None:
    url, _ = fake_api
    api_workspace(workspace, monkeypatch, "anthropic", url, phases=("elaborate",))
    monkeypatch.delenv("FAKE_LLM_KEY")
    (story,) = epic_with(workspace.ctx(), 1)
    result = workspace.run("run", "--epic", "FLOW", "--json")
    assert result.code == 2, result
    error = result.json["error"]
    assert error["code"] == "AGENT_SPAWN_FAILED"
    assert "$FAKE_LLM_KEY" in error["message"] and "api_key_env" in error["hint"]
    plain = workspace.run("run", story)
    assert plain.code == 2 and "no API key in $FAKE_LLM_KEY" in plain.stderr
    shown = workspace.run("story", "show", story, "--json")
    assert shown.json["status"] == "pending"  # nothing claimed, nothing blocked
    assert requests_of(url) == []


def test_a_phase_without_a_model_is_refused_before_any_story_is_claimed(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, fake_api: tuple[str, Any]
) -> None:
    url, _ = fake_api
    api_workspace(workspace, monkeypatch, "openai", url, phases=("plan",))
    path = workspace.root / "storyflow.yaml"
    text = path.read_text(encoding="utf-8").replace("assignments:\n  default: fake-model\n", "")
    path.write_text(text + "assignments:\n  phases: {implement: fake-model}\n", encoding="utf-8")
    (story,) = epic_with(workspace.ctx(), 1)
    result = workspace.run("run", "--epic", "FLOW", "--json")
    assert result.code == 2, result
    error = result.json["error"]
    assert error["code"] == "AGENT_SPAWN_FAILED"
    assert error["message"] == "agent llm runs the plan phase, but no model is assigned to it"
    assert "assignments.phases.plan" in error["hint"]
    assert workspace.run("story", "show", story, "--json").json["status"] == "pending"
    assert requests_of(url) == []


@pytest.mark.parametrize(
    ("agent", "key"),
    [
        ({"type": "openai", "command": ["x"]}, "runs.agents.llm.command"),
        ({"type": "anthropic", "base_url": "ftp://example.com"}, "runs.agents.llm.base_url"),
        ({"type": "anthropic", "api_key_env": "not a name"}, "runs.agents.llm.api_key_env"),
        ({"type": "openai", "max_tokens": 0}, "runs.agents.llm.max_tokens"),
        ({"type": "anthropic", "max_retries": -1}, "runs.agents.llm.max_retries"),
        ({"type": "gemini"}, "runs.agents.llm.type"),
    ],
    ids=["command", "base_url", "api_key_env", "max_tokens", "max_retries", "type"],
)
def test_a_bad_api_agent_entry_is_named(
    workspace: Workspace, agent: dict[str, Any], key: str
) -> None:
    path = workspace.root / "storyflow.yaml"
    extra = yaml.safe_dump({"runs": {"agents": {"llm": agent}}, "models": CATALOGUE})
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    result = workspace.run("board", "--json")
    assert result.code == 7, result
    error = result.json["error"]
    assert error["code"] == "CONFIG_INVALID" and error["details"]["key"] == key
