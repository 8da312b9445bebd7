"""Walking the workspace for sync: ``os.scandir`` and one ``stat`` per file, nothing read.

Two walks: ``discover_epic_files`` looks for ``*.epic.yaml`` (a fresh clone has no database
to say where the epics are), pruning hidden, vendored, stage and story folders;
``scan_epic`` lists an epic's story folders and stats their files.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable

from storyflow.adapters.files.epic_file import SUFFIX
from storyflow.domain.layouts import MAX_ROOT_DEPTH, STAGES, UNWALKED_FOLDERS
from storyflow.services.sync_ports import EpicDigests, EpicScan, ScannedFile, StoryFolder

STORY_DIR = re.compile(r"[A-Z][A-Z0-9]{1,11}-\d{3,6}")
STAGE_NAMES = frozenset(STAGES)


def discover_epic_files(base: str, known_roots: Iterable[str]) -> list[str]:
    """Paths (relative to ``base``) of every ``*.epic.yaml`` in the workspace."""
    found: list[str] = []
    known = {r.strip("/") for r in known_roots}
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        rel, depth = stack.pop()
        folder = f"{base}/{rel}" if rel else base
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            child = f"{rel}/{name}" if rel else name
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if not is_dir:
                if name.endswith(SUFFIX):
                    found.append(child)
                continue
            if name in UNWALKED_FOLDERS or depth >= MAX_ROOT_DEPTH or STORY_DIR.fullmatch(name):
                continue
            if name in STAGE_NAMES and rel in known:
                continue  # a known epic's stage folder holds story folders only
            stack.append((child, depth + 1))
    return sorted(found)


def _files(folder: str, rel: str) -> tuple[list[ScannedFile], list[tuple[str, str]]]:
    """The files of one story folder, stat'ed (the hot loop of a no-op sync: 70,000 files
    for 10,000 stories, so it makes as few calls per file as it can)."""
    files: list[ScannedFile] = []
    problems: list[tuple[str, str]] = []
    make = ScannedFile._make
    prefix = rel + "/"
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue  # hidden, and the atomic writer's temp files
            try:
                if entry.is_dir():
                    continue
                stat = entry.stat()
            except FileNotFoundError:
                continue  # removed or moved since the listing: gone, as far as this scan goes
            except OSError as exc:
                problems.append((prefix + name, exc.strerror or str(exc)))
                continue
            files.append(make((prefix + name, stat.st_size, stat.st_mtime_ns, name)))
    return files, problems


def scan_epic(base: str, root: str, *, staged: bool, prefixes: Iterable[str]) -> EpicScan:
    """The epic files in ``root`` and the story folders of the given prefixes below it:
    ``root/<stage>/<ID>/`` (staged; story folders directly in the root are listed too, with
    no stage) or ``root/<ID>/`` (flat)."""
    wanted = tuple(f"{p}-" for p in prefixes)
    epic_files: list[ScannedFile] = []
    folders: list[StoryFolder] = []
    problems: list[tuple[str, str]] = []
    outside: list[tuple[str, str]] = []
    top = f"{base}/{root}"
    inside = _Inside(base)
    top_out = inside.leads_out(top)  # the epic root itself a symlink to elsewhere
    try:
        entries = list(os.scandir(top))
    except FileNotFoundError:
        return EpicScan(root=root, epic_files=(), folders=())
    except OSError as exc:
        return EpicScan(
            root=root, epic_files=(), folders=(), problems=((root, exc.strerror or str(exc)),)
        )

    def story_folder(
        path: str, rel: str, name: str, stage: str | None, out: str | None = None
    ) -> None:
        if out is not None:
            outside.append((rel, out))
        try:
            files, trouble = _files(path, rel)
        except FileNotFoundError:
            return  # moved (a projection took it to its stage folder) since the listing
        except OSError as exc:
            problems.append((rel, exc.strerror or str(exc)))
            return
        problems.extend(trouble)
        folders.append(StoryFolder(name, rel, stage, tuple(files)))

    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        rel = f"{root}/{name}"
        if not is_dir:
            if name.endswith(SUFFIX):
                stat = entry.stat()
                epic_files.append(ScannedFile(rel, stat.st_size, stat.st_mtime_ns, name))
            continue
        if STORY_DIR.fullmatch(name):
            if name.startswith(wanted):
                story_folder(entry.path, rel, name, None, inside.of(entry, top_out))
            continue
        if not staged:
            continue
        try:
            children = list(os.scandir(entry.path))
        except OSError as exc:
            problems.append((rel, exc.strerror or str(exc)))
            continue
        stage_out = inside.of(entry, top_out)
        for child in children:
            if child.name.startswith(wanted) and STORY_DIR.fullmatch(child.name):
                try:
                    if not child.is_dir():
                        continue
                except OSError:
                    continue
                out = inside.of(child, stage_out)
                story_folder(child.path, f"{rel}/{child.name}", child.name, name, out)
    return EpicScan(
        root=root,
        epic_files=tuple(epic_files),
        folders=tuple(folders),
        problems=tuple(problems),
        outside=tuple(outside),
    )


class _Inside:
    """Whether a folder resolves outside the workspace. Whether an entry is a symlink comes
    with the listing, so a walk without symlinks costs one realpath per epic root."""

    def __init__(self, base: str) -> None:
        self.base = os.path.realpath(base)

    def leads_out(self, path: str) -> str | None:
        """Where ``path`` leads, when that is outside the workspace."""
        real = os.path.realpath(path)
        return None if real == self.base or real.startswith(self.base + os.sep) else real

    def of(self, entry: os.DirEntry[str], parent_out: str | None) -> str | None:
        """Where the folder ``entry`` leads outside the workspace (its parent's leading
        out: ``parent_out``), or None."""
        if entry.is_symlink():
            return self.leads_out(entry.path)
        if parent_out is not None:
            return f"{parent_out}/{entry.name}"
        return None


# ---- the no-op fast path: one digest per story folder -------------------------------------


def folder_digest(entries: Iterable[tuple[str, int, int]]) -> str:
    """A digest of a story folder's files as ``_files`` lists them: (name, size, mtime_ns)
    of each, in name order. Equal digests: no file added, removed, resized or touched."""
    return _hash([f"{n}\x00{s}\x00{m}" for n, s, m in entries])


def _hash(entries: list[str]) -> str:
    """The digest of a folder's "name NUL size NUL mtime" entries, in name order."""
    entries.sort()
    text = "\x01".join(entries)
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()


