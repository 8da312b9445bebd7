"""Model assignments: which catalogue model runs a phase, and the views of the catalogue.

The rules (precedence, validation) are data in ``domain/assignments.py``; the config loader
parses and checks them. This module answers the run engine's question, ``resolve_model``,
and builds what ``storyflow models show|check`` print. Those two also hold the epic and
story overrides against the epics and stories the database has (``workspace_scopes``): the
run engine does not, as an override for a missing story simply never applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from storyflow.config import Config
from storyflow.domain import assignments as rules
from storyflow.domain.model import Epic, Story, parse_story_id
from storyflow.errors import InvalidInput, RuleViolation

if TYPE_CHECKING:
    from storyflow.services.context import Context


def _name(value: Epic | Story | Enum | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, Epic):
        return value.prefix
    if isinstance(value, Story):
        return value.id
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def explain_model(
    config: Config,
    epic: Epic | str | None,
    story: Story | str | None,
    phase: Enum | str | None,
    role: Enum | str | None,
    agent: str | None = None,
) -> rules.Resolution:
    """The model for a phase run and the assignment key that decided it."""
    story_id = _name(story)
    epic_prefix = _name(epic)
    if epic_prefix is None and story_id is not None:
        epic_prefix = parse_story_id(story_id)[0]
    resolution = config.assignments.resolve(
        epic=epic_prefix, story=story_id, phase=_name(phase), role=_name(role), agent=agent
    )
    if resolution.model is not None and resolution.model not in config.models:
        # Only reachable with a leniently loaded config: never run with a dropped model.
        raise InvalidInput(
            f"{resolution.key}: unknown model {resolution.model!r}",
            code="UNKNOWN_MODEL",
            hint="storyflow models check lists every assignment problem",
            details={"key": resolution.key, "model": resolution.model},
        )
    return resolution


def resolve_model(
    config: Config,
    epic: Epic | str | None,
    story: Story | str | None,
    phase: Enum | str | None,
    role: Enum | str | None,
    agent: str | None = None,
) -> str | None:
    """The catalogue name of the model assigned to this phase run, or None when nothing is
    assigned (the agent then uses its own default). Most specific wins: story > epic >
    workspace, and within each, phase > role > agent > default."""
    return explain_model(config, epic, story, phase, role, agent).model


def provider_model_id(config: Config, model: str) -> str:
    """The name the provider knows the model by (``name:`` in the catalogue, else the key):
    what a command agent's ``{model}`` placeholder receives."""
    price = config.models.get(model)
    return price.name if price is not None and price.name else model


# ---- views --------------------------------------------------------------------------------


def catalogue(config: Config) -> list[dict[str, Any]]:
    return [
        {
            "model": name,
            "provider": price.provider,
            "model_id": price.name or name,
            "input": price.input,
            "output": price.output,
            "cache_read": price.cache_read,
            "cache_write": price.cache_write,
        }
        for name, price in sorted(config.models.items())
    ]


def _scopes(
    config: Config, epic: str | None, story: str | None
) -> list[tuple[str, str | None, str | None]]:
    """(label, epic, story) of every scope to tabulate: the one asked for, or the workspace
    and every epic and story that has overrides."""
    if story is not None:
        return [(story, parse_story_id(story)[0], story)]
    if epic is not None:
        return [(epic, epic, None)]
    scopes: list[tuple[str, str | None, str | None]] = [("workspace", None, None)]
    scopes += [(e, e, None) for e in sorted(config.assignments.epics)]
    scopes += [(s, parse_story_id(s)[0], s) for s in sorted(config.assignments.stories)]
    return scopes


