"""The JSONL trace: every committed event row, one line each, per workspace and per story.

Lines are appended with O_APPEND in a single write per file and batch, so concurrent
processes never interleave inside a line. Only committed events arrive here (the store
hands them over after the commit), so the trace never shows what was rolled back.

Every line carries ``ts``, ``type``, ``trace_id`` (32 hex: the process, or the run that
passed its own), ``span_id`` (16 hex, one per event), ``parent_span_id`` when the event
belongs to a larger span (an agent call inside a phase run), ``story``, ``epic``, ``actor``
and the event's payload fields (``phase``, ``run_id``, ``duration_ms``, ``tokens``, ...).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TRACE_DIR = "trace"
WORKSPACE_TRACE = "workspace.jsonl"
# Top-level fields of a line; a payload field with one of these names is kept as payload_<name>.
RESERVED = ("ts", "type", "trace_id", "span_id", "parent_span_id", "story", "epic", "actor")


def trace_line(event: dict[str, Any]) -> str:
    """One event as a JSON line with the DESIGN §6 fields at the top level."""
    payload = dict(event.get("payload") or {})
    line: dict[str, Any] = {
        "ts": event["created_at"],
        "type": event["type"],
        "trace_id": event["trace_id"],
        "span_id": event["span_id"],
    }
    parent = event.get("parent_span_id") or payload.pop("parent_span_id", None)
    if parent:
        line["parent_span_id"] = parent
    line["story"] = event.get("story_id")
    line["epic"] = event.get("epic")
    line["actor"] = event.get("actor")
    for key, value in payload.items():
        line[f"payload_{key}" if key in RESERVED else key] = value
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"


class JsonlTracer:
    def __init__(self, state_dir: Path, *, warn: Callable[[str], None] | None = None) -> None:
        self.folder = state_dir / TRACE_DIR
        # Lines are written after the commit, so a trace that cannot be written must not fail
        # the command: the event rows are in the database. ``warn`` hears it, once.
        self.warn = warn
        self._warned = False

    @property
    def workspace_file(self) -> Path:
        return self.folder / WORKSPACE_TRACE

    def story_file(self, story_id: str) -> Path:
        return self.folder / "stories" / f"{story_id}.jsonl"

    def record(self, events: list[dict[str, Any]]) -> None:
        lines = [trace_line(e) for e in events]
        by_story: dict[str, list[str]] = defaultdict(list)
        for event, line in zip(events, lines, strict=True):
            if event.get("story_id"):
                by_story[event["story_id"]].append(line)
        try:
            self._append(self.workspace_file, "".join(lines))
            for story_id, story_lines in by_story.items():
                self._append(self.story_file(story_id), "".join(story_lines))
        except OSError as exc:
            if self.warn is None:
                raise
            if not self._warned:
                self._warned = True
                self.warn(
                    f"cannot write the trace ({exc.filename or self.folder}: "
                    f"{exc.strerror or exc}): the events are recorded in the database, the "
                    f"trace lacks them (let this user write {self.folder}: permissions, "
                    "chattr -i, a read-only mount)"
                )

    @staticmethod
    def _append(path: Path, text: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)

    # ---- reading --------------------------------------------------------------------------

    def path_for(self, story_id: str | None) -> Path:
        return self.workspace_file if story_id is None else self.story_file(story_id)

    def read(self, story_id: str | None) -> Iterator[str]:
        """The complete lines of a trace (the story's, or the workspace's when None), with
        their newline stripped; a missing file has none."""
        path = self.path_for(story_id)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            for raw in handle:
                if raw.endswith(b"\n"):  # a line still being appended is not read yet
                    yield raw[:-1].decode("utf-8", errors="replace")

    def follow(
        self,
        story_id: str | None,
        *,
        poll: float = 0.2,
        stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[str]:
        """Every line, then each new one as it is appended, until ``stop()`` (or the caller
        is interrupted). Tolerates the file not existing yet."""
        path = self.path_for(story_id)
        offset = 0
        partial = b""
        while not stop():
            try:
                with path.open("rb") as handle:
                    if os.fstat(handle.fileno()).st_size < offset:
                        offset, partial = 0, b""  # truncated or replaced: start over
                    handle.seek(offset)
                    chunk = handle.read()
                    offset = handle.tell()
            except FileNotFoundError:
                chunk = b""
            if chunk:
                data = partial + chunk
                *complete, partial = data.split(b"\n")
                for raw in complete:
                    yield raw.decode("utf-8", errors="replace")
                continue
            time.sleep(poll)


def parse_line(text: str) -> dict[str, Any] | None:
    """A trace line as a dict, or None when it is not a JSON object."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
