"""A story with two (or more) folders: what each holds, and which one is the story's.

In the staged layout a story's folder moves between stage folders with its status. Two
clones that moved the same story to different stages (one took it to ready-to-work, the
other cancelled it) renamed one folder two ways; git's merge (a rename/rename conflict)
keeps both, each with the story file (merge-conflict markers in it, as both logs grew). In
such a conflict both sides' story file is the conflicted one (git checkout --ours and
--theirs give the markers back): each side's is in its own commit, which the markers name
(``<<<<<<<< HEAD:PATH``, ``>>>>>>>> COMMIT:PATH``), so the hint says how to take either.

Sync reads neither as the story (``DUPLICATE_ID``, the story left alone) and says what each
folder holds (the state of its story file, the files this database has not seen) and which
folder is current: the one the story files' status calls for once they agree (then the hint
names what the other holds that the current one lacks, and the command that deletes it),
else the one this database's status calls for. It moves and deletes nothing itself: a merge
leaves two folders only when both clones moved the story, so both story files changed and
which history to keep is a person's choice; and a folder holding files the database has not
seen would lose them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from storyflow.domain.layouts import stage_for
from storyflow.domain.statuses import Status, parse_status
from storyflow.errors import StoryflowError
from storyflow.services.sync_ports import StoryItem, SyncFilesPort, SyncStorePort
from storyflow.services.sync_read import conflict_marker_line, file_sha
from storyflow.services.sync_report import Problem

MARKERS = "merge-conflict markers"
# The first and last marker of a conflict in a renamed file name each side's commit and path.
_SIDE = re.compile(r"^(?:<{7,}|>{7,}) (?P<rev>[^\s:]+):(?P<path>\S+)$", re.M)

# what a story file says: (state, status, blocked_from, the sides its markers name)
_StoryState = tuple[str, Status | None, Status | None, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, kw_only=True)
class FolderState:
    """One of a story's folders, as found."""

    path: str
    stage: str | None
    story: str  # what its story file says: a status, MARKERS, "missing", "unreadable"
    status: Status | None = None  # the story file's, when it reads
    blocked_from: Status | None = None
    unseen: tuple[str, ...] = ()  # its other files this database has not seen (names)
    sides: tuple[tuple[str, str], ...] = ()  # (commit, path) of each side, from the markers
    digests: tuple[tuple[str, str | None], ...] = ()  # each file's name, sha256 (None: unread)

    def describe(self, story_name: str) -> str:
        what = story_name + (": " + self.story if self.story != "missing" else " missing")
        if self.unseen:
            what += "; not seen by this database: " + ", ".join(self.unseen)
        return f"{self.path} ({what})"


def folder_state(
    files: SyncFilesPort,
    item: StoryItem,
    story_name: str,
    seen: Callable[[str, int, int], bool],
    hashes: dict[tuple[str, str], set[str]],
) -> FolderState:
    """What ``item``'s folder holds: its story file's status (or why there is none) and the
    files this database has not seen (no record of them as they are, no version with their
    content); a file storyflow does not know by name is never seen."""
    assert item.folder is not None
    folder = item.folder
    read: _StoryState = ("missing", None, None, ())
    if item.story_file is not None:
        read = _story_state(files, item.story_file.path, story_name)
    state, status, blocked_from, sides = read
    kinds = {scanned.path: kind for scanned, kind in item.artifacts}
    unseen = []
    digests = []
    for scanned in folder.files:
        sha = file_sha(files, scanned.path)
        digests.append((scanned.name, sha))
        if scanned.name == story_name or seen(scanned.path, scanned.size, scanned.mtime_ns):
            continue
        kind = kinds.get(scanned.path)
        if kind is not None and sha in hashes.get((item.story_id, kind.value), set()):
            continue
        unseen.append(scanned.name)
    if state not in ("missing", MARKERS) and item.story_file is not None:
        story_file = item.story_file
        if not seen(story_file.path, story_file.size, story_file.mtime_ns):
            state += ", changed since the last sync"
    return FolderState(
        path=folder.path,
        stage=folder.stage,
        story=state,
        status=status,
        blocked_from=blocked_from,
        unseen=tuple(sorted(unseen)),
        sides=sides,
        digests=tuple(sorted(digests)),
    )


