"""The git repository a workspace lives in, through the ``git`` executable."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from storyflow.adapters.files.atomic import write_atomic
from storyflow.errors import UsageError


def _not_a_repository(start: Path, why: str) -> UsageError:
    return UsageError(
        f"{start} is not inside a git work tree: {why}",
        code="NOT_A_GIT_REPOSITORY",
        hint="run git init first, or pass --workspace inside a git work tree",
        details={"path": str(start)},
    )


def _unusable(what: str, hint: str, path: Path) -> UsageError:
    return UsageError(
        what,
        code="GIT_HOOKS_UNUSABLE",
        hint=hint,
        details={"path": str(path)},
    )


class GitRepository:
    def __init__(self, toplevel: Path, hooks_dir: Path) -> None:
        self.toplevel = toplevel
        self.hooks_dir = hooks_dir

    @classmethod
    def find(cls, start: Path) -> GitRepository:
        """The work tree containing ``start``, and its hooks folder (core.hooksPath
        honoured)."""
        try:
            done = subprocess.run(
                ["git", "rev-parse", "--show-toplevel", "--git-path", "hooks"],
                cwd=start,
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
        except FileNotFoundError as exc:
            raise _not_a_repository(start, "git is not installed") from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _not_a_repository(start, str(exc)) from exc
        lines = done.stdout.splitlines()
        if done.returncode != 0 or len(lines) != 2:
            why = (done.stderr.strip().splitlines() or ["git rev-parse failed"])[0]
            raise _not_a_repository(start, f"git says {why.removeprefix('fatal: ')!r}")
        hooks = Path(lines[1])
        return cls(Path(lines[0]), hooks if hooks.is_absolute() else (start / hooks).resolve())

    def hook_path(self, name: str) -> Path:
        return self.hooks_dir / name

    def _check_folder(self) -> None:
        if self.hooks_dir.exists() and not self.hooks_dir.is_dir():
            raise _unusable(
                f"git's hooks folder {self.hooks_dir} is not a folder",
                "move it aside and make it a folder (mkdir), or point git config "
                "core.hooksPath at one",
                self.hooks_dir,
            )

    def read_hook(self, name: str) -> str | None:
        self._check_folder()
        path = self.hook_path(name)
        if path.exists() and not path.is_file():  # a FIFO would block the read
            raise _unusable(
                f"{path} is not a regular file (a folder, pipe or device)",
                "move it out of the way, then run storyflow hooks install again",
                path,
            )
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _unusable(
                f"{path} cannot be read: {exc.strerror or exc}", "fix its permissions", path
            ) from exc

    def write_hook(self, name: str, text: str) -> None:
        path = self.hook_path(name)
        try:
            write_atomic(path, text)
            os.chmod(path, 0o755)
        except OSError as exc:
            raise _unusable(
                f"cannot write {path}: {exc.strerror or exc}",
                "make git's hooks folder writable (or point core.hooksPath at one)",
                path,
            ) from exc

    def backup_hook(self, name: str) -> Path:
        path = self.hook_path(name)
        backup = path.with_name(f"{name}.storyflow-backup")
        serial = 1
        while backup.exists():
            serial += 1
            backup = path.with_name(f"{name}.storyflow-backup.{serial}")
        try:
            os.replace(path, backup)
        except OSError as exc:
            raise _unusable(
                f"cannot move {path} aside: {exc.strerror or exc}",
                "make git's hooks folder writable",
                path,
            ) from exc
        return backup


def tracked_files(workspace: Path, folder: str) -> list[str]:
    """The files under ``folder`` (relative to ``workspace``) that git tracks or has staged,
    relative to ``workspace``; none outside a git work tree or without git."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z", "--", folder],
            cwd=workspace,
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    return [p for p in done.stdout.decode("utf-8", errors="replace").split("\0") if p]


def index_view(workspace: Path) -> dict[str, str]:
    """The files a commit would hold differently from the work tree, as git's index has
    them: workspace-relative path -> staged text, for every file staged (added, copied,
    modified, renamed) or changed in the work tree since it was staged. Two ``git diff``
    calls and one ``git cat-file --batch``; files that are not UTF-8 are left out (the
    check reads them from the work tree and says what is wrong with them)."""
    repo = GitRepository.find(workspace)
    top = repo.toplevel.resolve()
    prefix = os.path.relpath(workspace.resolve(), top)
    prefix = "" if prefix == "." else prefix.replace(os.sep, "/") + "/"

    def git(*args: str, stdin: bytes | None = None) -> bytes:
        try:
            done = subprocess.run(
                ["git", *args], cwd=top, input=stdin, capture_output=True, check=False, timeout=120
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _not_a_repository(workspace, str(exc)) from exc
        if done.returncode != 0:
            why = (done.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[0]
            raise _not_a_repository(workspace, f"git {args[0]} says {why!r}")
        return done.stdout

    names: set[str] = set()
    for args in (("diff", "--cached", "--diff-filter=ACMR"), ("diff",)):
        out = git(*args, "--name-only", "-z", "--no-renames", "--", ".")
        names.update(n.decode(errors="surrogateescape") for n in out.split(b"\0") if n)
    wanted = sorted(n for n in names if n.startswith(prefix) and "\n" not in n)
    if not wanted:
        return {}
    out = git("cat-file", "--batch", stdin="".join(f":{n}\n" for n in wanted).encode())
    view: dict[str, str] = {}
    at = 0
    for name in wanted:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) != 3 or header[1] != b"blob":
            continue  # not in the index (deleted there): the work tree's listing stands
        size = int(header[2])
        blob = out[at : at + size]
        at += size + 1
        try:
            view[name[len(prefix) :]] = blob.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return view
