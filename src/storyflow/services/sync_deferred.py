"""File writes held back until a sync's one transaction commits.

The services a sync calls (move, update_story, submit) write files after *their* commit;
inside a sync they run nested in the sync's transaction, so their commit is not the real
one. ``DeferredFiles`` wraps the files port: staged writes and projections queue up and
happen, in order, only after the outer commit; a savepoint rolled back drops what it
queued; a dry run (or a failure) drops everything. Reads go straight to the real port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storyflow.domain.model import AgentLogRow, Epic, Story
from storyflow.services.ports import FilesPort

State = Callable[[], Any]


@dataclass
class _Pending:
    """A PendingWritesPort whose publish waits for the outer commit."""

    owner: DeferredFiles
    inner: Any
    published: bool = False

    def add(self, target: Path, text: str) -> None:
        self.inner.add(target, text)

    def publish(self) -> None:
        if not self.published:
            self.published = True
            self.owner.queue.append(("publish", self.inner))

    def discard(self) -> None:
        self.inner.discard()


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """A story file the projection wrote, with the story as it rendered it."""

    path: Path
    story: Story


@dataclass
class DeferredFiles:
    real: FilesPort
    queue: list[tuple[str, Any]] = field(default_factory=list)
    rendered: list[Rendered] = field(default_factory=list)
    moved: dict[Path, Path] = field(default_factory=dict)  # story folders moved to their stage

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)  # reads and locations: the real port

    def pending(self) -> _Pending:
        return _Pending(self, self.real.pending())

    def project(
        self,
        epic: Epic,
        story_id: str,
        *,
        state: State,
        rows_after: Callable[[int], list[AgentLogRow]],
        keep: frozenset[str] = frozenset(),
    ) -> Path | None:
        self.queue.append(("project", (epic, story_id, state, rows_after, keep)))
        return None

    def later(self, action: Callable[[], None]) -> None:
        """Run ``action`` after the commit, in queue order (e.g. empty a log to re-render)."""
        self.queue.append(("call", action))

    def mark(self) -> int:
        return len(self.queue)

    def rollback_to(self, mark: int) -> None:
        """Drop what was queued since ``mark`` (a savepoint was rolled back)."""
        for kind, item in self.queue[mark:]:
            if kind == "publish":
                item.discard()
        del self.queue[mark:]

    def discard(self) -> None:
        self.rollback_to(0)

    def publish(self, current: Callable[[str], Story | None]) -> None:
        """After the commit: run the queue in order. A projection re-renders from the
        committed state (once per story: the last request); staged writes meant for a
        folder that a projection moved follow it."""
        last = {item[1]: i for i, (kind, item) in enumerate(self.queue) if kind == "project"}
        kept: dict[str, frozenset[str]] = {}  # what every request for the story leaves alone
        for kind, item in self.queue:
            if kind == "project":
                kept[item[1]] = item[4] if item[1] not in kept else kept[item[1]] & item[4]
        moved = self.moved
        for index, (kind, item) in enumerate(self.queue):
            if kind == "publish":
                _follow(item, moved)
                item.publish()
                continue
            if kind == "call":
                item()
                continue
            epic, story_id, state, rows_after, _ = item
            if last[story_id] != index:
                continue
            before = current(story_id)
            folder = self.real.locate(epic, before).resolve() if before else None
            seen: list[Story] = []

            def capture(state: State = state, seen: list[Story] = seen) -> Any:
                result = state()
                if result is not None:
                    seen.append(result[0])
                return result

            path = self.real.project(
                epic, story_id, state=capture, rows_after=rows_after, keep=kept[story_id]
            )
            if path is not None and seen:
                self.rendered.append(Rendered(path=path, story=seen[-1]))
                if folder is not None and path.parent.resolve() != folder:
                    moved[folder] = path.parent.resolve()
        self.queue.clear()


def _follow(pending: Any, moved: dict[Path, Path]) -> None:
    """Re-target staged writes whose folder a projection has just moved."""
    if not moved:
        return
    staged = getattr(pending, "staged", None)
    if not isinstance(staged, list):
        return
    for index, (temp, target) in enumerate(staged):
        old = Path(target).parent.resolve()
        if old in moved:  # the temp file lives in the folder, so it moved with it
            staged[index] = (moved[old] / Path(temp).name, moved[old] / Path(target).name)