def _story_state(files: SyncFilesPort, path: str, name: str) -> _StoryState:
    try:
        loaded = files.load(path)
        if conflict_marker_line(loaded.text) is not None:
            found = _SIDE.findall(loaded.text)
            sides = (found[0], found[-1]) if len(found) > 1 and found[0] != found[-1] else ()
            return MARKERS, None, None, sides
        meta = files.parse_story(loaded.text, name, path).meta
        status = parse_status(str(meta.get("status")))[0]
        stated = meta.get("blocked_from")
        blocked_from = parse_status(str(stated))[0] if stated else None
    except StoryflowError:
        return "unreadable", None, None, ()
    return status.value, status, blocked_from, ()


def two_folders(
    files: SyncFilesPort,
    store: SyncStorePort,
    items: list[StoryItem],
    story_name: str,
    stats: dict[str, tuple[int, int, int | None]],
    state: tuple[int, str, str | None] | None,
) -> Problem:
    """``DUPLICATE_ID`` for a story found in ``items``' folders (see the module docstring);
    ``state``: this database's (version, status, blocked_from) of the story, if it has it."""
    story_id = items[0].story_id

    def seen(path: str, size: int, mtime_ns: int) -> bool:
        rec = stats.get(path)
        return rec is not None and rec[:2] == (size, mtime_ns)

    hashes = store.artifact_hashes([story_id])
    found = [folder_state(files, item, story_name, seen, hashes) for item in items]
    message = (
        f"{story_id} has {len(found)} folders: "
        + ", ".join(f.describe(story_name) for f in found)
        + " (two clones moved it to different stages and a merge kept both, or a folder "
        "was copied)"
    )
    return Problem(
        code="DUPLICATE_ID",
        message=message,
        hint=_hint(story_id, story_name, found, state),
        file=found[0].path,
        story=story_id,
    )


def _hint(
    story_id: str,
    story_name: str,
    found: list[FolderState],
    state: tuple[int, str, str | None] | None,
) -> str:
    unseen = [f"{f.path}/{name}" for f in found for name in f.unseen]
    check = f" (this database has not seen {', '.join(unseen)})" if unseen else ""
    statuses = {f.status for f in found if f.status is not None}
    if len(statuses) == 1 and all(f.story not in (MARKERS, "unreadable") for f in found):
        agreed = next(f for f in found if f.status is not None)
        assert agreed.status is not None
        stage = stage_for(agreed.status, agreed.blocked_from)
        current = next((f for f in found if f.stage == stage), None)
        if current is not None:
            others = [f for f in found if f is not current]
            kept = dict(current.digests)
            lacking = [
                f"{f.path}/{name}"
                for f in others
                for name, sha in f.digests
                if sha is None or kept.get(name) != sha
            ]
            move = (
                f"Move what you keep of {', '.join(lacking)} into it, then delete"
                if lacking
                else "The other holds nothing it lacks: delete"
            )
            return (
                f"the story file says {agreed.status.value}: {current.path} is {story_id}'s "
                f"folder. {move} the other (git rm -r {' '.join(f.path for f in others)}), "
                "then storyflow sync"
            )
    where = ""
    if state is not None:
        status = Status(state[1])
        stage = stage_for(status, Status(state[2]) if state[2] else None)
        ours = next((f.path for f in found if f.stage == stage), None)
        where = f"this database has {story_id} {status.value}, " + (
            f"in {ours}. " if ours is not None else f"in neither ({stage}/). "
        )
    sides = next((f.sides for f in found if f.sides), ())
    take = (
        "each side's is in its own commit: "
        + " or ".join(f"git checkout {rev} -- {path}" for rev, path in sides)
        if sides
        else "git checkout --ours or --theirs FILE"
    )
    return (
        f"{where}Keep the {story_name} of the side whose history you keep ({take}): the "
        "folder of the status its log ends in is the story's. Move what you keep of the "
        f"other folder's files into it{check}, delete the other folder (git rm -r FOLDER), "
        "then storyflow sync (--prefer files when the log you kept is not this database's)"
    )


__all__ = ["FolderState", "folder_state", "two_folders"]
