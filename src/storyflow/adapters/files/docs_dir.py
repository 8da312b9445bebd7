"""The reference docs folder on disk: the generated files in it (those with the marker),
written atomically; files without the marker are reported (``in_the_way``), never read
beyond their head, and replaced only when the service was told to (``--force``); what is
not a regular file is never opened (a FIFO would block) nor replaced."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from storyflow.adapters.files.atomic import write_atomic
from storyflow.errors import InvalidInput

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
                if not path.is_file():  # a FIFO would block the read; a device never ends
                    continue
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                if self.marker in text[:_HEAD]:
                    found[path.relative_to(self.folder).as_posix()] = text
        return found

    def in_the_way(self, rels: list[str]) -> dict[str, bool]:
        found: dict[str, bool] = {}
        generated: dict[str, str] | None = None
        for rel in rels:
            try:
                mode = os.lstat(self.folder / rel).st_mode
            except FileNotFoundError:
                continue
            except NotADirectoryError:  # a file where a folder of the docs goes
                found[rel] = False
                continue
            # a symlink counts as regular: the rename replaces the link, not its target
            regular = stat.S_ISREG(mode) or stat.S_ISLNK(mode)
            if regular:
                generated = self.generated() if generated is None else generated
                if rel in generated:
                    continue
            found[rel] = regular
        return found

    def write(self, rel: str, text: str) -> None:
        try:
            write_atomic(self.folder / rel, text)
        except OSError as exc:  # a file where a folder should be, no permission, …
            raise InvalidInput(
                f"cannot write {self.folder / rel}: {exc.strerror or exc}",
                hint="check the --output folder: a folder storyflow docs can write into",
                details={"file": str(self.folder / rel)},
            ) from exc

    def remove(self, rel: str) -> None:
        path = self.folder / rel
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        parent = path.parent
        while parent != self.folder and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
