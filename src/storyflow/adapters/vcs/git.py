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

    def read_hook(self, name: str) -> str | None:
        try:
            return self.hook_path(name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None

    def write_hook(self, name: str, text: str) -> None:
        path = self.hook_path(name)
        write_atomic(path, text)
        os.chmod(path, 0o755)

    def backup_hook(self, name: str) -> Path:
        path = self.hook_path(name)
        backup = path.with_name(f"{name}.storyflow-backup")
        serial = 1
        while backup.exists():
            serial += 1
            backup = path.with_name(f"{name}.storyflow-backup.{serial}")
        os.replace(path, backup)
        return backup
