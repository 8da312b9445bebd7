"""What a plan import did (or, with --dry-run, would do): per epic field and setting, per
requirement and per story added / updated / unchanged, the status moves the index asked for,
and every warning with its file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storyflow.domain.plan_model import PlanWarning
from storyflow.errors import StoryflowError


@dataclass(kw_only=True)
class Change:
    name: str
    change: str  # added | updated | unchanged
    value: Any
    previous: Any = None
    stated: bool = True  # False: not in the plan (the default, or the value kept)

    @classmethod
    def of(cls, name: str, old: Any, new: Any, *, stated: bool = True) -> Change:
        if old == new:
            return cls(name=name, change="unchanged", value=new, stated=stated)
        return cls(name=name, change="updated", value=new, previous=old, stated=stated)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "change": self.change, "value": self.value}
        if self.change == "updated":
            data["previous"] = self.previous
        if not self.stated:
            data["stated"] = False
        return data


@dataclass(kw_only=True)
class MoveRequest:
    """A status the index states for an existing story, other than the one it has."""

    story: str
    source: str
    target: str
    file: str
    line: int | None
    result: str = "allowed"  # allowed (previewed) | applied | refused
    code: str | None = None
    message: str = ""

    def refuse(self, error: StoryflowError) -> None:
        self.result, self.code, self.message = "refused", error.code, error.message

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"from": self.source, "to": self.target, "result": self.result}
        if self.result == "refused":
            data["code"], data["message"] = self.code, self.message
        return data


@dataclass(kw_only=True)
class StoryChange:
    id: str
    change: str  # added | updated | unchanged
    fields: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class ImportReport:
    epic: str
    plan: str
    dry_run: bool
    created: bool = False
    epic_fields: list[Change] = field(default_factory=list)
    settings: list[Change] = field(default_factory=list)
    requirements: list[Change] = field(default_factory=list)
    stories: list[StoryChange] = field(default_factory=list)
    moves: list[MoveRequest] = field(default_factory=list)
    warnings: list[PlanWarning] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = {"added": 0, "updated": 0, "unchanged": 0}
        for story in self.stories:
            counts[story.change] += 1
        counts["moved"] = sum(m.result == "applied" for m in self.moves)
        counts["refused"] = sum(m.result == "refused" for m in self.moves)
        return counts

    @property
    def changed(self) -> bool:
        changes: list[Change | StoryChange] = [*self.epic_fields, *self.settings]
        changes += [*self.requirements, *self.stories]
        moved = any(m.result != "refused" for m in self.moves)
        return moved or any(c.change != "unchanged" for c in changes)

    def to_json(self) -> dict[str, Any]:
        moves = {m.story: m for m in self.moves}
        stories = []
        for story in self.stories:
            row: dict[str, Any] = {"id": story.id, "change": story.change}
            if story.fields:
                row["fields"] = story.fields
            if story.id in moves:
                row["move"] = moves[story.id].to_json()
            stories.append(row)
        return {
            "epic": self.epic,
            "plan": self.plan,
            "dry_run": self.dry_run,
            "created": self.created,
            "changed": self.changed,
            "counts": self.counts(),
            "epic_fields": [c.to_json() for c in self.epic_fields],
            "settings": [c.to_json() for c in self.settings],
            "requirements": [c.to_json() for c in self.requirements],
            "stories": stories,
            "warnings": [w.to_json() for w in self.warnings],
        }

    def lines(self) -> list[str]:
        """The report for a terminal."""
        verb = "would import" if self.dry_run else "imported"
        counts = self.counts()
        out = [
            f"{verb} {self.epic} from {self.plan}"
            + (" (new epic)" if self.created else "")
            + f": {counts['added']} added, {counts['updated']} updated, "
            f"{counts['unchanged']} unchanged stories"
        ]
        for item in [*self.epic_fields, *self.settings, *self.requirements]:
            if item.change != "unchanged":
                out.append(f"  {item.change:9} {item.name} = {_short(item.value)}")
        moves = {m.story: m for m in self.moves}
        for story in self.stories:
            if story.change != "unchanged":
                detail = f" ({', '.join(story.fields)})" if story.fields else ""
                out.append(f"  {story.change:9} {story.id}{detail}")
            move = moves.get(story.id)
            if move is not None and move.result != "refused":
                what = "would move" if move.result == "allowed" else "moved"
                out.append(f"  {what:9} {story.id}: {move.source} -> {move.target}")
        out += [f"  warning: {w}" for w in self.warnings]
        if not self.changed:
            out.append("  nothing changed")
        return out


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 70 else text[:67] + "..."
