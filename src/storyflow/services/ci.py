"""``storyflow ci github``: a GitHub Actions workflow that installs storyflow and fails the
build when ``storyflow check`` finds anything or the generated docs are stale."""

from __future__ import annotations

import json
import re

from storyflow import __version__
from storyflow.errors import InvalidInput

WORKFLOW_FILE = ".github/workflows/storyflow.yml"
_SECRET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/*-]+$")


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def github_workflow(
    *,
    python_version: str = "3.12",
    install: str | None = None,
    branch: str = "main",
    database_secret: str | None = None,
    working_directory: str = ".",
) -> str:
    """The workflow YAML (byte-stable for the same arguments)."""
    if database_secret is not None and not _SECRET.match(database_secret):
        raise InvalidInput(
            f"invalid secret name {database_secret!r}",
            hint="a GitHub secret name: letters, digits and underscores",
        )
    if not _BRANCH.match(branch):
        raise InvalidInput(f"invalid branch name {branch!r}", hint="e.g. --branch main")
    command = install or f"pip install 'storyflow=={__version__}'"
    lines = [
        "# storyflow: check the plans and the generated docs on every push and pull request.",
        f"# Written by `storyflow ci github`; save it as {WORKFLOW_FILE}.",
        "name: storyflow",
        "on:",
        "  push:",
        f"    branches: [{_q(branch)}]",
        "  pull_request:",
        "jobs:",
        "  storyflow:",
        "    runs-on: ubuntu-latest",
    ]
    if database_secret:
        lines += [
            "    env:",
            "      # the team database: check compares the files with it",
            f"      STORYFLOW_DATABASE_URL: ${{{{ secrets.{database_secret} }}}}",
        ]
    if working_directory not in ("", "."):
        lines += [
            "    defaults:",
            "      run:",
            f"        working-directory: {_q(working_directory)}",
        ]
    lines += [
        "    steps:",
        "      - uses: actions/checkout@v4",
        "      - uses: actions/setup-python@v5",
        "        with:",
        f"          python-version: {_q(python_version)}",
        "      - name: Install storyflow",
        f"        run: {_q(command)}",
        "      - name: storyflow check",
        "        run: storyflow check",
        "      - name: storyflow docs --check",
        "        run: storyflow docs --check",
    ]
    return "\n".join(lines) + "\n"
