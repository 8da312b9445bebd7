"""The README's "A story from pending to completed" runs as written.

Each line of that block is run with the storyflow executable in a fresh folder holding the
files of ``examples/artifacts/``; the one step the block leaves to the user (writing the
story's reuse plan) is done where its comment says. The walk must end at completed, with
every phase's tokens in the ledger.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

from tests.cli.helpers import run_in

REPO = Path(__file__).resolve().parents[2]
SECTION = "## A story from pending to completed"


def readme_walk() -> list[str]:
    text = (REPO / "README.md").read_text("utf-8")
    section = text[text.index(SECTION) :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the section has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_walk_reaches_completed(tmp_path: Path) -> None:
    for source in (REPO / "examples" / "artifacts").glob("*.yaml"):
        shutil.copy(source, tmp_path / source.name)
    lines = readme_walk()
    assert lines[-1].startswith("storyflow story move FLOW-001 completed")
    for line in lines:
        if line.startswith("#"):
            assert "reuse_plan" in line  # the one step the README leaves to the user
            story = tmp_path / "plans/flow/backlog/FLOW-001/story.yaml"
            text = story.read_text("utf-8")
            assert "reuse_plan: ''" in text
            story.write_text(
                text.replace("reuse_plan: ''", "reuse_plan: Reuses @repo/workflow-schemas."),
                "utf-8",
            )
            continue
        args = shlex.split(line, comments=True)
        assert args[0] == "storyflow", line
        result = run_in(tmp_path, *args[1:])
        assert result.code == 0, f"{line}\n{result.stdout}{result.stderr}"
    shown = run_in(tmp_path, "story", "show", "FLOW-001", "--json")
    assert json.loads(shown.stdout)["status"] == "completed"
    check = run_in(tmp_path, "check")
    assert check.code == 0, check.stdout + check.stderr
