"""The pure parts of storyflow check, docs, hooks and ci: the Agent Log comparison, drift,
cycles, names, line numbers, Markdown links, the hook script and the workflow text."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest

from storyflow.adapters.files.story_files import ENGINE_FILES
from storyflow.domain.budgets import BudgetPhase, Enforcement
from storyflow.domain.checks import (
    LogIssueKind,
    compare_log,
    dependency_cycles,
    front_matter_drift,
    is_loose_story_file,
    story_file_is_draft,
    story_ids_in,
    unrecorded_phases,
)
from storyflow.domain.findings import CHECK_CODES, Finding
from storyflow.domain.model import AgentLogRow, Story
from storyflow.domain.statuses import Status
from storyflow.services.check_folders import FIXED_NAMES
from storyflow.services.check_stories import ENGINE_FILE_NAMES
from storyflow.services.ci import github_workflow
from storyflow.services.hooks import HOOK_MARKER, hook_script
from storyflow.services.links import anchors, links, slug
from storyflow.services.source_lines import scan_lines

NOW = datetime(2026, 2, 1, tzinfo=UTC)


def row(action: str, outputs: str = "") -> AgentLogRow:
    return AgentLogRow(timestamp="2026-02-01T00:00:00Z", agent="pm", action=action, outputs=outputs)


def as_file(r: AgentLogRow) -> dict[str, str]:
    return {"timestamp": r.timestamp, "agent": r.agent, "action": r.action, "outputs": r.outputs}


DB = [row(f"step {n}") for n in range(1, 6)]


def kinds(file_rows: list[object]) -> list[tuple[str, int | None, int | None, int | None]]:
    return [
        (i.kind.value, i.file_index, i.first_seq, i.last_seq) for i in compare_log(file_rows, DB)
    ]


def test_an_identical_log_has_no_issues_and_whitespace_does_not_count() -> None:
    assert kinds([as_file(r) for r in DB]) == []
    spaced = [dict(as_file(r), action=f"  {r.action.replace(' ', '   ')} ") for r in DB]
    assert kinds(list(spaced)) == []


def test_removed_rows_are_reported_once_where_they_were() -> None:
    rows = [as_file(r) for r in DB]
    assert kinds([rows[0], rows[3], rows[4]]) == [("removed", 1, 2, 3)]
    assert kinds(rows[:3]) == [("removed", None, 4, 5)]
    assert kinds([]) == [("removed", None, 1, 5)]


def test_edited_and_unrecorded_rows() -> None:
    rows = [as_file(r) for r in DB]
    edited = [*rows[:2], dict(rows[2], outputs="changed"), *rows[3:]]
    issues = compare_log(edited, DB)
    assert [(i.kind, i.file_index, i.first_seq) for i in issues] == [(LogIssueKind.EDITED, 2, 3)]
    assert issues[0].recorded == DB[2]
    extra = as_file(row("by hand"))
    assert kinds([*rows[:2], extra, *rows[2:]]) == [("unrecorded", 2, None, None)]
    assert kinds([*rows, extra]) == [("unrecorded", 5, None, None)]
    assert kinds(["not a row", *rows[1:]]) == [("edited", 0, 1, 1)]


def test_dependency_cycles_one_per_component_deterministic() -> None:
    graph = {"A": ["B"], "B": ["C"], "C": ["A"], "D": ["D"], "E": ["A"], "F": ["G"], "G": ["F"]}
    assert dependency_cycles(graph) == [["A", "B", "C", "A"], ["D", "D"], ["F", "G", "F"]]
    assert dependency_cycles({"A": ["B"], "B": ["C"], "C": []}) == []
    chain = {f"S{n:03d}": [f"S{n + 1:03d}"] for n in range(2000)}  # deep: no recursion limit
    chain["S2000"] = ["S000"]
    [cycle] = dependency_cycles(chain)
    assert len(cycle) == 2002 and cycle[0] == cycle[-1] == "S000"


def _story(**changes: object) -> Story:
    base: dict[str, object] = {
        "id": "FLOW-001",
        "epic": "FLOW",
        "number": 1,
        "title": "First",
        "status": Status.IN_PROGRESS,
        "priority": "P1",
        "depends_on": ("FLOW-000",),
        "created_at": NOW,
        "updated_at": NOW,
        "status_changed_at": NOW,
    }
    base.update(changes)
    return Story(**base)  # type: ignore[arg-type]


def test_front_matter_drift_normalises_spellings_and_names_each_field() -> None:
    meta = {
        "id": "FLOW-001",
        "title": "First",
        "status": "wip",  # legacy spelling of in-progress
        "priority": "high",  # alias of P1
        "depends_on": ["FLOW-000"],
        "requires": [],
        "breaking_change": False,
        "token_budget_multiplier": 1,
    }
    assert front_matter_drift(meta, _story()) == []
    changed = {**meta, "status": "uat", "depends_on": [], "breaking_change": True, "phase": 2}
    drift = {(d.field, d.file_value, d.db_value) for d in front_matter_drift(changed, _story())}
    assert drift == {
        ("status", "uat", "in-progress"),
        ("depends_on", "(none)", "FLOW-000"),
        ("breaking_change", "true", "false"),
        ("phase", "2", "(unset)"),
    }
    enforced = _story(enforcement=Enforcement.HARD_GATE, blocked_from=Status.UAT)
    fields = {d.field for d in front_matter_drift(meta, enforced)}
    assert fields == {"token_budget_enforcement", "blocked_from"}


def test_tokens_are_owed_for_every_phase_that_ran() -> None:
    entered = {Status.GENERATED, Status.IN_ELABORATION, Status.IN_PROGRESS, Status.READY_FOR_QA}
    assert unrecorded_phases(entered, {BudgetPhase.ELABORATION}) == [
        BudgetPhase.CODE_REVIEW,
        BudgetPhase.IMPLEMENTATION,
        BudgetPhase.STORY_GENERATION,
    ]
    assert unrecorded_phases({Status.CANCELLED}, set()) == []


def test_a_story_file_is_a_draft_until_elaborated() -> None:
    assert story_file_is_draft(Status.GENERATED, None, None)
    assert story_file_is_draft(Status.BLOCKED, Status.PENDING, set())
    assert not story_file_is_draft(Status.BLOCKED, Status.IN_PROGRESS, None)
    assert not story_file_is_draft(Status.CANCELLED, None, {Status.IN_ELABORATION})
    assert not story_file_is_draft(Status.NEEDS_REFINEMENT, None, None)


def test_names() -> None:
    assert story_ids_in("ELAB-REVI-001-20260101-1200.md") == ["REVI-001"]
    assert story_ids_in("REVI.PLAN.exec.md") == []
    assert story_ids_in("XREVI-0012345.md") == []
    assert {"story.yaml", "qa-gate.yaml", "code-review.yaml"} <= FIXED_NAMES
    assert is_loose_story_file("story.yaml", FIXED_NAMES)
    assert is_loose_story_file("REVI-016.md", FIXED_NAMES)
    assert not is_loose_story_file("stories.index.md", FIXED_NAMES)
    assert not is_loose_story_file("REVI-016.png", FIXED_NAMES)
    assert ENGINE_FILE_NAMES == ENGINE_FILES


def test_a_finding_takes_its_codes_hint_unless_given_one() -> None:
    finding = Finding(code="CHECK_SCHEMA", message="m", file="f", line=3)
    assert finding.hint == CHECK_CODES["CHECK_SCHEMA"].hint
    assert Finding(code="CHECK_SCHEMA", message="m", hint="do x").hint == "do x"
    with pytest.raises(ValueError, match="undeclared"):
        Finding(code="CHECK_NOPE", message="m")


YAML_STORY = """\
# header comment
id: FLOW-001
status: generated
agent_log:
- timestamp: a
  agent: b
  action: c
  outputs: d
