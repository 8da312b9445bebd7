"""Bad input in files: a clear error with its stable code, and nothing written.

Each test runs the command a user would run, checks the exit status and the error code in
both output modes (``--json`` body on stdout, one ``storyflow: error[CODE]`` line on
stderr, never a traceback), and checks that files and database are the same afterwards.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Seeded
from tests.cli.helpers import assert_same, capture, refuse, unchanged
from tests.support import Workspace

# ---- helpers --------------------------------------------------------------------------------


def put(ws: Workspace, relative: str, text: str) -> str:
    """Write ``text`` (as is) and return the absolute path, for ``artifact submit … PATH``."""
    return str(ws.write(relative, text))


def put_bytes(ws: Workspace, relative: str, data: bytes) -> str:
    path = ws.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic alias bomb: ``levels`` levels of ``width`` aliases (9**9 leaves)."""
    lines = ['lol0: &lol0 "lol"']
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*lol{level - 1}"] * width)
        lines.append(f"lol{level}: &lol{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def replace_in(ws: Workspace, relative: str, old: str, new: str) -> None:
    path = ws.root / relative
    text = path.read_text(encoding="utf-8")
    assert old in text, (relative, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


GOOD_ELABORATION = "verdict: PASS\nsummary: scoped\nacceptance_criteria:\n  - it works\n"
FLAT_ELAB = "inbox/ELAB-REVI-001-20250101-1200.md"


# ---- malformed YAML ---------------------------------------------------------------------------

MALFORMED_YAML = {
    "unclosed flow sequence": (
        "verdict: PASS\nsummary: scoped\nacceptance_criteria: [it works\nnotes: x\n",
        4,
    ),
    "bad indentation": ("verdict: PASS\nsummary: scoped\n  acceptance_criteria: x\n", 3),
    "tab indentation": ("verdict: PASS\nacceptance_criteria:\n\t- it works\n", 3),
    "mapping value in plain scalar": ("verdict: PASS\nsummary: a: b: c\n", 2),
    "unclosed quote": ('verdict: PASS\nsummary: "scoped\n', 3),
    "two documents": ("verdict: PASS\n---\nverdict: FAIL\n", 2),
    "python tag": ("verdict: !!python/object/apply:os.system ['true']\n", 1),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_YAML))
def test_malformed_yaml_artifact_names_file_and_line(seeded: Seeded, case: str) -> None:
    ws = seeded.ws
    text, line = MALFORMED_YAML[case]
    path = put(ws, "inbox/elaboration.yaml", text)
    with unchanged(ws):
        error = refuse(
            ws, "artifact", "submit", "FLOW-001", "elaboration", path, code="INVALID_YAML"
        )
    assert error["message"].startswith(f"inbox/elaboration.yaml:{line}: malformed YAML"), error
    assert error["details"] == {"file": "inbox/elaboration.yaml", "line": line}


def test_malformed_yaml_discovered_in_the_story_folder(seeded: Seeded) -> None:
    """Without PATH the conventional file in the story folder is read; its name is reported."""
    ws = seeded.ws
    relative = f"{seeded.folder('FLOW-001')}/elaboration.yaml"
    put(ws, relative, "verdict: PASS\nsummary: [scoped\n")
    with unchanged(ws):
        error = refuse(ws, "artifact", "submit", "FLOW-001", "elaboration", code="INVALID_YAML")
    assert error["message"].startswith(f"{relative}:3: malformed YAML"), error
    assert error["details"]["file"] == relative


def test_top_level_must_be_a_mapping(seeded: Seeded) -> None:
    ws = seeded.ws
    path = put(ws, "inbox/elaboration.yaml", "- verdict: PASS\n- summary: scoped\n")
    with unchanged(ws):
        error = refuse(
            ws, "artifact", "submit", "FLOW-001", "elaboration", path, code="INVALID_YAML"
        )
    assert "inbox/elaboration.yaml" in error["message"]
    assert "mapping" in error["message"]


def test_malformed_yaml_is_refused_by_validate_too(seeded: Seeded) -> None:
    """``artifact validate`` reports the same error (it never writes anything)."""
    ws = seeded.ws
    put(ws, "inbox/elaboration.yaml", "verdict: PASS\nsummary: [scoped\n")
    with unchanged(ws):
        error = refuse(
            ws,
            "artifact",
            "validate",
            "inbox/elaboration.yaml",
            "--kind",
            "elaboration",
            code="INVALID_YAML",
            via="run",
        )
    assert error["message"].startswith("inbox/elaboration.yaml:3: malformed YAML"), error


# ---- Markdown front matter --------------------------------------------------------------------

FRONT_MATTER = {
    "no front matter": ("# Elaboration\n\nverdict: PASS\n", None),
    "front matter never closed": ("---\nverdict: PASS\nsummary: scoped\n\n# Body\n", None),
    "fence not on the first line": ("\n---\nverdict: PASS\n---\n# Body\n", None),
    "broken YAML in front matter": ("---\nverdict: PASS\nsummary: : :\n  - x\n---\n# B\n", 3),
    "unclosed sequence in front matter": (
        "---\nverdict: PASS\nsummary: scoped\nacceptance_criteria: [a\n---\n# B\n",
        5,
    ),
    "front matter is a list": ("---\n- verdict\n- PASS\n---\n# Body\n", None),
}


@pytest.mark.parametrize("case", sorted(FRONT_MATTER))
def test_markdown_artifact_front_matter(seeded: Seeded, case: str) -> None:
    ws = seeded.ws
    text, line = FRONT_MATTER[case]
    path = put(ws, FLAT_ELAB, text)
    with unchanged(ws):
        error = refuse(
            ws, "artifact", "submit", "REVI-001", "elaboration", path, code="INVALID_YAML"
        )
    assert error["details"]["file"] == FLAT_ELAB
    assert error["message"].startswith(FLAT_ELAB)
    if line is not None:
        assert error["message"].startswith(f"{FLAT_ELAB}:{line}: malformed YAML"), error
        assert error["details"]["line"] == line


# ---- story files made malformed by hand -----------------------------------------------------

STAGED_STORY_DAMAGE = {
    "malformed YAML": ("reuse_plan: Reuses @repo/shared.", "reuse_plan: [Reuses @repo/shared."),
    "malformed engine-owned key": ("title: Second", "title: [Second"),
    "not a mapping": ("id: FLOW-002", "- id: FLOW-002"),
}


@pytest.mark.parametrize("case", sorted(STAGED_STORY_DAMAGE))
def test_malformed_story_file_refuses_elaboration(seeded: Seeded, case: str) -> None:
    ws = seeded.ws
    story_file = seeded.story_file("FLOW-002")
    replace_in(ws, story_file, *STAGED_STORY_DAMAGE[case])
    with unchanged(ws):
        error = refuse(ws, "story", "move", "FLOW-002", "in-elaboration", code="GUARD_FAILED")
    assert story_file in error["message"], error
    assert [f["guard"] for f in error["details"]["failures"]] == ["story-file-valid"]


FLAT_STORY_DAMAGE = {
    "front matter removed": ("---\nid: REVI-001", "id: REVI-001"),
    "front matter broken": ("title: Flat one", "title: [Flat one"),
    "front matter never closed": ("---\n\n# REVI-001", "\n# REVI-001"),
}


@pytest.mark.parametrize("case", sorted(FLAT_STORY_DAMAGE))
def test_malformed_markdown_story_file_refuses_elaboration(seeded: Seeded, case: str) -> None:
    ws = seeded.ws
    story_file = seeded.story_file("REVI-001")
    replace_in(ws, story_file, *FLAT_STORY_DAMAGE[case])
    with unchanged(ws):
        error = refuse(ws, "story", "move", "REVI-001", "in-elaboration", code="GUARD_FAILED")
    assert story_file in error["message"], error


def test_malformed_story_file_line_is_named(seeded: Seeded) -> None:
    ws = seeded.ws
    story_file = seeded.story_file("FLOW-002")
    replace_in(ws, story_file, "reuse_plan: Reuses", "reuse_plan: [Reuses")
    lines = (ws.root / story_file).read_text(encoding="utf-8").splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if text.startswith("reuse_plan: ["))
    with unchanged(ws):
        error = refuse(ws, "story", "move", "FLOW-002", "in-elaboration", code="GUARD_FAILED")
    assert f"{story_file}:" in error["message"]
    assert "malformed YAML" in error["message"]
    # the parser reports the line where it gave up: at or after the broken one
    reported = int(error["message"].split(f"{story_file}:")[1].split(":")[0])
    assert reported >= line


