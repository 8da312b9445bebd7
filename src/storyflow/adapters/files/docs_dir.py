"""The reference docs folder on disk: the generated files in it (those with the marker),
written atomically; files without the marker are never touched."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from storyflow.adapters.files.atomic import write_atomic

_HEAD = 600  # the marker sits under the title (Markdown) or first in the JSON


class GeneratedDocs:
    def __init__(self, folder: Path, marker: str) -> None:
        self.folder = folder
        self.marker = marker

    def generated(self) -> dict[str, str]:
        found: dict[str, str] = {}
        if not self.folder.is_dir():
            return found
        for directory, folders, names in os.walk(self.folder):
            folders[:] = [f for f in folders if not f.startswith(".")]
            for name in names:
                path = Path(directory) / name
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                if self.marker in text[:_HEAD]:
                    found[path.relative_to(self.folder).as_posix()] = text
        return found

    def write(self, rel: str, text: str) -> None:
        write_atomic(self.folder / rel, text)

    def remove(self, rel: str) -> None:
        path = self.folder / rel
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        parent = path.parent
        while parent != self.folder and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
