"""What ``storyflow sync`` needs beyond the engine's ports: the sync record store, a scanner
that walks the epics' folders (stat only), and readers for story, artifact and epic files.

``bootstrap.sync_ports`` plugs in the adapters; the value types here are what they exchange.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.model import AgentLogRow, Epic, LedgerEntry, Story


class ScannedFile(NamedTuple):
    """A file found by the scanner: its path relative to the workspace (POSIX) and stat.
    (Named tuples: a sync of 70,000 files makes that many of them and of SyncRecord.)"""

    path: str
    size: int
    mtime_ns: int
    name: str  # the last part of path


@dataclass(frozen=True, slots=True)
class StoryFolder:
    """A folder named like a story ID under an epic's root; ``stage`` is the stage folder it
    sits in (staged layout), or None when it sits directly in the root."""

    story_id: str
    path: str
    stage: str | None
    files: tuple[ScannedFile, ...]


@dataclass(kw_only=True)
class StoryItem:
    """One story folder to sync: its epic, its story file and its artifact files."""

    story_id: str
    epic: Epic
    folder: StoryFolder | None
    story_file: ScannedFile | None
    artifacts: list[tuple[ScannedFile, ArtifactKind]]


@dataclass(frozen=True, kw_only=True)
class EpicFiles:
    """An epic and its epic file as found (``new``: rebuilt from that file by this sync)."""

    epic: Epic
    scanned: ScannedFile | None
    new: bool
    sha256: str | None = None


class EpicDigests(NamedTuple):
    """An epic root as the no-op check sees it: one digest per story folder."""

    folders: dict[str, tuple[str, str]]  # story ID -> (folder path, digest of its files)
    epic_files: dict[str, tuple[int, int]]  # epic file path -> (size, mtime_ns)


@dataclass(frozen=True, kw_only=True)
class EpicScan:
    root: str
    epic_files: tuple[ScannedFile, ...]
    folders: tuple[StoryFolder, ...]
    problems: tuple[tuple[str, str], ...] = ()  # (path, what is wrong), e.g. unreadable
    outside: tuple[tuple[str, str], ...] = ()  # (story folder, where it leads): a symlink


class SyncRecord(NamedTuple):
    """One row of ``sync_files``: a file as of the last sync."""

    path: str
    story_id: str | None
    kind: str | None
    size: int
    mtime_ns: int
    sha256: str
    story_version: int | None


@dataclass(frozen=True, kw_only=True)
class StoryDoc:
    """A story file as parsed: its metadata keys, Token Budget block and Agent Log rows."""

    text: str
    meta: dict[str, Any]
    token_budget: Any
    agent_log: list[dict[str, Any]] | None
    markdown: bool


@dataclass(frozen=True, kw_only=True)
class LoadedFile:
    text: str
    sha256: str


@dataclass(kw_only=True)
class RebuildRows:
    """Everything a bulk import inserts, row by row, in one transaction."""

    at: datetime
    epics: list[Epic] = field(default_factory=list)
    stories: list[Story] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    log_rows: list[tuple[str, list[AgentLogRow]]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # with "kind_row"
    approvals: list[dict[str, Any]] = field(default_factory=list)  # story_id, version, by, …
    ledger: list[tuple[LedgerEntry, str]] = field(default_factory=list)  # (entry, epic)


class SyncStorePort(Protocol):
    def records(self) -> dict[str, SyncRecord]: ...
    def stats(self) -> dict[str, tuple[int, int, int | None]]: ...
    def upsert_records(self, records: Sequence[SyncRecord], at: str) -> None: ...
    def delete_records(self, paths: Iterable[str]) -> None: ...
    def story_states(self) -> dict[str, tuple[int, str, str | None]]: ...
    def epic_versions(self) -> dict[str, int]: ...
    def artifact_hashes(self, story_ids: Iterable[str]) -> dict[tuple[str, str], set[str]]: ...
    def insert_rebuild(self, rows: RebuildRows) -> dict[str, int]: ...
    def replace_story_rows(self, rows: RebuildRows) -> dict[str, int]: ...


class SyncFilesPort(Protocol):
    root: Path

    def discover_epic_files(self, known_roots: Iterable[str]) -> list[tuple[str, str]]: ...
    def scan_epic(self, root: str, *, staged: bool, prefixes: Iterable[str]) -> EpicScan: ...
    def load(self, path: str) -> LoadedFile: ...
    def parse_story(self, text: str, file_name: str, display: str) -> StoryDoc: ...
    def parse_artifact(
        self, text: str, kind: ArtifactKind, file_name: str, display: str
    ) -> Any: ...
    def parse_epic(self, text: str, display: str) -> Epic: ...
    def count_log_rows(self, text: str, file_name: str) -> int: ...
    def epic_file_name(self, prefix: str) -> str: ...
    def render_epic(self, epic: Epic) -> str: ...
    def write(self, path: str, text: str) -> None: ...
    def reset_agent_log(self, path: str) -> None: ...
    def stat(self, path: str) -> ScannedFile | None: ...
    def load_base(self) -> dict[str, Any]: ...
    def save_base(self, data: Mapping[str, Any]) -> None: ...
    def digest_epic(
        self, root: str, *, staged: bool, prefixes: Iterable[str]
    ) -> EpicDigests | None: ...
    def digest_ahead(self, roots: Sequence[tuple[str, bool, str]]) -> None: ...
    def discard_ahead(self) -> None: ...
    def folder_digest(self, files: Iterable[ScannedFile]) -> str: ...
    def load_index(self) -> dict[str, Any] | None: ...
    def save_index(self, data: Mapping[str, Any]) -> None: ...
