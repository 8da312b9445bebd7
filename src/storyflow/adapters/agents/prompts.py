"""Prompts for command and API agents: a Markdown template per phase, shipped in the package; a
``<phase>.md`` in the workspace's prompts folder (``runs.prompts``) overrides it.

Templates use ``$name`` placeholders (``string.Template``), so braces in code samples stay
as written: $story, $title, $epic, $phase, $role, $iteration, $attempt, $model, $reviewer,
$workspace, $story_dir, $story_file, $artifact_file, $findings, $resume.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from storyflow.services.agents import AgentRequest

if TYPE_CHECKING:
    from storyflow.run_settings import AgentSpec


def template_text(phase: str, prompts_dir: Path) -> str:
    override = prompts_dir / f"{phase}.md"
    if override.is_file():
        return override.read_text(encoding="utf-8")
    return resources.files(__package__).joinpath(f"prompts/{phase}.md").read_text("utf-8")


def render_prompt(request: AgentRequest, prompts_dir: Path) -> str:
    artifact = next(iter(request.artifact_files.values()), request.story_file)
    findings = request.context.get("findings") or []
    values = {
        "story": request.story_id,
        "title": request.title,
        "epic": request.epic,
        "phase": request.phase,
        "role": request.role,
        "iteration": str(request.iteration),
        "attempt": str(request.attempt),
        "model": request.model or "",
        "reviewer": request.reviewer or "code",  # the phase's only reviewer
        "workspace": str(request.workspace),
        "story_dir": str(request.story_dir),
        "story_file": str(request.story_file),
        "artifact_file": str(artifact),
        "findings": "\n".join(f"- {f}" for f in findings) or "(none recorded)",
        "resume": (
            "An earlier attempt of this iteration did not finish: continue from what is in "
            "the story folder and the working tree. "
            if request.resume
            else ""
        ),
    }
    return string.Template(template_text(request.phase, prompts_dir)).safe_substitute(values)


def run_files(state_dir: Path, request: AgentRequest) -> tuple[Path, str]:
    """Where an agent keeps a run's prompt and output (``.storyflow/runs/RUN_ID/``, made),
    and the suffix of its file names (``-REVIEWER`` for one parallel reviewer)."""
    folder = state_dir / "runs" / request.run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder, f"-{request.reviewer}" if request.reviewer else ""


class PromptedAgent:
    """What the command and API agents share: their entry of ``runs.agents``, the prompts
    they render, the folder a run's files go to, and the catalogue's model names."""

    default_model: str | None = None

    def __init__(
        self,
        spec: AgentSpec,
        *,
        state_dir: Path,
        prompts_dir: Path,
        model_ids: Mapping[str, str] | None = None,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.state_dir = state_dir
        self.prompts_dir = prompts_dir
        self.model_ids = dict(model_ids or {})

    def model_id(self, request: AgentRequest) -> str:
        """The provider's name of the run's model (the catalogue's ``name``, else the key)."""
        model = request.model or ""
        return self.model_ids.get(model, model)

    def prompt(self, request: AgentRequest) -> tuple[Path, str, str]:
        """The run's folder, its files' suffix, and the phase's rendered prompt."""
        folder, suffix = run_files(self.state_dir, request)
        return folder, suffix, render_prompt(request, self.prompts_dir)
