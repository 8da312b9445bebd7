"""``storyflow hooks install``: a git pre-commit hook that runs ``storyflow check --staged``
on the staged files (their content as the index holds it, which is what the commit gets),
so a commit that breaks a rule of the plan fails with the finding.

The hook is a small POSIX shell script that names the Python storyflow was installed with
(falling back to ``storyflow`` on the PATH). An existing hook that storyflow did not write
is never overwritten without ``--force``, and then it is kept as a backup.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Protocol

from storyflow.errors import ConflictError

HOOK_NAME = "pre-commit"
HOOK_MARKER = "# storyflow pre-commit hook (written by storyflow hooks install)"


class GitRepository(Protocol):
    """The repository the workspace lives in."""

    toplevel: Path

    def hook_path(self, name: str) -> Path: ...

    def read_hook(self, name: str) -> str | None: ...

    def write_hook(self, name: str, text: str) -> None:
        """Write the hook, executable."""
        ...

    def backup_hook(self, name: str) -> Path:
        """Move the existing hook aside; return where it went."""
        ...


def hook_script(*, python: str, workspace: str) -> str:
    """The hook: ``storyflow check -- <staged files>`` in ``workspace`` (relative to the
    repository's top level), exiting non-zero (the commit fails) on any finding."""
    where = '"$top"' if workspace in ("", ".") else '"$top"/' + shlex.quote(workspace)
    return f"""#!/bin/sh
{HOOK_MARKER}
# Runs `storyflow check --staged` on the staged files; any finding fails the commit.
# Reinstall: storyflow hooks install. Skip once: git commit --no-verify.
top=$(git rev-parse --show-toplevel) || exit 1
cd "$top" || exit 1
python={shlex.quote(python)}
if [ -x "$python" ]; then
  set -- "$python" -m storyflow
elif command -v storyflow >/dev/null 2>&1; then
  set -- storyflow
else
  echo "storyflow pre-commit: storyflow is not installed (pip install storyflow)" >&2
  exit 1
fi
if [ -z "$(git diff --cached --name-only --diff-filter=ACMRD)" ]; then
  exit 0
fi
git diff --cached --name-only -z --diff-filter=ACMRD |
  xargs -0 "$@" --workspace {where} check --staged --
"""


def _relative(repo: GitRepository, workspace: Path) -> str:
    return os.path.relpath(workspace.resolve(), repo.toplevel.resolve())


def hook_state(repo: GitRepository | None, *, workspace: Path) -> str:
    """``installed``: the pre-commit hook is the one ``hooks install`` writes now (whichever
    Python it names); ``outdated``: an earlier storyflow wrote it (``hooks install`` again
    updates it); ``none``: no repository, no hook, or a hook storyflow did not write."""
    current = None if repo is None else repo.read_hook(HOOK_NAME)
    if repo is None or current is None or HOOK_MARKER not in current:
        return "none"

    def body(text: str) -> list[str]:  # the Python named is the installer's, not a version
        return [line for line in text.splitlines() if not line.startswith("python=")]

    now = hook_script(python="", workspace=_relative(repo, workspace))
    return "installed" if body(current) == body(now) else "outdated"


def install(
    repo: GitRepository, *, workspace: Path, python: str, force: bool = False
) -> dict[str, Any]:
    """Install (or refresh) the pre-commit hook; refuse to replace another hook unless
    ``force``, which keeps it as a backup."""
    script = hook_script(python=python, workspace=_relative(repo, workspace))
    path = repo.hook_path(HOOK_NAME)
    current = repo.read_hook(HOOK_NAME)
    result: dict[str, Any] = {"hook": str(path), "backup": None}
    if current == script:
        return {**result, "status": "unchanged"}
    status = "installed" if current is None else "updated"
    if current is not None and HOOK_MARKER not in current:
        if not force:
            raise ConflictError(
                f"{path} already exists and storyflow did not write it",
                code="HOOK_EXISTS",
                hint="call storyflow check from your hook, or storyflow hooks install --force "
                "(keeps the current hook as a backup)",
                details={"hook": str(path)},
            )
        result["backup"] = str(repo.backup_hook(HOOK_NAME))
        status = "replaced"
    repo.write_hook(HOOK_NAME, script)
    return {**result, "status": status}