@pytest.mark.parametrize(
    ("story_id", "damage"),
    [
        ("FLOW-002", ("title: Second", "title: [Second")),
        ("FLOW-002", ("reuse_plan: Reuses", "reuse_plan: [Reuses")),
        ("REVI-001", ("---\nid: REVI-001", "id: REVI-001")),
        ("REVI-001", ("title: Flat one", "title: [Flat one")),
    ],
    ids=["yaml-owned-key", "yaml-free-text", "md-no-front-matter", "md-broken-front-matter"],
)
@pytest.mark.parametrize(
    "command",
    [
        ("story", "block", "{id}", "--reason", "waiting"),
        ("story", "move", "{id}", "cancelled", "--reason", "dropped"),
        ("story", "move", "{id}", "in-elaboration", "--force", "--reason", "override"),
        ("story", "update", "{id}", "--priority", "P1"),
        ("token", "log", "{id}", "elaboration", "--input", "10", "--output", "5"),
    ],
    ids=["block", "cancel", "force", "update", "token-log"],
)
def test_commands_that_rewrite_a_malformed_story_file_refuse(
    seeded: Seeded, story_id: str, damage: tuple[str, str], command: tuple[str, ...]
) -> None:
    """Every command re-renders the story file after its change; a story file that cannot be
    parsed refuses the change up front instead of committing it and then failing (or
    silently rewriting the user's broken text)."""
    ws = seeded.ws
    story_file = seeded.story_file(story_id)
    replace_in(ws, story_file, *damage)
    args = [part.format(id=story_id) for part in command]
    with unchanged(ws):
        error = refuse(ws, *args, code="INVALID_YAML")
    assert story_file in error["message"], error


# ---- not UTF-8 --------------------------------------------------------------------------------

