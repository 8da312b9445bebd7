"""The prompt templates shipped for command and API agents: every placeholder filled with
the story's facts, none left over (they once lost theirs to a shell's expansion, and agents
were told to write "the proof to :")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storyflow.adapters.agents.prompts import render_prompt
from storyflow.domain.phases import PHASES
from tests.run_support import agent_request


@pytest.mark.parametrize("phase", [p.value for p in PHASES])
def test_every_template_is_filled_with_the_story(tmp_path: Path, phase: str) -> None:
    req = agent_request(tmp_path, phase)
    text = render_prompt(req, tmp_path / "prompts")
    assert 'story FLOW-007: "Budget enforcement levels" (epic FLOW)' in text
    assert str(req.story_dir) in text
    for path in req.artifact_files.values():
        assert str(path) in text, f"{phase}: the prompt does not say where to write {path.name}"
    if phase in ("generate", "refine"):
        assert str(req.story_file) in text
    assert not re.search(r"\$\w", text), "a placeholder was left unfilled"
    assert ' : ""' not in text and "(epic )" not in text and " to :" not in text
    if phase == "fix":
        assert "- an unhandled error path" in text
    if phase in ("implement", "fix"):
        assert "An earlier attempt of this iteration did not finish" in text


def test_a_reviewer_prompt_names_its_reviewer(tmp_path: Path) -> None:
    text = render_prompt(agent_request(tmp_path, "review", reviewer="security"), tmp_path / "p")
    assert "You are the security reviewer" in text and "for security problems" in text
    alone = render_prompt(agent_request(tmp_path, "review"), tmp_path / "p")
    assert "You are the code reviewer" in alone


def test_a_workspace_template_overrides_the_shipped_one(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "plan.md").write_text("Plan $story in $artifact_file, {braces} kept.\n")
    req = agent_request(tmp_path, "plan")
    text = render_prompt(req, prompts)
    assert text == f"Plan FLOW-007 in {req.artifact_files['plan']}, {{braces}} kept.\n"