def _digest(folder: str) -> str:
    entries: list[str] = []
    with os.scandir(folder) as listing:
        for entry in listing:
            name = entry.name
            if name[0] == "." or entry.is_dir():
                continue
            stat = entry.stat()
            entries.append(f"{name}\x00{stat.st_size}\x00{stat.st_mtime_ns}")
    return _hash(entries)  # as folder_digest, without a tuple per file


def digest_epic(
    base: str, root: str, *, staged: bool, prefixes: Iterable[str]
) -> EpicDigests | None:
    """What ``scan_epic`` finds, one digest per story folder instead of a record per file
    (the same folders and files, by the same rules). None when the full scan must decide:
    a folder cannot be read, or two folders claim one story."""
    wanted = tuple(f"{p}-" for p in prefixes)
    folders: dict[str, tuple[str, str]] = {}
    epic_files: dict[str, tuple[int, int]] = {}
    top = f"{base}/{root}"
    try:
        entries = list(os.scandir(top))
    except FileNotFoundError:
        return EpicDigests(folders, epic_files)
    except OSError:
        return None
    try:
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            rel = f"{root}/{name}"
            if not entry.is_dir():
                if name.endswith(SUFFIX):
                    stat = entry.stat()
                    epic_files[rel] = (stat.st_size, stat.st_mtime_ns)
                continue
            if STORY_DIR.fullmatch(name):
                if name.startswith(wanted):
                    if name in folders or entry.is_symlink():  # the full survey decides
                        return None
                    folders[name] = (rel, _digest(entry.path))
                continue
            if not staged:
                continue
            with os.scandir(entry.path) as children:
                listed = list(children)
            for child in listed:
                cname = child.name
                if cname.startswith(wanted) and STORY_DIR.fullmatch(cname) and child.is_dir():
                    if cname in folders or child.is_symlink():  # the full survey decides
                        return None
                    folders[cname] = (f"{rel}/{cname}", _digest(child.path))
    except OSError:
        return None
    return EpicDigests(folders, epic_files)
