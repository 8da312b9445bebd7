"""Atomic file writes: temp file in the same folder, fsync, rename."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from storyflow.errors import InvalidInput, NotFoundError

MAX_FILE_BYTES_DEFAULT = 1_048_576


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temp file in ``path``'s folder (same file system, so the rename is atomic)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    base = f"{path.parent}/.{path.name}.{os.getpid()}"
    for attempt in range(100):
        tmp = f"{base}.{attempt}.tmp"
        try:
            return os.open(tmp, flags, 0o644), tmp
        except FileExistsError:  # a crashed writer's leftover, or another thread
            continue
    import tempfile

    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def refuse_special(path: Path) -> None:
    """Refuse to rename over anything but a regular file (or a symlink, which the rename
    replaces, not its target): a FIFO, a device (``/dev/null`` as root!), a socket or a
    folder named as the target would be replaced by a regular file. One ``lstat``: about a
    microsecond, against the fsync every write does."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # absent: created (a file where a folder should be fails later, clearly)
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return
    what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, pipe or socket)"
    raise InvalidInput(
        f"{path} is {what}; storyflow only replaces regular files",
        hint="name a regular file (or a path that does not exist yet)",
        details={"file": str(path)},
    )


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never half.
    Anything at ``path`` but a regular file is refused (``refuse_special``)."""
    refuse_special(path)
    try:
        fd, tmp = _temp_beside(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def stage_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to a temp file beside ``path`` and return it; ``publish`` renames it.
    Refused, before anything is written, when ``path`` is not a regular file."""
    refuse_special(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(tmp)


def publish(staged: Path, path: Path) -> None:
    os.replace(staged, path)


def discard(staged: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        staged.unlink()


def _read_regular(path: Path, name: str, max_bytes: int) -> bytes:
    """At most ``max_bytes`` + 1 bytes of a regular file. Opened without blocking and checked
    on the open descriptor: a FIFO would block the command forever and /dev/zero never ends."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(
                f"{name} is not a regular file (a device, pipe or socket)",
                hint="name a file",
                details={"file": name},
            )
        if info.st_size > max_bytes:
            raise InvalidInput(
                f"{name} is {info.st_size} bytes; the limit is {max_bytes}",
                code="FILE_TOO_LARGE",
                hint="split the file, or raise limits.max_file_bytes in storyflow.yaml",
                details={"file": name, "size": info.st_size, "limit": max_bytes},
            )
        return handle.read(max_bytes + 1)


def read_text(path: Path, *, max_bytes: int = MAX_FILE_BYTES_DEFAULT, display: str = "") -> str:
    """Read a UTF-8 text file within a size limit, with errors users can act on."""
    name = display or str(path)
    try:
        data = _read_regular(path, name, max_bytes)
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"{name} does not exist",
            code="FILE_NOT_FOUND",
            hint="check the path",
            details={"file": name},
        ) from exc
    except IsADirectoryError as exc:
        raise InvalidInput(
            f"{name} is a directory, not a file",
            hint="name a file",
            details={"file": name},
        ) from exc
    except PermissionError as exc:
        raise InvalidInput(
            f"{name} cannot be read: permission denied",
            code="WORKSPACE_UNREADABLE",
            hint="fix the file's permissions",
            details={"file": name},
        ) from exc
    except OSError as exc:  # a symlink loop, an I/O error, …
        raise InvalidInput(
            f"{name} cannot be read: {exc.strerror or exc}",
            code="WORKSPACE_UNREADABLE",
            hint="fix or replace the file",
            details={"file": name},
        ) from exc
    if len(data) > max_bytes:  # grew between stat and read
        raise InvalidInput(
            f"{name} is larger than {max_bytes} bytes",
            code="FILE_TOO_LARGE",
            hint="raise limits.max_file_bytes in storyflow.yaml",
            details={"file": name, "limit": max_bytes},
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"{name}:{line}: not UTF-8 text (byte {exc.start})",
            code="NOT_UTF8",
            hint="save the file as UTF-8",
            details={"file": name, "line": line, "offset": exc.start},
        ) from exc
