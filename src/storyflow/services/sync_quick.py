"""The no-op fast path of ``storyflow sync``: one digest per story folder instead of one
record per file.

A sync that finds nothing to do (``Survey.idle``) leaves an index in the local state folder
(``.storyflow/sync/index.json``): for each story, its folder and a digest of its files'
names, sizes and mtimes, with the story's version, status and ``blocked_from`` as the
database had them; for each epic, its root, layout, version and epic file. The next sync
first walks the folders (one ``stat`` per file, as the full survey does), digests them and
reads the stories' states: when every folder, state, epic and epic file is as indexed,
nothing changed on either side and the sync is idle without loading ``sync_files`` or
classifying a single file. Anything else -- a file touched, added or removed, a story
moved, an epic changed, a folder unreadable, no index -- and the full survey decides, as it
always did. The index is local (mtimes are this checkout's) and only ever says "idle".
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from storyflow.domain.layouts import LAYOUTS, LayoutName
from storyflow.domain.model import Epic
from storyflow.services.context import Context
from storyflow.services.sync_ports import SyncFilesPort, SyncStorePort
from storyflow.services.sync_report import SyncReport
from storyflow.services.sync_survey import Survey

INDEX_FORMAT = 1


def _database(ctx: Context) -> str:
    """Which database the index speaks for (hashed: the URL may carry a password)."""
    url = ctx.config.effective_database_url
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def _epic_entry(epic: Epic, epic_file: tuple[str, int, int] | None) -> list[Any]:
    return [epic.root, epic.layout.value, epic.version, *(epic_file or (None, None, None))]


def save_index(ctx: Context, files: SyncFilesPort, found: Survey, report: SyncReport) -> None:
    """Record the state an idle survey saw -- its own scan and states, so nothing that
    changed after it looked can be taken for synced."""
    stories: dict[str, list[Any]] = {}
    for item in found.items:
        if item.folder is None:
            return
        version, status, blocked_from = found.states[item.story_id]
        digest = files.folder_digest(item.folder.files)
        stories[item.story_id] = [item.folder.path, digest, version, status, blocked_from]
    epics: dict[str, list[Any]] = {}
    for entry in found.epic_files:
        scanned = entry.scanned
        stat = (scanned.path, scanned.size, scanned.mtime_ns) if scanned else None
        epics[entry.epic.prefix] = _epic_entry(entry.epic, stat)
    data = {
        "format": INDEX_FORMAT,
        "database": _database(ctx),
        "epics": epics,
        "discovered": [list(d) for d in found.discovered],
        "stories": stories,
        "files": report.files,
        "unchanged": report.unchanged,
    }
    with contextlib.suppress(OSError):  # the index only saves time; without it the
        files.save_index(data)  # next sync surveys in full


def walk_ahead(files: SyncFilesPort) -> None:
    """Let the files port digest the epic roots the index lists while the database opens.
    The no-op check compares those digests, taken before it reads the stories' states, as
    it does its own: a change on either side in between still shows as a mismatch."""
    index = files.load_index()
    saved = index.get("epics") if index and index.get("format") == INDEX_FORMAT else None
    if not isinstance(saved, dict):
        return
    roots: list[tuple[str, bool, str]] = []
    for prefix, entry in saved.items():
        try:
            root, layout = str(entry[0]), LayoutName(entry[1])
        except (TypeError, ValueError, IndexError, KeyError):
            return  # an index this version cannot read: the check itself will say no
        roots.append((root, LAYOUTS[layout].staged, str(prefix)))
    files.digest_ahead(roots)


def quick_idle(
    ctx: Context, files: SyncFilesPort, store: SyncStorePort, report: SyncReport
) -> bool:
    """True when the index proves nothing changed since the idle sync that wrote it."""
    index = files.load_index()
    if not index or index.get("format") != INDEX_FORMAT or index.get("database") != _database(ctx):
        return False
    saved_epics = index.get("epics")
    saved_stories = index.get("stories")
    if not isinstance(saved_epics, dict) or not isinstance(saved_stories, dict):
        return False
    epics = ctx.store.list_epics()
    if set(saved_epics) != {e.prefix for e in epics}:
        return False
    discovered = files.discover_epic_files([e.root for e in epics])
    if [list(d) for d in discovered] != index.get("discovered"):
        return False
    scanned: dict[str, tuple[str, str]] = {}
    for epic in epics:
        digests = files.digest_epic(
            epic.root, staged=LAYOUTS[epic.layout].staged, prefixes=[epic.prefix]
        )
        if digests is None:
            return False
        path = f"{epic.root}/{files.epic_file_name(epic.prefix)}"
        stat = digests.epic_files.get(path)
        if _epic_entry(epic, (path, *stat) if stat else None) != saved_epics[epic.prefix]:
            return False
        for story_id, place in digests.folders.items():
            if scanned.setdefault(story_id, place) is not place:
                return False  # one ID in two epics' roots: the full survey reports it
    states = store.story_states()
    if not (len(states) == len(scanned) == len(saved_stories)):
        return False
    for story_id, (version, status, blocked_from) in states.items():
        here = scanned.get(story_id)
        if here is None or saved_stories.get(story_id) != [*here, version, status, blocked_from]:
            return False
    report.files = int(index.get("files", 0))
    report.unchanged = int(index.get("unchanged", 0))
    report.by_index = True
    return True
