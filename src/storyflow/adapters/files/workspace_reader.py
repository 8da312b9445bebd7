"""Read-only access to the workspace tree by relative path: what ``storyflow check`` walks.

A mixin of ``StoryFiles`` (it needs the same root and size limit); every path is relative to
the workspace root and written with forward slashes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from storyflow.adapters.files.atomic import read_text
from storyflow.domain.artifacts import ArtifactKind


class WorkspaceReader:
    root: Path
    max_bytes: int
    # relative path -> the text to read instead of the work tree's (check --staged: the
    # index's content of the files a commit would hold differently)
    overlay: dict[str, str] | None = None

    def use_overlay(self, texts: dict[str, str]) -> None:
        self.overlay = texts

    def _abs(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def list_dir(self, rel: str) -> tuple[list[str], list[str]] | None:
        """(folders, files) directly in ``rel``, sorted, hidden names left out; None when
        ``rel`` is not a folder. An entry that cannot be followed counts as a file (reading
        it then says why)."""
        try:
            entries = list(os.scandir(self._abs(rel)))
        except (NotADirectoryError, FileNotFoundError):
            return None
        except OSError:
            return None
        folders: list[str] = []
        files: list[str] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            (folders if is_dir else files).append(entry.name)
        return sorted(folders), sorted(files)

    def files_under(self, rel: str, suffix: str) -> list[str]:
        """Every file below ``rel`` whose name ends with ``suffix``, as relative paths."""
        found: list[str] = []
        pending = [rel]
        while pending:
            current = pending.pop()
            listing = self.list_dir(current)
            if listing is None:
                continue
            folders, files = listing
            prefix = f"{current}/" if current else ""
            found.extend(prefix + name for name in files if name.endswith(suffix))
            pending.extend(prefix + name for name in folders)
        return sorted(found)

    def read_rel(self, rel: str) -> str:
        """A UTF-8 file within the size limit; errors name ``rel`` (and the line for UTF-8)."""
        if self.overlay and rel in self.overlay:
            return self.overlay[rel]
        return read_text(self._abs(rel), max_bytes=self.max_bytes, display=rel)

    def outside_workspace(self, rels: list[str]) -> dict[str, str]:
        """Of the folders ``rels``, those that resolve outside the workspace (by a symlink),
        with where they lead. One lstat per folder that is no symlink itself; its parent's
        real path is resolved once per parent."""
        root = os.path.realpath(self.root)
        parents: dict[str, str] = {}
        outside: dict[str, str] = {}
        for rel in rels:
            path = self._abs(rel)
            if os.path.islink(path):
                real = os.path.realpath(path)
            else:
                parent = str(path.parent)
                if parent not in parents:
                    parents[parent] = os.path.realpath(parent)
                real = os.path.join(parents[parent], path.name)
            if real != root and not real.startswith(root + os.sep):
                outside[rel] = real
        return outside

    def exists_rel(self, rel: str) -> bool:
        return os.path.exists(self._abs(rel))

    def parse_artifact(self, raw: str, kind: ArtifactKind, file_name: str, display: str) -> Any:
        from storyflow.adapters.files.story_files import parse_artifact_text

        return parse_artifact_text(raw, kind, file_name, display)
