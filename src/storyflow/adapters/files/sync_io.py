"""Files as ``storyflow sync`` sees them: walk, stat, read and hash, parse (the C loader only,
never a round-trip parser), write, and the last-sync base kept in ``.storyflow/sync/``.

The base is the editable fields of every story and epic file as of the last sync: the
common ancestor a three-way comparison needs to tell which side changed a datum. It lives
in the local state folder (each clone has its own working copy, hence its own ancestor).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from storyflow.adapters.files import epic_file, storydoc, sync_scan
from storyflow.adapters.files.atomic import read_text, write_atomic
from storyflow.adapters.files.walk_ahead import Answers, WalkAhead
from storyflow.adapters.files.yamlio import splice_top_level
from storyflow.config import STATE_DIR
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.model import Epic
from storyflow.services.sync_ports import (
    EpicDigests,
    EpicScan,
    LoadedFile,
    ScannedFile,
    StoryDoc,
)

BASE_FILE = "sync/base.json"
BASE_FORMAT = 1
INDEX_FILE = "sync/index.json"


class SyncFiles:
    """The ``SyncFilesPort`` adapter over a workspace folder."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._base = str(root)
        self._ahead: WalkAhead | None = None
        self._answers: Answers = {}
        self._index: dict[str, Any] | None = None

    # ---- walking --------------------------------------------------------------------------

    def discover_epic_files(self, known_roots: Iterable[str]) -> list[tuple[str, str]]:
        """(prefix, path) of every epic file in the workspace."""
        found = []
        for path in sync_scan.discover_epic_files(self._base, known_roots):
            prefix = epic_file.prefix_of(path.rsplit("/", 1)[-1])
            if prefix:
                found.append((prefix, path))
        return found

    def scan_epic(self, root: str, *, staged: bool, prefixes: Iterable[str]) -> EpicScan:
        return sync_scan.scan_epic(self._base, root, staged=staged, prefixes=prefixes)

    def digest_epic(
        self, root: str, *, staged: bool, prefixes: Iterable[str]
    ) -> EpicDigests | None:
        wanted = list(prefixes)
        if self._ahead is not None:
            self._answers, self._ahead = self._ahead.take(), None
        key = (root, staged, wanted[0]) if len(wanted) == 1 else None
        if key is not None and key in self._answers:
            return self._answers.pop(key)
        return sync_scan.digest_epic(self._base, root, staged=staged, prefixes=wanted)

    def digest_ahead(self, roots: Sequence[tuple[str, bool, str]]) -> None:
        """Start digesting these (root, staged, prefix) in a child process, for the
        ``digest_epic`` calls to come (walk_ahead.py); a no-op where it cannot fork."""
        self.discard_ahead()
        self._ahead = WalkAhead.start(self._base, roots)

    def discard_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead.discard()
            self._ahead = None
        self._answers = {}

    def folder_digest(self, files: Iterable[ScannedFile]) -> str:
        return sync_scan.folder_digest((f.name, f.size, f.mtime_ns) for f in files)

    def stat(self, path: str) -> ScannedFile | None:
        try:
            stat = os.stat(f"{self._base}/{path}")
        except OSError:
            return None
        return ScannedFile(path, stat.st_size, stat.st_mtime_ns, path.rsplit("/", 1)[-1])

    # ---- reading --------------------------------------------------------------------------

    def load(self, path: str) -> LoadedFile:
        """The file's text (UTF-8, within the size limit) and the sha256 of its bytes."""
        try:
            with open(f"{self._base}/{path}", "rb") as handle:
                data = handle.read(self.max_bytes + 1)
            if len(data) <= self.max_bytes:
                text = data.decode("utf-8")
                return LoadedFile(text=text, sha256=hashlib.sha256(data).hexdigest())
        except (OSError, UnicodeDecodeError):
            pass  # read_text says what is wrong, as every other reader does
        text = read_text(self.root / path, max_bytes=self.max_bytes, display=path)
        return LoadedFile(text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())

    def parse_story(self, text: str, file_name: str, display: str) -> StoryDoc:
        fmt = storydoc.format_for(file_name)
        parsed = storydoc.parse(text, fmt, source=display)
        return StoryDoc(
            text=text,
            meta=parsed.meta,
            token_budget=parsed.token_budget,
            agent_log=parsed.agent_log,
            markdown=fmt is storydoc.StoryFormat.MARKDOWN,
        )

    def parse_artifact(self, text: str, kind: ArtifactKind, file_name: str, display: str) -> Any:
        return storydoc.parse_artifact(text, kind, file_name, display)

    def parse_epic(self, text: str, display: str) -> Epic:
        root = display.rsplit("/", 1)[0] if "/" in display else "."
        return epic_file.parse(text, display, root)

    def count_log_rows(self, text: str, file_name: str) -> int:
        return storydoc.count_log_rows(text, storydoc.format_for(file_name))

    # ---- writing --------------------------------------------------------------------------

    def epic_file_name(self, prefix: str) -> str:
        return epic_file.file_name(prefix)

    def render_epic(self, epic: Epic) -> str:
        return epic_file.render(epic)

    def write(self, path: str, text: str) -> None:
        write_atomic(self.root / path, text)

    def reset_agent_log(self, path: str) -> None:
        """Empty the story file's Agent Log, so the next projection writes every row the
        database holds (``--prefer db`` after rows were edited or removed by hand)."""
        target = self.root / path
        text = read_text(target, max_bytes=self.max_bytes, display=path)
        write_atomic(target, without_log_rows(text, storydoc.format_for(target.name)))

    # ---- the last-sync base ---------------------------------------------------------------

    def load_base(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / STATE_DIR / BASE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != BASE_FORMAT:
            return {}
        entries = data.get("files")
        return entries if isinstance(entries, dict) else {}

    def save_base(self, data: Mapping[str, Any]) -> None:
        text = json.dumps({"format": BASE_FORMAT, "files": data}, separators=(",", ":"))
        write_atomic(self.root / STATE_DIR / BASE_FILE, text)

    def load_index(self) -> dict[str, Any] | None:
        """The no-op index (services/sync_quick.py), or None when there is none or it does
        not parse: the full survey then decides, as without an index."""
        if self._index is None:  # read once per command (10,000 stories: ~10 ms)
            try:
                path = self.root / STATE_DIR / INDEX_FILE
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            self._index = data if isinstance(data, dict) else None
        return self._index

    def save_index(self, data: Mapping[str, Any]) -> None:
        write_atomic(self.root / STATE_DIR / INDEX_FILE, json.dumps(data, separators=(",", ":")))
        self._index = None


_LOG_HEADING = re.compile(r"^##\s+Agent Log\s*$", re.I)
_HEADING = re.compile(r"^#{1,2}\s")


def without_log_rows(text: str, fmt: storydoc.StoryFormat) -> str:
    """The story file with an empty Agent Log: ``agent_log: []`` (YAML), or the section's
    table removed (Markdown); everything else is left as written."""
    if fmt is storydoc.StoryFormat.YAML:
        return splice_top_level(text, {"agent_log": []})
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    inside = False
    for line in lines:
        if _LOG_HEADING.match(line):
            inside = True
        elif inside and _HEADING.match(line):
            inside = False
        if inside and line.lstrip().startswith("|"):
            if out and not out[-1].strip() and not (len(out) > 1 and out[-2].lstrip()[:1] == "|"):
                out.pop()  # the blank line before the table: the projection writes it again
            continue
        out.append(line)
    return "".join(out)
