"""Where the story folders are: a walk of ``plans/`` and of every epic's root that finds the
folders named PREFIX-NNN, the story files lying loose outside them, and folders in a story
area that are not named as stories. One directory listing per folder; nothing is parsed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from storyflow.domain.checks import is_loose_story_file, story_ids_in
from storyflow.domain.findings import Finding
from storyflow.domain.layouts import LAYOUTS, STAGES, LayoutName
from storyflow.domain.model import STORY_ID_RE, Epic
from storyflow.services.ports import FilesPort

PLANS_DIR = "plans"
PLANS_DEPTH = 3  # plans/<epic>/<stage>/<ID>
ROOT_DEPTH = 2  # <root>/<stage>/<ID>
# Names that belong only in a story folder (the staged layout's fixed names).
FIXED_NAMES = frozenset(
    name
    for layout in LAYOUTS.values()
    for name in (layout.story_file_pattern, *layout.artifact_patterns.values())
    if "{" not in name
)


@dataclass(kw_only=True)
class StoryFolder:
    id: str
    path: str  # relative to the workspace root
    parent: str
    files: list[str]

    @property
    def prefix(self) -> str:
        return self.id.rsplit("-", 1)[0]


@dataclass(kw_only=True)
class Discovery:
    folders: list[StoryFolder] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def discover(files: FilesPort, epics: Sequence[Epic]) -> Discovery:
    """Every story folder under ``plans/`` and the epics' roots, with what is misplaced."""
    found = Discovery()
    roots = {e.root.strip("/"): e for e in epics}
    staged_roots = {r for r, e in roots.items() if LAYOUTS[e.layout].staged}
    flat_roots = set(roots) - staged_roots
    stage_dirs = {_join(r, s) for r in staged_roots for s in STAGES}
    # A folder that is (or leads to) an epic root is never a misnamed story folder.
    on_the_way = {"/".join(r.split("/")[:n]) for r in roots for n in range(1, r.count("/") + 2)}
    starts = [(PLANS_DIR, PLANS_DEPTH), *((r, ROOT_DEPTH) for r in sorted(roots))]
    seen: set[str] = set()
    for start, depth in starts:
        pending = [(start, 0)]
        while pending:
            current, level = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            listing = files.list_dir(current)
            if listing is None:
                continue
            folders, names = listing
            for name in names:
                if is_loose_story_file(name, FIXED_NAMES):
                    ids = story_ids_in(name)
                    found.findings.append(
                        Finding(
                            code="CHECK_LOOSE_FILE",
                            file=_join(current, name),
                            story=ids[0] if ids else None,
                            message=f"{name} lies in {current}/, outside any story folder",
                        )
                    )
            for name in folders:
                path = _join(current, name)
                if STORY_ID_RE.match(name):
                    sub = files.list_dir(path)
                    found.folders.append(
                        StoryFolder(id=name, path=path, parent=current, files=sub[1] if sub else [])
                    )
                    continue
                if (current in flat_roots or current in stage_dirs) and path not in on_the_way:
                    found.findings.append(
                        Finding(
                            code="CHECK_NAMING",
                            file=path,
                            message=f"folder {name} in the story area {current}/ is not named "
                            "PREFIX-NNN",
                        )
                    )
                if level + 1 <= depth:
                    pending.append((path, level + 1))
    found.folders.sort(key=lambda f: (f.id, f.path))
    return found


def infer_layout(folder: StoryFolder, epic: Epic | None) -> LayoutName:
    """The epic's layout; for a folder no epic claims, what its files and place suggest."""
    if epic is not None:
        return epic.layout
    if LAYOUTS[LayoutName.STAGED].story_file_name(folder.id) in folder.files:
        return LayoutName.STAGED
    if LAYOUTS[LayoutName.FLAT].story_file_name(folder.id) in folder.files:
        return LayoutName.FLAT
    stage = folder.parent.rsplit("/", 1)[-1]
    return LayoutName.STAGED if stage in STAGES else LayoutName.FLAT
