"""Story folders on disk: where they are, what is in them, and the story file projection.

Staged epics keep ``<root>/<stage>/<ID>/``; the folder moves when the status's stage changes.
Flat epics keep ``<root>/<ID>/``. Writes are atomic; moves are a single rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat as stat_module
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from storyflow.adapters.files.atomic import discard, publish, read_text, stage_atomic, write_atomic
from storyflow.adapters.files.workspace_reader import WorkspaceReader
from storyflow.config import STATE_DIR
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.layouts import LAYOUTS, STAGES, Layout, legacy_kind, stage_for
from storyflow.errors import (
    ConflictError,
    InvalidInput,
    NotFoundError,
    StoryflowError,
    UsageError,
)
from storyflow.services.ports import PendingWritesPort

if TYPE_CHECKING:  # annotations only: domain.model's dataclasses cost a read ~9 ms to define
    from storyflow.adapters.files.storydoc import ParsedStory, StoryFormat
    from storyflow.domain.model import AgentLogRow, Epic, Story

    # (story, metadata to render, optional keys to drop, Token Budget block or None)
    Projection = tuple[Story, dict[str, Any], frozenset[str], dict[str, Any] | None]


def _storydoc() -> ModuleType:
    """storydoc needs PyYAML (~15 ms to import): only commands that touch story files pay."""
    from storyflow.adapters.files import storydoc

    return storydoc


# Story files this process checked or wrote, by (mtime_ns, size): a long-running process
# (a worker) re-parses a story file only when someone else changed it.
_KNOWN: dict[Path, tuple[int, int]] = {}
# The last parse of each story file this process made, by path, with the text it parsed:
# reading a file again costs a read and a comparison, parsing it again a thousand times more.
# The run engine parses a story file before a write transaction, so that the guards inside
# it (on SQLite every other writer waits for it to end) find the parse here.
_PARSED: dict[Path, tuple[str, ParsedStory]] = {}
_PARSED_MAX = 512
# Lock folders this process found writable (checked once, before its first commit).
_LOCKS_WRITABLE: set[Path] = set()

ENGINE_FILES = frozenset({"METRICS.yaml", "trace.jsonl"})
_OTHER_ID = re.compile(r"[A-Z][A-Z0-9]{1,11}-\d{3,6}")


@dataclass
class PendingWrites:
    """Files staged before a commit and published (or discarded) after it."""

    staged: list[tuple[Path, Path]] = field(default_factory=list)

    def add(self, target: Path, text: str) -> None:
        # Refuse now, inside the transaction: after the commit it would be too late.
        if target.is_dir():
            raise InvalidInput(
                f"{target} is a directory, not a file",
                hint="move the directory out of the way",
                details={"file": str(target)},
            )
        if not os.access(target, os.W_OK) and os.path.lexists(target):
            raise not_writable(target)  # the rename after the commit would fail on it
        try:
            staged = stage_atomic(target, text)
        except OSError as exc:  # e.g. a file where the story folder should be
            if cannot_write(exc):  # the folder, or the nearest one it would be made in
                raise not_writable(nearest_existing(target.parent)) from exc
            raise InvalidInput(
                f"cannot write {target}: {exc.strerror or exc}",
                hint="move what is in the way",
                details={"file": str(target)},
            ) from exc
        self.staged.append((staged, target))

    def publish(self) -> None:
        for temp, target in self.staged:
            publish(temp, target)
        self.staged.clear()

    def discard(self) -> None:
        for temp, _ in self.staged:
            discard(temp)
        self.staged.clear()


def nearest_existing(path: Path) -> Path:
    """``path``, or while it does not exist the nearest folder above it that does: where
    a write that makes the missing folders must be allowed."""
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def not_writable(path: Path, *, shown: str | None = None) -> UsageError:
    """The error for a file or folder of the workspace this user may not write (permission
    bits, ``chattr +i``, a read-only mount): refused before the commit, or said after it."""
    where = shown or str(path)
    return UsageError(
        f"storyflow cannot write {where}",
        code="WORKSPACE_NOT_WRITABLE",
        hint=f"let this user write {where} (permissions, chattr -i, a read-only mount), then "
        "run the command again",
        details={"path": where},
    )


def cannot_write(exc: OSError) -> bool:
    """Whether a failed write was refused by permissions or the file system (not a bug)."""
    return isinstance(exc, PermissionError) or exc.errno == errno.EROFS


def sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class StoryFiles(WorkspaceReader):
    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._root_real: str | None = None  # the root with its symlinks resolved

    def pending(self) -> PendingWrites:
        return PendingWrites()

    # ---- locations ------------------------------------------------------------------------

    def layout(self, epic: Epic) -> Layout:
        return LAYOUTS[epic.layout]

    def epic_root(self, epic: Epic) -> Path:
        return self.root / epic.root

    def write_epic_file(self, pending: PendingWritesPort, epic: Epic) -> Path:
        """Stage ``<root>/<PREFIX>.epic.yaml``: storyflow sync rebuilds the epic from it."""
        from storyflow.adapters.files import epic_file

        path = self.epic_root(epic) / epic_file.file_name(epic.prefix)
        pending.add(path, epic_file.render(epic))
        return path

    def expected_dir(self, epic: Epic, story: Story) -> Path:
        base = self.epic_root(epic)
        if self.layout(epic).staged:
            return base / stage_for(story.status, story.blocked_from) / story.id
        return base / story.id

    def candidates(self, epic: Epic, story_id: str) -> list[Path]:
        base = self.epic_root(epic)
        if self.layout(epic).staged:
            return [
                base / stage / story_id for stage in STAGES if (base / stage / story_id).is_dir()
            ]
        return [base / story_id] if (base / story_id).is_dir() else []

    def locate(self, epic: Epic, story: Story) -> Path:
        """The story's folder: the expected one, or wherever a stage move left it."""
        expected = self.expected_dir(epic, story)
        if expected.is_dir():
            return expected
        found = self._one_folder(epic, story.id)
        return found[0] if found else expected

    def _one_folder(self, epic: Epic, story_id: str) -> list[Path]:
        """The story's folders among the stages, refused when there are two or more."""
        found = self.candidates(epic, story_id)
        if len(found) > 1:
            raise ConflictError(
                f"{story_id} has {len(found)} folders: " + ", ".join(self.rel(p) for p in found),
                code="DUPLICATE_ID",
                hint="keep one folder per story; merge and delete the others",
            )
        return found

    def holder(self, epic: Epic, story_id: str) -> Path | None:
        """The story file of another story folder that says it is ``story_id`` (a folder
        renamed by hand), or None. Asked only when the story has no folder: it reads every
        story file of the epic that names the id."""
        layout = self.layout(epic)
        base = self.epic_root(epic)
        parents = [base / stage for stage in STAGES] if layout.staged else [base]
        for parent in parents:
            try:
                entries = sorted(os.scandir(parent), key=lambda entry: entry.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name == story_id or not entry.is_dir():
                    continue
                for name in dict.fromkeys(
                    (layout.story_file_name(entry.name), layout.story_file_name(story_id))
                ):
                    path = Path(entry.path) / name
                    if self._says_it_is(path, story_id):
                        return path
        return None

    def _says_it_is(self, path: Path, story_id: str) -> bool:
        try:
            text = read_text(path, max_bytes=self.max_bytes, display=self.rel(path))
            if story_id not in text:
                return False
            fmt = _storydoc().format_for(path.name)
            parsed = _storydoc().parse(text, fmt, source=self.rel(path))
        except (StoryflowError, OSError):
            return False
        return bool(parsed.meta.get("id") == story_id)

    def _refuse_renamed(self, epic: Epic, story_id: str, folder: Path) -> None:
        """Refuse to write a story file anew when the story's folder is missing and another
        folder holds its story file: the copy would sit beside the text people wrote."""
        if folder.is_dir():
            return
        holder = self.holder(epic, story_id)
        if holder is None:
            return
        from storyflow.domain.checks import rename_back  # domain.model: ~9 ms

        shown = self.rel(holder)
        raise InvalidInput(
            f"{story_id} has no folder on disk, but {shown} says it is {story_id}",
            code="ARTIFACT_STORY_MISMATCH",
            hint=f"{rename_back(shown, story_id)}, then run the command again",
            details={"story": story_id, "file": shown, "folder": self.rel(folder)},
        )

    def story_file(self, epic: Epic, story: Story) -> Path:
        return self.locate(epic, story) / self.layout(epic).story_file_name(story.id)

    def rel(self, path: Path) -> str:
        text, root = str(path), str(self.root)
        if text.startswith(root + "/") and "/." not in text[len(root) :]:
            return text[len(root) + 1 :]  # the common case: no symlinks to resolve
        try:
            real = Path(os.path.realpath(path))  # resolve() raises on a symlink loop
            return real.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    # ---- story file -----------------------------------------------------------------------

    def format(self, epic: Epic) -> StoryFormat:
        fmt: StoryFormat = _storydoc().format_for(self.layout(epic).story_file_pattern)
        return fmt

    def new_story_file(
        self,
        pending: PendingWritesPort,
        epic: Epic,
        story: Story,
        *,
        meta: dict[str, Any],
        token_budget: dict[str, Any],
        log: list[AgentLogRow],
        body: dict[str, str] | None = None,
    ) -> Path:
        folder = self.expected_dir(epic, story)
        existing = self.candidates(epic, story.id)
        if existing:
            raise ConflictError(
                f"a folder for {story.id} already exists: {self.rel(existing[0])}",
                code="DUPLICATE_ID",
                hint="remove or rename the stray folder, or import it with storyflow sync",
            )
        path = folder / self.layout(epic).story_file_name(story.id)
        text = _storydoc().render_new(
            self.format(epic),
            meta=meta,
            token_budget=token_budget,
            log=log,
            tz_label=epic.timezone,
            body=body,
        )
        pending.add(path, text)
        return path

    def read_story(self, epic: Epic, story: Story) -> tuple[Path, str, ParsedStory]:
        """The story file's text and parse (the same text as this process last parsed
        there: the parse it made then)."""
        path = self.story_file(epic, story)
        text = read_text(path, max_bytes=self.max_bytes, display=self.rel(path))
        known = _PARSED.get(path)
        if known is not None and known[0] == text:
            return path, text, known[1]
        parsed = _storydoc().parse(text, self.format(epic), source=self.rel(path))
        _remember(path, text, parsed)
        return path, text, parsed

    def log_count(self, epic: Epic, story: Story) -> int | None:
        """How many Agent Log rows the story file holds (a line scan, no parse); None when
        there is no story file."""
        path = self.story_file(epic, story)
        try:
            text = read_text(path, max_bytes=self.max_bytes, display=self.rel(path))
        except NotFoundError:
            return None
        count: int = _storydoc().count_log_rows(text, self.format(epic))
        return count

    def warm(self, epic: Epic, story: Story) -> None:
        """Read and parse the story file now, so that a guard run later (inside a write
        transaction) finds the parse in memory; a file that cannot be read is left for that
        guard to report."""
        with contextlib.suppress(StoryflowError, OSError):
            self.read_story(epic, story)

    @contextmanager
    def lock(self, story_id: str) -> Iterator[None]:
        """Serialise projections of one story across processes: each re-reads the committed
        state under the lock, so the last writer renders the newest state."""
        folder = self.root / STATE_DIR / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{story_id}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _check_lock_dir(self) -> None:
        """Refuse now (before a commit) when ``lock`` could not run after it: the locks
        folder, or while it does not exist the nearest folder it would be made in (a fresh
        clone has no .storyflow/ yet), must be writable. One access() per process: a folder
        found writable is not checked again."""
        folder = self.root / STATE_DIR / "locks"
        if folder in _LOCKS_WRITABLE:
            return
        usable = os.W_OK | os.X_OK
        if not os.access(folder, usable):
            where = nearest_existing(folder)
            if where == folder or not os.access(where, usable):
                raise UsageError(
                    f"storyflow cannot write in {where} (the story file locks)",
                    code="WORKSPACE_NOT_WRITABLE",
                    hint=f"let this user write {where} (permissions, chattr -i, a read-only "
                    "mount), then run the command again",
                    details={"folder": str(where)},
                )
        _LOCKS_WRITABLE.add(folder)

    def after_commit(self, write: Callable[[], object]) -> None:
        write()  # outside a run's transaction a service calls this after its own commit

    def check_renderable(self, epic: Epic, story: Story, moving_to: Story | None = None) -> None:
        """Refuse now (before a commit) a story file the projection could not rewrite, a
        story folder that leads out of the workspace, and, for a change that takes the story
        to ``moving_to`` (its state after the change), a stage folder it could not move to.
        Skips the parse when the file is as this process last read or wrote it."""
        self._check_lock_dir()
        folder = self.locate(epic, story)
        self._check_inside(folder)
        if moving_to is not None:
            target = self.expected_dir(epic, moving_to)
            if target != folder:  # a stage change (no system call when the stage stays)
                self._check_destination(story.id, folder, target)
                self._one_folder(epic, story.id)  # which one would move? (a copy elsewhere)
                self._check_writable(folder.parent)  # the rename takes it out of there
                self._check_writable(target.parent)  # and puts it here
        path = folder / self.layout(epic).story_file_name(story.id)
        try:
            stat = path.stat()
        except FileNotFoundError:
            if path.is_symlink():
                self.read_story(epic, story)  # a dangling link: read_text says why
            self._refuse_renamed(epic, story.id, folder)
            self._check_writable(folder)
            return  # the projection writes it anew
        except OSError:
            stat = None
        else:
            # The projection writes a temp file in the folder and renames it over the file:
            # two access() calls, so an immutable or read-only one is refused now.
            if not os.access(folder, os.W_OK | os.X_OK):
                self._check_writable(folder)
            if not os.access(path, os.W_OK):
                raise not_writable(path, shown=self.rel(path))
        if stat is not None and _KNOWN.get(path) == (stat.st_mtime_ns, stat.st_size):
            return
        display = self.rel(path)
        if stat is not None and stat_module.S_ISDIR(stat.st_mode):
            raise InvalidInput(
                f"{display} is a directory, not a file",
                hint=f"move the directory out of the way (storyflow story render {story.id} "
                "then writes the story file)",
                details={"file": display},
            )
        text = read_text(path, max_bytes=self.max_bytes, display=display)
        if "<<<<<<<" in text or ">>>>>>>" in text:
            from storyflow.domain.checks import conflict_line  # domain.model: ~9 ms

            line = conflict_line(text)
            if line is not None:  # the projection would splice its rows in among them
                raise InvalidInput(
                    f"{display}:{line}: unresolved merge-conflict marker",
                    code="MERGE_CONFLICT",
                    hint="resolve the merge (keep one side, remove the <<<<<<< ======= >>>>>>> "
                    "lines), then run the command again",
                    details={"file": display, "line": line},
                )
        _storydoc().check(text, self.format(epic), source=display)
        if stat is not None:
            _KNOWN[path] = (stat.st_mtime_ns, stat.st_size)

    def _check_writable(self, folder: Path) -> None:
        """Refuse a folder the projection must write in (or, while it does not exist, the
        nearest folder it would be made in) that this user cannot write. A stage folder
        another story's projection removes meanwhile (it just emptied it) is looked for
        again, not taken for one this user may not write."""
        for _ in range(5):
            where = nearest_existing(folder)
            if os.access(where, os.W_OK | os.X_OK):
                return
            if os.path.lexists(where):
                break
        raise not_writable(where, shown=self.rel(where))

    def _check_inside(self, folder: Path) -> None:
        """Refuse a story folder that resolves outside the workspace (a symlink, of the
        folder or of a stage folder): storyflow writes only inside the workspace."""
        real = os.path.realpath(folder)
        root = self._real_root()
        if real == root or real.startswith(root + os.sep):
            return
        shown = self.rel(folder)
        raise InvalidInput(
            f"{shown} leads outside the workspace (to {real})",
            code="OUTSIDE_WORKSPACE",
            hint="replace the symlink with the folder itself: storyflow writes story files "
            "only inside the workspace",
            details={"folder": shown, "target": real},
        )

    def _real_root(self) -> str:
        if self._root_real is None:
            self._root_real = os.path.realpath(self.root)
        return self._root_real

    def _check_destination(self, story_id: str, folder: Path, target: Path) -> None:
        """Refuse a stage move whose destination is taken: anything there (the rename would
        fail on a file; a folder, even an empty one, would be taken for the story's own and
        leave two), or a stage folder that is a file."""
        taken: Path | None = None
        try:
            os.lstat(target)
            taken = target
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            taken = target.parent  # a file where the stage folder should be
        if taken is not None:
            shown = self.rel(taken)
            raise ConflictError(
                f"{story_id} cannot move to {self.rel(target)}: {shown} is already there",
                code="FOLDER_OCCUPIED",
                hint=f"move or remove {shown}, then run the command again "
                f"(the story's folder is {self.rel(folder)})",
                details={"story": story_id, "path": shown, "folder": self.rel(folder)},
            )
        self._check_inside(target)

    def project(
        self,
        epic: Epic,
        story_id: str,
        *,
        state: Callable[[], Projection | None],
        rows_after: Callable[[int], list[AgentLogRow]],
        keep: frozenset[str] = frozenset(),
    ) -> Path | None:
        """Under the story's lock: read the committed ``state()``, move the folder to its
        stage, re-render the engine-owned parts of the file and append the log rows
        (``rows_after(n)``) the file does not have yet. The front matter keys in ``keep``
        stay as the file has them."""
        with self.lock(story_id):
            current_state = state()
            if current_state is None:
                return None
            snapshot = getattr(rows_after, "snapshot", None)  # services/projection.py _LogGap
            try:
                return self._project(epic, current_state, rows_after, keep, snapshot)
            except OSError as exc:
                if not cannot_write(exc):
                    raise
                story = current_state[0]
                path = self.story_file(epic, story)
                raise not_writable(path, shown=f"{self.rel(path)} (or its folder)") from exc

    def _project(
        self,
        epic: Epic,
        projection: Projection,
        rows_after: Callable[[int], list[AgentLogRow]],
        keep: frozenset[str],
        snapshot: Callable[[str], str | None] | None = None,
    ) -> Path:
        story, meta, remove, token_budget = projection
        expected = self.expected_dir(epic, story)
        current = self.locate(epic, story)
        if current != expected and current.is_dir():
            self._check_destination(story.id, current, expected)  # taken since the check
            _move_folder(current, expected)
            _remove_empty(current.parent, stop=self.epic_root(epic))
        path = expected / self.layout(epic).story_file_name(story.id)
        fmt = self.format(epic)
        is_file = path.is_file()
        if not is_file and os.path.lexists(path):
            read_text(path, max_bytes=self.max_bytes, display=self.rel(path))  # says why not
        base = None
        if is_file:
            base = read_text(path, max_bytes=self.max_bytes, display=self.rel(path))
        else:
            self._refuse_renamed(epic, story.id, expected)  # its text is elsewhere
            if snapshot is not None:
                base = snapshot(self.rel(expected))  # the file is lost: its last submitted text
                keep = frozenset()
        if base is not None:
            text = _storydoc().project(
                base,
                fmt,
                meta={k: v for k, v in meta.items() if k not in keep} if keep else meta,
                remove=remove - keep,
                token_budget=token_budget,
                new_rows=rows_after(_storydoc().count_log_rows(base, fmt)),
                tz_label=epic.timezone,
            )
        else:
            text = _storydoc().render_new(
                fmt,
                meta=meta,
                token_budget=token_budget or {},
                log=rows_after(0),
                tz_label=epic.timezone,
            )
        if base is not None and "\r\n" in base:
            text = _crlf(text)  # keep the line ends the file was written with
        write_atomic(path, text)
        stat = path.stat()
        _KNOWN[path] = (stat.st_mtime_ns, stat.st_size)
        return path

    # ---- artifacts ------------------------------------------------------------------------

    def folder_files(self, epic: Epic, story: Story) -> list[str]:
        folder = self.locate(epic, story)
        if not folder.is_dir():
            return []
        with os.scandir(folder) as entries:
            return sorted(
                entry.name
                for entry in entries
                if _is_file(entry) and not entry.name.startswith(".")
            )

    def discover(self, epic: Epic, story: Story, kind: ArtifactKind) -> Path | None:
        """The newest file in the story folder that stands for ``kind`` (convention first)."""
        layout = self.layout(epic)
        folder = self.locate(epic, story)
        names = self.folder_files(epic, story)
        conventional = sorted(
            (n for n in names if layout.match(n, story.id) is kind),
            key=lambda n: (layout.stamp_key(n, story.id), n),
        )
        if conventional:
            return folder / conventional[-1]
        legacy = sorted(n for n in names if legacy_kind(n) is kind)
        return folder / legacy[-1] if legacy else None

    def naming_problems(self, epic: Epic, story: Story) -> list[str]:
        layout = self.layout(epic)
        problems = []
        for name in self.folder_files(epic, story):
            if name in ENGINE_FILES or layout.match(name, story.id) is not None:
                continue
            old = legacy_kind(name)
            if old is not None:
                problems.append(f"{name} is a legacy name for {old.value}")
            else:
                problems.append(f"{name} does not follow the {layout.name.value} layout")
        return problems

    def check_ownership(self, epic: Epic, story: Story, source: Path) -> None:
        """Refuse a file that lives in, or is named for, another story."""
        names = {m for m in _OTHER_ID.findall(source.name) if m != story.id}
        real = Path(os.path.realpath(source))  # unlike resolve(), no error on a symlink loop
        parents = {p.name for p in real.parents if _OTHER_ID.fullmatch(p.name)}
        others = sorted(names | (parents - {story.id}))
        if others:
            raise InvalidInput(
                f"{self.rel(source)} belongs to {others[0]}, not {story.id}",
                code="ARTIFACT_STORY_MISMATCH",
                hint=f"submit it for {others[0]}, or write {story.id}'s own artifact",
                details={"file": self.rel(source), "story": story.id, "belongs_to": others[0]},
            )

    def read_artifact(self, source: Path, kind: ArtifactKind, display: str) -> tuple[str, Any]:
        raw = read_text(source, max_bytes=self.max_bytes, display=display)
        return raw, parse_artifact_text(raw, kind, source.name, display)


def parse_artifact_text(raw: str, kind: ArtifactKind, file_name: str, display: str) -> Any:
    """Parse an artifact file into the mapping its schema validates."""
    return _storydoc().parse_artifact(raw, kind, file_name, display)


def _is_file(entry: os.DirEntry[str]) -> bool:
    """A regular file, or a symlink that cannot be followed (reading it then says why)."""
    try:
        return entry.is_file()
    except OSError:
        return entry.is_symlink()


def _crlf(text: str) -> str:
    """``text`` with every line ending in CRLF: a story file saved with CRLF (an editor on
    Windows, git's core.autocrlf) keeps them, instead of mixing in the LF lines rendered."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def _move_folder(source: Path, target: Path) -> None:
    """Rename a story folder into its stage folder. Another story's projection may remove
    that stage folder at the same moment (it just emptied it): make it again and retry."""
    for tries_left in range(5, -1, -1):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            return
        except (FileNotFoundError, FileExistsError):
            if not tries_left or not source.is_dir():
                raise


def _remove_empty(folder: Path, *, stop: Path) -> None:
    try:
        if folder != stop and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass


def _remember(path: Path, text: str, parsed: ParsedStory) -> None:
    _PARSED.pop(path, None)  # to the end: the oldest goes first
    _PARSED[path] = (text, parsed)
    if len(_PARSED) > _PARSED_MAX:
        with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread's
            del _PARSED[next(iter(_PARSED))]
