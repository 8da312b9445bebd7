"""The prompt templates shipped for command and API agents: every placeholder filled with
the story's facts, none left over (they once lost theirs to a shell's expansion, and agents
were told to write "the proof to :")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storyflow.adapters.agents.prompts import render_prompt
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.phases import PHASES, PhaseName
from storyflow.services.agents import AgentRequest


def request(tmp_path: Path, phase: str, reviewer: str | None = None) -> AgentRequest:
    folder = tmp_path / "plans" / "flow" / "in-progress" / "FLOW-007"
    spec = PHASES[PhaseName(phase)]
    kinds = [k for k in spec.produces if k is not ArtifactKind.STORY]
    return AgentRequest(
        run_id="run-1",
        story_id="FLOW-007",
        epic="FLOW",
        title="Budget enforcement levels",
        phase=phase,
        role=spec.role.value,
        iteration=2,
        attempt=1,
        model="claude-sonnet-4",
        workspace=tmp_path,
        story_dir=folder,
        story_file=folder / "story.yaml",
        produces=tuple(k.value for k in kinds),
        artifact_files={k.value: folder / f"{k.value}.yaml" for k in kinds},
        timeout=60,
        reviewer=reviewer,
        resume=True,
        context={"findings": ["an unhandled error path"]},
    )


@pytest.mark.parametrize("phase", [p.value for p in PHASES])
def test_every_template_is_filled_with_the_story(tmp_path: Path, phase: str) -> None:
    req = request(tmp_path, phase)
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
    text = render_prompt(request(tmp_path, "review", reviewer="security"), tmp_path / "p")
    assert "You are the security reviewer" in text and "for security problems" in text
    alone = render_prompt(request(tmp_path, "review"), tmp_path / "p")
    assert "You are the code reviewer" in alone


def test_a_workspace_template_overrides_the_shipped_one(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "plan.md").write_text("Plan $story in $artifact_file, {braces} kept.\n")
    req = request(tmp_path, "plan")
    text = render_prompt(req, prompts)
    assert text == f"Plan FLOW-007 in {req.artifact_files['plan']}, {{braces}} kept.\n"
