"""The first step of a sync, read only: which epics there are (the database's, and the
``*.epic.yaml`` files a fresh clone brings), their story folders and files (one ``stat``
each), and what ``sync_files`` recorded. A story whose files all match their records by
size and mtime, whose database version has not moved and whose folder is in its stage
needs nothing: decided here without reading a byte; when that holds for everything, the
sync is idle and takes no write lock.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from operator import itemgetter

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.layouts import LAYOUTS, Layout, legacy_kind, stage_for
from storyflow.domain.model import Epic
from storyflow.domain.statuses import Status
from storyflow.errors import StoryflowError
from storyflow.services.context import Context
from storyflow.services.sync_folders import two_folders
from storyflow.services.sync_ports import (
    EpicFiles,
    ScannedFile,
    StoryFolder,
    StoryItem,
    SyncFilesPort,
    SyncStorePort,
)
from storyflow.services.sync_read import conflict_marker_line, merge_conflict
from storyflow.services.sync_report import Problem, SyncReport


class Classifier:
    """The artifact kind a file name stands for, per layout: fixed names by lookup, stamped
    names by one precompiled pattern (not one regex per story and file)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.fixed: dict[str, ArtifactKind] = {}
        self.patterns: list[tuple[re.Pattern[str], ArtifactKind]] = []
        for kind, pattern in layout.artifact_patterns.items():
            if "{" not in pattern:
                self.fixed[pattern] = kind
                continue
            regex = re.escape(pattern.replace("{id}", "\0").replace("{stamp}", "\1"))
            regex = regex.replace("\0", r"(?P<id>[A-Z][A-Z0-9]{1,11}-\d{3,6})").replace(
                "\1", r"\d{8}-\d{4}(?:-[2-9]|-[1-9]\d+)?"
            )
            self.patterns.append((re.compile(regex), kind))

    def kind(self, name: str, story_id: str) -> ArtifactKind | None:
        if name in self.fixed:
            return self.fixed[name]
        for regex, kind in self.patterns:
            match = regex.fullmatch(name)
            if match:
                return kind if match["id"] == story_id else None
        return legacy_kind(name)


_path = itemgetter(0)  # ScannedFile.path


@dataclass(kw_only=True)
class Survey:
    epics: dict[str, Epic]
    new_epics: list[Epic]
    epic_files: list[EpicFiles]
    stats: dict[str, tuple[int, int, int | None]]  # recorded path -> size, mtime, version
    states: dict[str, tuple[int, str, str | None]]  # story -> (version, status, blocked_from)
    items: list[StoryItem] = field(default_factory=list)  # every story folder, one per story
    new: list[StoryItem] = field(default_factory=list)  # folders the database does not know
    changed: list[StoryItem] = field(default_factory=list)  # known stories to reconcile
    held: set[str] = field(default_factory=set)  # two folders for one ID, …: left alone
    missing: list[str] = field(default_factory=list)  # stories with no folder on disk
    removed: list[str] = field(default_factory=list)  # recorded paths not found
    discovered: list[tuple[str, str]] = field(default_factory=list)  # (prefix, epic file)
    work: int = 0  # files that may need reading

    def idle(self, report: SyncReport) -> bool:
        """Nothing changed on either side since the last sync."""
        if report.problems or self.new or self.changed or self.missing or self.removed:
            return False
        if self.new_epics:
            return False
        for item in self.epic_files:
            scanned = item.scanned
            if scanned is None:
                return False
            if self.stats.get(scanned.path) != (scanned.size, scanned.mtime_ns, item.epic.version):
                return False
        return True


def _unchanged(survey: Survey, item: StoryItem) -> bool:
    """Nothing to do for this story: every file as recorded, the database not moved, the
    folder in its stage. Decided from stat and the survey alone."""
    if item.story_file is None or item.folder is None:
        return False
    stats = survey.stats
    version, status, blocked_from = survey.states[item.story_id]
    story_file = item.story_file
    if stats.get(story_file.path) != (story_file.size, story_file.mtime_ns, version):
        return False
    for scanned, _ in item.artifacts:
        rec = stats.get(scanned.path)
        if rec is None or rec[0] != scanned.size or rec[1] != scanned.mtime_ns:
            return False
    if LAYOUTS[item.epic.layout].staged:
        blocked = Status(blocked_from) if blocked_from else None
        return item.folder.stage == stage_for(Status(status), blocked)
    return True