- timestamp: e
  agent: f
  action: g
  outputs: h
token_budget:
  total: 1
"""

MARKDOWN_STORY = """\
---
id: REVI-001
status: uat
---

# REVI-001: Title

## Reuse Plan

```md
## Agent Log
| not | a | row | here |
```

## Agent Log

Append-only.

| Timestamp | Agent | Action | Outputs |
|---|---|---|---|
| t1 | a | one | x |
| t2 | a | two | y |

## Later
| other | table |
"""


def test_line_numbers_of_keys_sections_and_log_rows() -> None:
    yaml_lines = scan_lines(YAML_STORY, markdown=False)
    assert (yaml_lines.of("id"), yaml_lines.of("status"), yaml_lines.of("token_budget")) == (
        2,
        3,
        13,
    )
    assert yaml_lines.log_rows == [5, 9]
    assert yaml_lines.of("agent_log.1.agent") == 4  # a field: its top-level key
    md = scan_lines(MARKDOWN_STORY, markdown=True)
    assert (md.of("id"), md.of("status"), md.of("reuse_plan"), md.of("agent_log")) == (
        2,
        3,
        8,
        15,
    )
    assert md.log_rows == [21, 22]
    assert md.log_row(1) == 22 and md.log_row(None) == 22


def test_markdown_links_and_github_anchors() -> None:
    assert slug("`storyflow story move`") == "storyflow-story-move"
    assert slug("Exit statuses & errors!") == "exit-statuses--errors"
    assert slug("See [the guide](g.md) now") == "see-the-guide-now"
    text = (
        '# Title\n\n## Part\n\n## Part\n\n<a name="custom"></a>\n\n```\n## Not a heading\n'
        '[x](fenced.md)\n```\n\n[a](b.md#part-1) `[c](code.md)` ![img](i.png "t")\n'
        "[ref]: <other file.md>\n"
    )
    assert anchors(text) == {"title", "part", "part-1", "custom"}
    assert list(links(text)) == [(14, "b.md#part-1"), (14, "i.png"), (15, "other file.md")]


def test_the_hook_script_is_valid_sh_and_quotes_what_it_names() -> None:
    script = hook_script(python="/opt/my venv/bin/python", workspace="tools/plans dir")
    assert script.startswith("#!/bin/sh\n" + HOOK_MARKER + "\n")
    assert "python='/opt/my venv/bin/python'" in script
    assert "--workspace \"$top\"/'tools/plans dir' check --" in script
    assert 'xargs -0 "$@" --workspace "$top" check --' in hook_script(python="p", workspace=".")
    checked = subprocess.run(
        ["sh", "-n"], input=script, text=True, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


def test_the_workflow_is_byte_stable() -> None:
    assert github_workflow() == github_workflow()
    assert 'branches: ["release"]' in github_workflow(branch="release")
    assert "working-directory" not in github_workflow()