NOT_UTF8 = {
    "latin-1": (b"verdict: PASS\nsummary: caf\xe9\n", 2),
    "utf-16 with BOM": ("verdict: PASS\n".encode("utf-16"), 1),
    "truncated multibyte": (b"verdict: PASS\nsummary: \xe2\x82\n", 2),
    "overlong encoding": (b"verdict: PASS\nsummary: \xc0\xaf\n", 2),
}


@pytest.mark.parametrize("case", sorted(NOT_UTF8))
def test_non_utf8_artifact(seeded: Seeded, case: str) -> None:
    ws = seeded.ws
    data, line = NOT_UTF8[case]
    path = put_bytes(ws, "inbox/elaboration.yaml", data)
    with unchanged(ws):
        error = refuse(ws, "artifact", "submit", "FLOW-001", "elaboration", path, code="NOT_UTF8")
    assert error["message"].startswith(f"inbox/elaboration.yaml:{line}: not UTF-8"), error
    assert error["details"]["file"] == "inbox/elaboration.yaml"
    assert error["details"]["line"] == line


def test_non_utf8_markdown_artifact(seeded: Seeded) -> None:
    ws = seeded.ws
    path = put_bytes(ws, FLAT_ELAB, b"---\nverdict: PASS\nsummary: na\xefve\n---\n# Body\n")
    with unchanged(ws):
        error = refuse(ws, "artifact", "submit", "REVI-001", "elaboration", path, code="NOT_UTF8")
    assert error["details"]["line"] == 3


@pytest.mark.parametrize("story_id", ["FLOW-002", "REVI-001"])
def test_non_utf8_story_file(seeded: Seeded, story_id: str) -> None:
    ws = seeded.ws
    story_file = ws.root / seeded.story_file(story_id)
    story_file.write_bytes(story_file.read_bytes() + b"\n<!-- caf\xe9 -->\n")
    with unchanged(ws):
        error = refuse(ws, "story", "move", story_id, "in-elaboration", code="GUARD_FAILED")
        assert "not UTF-8" in error["message"], error
        error = refuse(ws, "story", "block", story_id, "--reason", "waiting", code="NOT_UTF8")
        assert error["details"]["file"] == seeded.story_file(story_id)
        refuse(
            ws,
            "token",
            "log",
            story_id,
            "elaboration",
            "--input",
            "1",
            "--output",
            "1",
            code="NOT_UTF8",
        )


# ---- too large --------------------------------------------------------------------------------

LIMIT = 8000


def set_limit(ws: Workspace, limit: int) -> None:
    replace_in(ws, "storyflow.yaml", "max_file_bytes: 1048576", f"max_file_bytes: {limit}")


def oversized_elaboration(size: int) -> str:
    text = GOOD_ELABORATION + "notes: |\n"
    while len(text.encode()) < size:
        text += "  a line of notes that makes the file big\n"
    return text


def test_oversized_artifact_limit_from_storyflow_yaml(seeded: Seeded) -> None:
    ws = seeded.ws
    set_limit(ws, LIMIT)
    for name in ws.snapshot():  # the story files themselves are within the limit
        assert (ws.root / name).stat().st_size < LIMIT, name
    path = put(ws, "inbox/elaboration.yaml", oversized_elaboration(LIMIT + 1))
    size = Path(path).stat().st_size
    with unchanged(ws):
        error = refuse(
            ws, "artifact", "submit", "FLOW-001", "elaboration", path, code="FILE_TOO_LARGE"
        )
    assert error["details"] == {"file": "inbox/elaboration.yaml", "size": size, "limit": LIMIT}
    assert str(LIMIT) in error["message"]


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_an_artifact_that_is_not_a_regular_file_is_refused(
    seeded: Seeded, tmp_path: Path, special: str
) -> None:
    """A named pipe blocked the command until a writer came; /dev/zero has no end."""
    ws = seeded.ws
    path = special
    if special == "fifo":
        path = str(tmp_path / "elaboration.yaml")
        os.mkfifo(path)
    with unchanged(ws):
        error = refuse(
            ws, "artifact", "submit", "FLOW-001", "elaboration", path, code="INVALID_INPUT"
        )
        assert "not a regular file" in error["message"]
        error = refuse(ws, "artifact", "validate", path, "--kind", "plan", code="INVALID_INPUT")
        assert "not a regular file" in error["message"]


def test_artifact_of_exactly_the_limit_is_accepted(seeded: Seeded) -> None:
    ws = seeded.ws
    set_limit(ws, LIMIT)
    head = GOOD_ELABORATION + "notes: "
    path = put(ws, "inbox/elaboration.yaml", head + "x" * (LIMIT - len(head) - 1) + "\n")
    assert Path(path).stat().st_size == LIMIT
    result = ws.cli("artifact", "submit", "FLOW-001", "elaboration", path, "--json")
    assert result.code == 0, result


def test_oversized_artifact_limit_from_environment(seeded: Seeded) -> None:
    ws = seeded.ws
    path = put(ws, "inbox/elaboration.yaml", oversized_elaboration(LIMIT + 1))
    with unchanged(ws):
        error = refuse(
            ws,
            "artifact",
            "submit",
            "FLOW-001",
            "elaboration",
            path,
            code="FILE_TOO_LARGE",
            via="env",
            env={"STORYFLOW_MAX_FILE_BYTES": str(LIMIT)},
        )
    assert error["details"]["limit"] == LIMIT


