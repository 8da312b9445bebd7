"""What every use case receives: config, the ports, a clock, who is acting, a warning sink."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from storyflow.config import Config
from storyflow.errors import NotFoundError
from storyflow.services.ports import FilesPort, StorePort

# domain.model is imported where a method needs it: ``story list`` and ``board`` build no
# value object, and defining their dataclasses costs ~9 ms of a read's start-up.
if TYPE_CHECKING:
    from storyflow.domain.model import AgentLogRow, EdgeFacts, Epic, Loaded, Story
    from storyflow.domain.transitions import Edge


@dataclass(kw_only=True)
class Context:
    config: Config
    store: StorePort
    files: FilesPort
    clock: Callable[[], datetime]
    actor: str
    warnings: list[str] = field(default_factory=list)
    # the warnings that are budget figures: a run reports those its own way (a line per
    # limit crossed, the overruns in its report) and passes the others on as they come
    budget_warnings: list[str] = field(default_factory=list)

    def warn(self, message: str, *, budget: bool = False) -> None:
        self.warnings.append(message)
        if budget:
            self.budget_warnings.append(message)

    def take_warnings(self) -> list[str]:
        """The warnings so far but the budget ones, which are dropped; both lists emptied."""
        taken = [w for w in self.warnings if w not in self.budget_warnings]
        self.warnings.clear()
        self.budget_warnings.clear()
        return taken

    def now(self) -> datetime:
        return self.clock()

    def epic(self, prefix: str) -> Epic:
        from storyflow.domain.model import parse_prefix

        parse_prefix(prefix)  # a malformed prefix (a path, say) is invalid, not missing
        epic = self.store.get_epic(prefix)
        if epic is None:
            raise NotFoundError(
                f"no epic {prefix}",
                code="EPIC_NOT_FOUND",
                hint="storyflow epic list shows the epics; storyflow epic new creates one",
                details={"epic": prefix},
            )
        return epic

    def story(self, story_id: str) -> Story:
        from storyflow.domain.model import parse_story_id

        parse_story_id(story_id)  # a malformed ID (a path, say) is invalid, not missing
        story = self.store.get_story(story_id)
        if story is None:
            raise NotFoundError(
                f"no story {story_id}",
                code="STORY_NOT_FOUND",
                hint="storyflow story list shows the stories",
                details={"story": story_id},
            )
        return story

    def load(self, story_id: str) -> Loaded:
        """Story, epic, lease and log head in one round trip: what a change reads first."""
        from storyflow.domain.model import parse_story_id

        parse_story_id(story_id)
        found = self.store.get_story_and_epic(story_id)
        if found is None:
            self.story(story_id)  # raises the not-found error
        assert found is not None
        return found

    def load_for_edge(self, story_id: str, edge: Edge) -> tuple[Loaded, EdgeFacts]:
        """``load`` and the facts ``edge``'s evidence guard reads, in one round trip."""
        from storyflow.domain.model import parse_story_id

        assert edge.evidence is not None
        parse_story_id(story_id)
        found, facts = self.store.get_story_with_edge_facts(
            story_id, edge.evidence.kind, edge.evidence.anchor, edge.budget_phase
        )
        if found is None:
            self.story(story_id)  # raises the not-found error
        assert found is not None
        return found, facts

    def log_row(
        self,
        epic: Epic,
        action: str,
        outputs: str,
        agent: str | None = None,
        *,
        at: datetime | None = None,
    ) -> AgentLogRow:
        """An Agent Log row stamped ``at`` (the change's own time, when a row of the change
        carries it too: sync reads it back from the row), else now."""
        from zoneinfo import ZoneInfo

        from storyflow.domain.model import AgentLogRow

        when = self.now() if at is None else at
        stamp = when.astimezone(ZoneInfo(epic.timezone)).isoformat(timespec="seconds")
        return AgentLogRow(
            timestamp=stamp.replace("+00:00", "Z"),
            agent=agent or self.actor,
            action=action,
            outputs=outputs,
        )
