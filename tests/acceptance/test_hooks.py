"""storyflow hooks install, tested with real `git commit`s in temporary repositories: the
hook blocks a commit whose staged story files break a rule and lets a good one through; an
existing hook is never replaced without --force (and then kept). Also the pre-commit
framework's hook definition."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from storyflow.services import epics
from tests.support import REPO, Result, Workspace, new_story, storyflow_command


class Repo:
    """A git repository around (or at) a workspace, with its own git configuration."""

    def __init__(self, top: Path, ws: Workspace, home: Path) -> None:
        self.top = top
        self.ws = ws
        config = home / "gitconfig"
        config.write_text(
            "[user]\n\tname = Hook Tester\n\temail = hooks@example.com\n"
            "[init]\n\tdefaultBranch = main\n",
            encoding="utf-8",
        )
        self.env = {**ws.env, "GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1"}

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args],
            cwd=self.top,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def storyflow(self, *args: str) -> Result:
        done = subprocess.run(
            [*storyflow_command(), *args],
            cwd=self.ws.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def commit(self, message: str, *paths: str) -> subprocess.CompletedProcess[str]:
        added = self.git("add", "--", *(paths or (".",)))
        assert added.returncode == 0, added.stderr
        return self.git("commit", "-m", message)

    def commits(self) -> int:
        done = self.git("rev-list", "--count", "HEAD")
        return int(done.stdout.strip()) if done.returncode == 0 else 0

    @property
    def hook(self) -> Path:
        return self.top / ".git" / "hooks" / "pre-commit"


def _repo(ws: Workspace, top: Path, tmp_path: Path) -> Repo:
    repo = Repo(top, ws, tmp_path)
    assert repo.git("init", "-q").returncode == 0
    return repo


@pytest.fixture
def repo(workspace: Workspace, tmp_path: Path) -> Repo:
    """A git repository whose top level is the workspace; FLOW-001 and FLOW-002 pending."""
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow")
    new_story(ctx, "FLOW", title="First")
    new_story(ctx, "FLOW", title="Second")
    return _repo(workspace, workspace.root, tmp_path)


STORY = "plans/flow/backlog/FLOW-001/story.yaml"
OTHER = "plans/flow/backlog/FLOW-002/story.yaml"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_hook_blocks_a_bad_commit_and_lets_a_good_one_through(repo: Repo) -> None:
    installed = repo.storyflow("hooks", "install", "--json")
    assert installed.code == 0, installed
    assert installed.json == {"hook": str(repo.hook), "backup": None, "status": "installed"}
    assert repo.hook.stat().st_mode & stat.S_IXUSR
    first = repo.commit("plans")
    assert first.returncode == 0, first.stdout + first.stderr
    assert repo.commits() == 1

    # A hand-edited status: the commit fails and says why.
    story = repo.ws.root / STORY
    _edit(story, "status: pending", "status: completed")
    bad = repo.commit("complete by hand", STORY)
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0, output
    assert f"{STORY}:5: CHECK_STATUS_DRIFT: status is completed in the file, pending" in output
    assert repo.commits() == 1

    # The same file with a good change (the description is the author's) commits.
    assert repo.git("checkout", "HEAD", "--", STORY).returncode == 0
    _edit(story, "description: ''", "description: Wire the schemas into every command.")
    good = repo.commit("describe FLOW-001", STORY)
    assert good.returncode == 0, good.stdout + good.stderr
    assert repo.commits() == 2

    # A loose story file at the root of plans/ is refused too.
    (repo.ws.root / "plans/FLOW-009.md").write_text("# FLOW-009\n", encoding="utf-8")
    loose = repo.commit("a loose story", "plans/FLOW-009.md")
    assert loose.returncode != 0
    assert "plans/FLOW-009.md: CHECK_LOOSE_FILE" in loose.stdout + loose.stderr
    assert repo.git("reset", "-q").returncode == 0
    os.remove(repo.ws.root / "plans/FLOW-009.md")

    # Only what is staged is checked: a broken file left out of the commit does not block it.
    _edit(repo.ws.root / OTHER, "status: pending", "status: uat")
    (repo.ws.root / "notes.txt").write_text("unrelated\n", encoding="utf-8")
    unrelated = repo.commit("notes", "notes.txt")
    assert unrelated.returncode == 0, unrelated.stdout + unrelated.stderr
    assert repo.commits() == 3


def test_the_hook_checks_what_is_staged_not_the_work_tree(repo: Repo) -> None:
    """A bad edit staged and then undone in the work tree only: the commit would hold the
    staged content, so the hook checks that (and a good staged edit hidden behind a bad
    work-tree edit commits)."""
    assert repo.storyflow("hooks", "install").code == 0
    assert repo.commit("plans").returncode == 0
    story = repo.ws.root / STORY
    clean = story.read_text(encoding="utf-8")
    _edit(story, "status: pending", "status: completed")
    assert repo.git("add", "--", STORY).returncode == 0
    story.write_text(clean, encoding="utf-8")  # the work tree is clean again, the index not

    bad = repo.git("commit", "-m", "complete by hand, staged only")

    output = bad.stdout + bad.stderr
    assert bad.returncode != 0, output
    assert f"{STORY}:5: CHECK_STATUS_DRIFT: status is completed in the file, pending" in output
    assert repo.commits() == 1
    assert repo.storyflow("check").code == 0  # the work tree itself is clean
    staged = repo.storyflow("check", "--staged", "--json", STORY)
    assert staged.code == 3 and staged.json["findings"][0]["code"] == "CHECK_STATUS_DRIFT"

    # the other way round: a good edit staged, a bad one left in the work tree
    _edit(story, "description: ''", "description: Wire the schemas in.")
    assert repo.git("add", "--", STORY).returncode == 0
    _edit(story, "status: pending", "status: uat")
    good = repo.git("commit", "-m", "describe FLOW-001")
    assert good.returncode == 0, good.stdout + good.stderr
    assert repo.commits() == 2
    committed = repo.git("show", f"HEAD:{STORY}").stdout
    assert "status: pending" in committed and "Wire the schemas in." in committed


def test_a_hook_storyflow_did_not_write_needs_force_and_is_kept(repo: Repo) -> None:
    repo.hook.parent.mkdir(parents=True, exist_ok=True)
    theirs = "#!/bin/sh\necho their hook\n"
    repo.hook.write_text(theirs, encoding="utf-8")
    refused = repo.storyflow("hooks", "install", "--json")
    assert refused.code == 5, refused
    assert refused.json["error"]["code"] == "HOOK_EXISTS"
    assert "--force" in refused.json["error"]["hint"]
    assert repo.hook.read_text(encoding="utf-8") == theirs

    forced = repo.storyflow("hooks", "install", "--force", "--json")
    assert forced.code == 0, forced
    backup = Path(forced.json["backup"])
    assert forced.json["status"] == "replaced"
    assert backup.read_text(encoding="utf-8") == theirs
    assert "storyflow hooks install" in repo.hook.read_text(encoding="utf-8")
    again = repo.storyflow("hooks", "install")
    assert again.code == 0 and again.stdout.startswith("pre-commit hook unchanged: ")


def test_install_refuses_outside_a_git_repository(workspace: Workspace, tmp_path: Path) -> None:
    outside = Repo(workspace.root, workspace, tmp_path)  # no git init
    result = outside.storyflow("hooks", "install", "--json")
    assert result.code == 2, result
    assert result.json["error"]["code"] == "NOT_A_GIT_REPOSITORY"
    human = outside.storyflow("hooks", "install")
    assert human.code == 2 and "error[NOT_A_GIT_REPOSITORY]" in human.stderr


def test_a_workspace_in_a_subfolder_of_the_repository(workspace: Workspace, tmp_path: Path) -> None:
    ctx = workspace.ctx()
    epics.create_epic(ctx, "FLOW", title="Flow")
    new_story(ctx, "FLOW", title="First")
    repo = _repo(workspace, workspace.root.parent, tmp_path)  # the workspace is ws/ in it
    (repo.top / ".gitignore").write_text("gitconfig\n", encoding="utf-8")
    assert repo.storyflow("hooks", "install").code == 0
    assert repo.commit("plans", "ws", ".gitignore").returncode == 0
    _edit(workspace.root / STORY, "priority: P2", "priority: P0")
    bad = repo.commit("reprioritise by hand", f"ws/{STORY}")
    assert bad.returncode != 0
    output = bad.stdout + bad.stderr  # git shows a hook's output on stderr
    assert f"{STORY}:6: CHECK_FIELD_DRIFT: priority is P0 in the file, P2 in the da" in output
    assert repo.commits() == 1


def test_the_pre_commit_framework_hook_definition() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    [hook] = [h for h in hooks if h["id"] == "storyflow-check"]
    assert hook["entry"] == "storyflow check"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is True
    assert re.search(hook["files"], "plans/flow/backlog/FLOW-001/story.yaml")
    assert not re.search(hook["files"], "src/app.py")


def test_check_says_when_the_hook_was_written_by_an_earlier_storyflow(repo: Repo) -> None:
    """A hook from before `check --staged` checked the work tree: check says so (a note,
    not a finding) until `hooks install` rewrites it; a hook storyflow did not write, or
    none, is not its concern."""

    def hook_state() -> str:
        checked = repo.storyflow("check", "--json")
        assert checked.code == 0, checked
        state: str = checked.json["summary"]["hook"]
        return state

    assert hook_state() == "none"
    assert repo.storyflow("hooks", "install").code == 0
    assert hook_state() == "installed"
    text = repo.hook.read_text(encoding="utf-8")
    repo.hook.write_text(  # another interpreter: still this storyflow's hook
        re.sub(r"(?m)^python=.*$", "python=/opt/other/bin/python3", text), encoding="utf-8"
    )
    assert hook_state() == "installed"
    repo.hook.write_text(text.replace(" check --staged --", " check --"), encoding="utf-8")
    assert hook_state() == "outdated"
    human = repo.storyflow("check")
    assert human.code == 0, human
    assert "note: the pre-commit hook was written by an earlier storyflow" in human.stdout
    assert "storyflow hooks install updates it" in human.stdout
    updated = repo.storyflow("hooks", "install", "--json")
    assert updated.code == 0 and updated.json["status"] == "updated", updated
    assert hook_state() == "installed"
    assert "earlier storyflow" not in repo.storyflow("check").stdout
    repo.hook.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")  # not storyflow's
    assert hook_state() == "none"