def test_oversized_markdown_artifact(seeded: Seeded) -> None:
    ws = seeded.ws
    set_limit(ws, LIMIT)
    body = "---\nverdict: PASS\nsummary: scoped\n---\n# Notes\n" + "words " * LIMIT
    path = put(ws, FLAT_ELAB, body)
    with unchanged(ws):
        refuse(ws, "artifact", "submit", "REVI-001", "elaboration", path, code="FILE_TOO_LARGE")


@pytest.mark.parametrize("story_id", ["FLOW-002", "REVI-001"])
def test_oversized_story_file(seeded: Seeded, story_id: str) -> None:
    ws = seeded.ws
    set_limit(ws, LIMIT)
    story_file = ws.root / seeded.story_file(story_id)
    padding = "\n".join(f"# padding line {n}" for n in range(LIMIT // 10))
    story_file.write_text(story_file.read_text(encoding="utf-8") + padding + "\n", encoding="utf-8")
    with unchanged(ws):
        error = refuse(ws, "story", "move", story_id, "in-elaboration", code="GUARD_FAILED")
        assert "bytes; the limit is" in error["message"], error
        refuse(
            ws,
            "token",
            "log",
            story_id,
            "elaboration",
            "--input",
            "1",
            "--output",
            "1",
            code="FILE_TOO_LARGE",
        )
        refuse(ws, "story", "update", story_id, "--priority", "P1", code="FILE_TOO_LARGE")


# ---- alias bombs and deep nesting -------------------------------------------------------------


def test_alias_bomb_artifact_is_refused_quickly(seeded: Seeded) -> None:
    ws = seeded.ws
    bomb = billion_laughs()
    assert len(bomb) < 1000  # small on disk, 9**9 nodes expanded
    path = put(ws, "inbox/elaboration.yaml", GOOD_ELABORATION + bomb)
    with unchanged(ws):
        started = time.monotonic()
        error = refuse(
            ws, "artifact", "submit", "FLOW-001", "elaboration", path, code="YAML_TOO_COMPLEX"
        )
        elapsed = time.monotonic() - started
    assert elapsed < 5, f"the alias bomb took {elapsed:.1f}s to refuse"
    assert error["details"]["file"] == "inbox/elaboration.yaml"


def test_alias_bomb_subprocess_returns_quickly(seeded: Seeded) -> None:
    ws = seeded.ws
    path = put(ws, "inbox/elaboration.yaml", GOOD_ELABORATION + billion_laughs())
    with unchanged(ws):
        started = time.monotonic()
        result = ws.run("artifact", "submit", "FLOW-001", "elaboration", path, "--json", timeout=30)
        elapsed = time.monotonic() - started
    assert result.code == 7, result
    assert result.json["error"]["code"] == "YAML_TOO_COMPLEX"
    assert elapsed < 10, f"the alias bomb took {elapsed:.1f}s to refuse"


def test_alias_bomb_in_markdown_front_matter(seeded: Seeded) -> None:
    ws = seeded.ws
    path = put(ws, FLAT_ELAB, "---\n" + GOOD_ELABORATION + billion_laughs() + "---\n# Body\n")
    with unchanged(ws):
        refuse(ws, "artifact", "submit", "REVI-001", "elaboration", path, code="YAML_TOO_COMPLEX")


def test_alias_bomb_in_story_file(seeded: Seeded) -> None:
    ws = seeded.ws
    story_file = ws.root / seeded.story_file("FLOW-002")
    story_file.write_text(
        story_file.read_text(encoding="utf-8") + billion_laughs(), encoding="utf-8"
    )
    with unchanged(ws):
        error = refuse(ws, "story", "move", "FLOW-002", "in-elaboration", code="GUARD_FAILED")
        assert "alias bomb" in error["message"], error
        refuse(ws, "story", "block", "FLOW-002", "--reason", "x", code="YAML_TOO_COMPLEX")


def test_alias_bomb_in_storyflow_yaml(seeded: Seeded) -> None:
    ws = seeded.ws
    before = capture(ws)
    config = ws.root / "storyflow.yaml"
    good = config.read_bytes()
    config.write_bytes(good + b"\n# bomb below\n" + billion_laughs().encode())
    bad = config.read_bytes()
    started = time.monotonic()
    error = refuse(ws, "story", "new", "FLOW", "--title", "x", code="YAML_TOO_COMPLEX")
    assert time.monotonic() - started < 5
    assert error["details"]["file"] == "storyflow.yaml"
    assert config.read_bytes() == bad
    config.write_bytes(good)
    assert_same(before, capture(ws))


def nested_flow(depth: int) -> str:
    return "verdict: PASS\nnotes: " + "[" * depth + "]" * depth + "\n"


def nested_block(depth: int) -> str:
    return "verdict: PASS\nnotes:\n  " + "- " * depth + "x\n"


def nested_mapping(depth: int) -> str:
    return "verdict: PASS\nnotes: " + "{a: " * depth + "b" + "}" * depth + "\n"


@pytest.mark.parametrize(
    ("shape", "depth"),
    [
        (nested_flow, 1_000),
        (nested_flow, 5_000),
        (nested_flow, 100_000),
        (nested_block, 50_000),
        (nested_mapping, 30_000),
    ],
    ids=["flow-1k", "flow-5k", "flow-100k", "block-50k", "mapping-30k"],
)
def test_deeply_nested_yaml_is_refused(
    seeded: Seeded, shape: Callable[[int], str], depth: int
) -> None:
    """Nesting, like aliases, is bounded before anything recurses over the document. Run as a
    subprocess: a parser that overflows the C stack would kill the test run otherwise."""
    ws = seeded.ws
    text = shape(depth)
    assert len(text.encode()) < 1_048_576  # within the default file size limit
    path = put(ws, "inbox/elaboration.yaml", text)
    with unchanged(ws):
        started = time.monotonic()
        error = refuse(
            ws,
            "artifact",
            "submit",
            "FLOW-001",
            "elaboration",
            path,
            code="YAML_TOO_COMPLEX",
            via="run",
        )
    assert time.monotonic() - started < 20
    assert error["details"]["file"] == "inbox/elaboration.yaml"


def alias_chain(length: int) -> str:
    """Each list holds the one before: shallow text, deep data, few nodes."""
    lines = [f"c{n}: &c{n} [*c{n - 1}]" for n in range(1, length)]
    return "verdict: PASS\nc0: &c0 [x]\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text",
    [alias_chain(150), alias_chain(400), "verdict: PASS\nloop: &loop [x, *loop]\n"],
    ids=["alias-chain-150", "alias-chain-400", "self-reference"],
)
def test_nesting_through_aliases_is_refused(seeded: Seeded, text: str) -> None:
    ws = seeded.ws
    path = put(ws, "inbox/elaboration.yaml", text)
    with unchanged(ws):
        error = refuse(
            ws, "artifact", "submit", "FLOW-001", "elaboration", path, code="YAML_TOO_COMPLEX"
        )
    assert error["details"]["file"] == "inbox/elaboration.yaml"


def test_moderate_nesting_is_fine(seeded: Seeded) -> None:
    """The nesting limit leaves room for real documents (extra fields are allowed)."""
    ws = seeded.ws
    path = put(ws, "inbox/elaboration.yaml", GOOD_ELABORATION + "notes: " + "[" * 20 + "]" * 20)
    result = ws.cli("artifact", "submit", "FLOW-001", "elaboration", path, "--json")
    assert result.code == 0, result


# ---- schema and verdicts ----------------------------------------------------------------------


def test_schema_errors_list_every_field(seeded: Seeded) -> None:
    ws = seeded.ws
    path = put(ws, "inbox/proof.yaml", "coverage: 150\nchecks:\n  lint: maybe\n  colour: red\n")
    with unchanged(ws):
        error = refuse(ws, "artifact", "submit", "FLOW-001", "proof", path, code="SCHEMA_INVALID")
    fields = {e["field"] for e in error["details"]["errors"]}
    assert fields == {"summary", "reuse_verification", "coverage", "checks.lint", "checks.colour"}
    assert all(e["problem"] for e in error["details"]["errors"])
    assert error["details"]["file"] == "inbox/proof.yaml"
    assert error["details"]["kind"] == "proof"
    assert error["message"].startswith("inbox/proof.yaml: proof field ")


SCHEMA_CASES = [
    ("elaboration", "", "verdict"),
    ("elaboration", "verdict: PASS\nacceptance_criteria: it works\n", "acceptance_criteria"),
    ("plan", "approach: ''\n", "approach"),
    ("code_review", "verdict: PASS\ncoverage: -1\n", "coverage"),
    (
        "code_review",
        "verdict: FAIL\nfindings:\n  - severity: urgent\n    message: bug\n",
        "findings.0.severity",
    ),
    (
        "verification",
        "verdict: PASS\nacceptance_criteria:\n  - criterion: it works\n    status: maybe\n",
        "acceptance_criteria.0.status",
    ),
    (
        "qa_gate",
        "decision: WAIVED\nwaiver:\n  reason: r\n  approver: a\n  expires: someday\n",
        "waiver.expires",
    ),
]


@pytest.mark.parametrize(
    ("kind", "text", "field"), SCHEMA_CASES, ids=[f"{k}-{f}" for k, _, f in SCHEMA_CASES]
)
def test_schema_invalid(seeded: Seeded, kind: str, text: str, field: str) -> None:
    ws = seeded.ws
    path = put(ws, f"inbox/{kind}.yaml", text)
    with unchanged(ws):
        error = refuse(ws, "artifact", "submit", "FLOW-001", kind, path, code="SCHEMA_INVALID")
    assert field in {e["field"] for e in error["details"]["errors"]}, error
    assert error["details"]["file"] == f"inbox/{kind}.yaml"


def test_story_id_that_is_not_an_id(seeded: Seeded) -> None:
    """A story_id with path characters names some other story, not this one."""
    ws = seeded.ws
    path = put(ws, "inbox/elaboration.yaml", "story_id: ../FLOW-001\n" + GOOD_ELABORATION)
    with unchanged(ws):
        error = refuse(
            ws,
            "artifact",
            "submit",
            "FLOW-001",
            "elaboration",
            path,
            code="ARTIFACT_STORY_MISMATCH",
        )
    assert error["details"]["belongs_to"] == "../FLOW-001"


VERDICT_CASES = [
    ("elaboration", "verdict: MAYBE\nsummary: s\n", "MAYBE"),
    ("elaboration", "verdict: APPROVED\n", "APPROVED"),
    ("code_review", "verdict: CONDITIONAL_PASS\ncoverage: 80\n", "CONDITIONAL_PASS"),
    ("code_review", "verdict: CONCERNS\ncoverage: 80\n", "CONCERNS"),
    ("verification", "verdict: WAIVED\n", "WAIVED"),
    ("qa_gate", "decision: MAYBE\n", "MAYBE"),
    ("qa_gate", "decision: 42\n", "42"),
    ("elaboration", "verdict: [PASS]\n", "['PASS']"),
]


@pytest.mark.parametrize(
    ("kind", "text", "value"), VERDICT_CASES, ids=[f"{k}-{v}" for k, _, v in VERDICT_CASES]
)
def test_verdict_outside_its_vocabulary(seeded: Seeded, kind: str, text: str, value: str) -> None:
    ws = seeded.ws
    path = put(ws, f"inbox/{kind}.yaml", text)
    with unchanged(ws):
        error = refuse(ws, "artifact", "submit", "FLOW-001", kind, path, code="INVALID_VERDICT")
    assert error["details"]["kind"] == kind
    assert error["details"]["value"] == value
    assert f"inbox/{kind}.yaml" in error["message"], error


def test_verdict_outside_its_vocabulary_in_markdown(seeded: Seeded) -> None:
    ws = seeded.ws
    path = put(ws, FLAT_ELAB, "---\nverdict: MAYBE\nsummary: s\n---\n# Body\n")
    with unchanged(ws):
        error = refuse(
            ws, "artifact", "submit", "REVI-001", "elaboration", path, code="INVALID_VERDICT"
        )
    assert FLAT_ELAB in error["message"]


# ---- artifacts that belong to another story ---------------------------------------------------


def test_artifact_whose_story_id_names_another_story(seeded: Seeded) -> None:
    ws = seeded.ws
    path = put(ws, "inbox/elaboration.yaml", "story_id: FLOW-002\n" + GOOD_ELABORATION)
    with unchanged(ws):
        error = refuse(
            ws,
            "artifact",
            "submit",
            "FLOW-001",
            "elaboration",
            path,
            code="ARTIFACT_STORY_MISMATCH",
        )
    assert error["details"]["belongs_to"] == "FLOW-002"
    assert error["details"]["story"] == "FLOW-001"


def test_artifact_naming_a_story_that_does_not_exist(seeded: Seeded) -> None:
    ws = seeded.ws
    path = put(ws, "inbox/elaboration.yaml", "story_id: OTHER-123\n" + GOOD_ELABORATION)
    with unchanged(ws):
        refuse(
            ws,
            "artifact",
            "submit",
            "FLOW-001",
            "elaboration",
            path,
            code="ARTIFACT_STORY_MISMATCH",
        )


def test_markdown_artifact_whose_front_matter_names_another_story(seeded: Seeded) -> None:
    ws = seeded.ws
    path = put(ws, FLAT_ELAB, "---\nstory_id: FLOW-001\nverdict: PASS\n---\n# Body\n")
    with unchanged(ws):
        error = refuse(
            ws,
            "artifact",
            "submit",
            "REVI-001",
            "elaboration",
            path,
            code="ARTIFACT_STORY_MISMATCH",
        )
    assert error["details"]["belongs_to"] == "FLOW-001"


def test_artifact_file_inside_another_storys_folder(seeded: Seeded) -> None:
    ws = seeded.ws
    relative = f"{seeded.folder('FLOW-002')}/elaboration.yaml"
    path = put(ws, relative, GOOD_ELABORATION)
    with unchanged(ws):
        error = refuse(
            ws,
            "artifact",
            "submit",
            "FLOW-001",
            "elaboration",
            path,
            code="ARTIFACT_STORY_MISMATCH",
        )
    assert error["details"]["belongs_to"] == "FLOW-002"
    assert error["details"]["file"] == relative


def test_artifact_file_named_for_another_story(seeded: Seeded) -> None:
    ws = seeded.ws
    path = put(ws, "inbox/ELAB-REVI-002-20250101-1200.md", "---\nverdict: PASS\n---\n# B\n")
    with unchanged(ws):
        error = refuse(
            ws,
            "artifact",
            "submit",
            "REVI-001",
            "elaboration",
            path,
            code="ARTIFACT_STORY_MISMATCH",
        )
    assert error["details"]["belongs_to"] == "REVI-002"


def test_story_artifact_of_another_story(seeded: Seeded) -> None:
    """Submitting FLOW-002's story file as FLOW-001's story."""
    ws = seeded.ws
    path = str(ws.root / seeded.story_file("FLOW-002"))
    with unchanged(ws):
        refuse(ws, "artifact", "submit", "FLOW-001", "story", path, code="ARTIFACT_STORY_MISMATCH")


def test_artifact_symlinked_from_another_storys_folder(seeded: Seeded) -> None:
    ws = seeded.ws
    target = ws.root / seeded.folder("FLOW-002") / "elaboration.yaml"
    target.write_text(GOOD_ELABORATION, encoding="utf-8")
    link = ws.root / "inbox" / "elaboration.yaml"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    with unchanged(ws):
        refuse(
            ws,
            "artifact",
            "submit",
            "FLOW-001",
            "elaboration",
            str(link),
            code="ARTIFACT_STORY_MISMATCH",
        )


# ---- unreadable files and workspaces ----------------------------------------------------------

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
AS_ROOT = "running as root: chmod 000 does not stop root from reading (covered below by a "
AS_ROOT += "symlink loop, a directory in place of the file, and a simulated EACCES)"


def _chmod_blocks_reads(path: Path) -> bool:
    return not os.access(path, os.R_OK)


def test_chmod_000_artifact(seeded: Seeded) -> None:
    ws = seeded.ws
    path = Path(put(ws, "inbox/elaboration.yaml", GOOD_ELABORATION))
    state = capture(ws)
    path.chmod(0)
    try:
        if ROOT or not _chmod_blocks_reads(path):
            pytest.skip(AS_ROOT)
        error = refuse(
            ws,
            "artifact",
            "submit",
            "FLOW-001",
            "elaboration",
            str(path),
            code="WORKSPACE_UNREADABLE",
        )
        assert error["details"]["file"] == "inbox/elaboration.yaml"
        refuse(
            ws,
            "artifact",
            "validate",
            "inbox/elaboration.yaml",
            "--kind",
            "elaboration",
            code="WORKSPACE_UNREADABLE",
            via="run",
        )
    finally:
        path.chmod(0o644)
    assert_same(state, capture(ws))


def test_chmod_000_story_folder(seeded: Seeded) -> None:
    ws = seeded.ws
    folder = ws.root / seeded.folder("FLOW-002")
    state = capture(ws)
    folder.chmod(0)
    try:
        if ROOT or not _chmod_blocks_reads(folder):
            pytest.skip(AS_ROOT)
        refuse(ws, "story", "move", "FLOW-002", "in-elaboration", code="GUARD_FAILED")
        refuse(ws, "story", "block", "FLOW-002", "--reason", "x", code="WORKSPACE_UNREADABLE")
        refuse(ws, "story", "update", "FLOW-002", "--priority", "P1", code="WORKSPACE_UNREADABLE")
    finally:
        folder.chmod(0o755)
    assert_same(state, capture(ws))


def test_chmod_000_story_file(seeded: Seeded) -> None:
    ws = seeded.ws
    path = ws.root / seeded.story_file("FLOW-002")
    state = capture(ws)
    path.chmod(0)
    try:
        if ROOT or not _chmod_blocks_reads(path):
            pytest.skip(AS_ROOT)
        error = refuse(ws, "story", "move", "FLOW-002", "in-elaboration", code="GUARD_FAILED")
        assert "permission denied" in error["message"], error
        refuse(ws, "story", "block", "FLOW-002", "--reason", "x", code="WORKSPACE_UNREADABLE")
    finally:
        path.chmod(0o644)
    assert_same(state, capture(ws))


def test_chmod_000_workspace(seeded: Seeded) -> None:
    ws = seeded.ws
    state = capture(ws)
    ws.root.chmod(0)
    try:
        if ROOT or not _chmod_blocks_reads(ws.root):
            pytest.skip(AS_ROOT)
        refuse(ws, "story", "new", "FLOW", "--title", "x", code="WORKSPACE_UNREADABLE")
    finally:
        ws.root.chmod(0o755)
    assert_same(state, capture(ws))


def test_chmod_000_storyflow_yaml(seeded: Seeded) -> None:
    ws = seeded.ws
    config = ws.root / "storyflow.yaml"
    state = capture(ws)
    config.chmod(0)
    try:
        if ROOT or not _chmod_blocks_reads(config):
            pytest.skip(AS_ROOT)
        error = refuse(ws, "story", "new", "FLOW", "--title", "x", code="WORKSPACE_UNREADABLE")
        assert error["details"]["file"] == "storyflow.yaml"
    finally:
        config.chmod(0o644)
    assert_same(state, capture(ws))


def test_unreadable_artifact_simulated(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """EACCES on read, whoever runs the tests (root reads through chmod 000)."""
    ws = seeded.ws
    path = Path(put(ws, "inbox/elaboration.yaml", GOOD_ELABORATION))
    real = os.open

    def fake_open(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        # open(2) is where EACCES happens; reading opens the file with os.open
        if Path(name) == path:
            raise PermissionError(13, "Permission denied", str(name))
        return real(name, flags, *args, **kwargs)

    with unchanged(ws):
        monkeypatch.setattr(os, "open", fake_open)
        error = refuse(
            ws,
            "artifact",
            "submit",
            "FLOW-001",
            "elaboration",
            str(path),
            code="WORKSPACE_UNREADABLE",
        )
        monkeypatch.undo()
    assert error["details"]["file"] == "inbox/elaboration.yaml"


def test_unreadable_workspace_simulated(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = seeded.ws
    root = ws.root.resolve()
    real = os.access

    def access(path: object, mode: int, **kwargs: object) -> bool:
        if Path(str(path)).resolve() == root:
            return False
        return real(path, mode, **kwargs)  # type: ignore[arg-type]

    with unchanged(ws):
        monkeypatch.setattr(os, "access", access)
        error = refuse(ws, "story", "new", "FLOW", "--title", "x", code="WORKSPACE_UNREADABLE")
        monkeypatch.undo()
    assert str(root) in error["message"]


def test_symlink_loop_as_artifact(seeded: Seeded) -> None:
    """A file that cannot be read even by root: a symlink that points at itself."""
    ws = seeded.ws
    link = ws.root / "inbox" / "elaboration.yaml"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(link.name)
    with unchanged(ws):
        refuse(
            ws,
            "artifact",
            "submit",
            "FLOW-001",
            "elaboration",
            str(link),
            code="WORKSPACE_UNREADABLE",
        )


def test_symlink_loop_in_the_story_folder(seeded: Seeded) -> None:
    ws = seeded.ws
    link = ws.root / seeded.folder("FLOW-001") / "elaboration.yaml"
    link.symlink_to(link.name)
    with unchanged(ws):
        refuse(ws, "artifact", "submit", "FLOW-001", "elaboration", code="WORKSPACE_UNREADABLE")


def test_symlink_loop_as_story_file(seeded: Seeded) -> None:
    ws = seeded.ws
    story_file = ws.root / seeded.story_file("FLOW-002")
    story_file.unlink()
    story_file.symlink_to(story_file.name)
    with unchanged(ws):
        error = refuse(ws, "story", "move", "FLOW-002", "in-elaboration", code="GUARD_FAILED")
        assert "cannot be read" in error["message"], error
        refuse(ws, "story", "block", "FLOW-002", "--reason", "x", code="WORKSPACE_UNREADABLE")
        refuse(ws, "story", "update", "FLOW-002", "--priority", "P0", code="WORKSPACE_UNREADABLE")
    assert story_file.is_symlink()


def test_directory_in_place_of_the_story_file(seeded: Seeded) -> None:
    ws = seeded.ws
    story_file = ws.root / seeded.story_file("FLOW-002")
    story_file.unlink()
    story_file.mkdir()
    (story_file / "keep.txt").write_text("a directory where the story file should be\n")
    with unchanged(ws):
        error = refuse(ws, "story", "move", "FLOW-002", "in-elaboration", code="GUARD_FAILED")
        assert "is a directory" in error["message"], error
        error = refuse(ws, "story", "block", "FLOW-002", "--reason", "x", code="INVALID_INPUT")
        assert "is a directory" in error["message"], error
    assert story_file.is_dir()


def test_directory_in_place_of_the_artifact_destination(seeded: Seeded) -> None:
    """The conventional name in the story folder is taken by a directory: the copy could not
    be written, so the submission is refused before anything is stored."""
    ws = seeded.ws
    blocker = ws.root / seeded.folder("FLOW-001") / "elaboration.yaml"
    blocker.mkdir()
    (blocker / "keep.txt").write_text("in the way\n")
    path = put(ws, "inbox/elaboration.yaml", GOOD_ELABORATION)
    with unchanged(ws):
        error = refuse(
            ws, "artifact", "submit", "FLOW-001", "elaboration", path, code="INVALID_INPUT"
        )
    assert "is a directory" in error["message"], error


def test_directory_given_as_artifact_path(seeded: Seeded) -> None:
    ws = seeded.ws
    (ws.root / "inbox" / "elaboration.yaml").mkdir(parents=True)
    with unchanged(ws):
        refuse(
            ws,
            "artifact",
            "submit",
            "FLOW-001",
            "elaboration",
            str(ws.root / "inbox" / "elaboration.yaml"),
            code="USAGE",
        )


# ---- titles -------------------------------------------------------------------------------------

BAD_TITLES = {
    "empty": (" \t ", "a title cannot be empty"),
    "too long": ("x" * 201, "a title is at most 200 characters"),
    "control character": ("ring \x07 the bell", "a title cannot hold a control character"),
}


@pytest.mark.parametrize("case", sorted(BAD_TITLES))
def test_a_bad_title_is_refused_by_every_command_that_sets_one(seeded: Seeded, case: str) -> None:
    ws = seeded.ws
    title, says = BAD_TITLES[case]
    with unchanged(ws):
        for args in (
            ("story", "new", "FLOW", "--title", title),
            ("story", "update", "FLOW-002", "--title", title),
            ("epic", "new", "NEWE", "--title", title),
        ):
            error = refuse(ws, *args, code="INVALID_INPUT")
            assert error["message"].startswith(says), (args, error)


@pytest.mark.parametrize("case", ["too long", "control character"])
def test_sync_refuses_a_title_the_commands_refuse(seeded: Seeded, case: str) -> None:
    """One rule for a title typed in a command and one written in a story file."""
    ws = seeded.ws
    title = BAD_TITLES[case][0]
    story_file = seeded.story_file("FLOW-002")
    replace_in(ws, story_file, "title: Second", "title: " + json.dumps(title))
    result = ws.run("sync", "--json")
    assert result.code == 7, result
    [problem] = result.json["problems"]
    assert (problem["code"], problem["file"]) == ("INVALID_INPUT", story_file), problem
    assert "title: " + BAD_TITLES[case][1].removeprefix("a title ") in problem["message"]
    shown = ws.cli("story", "show", "FLOW-002", "--json")
    assert shown.json["title"] == "Second", shown.json  # nothing of that story applied