def effective(
    config: Config, *, epic: str | None = None, story: str | None = None
) -> list[dict[str, Any]]:
    """One row per scope and phase: the agent that runs it (``runs``), the model it
    resolves to for that agent, and the key that decided. Override scopes list only the
    phases whose model differs from the workspace's."""
    roles = rules.phase_roles()
    rows: list[dict[str, Any]] = []
    baseline: dict[str, str | None] = {}
    for label, scope_epic, scope_story in _scopes(config, epic, story):
        for phase, role in roles.items():
            agent = config.runs.agent_for(phase)
            resolution = config.assignments.resolve(
                epic=scope_epic, story=scope_story, phase=phase, role=role, agent=agent.name
            )
            if label == "workspace":
                baseline[phase] = resolution.model
            elif epic is None and story is None and baseline.get(phase) == resolution.model:
                continue
            rows.append(
                {
                    "scope": label,
                    "phase": phase,
                    "role": role,
                    "agent": agent.name,
                    "agent_type": agent.type,
                    "model": resolution.model,
                    "provider_model": (
                        provider_model_id(config, resolution.model) if resolution.model else None
                    ),
                    "decided_by": resolution.key,
                }
            )
    return rows


# ---- the overrides against the workspace ---------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Scopes:
    """The epic prefixes and story IDs the workspace's database has."""

    epics: frozenset[str]
    stories: frozenset[str]


NOT_CHECKED = (
    "assignments.epics and assignments.stories were not checked against the workspace: {reason}"
)


def has_overrides(config: Config) -> bool:
    """Whether any assignment names an epic or a story (only then is the database read)."""
    return bool(config.assignments.epics or config.assignments.stories)


def workspace_scopes(ctx: Context) -> Scopes | None:
    """The epics and stories to hold the overrides against, or None (and a warning) when the
    database has no epic yet: a fresh clone before ``storyflow sync``, where every override
    would be reported missing although its story files are there."""
    with ctx.store.transaction(write=False):
        epics = frozenset(epic.prefix for epic in ctx.store.list_epics())
        stories = frozenset(ctx.store.story_status_map()) if epics else frozenset()
    if not epics:
        ctx.warn(
            NOT_CHECKED.format(
                reason="the database has no epic yet (storyflow sync fills it from the story "
                "files; storyflow epic new creates one)"
            )
        )
        return None
    return Scopes(epics=epics, stories=stories)


def _findings(config: Config, scopes: Scopes | None) -> list[dict[str, str]]:
    found = list(config.assignment_findings)
    if scopes is not None:
        found += rules.check_scopes(config.assignments, epics=scopes.epics, stories=scopes.stories)
    return [f.to_json() for f in found]


def show(
    config: Config,
    *,
    epic: str | None = None,
    story: str | None = None,
    scopes: Scopes | None = None,
) -> dict[str, Any]:
    """The catalogue, the configured assignments and the effective table; the findings of
    ``check`` (overrides held against ``scopes`` when given)."""
    return {
        "catalogue": catalogue(config),
        "assignments": [{"key": e.key, "model": e.model} for e in config.assignments.entries()],
        "effective": effective(config, epic=epic, story=story),
        "findings": _findings(config, scopes),
    }


def check(config: Config, scopes: Scopes | None = None) -> dict[str, Any]:
    """Refuse (exit 3) when an assignment names an unknown model, phase, role or agent, or
    (given ``scopes``) an epic or story the workspace does not have. ``config`` must be
    loaded with ``strict_assignments=False`` so every problem is listed.
    ``overrides_checked`` is false when there are overrides but no ``scopes`` to hold them
    against (the database could not be opened, or has no epic yet)."""
    findings = _findings(config, scopes)
    checked = sum(1 for _ in config.assignments.entries())
    overrides_checked = scopes is not None or not has_overrides(config)
    if findings:
        first = findings[0]
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        raise RuleViolation(
            f"{first['key']}: {first['problem']}{more}",
            code="MODEL_ASSIGNMENT_INVALID",
            hint=first["hint"],
            details={
                "findings": findings,
                "assignments": checked,
                "overrides_checked": overrides_checked,
            },
        )
    return {
        "ok": True,
        "assignments": checked,
        "models": len(config.models),
        "overrides_checked": overrides_checked,
        "findings": [],
    }