def survey(ctx: Context, files: SyncFilesPort, store: SyncStorePort, report: SyncReport) -> Survey:
    """Epics, story folders and records, classified; nothing is written."""
    db_epics = {e.prefix: e for e in ctx.store.list_epics()}
    discovered = files.discover_epic_files([e.root for e in db_epics.values()])
    new_epics, new_shas = _new_epics(files, discovered, db_epics, report)
    epics = {**db_epics, **{e.prefix: e for e in new_epics}}
    by_id: dict[str, list[tuple[Epic, StoryFolder]]] = defaultdict(list)
    epic_files: list[EpicFiles] = []
    seen: set[str] = set()
    outside: dict[str, str] = {}  # story folders that lead out of the workspace
    for epic in sorted(epics.values(), key=lambda e: e.prefix):
        layout = LAYOUTS[epic.layout]
        scan = files.scan_epic(epic.root, staged=layout.staged, prefixes=[epic.prefix])
        for path, problem in scan.problems:
            report.problems.append(
                Problem(
                    code="WORKSPACE_UNREADABLE",
                    message=f"{path}: {problem}",
                    hint="fix the file's or folder's permissions",
                    file=path,
                )
            )
        name = files.epic_file_name(epic.prefix)
        epic_file = next((f for f in scan.epic_files if f.name == name), None)
        if epic_file is not None:
            seen.add(epic_file.path)
            report.files += 1
        epic_files.append(
            EpicFiles(
                epic=epic,
                scanned=epic_file,
                new=epic.prefix in new_shas,
                sha256=new_shas.get(epic.prefix),
            )
        )
        for folder in scan.folders:
            by_id[folder.story_id].append((epic, folder))
        outside.update(scan.outside)
    result = Survey(
        epics=epics,
        new_epics=new_epics,
        epic_files=epic_files,
        stats=store.stats(),
        states=store.story_states(),
        discovered=discovered,
    )
    classifiers = {name: Classifier(layout) for name, layout in LAYOUTS.items()}
    for story_id, places in sorted(by_id.items()):
        for _, place in places:
            seen.update(map(_path, place.files))
        if len(places) > 1:
            # A folder moved to another stage while the walk went by lists in both places;
            # the one still there was listed after the move. Two that stay are two folders.
            listed = [f.path for _, f in places]
            places = [p for p in places if files.stat(p[1].path) is not None]
            if len(places) != 1:
                result.held.add(story_id)
                report.problems.append(
                    two_folders(
                        files,
                        store,
                        [_item(e, f, classifiers[e.layout]) for e, f in places],
                        LAYOUTS[places[0][0].layout].story_file_name(story_id),
                        result.stats,
                        result.states.get(story_id),
                    )
                    if places
                    else Problem.left(
                        story_id,
                        listed[0],
                        "VERSION_CONFLICT",
                        f"its folder moved while sync walked the workspace ({', '.join(listed)})",
                    )
                )
                continue
        epic, folder = places[0]
        if folder.path in outside:  # never read from, nor written to, outside the workspace
            result.held.add(story_id)
            report.problems.append(_outside(story_id, folder.path, outside[folder.path]))
            continue
        item = _item(epic, folder, classifiers[epic.layout])
        result.items.append(item)
        count = 1 + len(item.artifacts)
        report.files += count
        if story_id not in result.states:
            result.new.append(item)
            result.work += count
        elif _unchanged(result, item):
            report.unchanged += count
        else:
            result.changed.append(item)
            result.work += count
    present = set(by_id)
    result.missing = sorted(
        s for s in result.states if s not in present and s.rsplit("-", 1)[0] in epics
    )
    result.removed = sorted(set(result.stats) - seen)
    return result


def _outside(story_id: str, path: str, real: str) -> Problem:
    return Problem(
        code="OUTSIDE_WORKSPACE",
        message=f"{path}/ leads outside the workspace (to {real}); {story_id} is left alone",
        hint="replace the symlink with the folder itself: storyflow writes story files only "
        "inside the workspace",
        file=path,
        story=story_id,
    )


def _new_epics(
    files: SyncFilesPort,
    discovered: list[tuple[str, str]],
    db_epics: dict[str, Epic],
    report: SyncReport,
) -> tuple[list[Epic], dict[str, str]]:
    """Epics whose file the workspace has but the database does not (a fresh clone)."""
    found: dict[str, list[str]] = defaultdict(list)
    for prefix, path in discovered:
        found[prefix].append(path)
    new_epics: list[Epic] = []
    new_shas: dict[str, str] = {}
    for prefix, paths in sorted(found.items()):
        epic = db_epics.get(prefix)
        if epic is not None:
            expected = f"{epic.root}/{files.epic_file_name(prefix)}"
            for path in paths:
                if path != expected:
                    report.problems.append(_stray_epic_file(path, epic, expected))
            continue
        if len(paths) > 1:
            report.problems.append(
                Problem(
                    code="DUPLICATE_ID",
                    message=f"epic {prefix} has {len(paths)} epic files: " + ", ".join(paths),
                    hint="keep the one in the epic's root and delete the others",
                    file=paths[0],
                )
            )
            continue
        try:
            loaded = files.load(paths[0])
            report.read += 1
            line = conflict_marker_line(loaded.text)
            if line is not None:
                report.problems.append(merge_conflict(paths[0], line, None))
                continue
            new_epics.append(files.parse_epic(loaded.text, paths[0]))
            report.parsed += 1
            new_shas[prefix] = loaded.sha256
        except StoryflowError as exc:
            report.problems.append(Problem.from_error(exc, file=paths[0]))
    return new_epics, new_shas


def _item(epic: Epic, folder: StoryFolder, classifier: Classifier) -> StoryItem:
    story_name = classifier.layout.story_file_name(folder.story_id)
    story_file: ScannedFile | None = None
    found: list[tuple[ScannedFile, ArtifactKind]] = []
    for scanned in folder.files:
        name = scanned.name
        if name == story_name:
            story_file = scanned
            continue
        kind = classifier.kind(name, folder.story_id)
        if kind is not None and kind is not ArtifactKind.STORY:
            found.append((scanned, kind))
    return StoryItem(
        story_id=folder.story_id,
        epic=epic,
        folder=folder,
        story_file=story_file,
        artifacts=found,
    )


def _stray_epic_file(path: str, epic: Epic, expected: str) -> Problem:
    return Problem(
        code="INVALID_INPUT",
        message=f"{path}: epic {epic.prefix}'s file belongs in its root ({expected})",
        hint="delete the stray copy; storyflow sync keeps the one in the root current",
        file=path,
        warning=True,
    )
