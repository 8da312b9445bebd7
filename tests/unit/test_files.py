"""YAML in and out, front matter, key splicing, Markdown sections, and the story file in its
two formats (parse, render, project)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storyflow.adapters.files import storydoc, yamlio
from storyflow.adapters.files.storydoc import StoryFormat, format_for, parse, parse_log_table
from storyflow.adapters.files.yamlio import (
    MAX_EXPANDED_NODES,
    check_mapping,
    dump_yaml,
    join_front_matter,
    load_mapping,
    load_yaml,
    markdown_sections,
    splice_top_level,
    split_front_matter,
    strip_comments,
)
from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.model import AgentLogRow
from storyflow.errors import InvalidInput

# ---- yamlio: the syntax check -------------------------------------------------------------

# Documents where a line scan could be fooled; the parser-only check must agree with
# composing the document on each (and on the random ones below).
TRICKY = [
    "a: 1\nb: 2\n",
    "a: 1\na: 2\n",  # a key twice
    "a: 1\nb:\n  a: 2\n",  # the same key nested: fine
    "- a\n- b\n",  # not a mapping
    "just text\n",
    "a: *x\n",  # an alias nothing defines
    "a: &x 1\nb: &x 2\n",  # an anchor twice
    "a: &x [1]\nb: *x\n",
    "a: **bold**\n",  # an alias named *bold**
    "a: 2 * 3 & 4\n",
    'a: "x\nb: y"\n',  # a quoted scalar's second line looks like a key
    'a: "x\na: y"\n',
    "a: |\n  x\n  a: z\nb: 1\n",
    "a: [1,\n b]\n",
    "a: b: c\n",
    "a: 1\n---\nb: 2\n",  # two documents
    "---\na: 1\n",
    "%YAML 1.1\n---\na: 1\n",
    "a: 1\r\nb: 2\r\n",
    "a: 1\r\na: 2\r\n",
    "a:\t1\n",
    "\ta: 1\n",
    "a: 1\n  b: 2\n",
    "'a': 1\na: 2\n",
    "? a\n: 1\na: 2\n",
    "a: 1 # c\n# a: 2\nb: 2\n",
    "a:\n- 1\n- b: 2\nb: 3\n",  # a sequence at the key's column
    "a:\n- 1\na: 2\n",
    "- 1\na: 2\n",
    "a: 1\n- 2\n",
    "a:\n-\n- x\n",
    "a: [" * 150 + "\n",
    "a: 'unterminated\n",
    "",
    "# only a comment\n",
]


def _outcome(text: str) -> str | None:
    try:
        check_mapping(text, source="t.yaml")
    except InvalidInput as exc:
        return f"{exc.code}: {exc.message}"
    return None


def _composed_outcome(text: str) -> str | None:
    """What check_mapping says when it composes every document (libyaml's parser alone
    settles none)."""
    saved, yamlio._CParser = yamlio._CParser, None
    try:
        return _outcome(text)
    finally:
        yamlio._CParser = saved


@pytest.mark.parametrize("text", TRICKY)
def test_the_parser_only_syntax_check_agrees_with_composing(text: str) -> None:
    assert _outcome(text) == _composed_outcome(text)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "a",
                "b",
                ":",
                " ",
                "\n",
                "-",
                "*",
                "&",
                "[",
                "]",
                "{",
                "}",
                ",",
                "#",
                '"',
                "'",
                "|",
                "?",
                "  ",
                "a: ",
                "b: ",
                "\n  ",
                "- ",
                "\n- ",
                "\na: ",
                "\nb: ",
            ]
        ),
        max_size=25,
    )
)
def test_the_syntax_check_agrees_with_composing_on_random_documents(parts: list[str]) -> None:
    text = "".join(parts)
    assert _outcome(text) == _composed_outcome(text)


LINES = [
    "a: 1",
    "b: x",
    "c:",
    "a:",
    "- 1",
    "- b: 2",
    "-",
    "  c: 2",
    "  - 3",
    "b: [1,",
    "  2]",
    "d: {e: 1}",
    'e: "q',
    'f: x"',
    "# c",
    "g: |",
    "  t",
    "h: >",
    "a: 1 # c",
    "? a",
    "---",
    "  a: 1",
    "i: 'x",
    "j: y'",
    "k: [",
    "]",
    "l: -",
    "m: - n",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(LINES), max_size=10))
def test_the_syntax_check_agrees_with_composing_on_random_lines(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    assert _outcome(text) == _composed_outcome(text)


def test_a_story_file_takes_the_parser_only_check() -> None:
    """The check a move makes of every story file is settled without composing it."""
    text = storydoc.render_new(
        StoryFormat.YAML,
        meta={"id": "FLOW-001", "title": "A story", "status": "pending"},
        token_budget={"phase_estimates": {"elaboration": 1000}},
        log=[AgentLogRow(timestamp="2026-12-07 10:00", agent="x", action="created", outputs="")],
        tz_label="UTC",
    )
    assert yamlio._plain_mapping(text)
    assert _outcome(text) is None


# ---- yamlio: loading ----------------------------------------------------------------------


def test_yaml_11_booleans_stay_strings() -> None:
    text = "a: on\nb: off\nc: yes\nd: no\ne: y\nf: n\ng: On\nh: NO\n"
    assert load_yaml(text, source="x.yaml") == {
        "a": "on",
        "b": "off",
        "c": "yes",
        "d": "no",
        "e": "y",
        "f": "n",
        "g": "On",
        "h": "NO",
    }


def test_true_and_false_are_still_booleans() -> None:
    text = "a: true\nb: false\nc: True\nd: FALSE\ne: 'true'\n"
    assert load_yaml(text, source="x.yaml") == {
        "a": True,
        "b": False,
        "c": True,
        "d": False,
        "e": "true",
    }


def test_dates_and_times_stay_strings() -> None:
    text = "d: 2025-01-02\nt: 2025-01-02T03:04:05Z\nu: 2025-01-02 03:04:05.5 -07:00\n"
    data = load_yaml(text, source="x.yaml")
    assert data == {
        "d": "2025-01-02",
        "t": "2025-01-02T03:04:05Z",
        "u": "2025-01-02 03:04:05.5 -07:00",
    }
    assert all(isinstance(v, str) for v in data.values())


def test_remembered_tags_never_leak_between_plain_and_quoted_scalars() -> None:
    """The loader remembers the tag of each plain scalar's text; a quoted scalar with the
    same text, read afterwards or in the same document, is still a string, and a second
    document reads as the first one did."""
    text = "a: 7\nb: '7'\nc: true\nd: \"true\"\ne: null\nf: 'null'\ng: 2.5\nh: '2.5'\n"
    expected = {"a": 7, "b": "7", "c": True, "d": "true", "e": None, "f": "null", "g": 2.5}
    expected["h"] = "2.5"
    assert load_yaml(text, source="x.yaml") == expected
    assert load_yaml(text, source="again.yaml") == expected
    long_number = "1" * 200  # past the remembered length: resolved each time, the same way
    assert load_yaml(f"n: {long_number}\n", source="x.yaml") == {"n": int(long_number)}


def test_numbers_null_and_nesting_still_load() -> None:
    text = "n: 3\nf: 2.5\nz: null\nt: ~\nl: [1, two]\nm: {k: v}\n"
    assert load_yaml(text, source="x.yaml") == {
        "n": 3,
        "f": 2.5,
        "z": None,
        "t": None,
        "l": [1, "two"],
        "m": {"k": "v"},
    }


def _alias_bomb(levels: int = 9) -> str:
    lines = ["a: &a [" + ", ".join(['"lol"'] * 9) + "]"]
    previous = "a"
    for name in "bcdefghijklmnop"[:levels]:
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidInput) as error:
        load_yaml(_alias_bomb(), source="bomb.yaml")
    elapsed = time.perf_counter() - started
    assert error.value.code == "YAML_TOO_COMPLEX"
    assert error.value.details == {"file": "bomb.yaml"}
    assert "bomb.yaml" in error.value.message
    assert elapsed < 1.0


def test_alias_bomb_in_front_matter_is_refused_too() -> None:
    text = "---\n" + _alias_bomb() + "---\n\n# body\n"
    with pytest.raises(InvalidInput) as error:
        parse(text, StoryFormat.MARKDOWN, source="REVI-001.md")
    assert error.value.code == "YAML_TOO_COMPLEX"


def test_modest_aliases_are_fine() -> None:
    text = "base: &b {x: 1}\none: *b\ntwo: *b\n"
    assert load_yaml(text, source="x.yaml") == {"base": {"x": 1}, "one": {"x": 1}, "two": {"x": 1}}
    assert MAX_EXPANDED_NODES >= 10_000


def test_recursive_alias_does_not_hang() -> None:
    # A self-referencing node is finite in the memoised count; construction may recurse.
    data = load_yaml("a: &a [*a]\n", source="x.yaml")
    assert data["a"][0] is data["a"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nb: [1, 2\nc: 3\n", 3),
        ("a: 1\nb: x: y\n", 2),
        ("a: 1\nb: 2\n  c: 3\n", 3),
        ("one: 1\ntwo: 2\nthree: 3\nfour: 'open\n", 5),
    ],
)
def test_malformed_yaml_names_file_and_line(text: str, line: int) -> None:
    with pytest.raises(InvalidInput) as error:
        load_yaml(text, source="plans/x.yaml")
    assert error.value.code == "INVALID_YAML"
    assert error.value.details == {"file": "plans/x.yaml", "line": line}
    assert error.value.message.startswith(f"plans/x.yaml:{line}: malformed YAML")
    # line_offset shifts the line to where the text sits in its file.
    with pytest.raises(InvalidInput) as shifted:
        load_yaml(text, source="plans/x.md", line_offset=1)
    assert shifted.value.details["line"] == line + 1


def test_malformed_front_matter_reports_the_file_line() -> None:
    text = "---\nid: REVI-001\ntitle: x: y\n---\n\n## Reuse Plan\n"
    with pytest.raises(InvalidInput) as error:
        parse(text, StoryFormat.MARKDOWN, source="REVI-001.md")
    assert error.value.code == "INVALID_YAML"
    assert error.value.details["line"] == 3  # the file's third line: 'title: x: y'
    assert error.value.message.startswith("REVI-001.md:3:")


def test_markdown_story_without_front_matter() -> None:
    with pytest.raises(InvalidInput) as error:
        parse("# REVI-001\n\n## Reuse Plan\n", StoryFormat.MARKDOWN, source="REVI-001.md")
    assert error.value.code == "INVALID_YAML"
    assert error.value.details == {"file": "REVI-001.md", "line": 1}


def test_load_mapping_wants_a_mapping() -> None:
    assert load_mapping("", source="x.yaml") == {}
    assert load_mapping("# only a comment\n", source="x.yaml") == {}
    assert load_mapping("1: one\n", source="x.yaml") == {"1": "one"}
    with pytest.raises(InvalidInput) as error:
        load_mapping("- a\n- b\n", source="x.yaml")
    assert error.value.code == "INVALID_YAML"
    assert "list" in error.value.message


def test_dump_yaml_keeps_key_order_and_block_style() -> None:
    data = {"z": 1, "a": {"m": [1, 2], "b": "x"}, "text": "line one\nline two\n", "u": "é"}
    text = dump_yaml(data)
    assert text == ("z: 1\na:\n  m:\n  - 1\n  - 2\n  b: x\ntext: |\n  line one\n  line two\nu: é\n")
    assert load_yaml(text, source="x") == data
    # Strings that would read back as something else are quoted.
    for value in ("on", "2025-01-02", "true", "null", "12"):
        assert load_yaml(dump_yaml({"v": value}), source="x") == {"v": value}


# ---- yamlio: front matter -----------------------------------------------------------------


def test_split_front_matter() -> None:
    text = "---\nid: X\ntitle: T\n---\n# Body\n\ntext\n"
    front, body, offset = split_front_matter(text)
    assert front == "id: X\ntitle: T\n"
    assert body == "# Body\n\ntext\n"
    assert offset == 4  # the body starts on the file's fifth line
    assert text.split("\n")[offset] == "# Body"


def test_split_front_matter_accepts_the_yaml_document_end_marker() -> None:
    front, body, offset = split_front_matter("---\na: 1\n...\nbody\n")
    assert (front, body, offset) == ("a: 1\n", "body\n", 3)


@pytest.mark.parametrize(
    "text",
    [
        "# no front matter\n---\na: 1\n---\n",
        "---not a fence\na: 1\n---\n",
        "---\na: 1\nnever closed\n",
        "",
    ],
)
def test_split_front_matter_without_front_matter(text: str) -> None:
    assert split_front_matter(text) == (None, text, 0)


def test_join_front_matter_round_trips() -> None:
    joined = join_front_matter("a: 1\n\n", "\nbody\n")
    assert joined == "---\na: 1\n---\n\nbody\n"
    assert split_front_matter(joined)[:2] == ("a: 1\n", "\nbody\n")


# ---- yamlio: splicing top-level keys ------------------------------------------------------

SPLICE_TEXT = """\
# header comment
a: 1   # inline comment on a
b:
  nested: true
  # indented comment inside b
  list:
  - x

# comment introducing c
c: old
d: [1, 2]
# trailing comment
"""


def test_splice_replaces_adds_and_removes_keys_keeping_everything_else() -> None:
    out = splice_top_level(SPLICE_TEXT, {"c": "new", "e": {"k": 1}}, remove=frozenset({"d"}))
    assert out == (
        "# header comment\n"
        "a: 1   # inline comment on a\n"
        "b:\n"
        "  nested: true\n"
        "  # indented comment inside b\n"
        "  list:\n"
        "  - x\n"
        "\n"
        "# comment introducing c\n"
        "c: new\n"
        "# trailing comment\n"
        "e:\n"
        "  k: 1\n"
    )
    assert load_yaml(out, source="x") == {
        "a": 1,
        "b": {"nested": True, "list": ["x"]},
        "c": "new",
        "e": {"k": 1},
    }


def test_splice_replaces_a_multi_line_value_and_keeps_the_comments_after_it() -> None:
    out = splice_top_level(SPLICE_TEXT, {"b": ["p", "q"]})
    assert out == SPLICE_TEXT.replace(
        "b:\n  nested: true\n  # indented comment inside b\n  list:\n  - x\n", "b:\n- p\n- q\n"
    )


def test_splice_with_nothing_to_do_is_byte_identical() -> None:
    assert splice_top_level(SPLICE_TEXT, {}) == SPLICE_TEXT
    assert splice_top_level(SPLICE_TEXT, {}, remove=frozenset({"absent"})) == SPLICE_TEXT


def test_splice_same_value_is_byte_identical_for_canonical_lines() -> None:
    assert splice_top_level(SPLICE_TEXT, {"c": "old"}) == SPLICE_TEXT


def test_splice_appends_after_text_without_final_newline() -> None:
    assert splice_top_level("a: 1", {"b": 2}) == "a: 1\nb: 2\n"
    assert splice_top_level("", {"b": 2}) == "b: 2\n"


def test_splice_does_not_mistake_nested_or_commented_keys() -> None:
    text = "outer:\n  c: nested\n# c: commented\nc: top\n"
    out = splice_top_level(text, {"c": "replaced"})
    assert out == "outer:\n  c: nested\n# c: commented\nc: replaced\n"


def test_splice_a_repeated_key_keeps_one() -> None:
    out = splice_top_level("c: 1\nx: 2\nc: 3\n", {"c": 9})
    assert out == "c: 9\nx: 2\n"


# ---- yamlio: Markdown sections ------------------------------------------------------------

SECTIONED = """\
# REVI-001: Title

intro text

## Description

Text with a fence:

```markdown
## Not A Section
# not a title either
```

~~~
## Also Not A Section
~~~

## Reuse Plan

Reuses @repo/shared. <!-- a placeholder -->

## Description

A second Description is ignored.

# A level-one heading ends the section

stray text

### Third-level headings stay inside

## Agent Log
| a | b |
"""


def test_markdown_sections_ignore_headings_inside_fenced_code() -> None:
    sections = markdown_sections(SECTIONED)
    assert list(sections) == ["description", "reuse_plan", "agent_log"]
    title, text = sections["description"]
    assert title == "Description"
    assert "## Not A Section" in text and "## Also Not A Section" in text
    assert text.startswith("Text with a fence:") and text.endswith("~~~")
    assert "second Description" not in text
    assert sections["reuse_plan"] == ("Reuse Plan", "Reuses @repo/shared. <!-- a placeholder -->")
    assert sections["agent_log"] == ("Agent Log", "| a | b |")
    assert "stray text" not in str(sections)


def test_markdown_sections_keys_and_trailing_hashes() -> None:
    sections = markdown_sections("## Token Budget ##\nx\n## Code-Review: v2!\ny\n")
    assert sections == {
        "token_budget": ("Token Budget", "x"),
        "code_review_v2": ("Code-Review: v2!", "y"),
    }


def test_strip_comments() -> None:
    assert strip_comments("  <!-- a\nmultiline --> kept <!-- b -->  ") == "kept"


# ---- storydoc: render and parse -----------------------------------------------------------

META: dict[str, Any] = {
    "id": "FLOW-001",
    "title": "A story",
    "status": "pending",
    "priority": "P1",
    "phase": 2,
    "depends_on": ["FLOW-000"],
    "requires": ["db-schema-002"],
    "breaking_change": False,
    "graph_integration": True,
    "token_budget_multiplier": 1.5,
    "created_at": "2025-01-02T03:04:05Z",
    "updated_at": "2025-01-02T03:04:05Z",
}
BUDGET: dict[str, Any] = {
    "enforcement": "advisory",
    "multiplier": 1.5,
    "phase_estimates": {"elaboration": 22500, "total_estimated": 22500},
    "actual_measurements": [],
    "total_used": 0,
}
ROW = AgentLogRow(
    timestamp="2025-01-02T03:04:05Z",
    agent="tester",
    action="story created (pending)",
    outputs="story.yaml",
)


def test_format_for() -> None:
    assert format_for("story.yaml") is StoryFormat.YAML
    assert format_for("REVI-001.md") is StoryFormat.MARKDOWN


def test_render_new_then_parse_yaml() -> None:
    text = storydoc.render_new(
        StoryFormat.YAML,
        meta=META,
        token_budget=BUDGET,
        log=[ROW],
        tz_label="UTC",
        body={"description": "Why it matters.", "reuse_plan": "Reuses @repo/shared."},
    )
    assert text.startswith("# FLOW-001: story definition.")
    parsed = parse(text, StoryFormat.YAML, source="story.yaml")
    assert parsed.meta == {**META, "description": "Why it matters.", "acceptance_criteria": []}
    assert parsed.reuse_plan == "Reuses @repo/shared."
    assert parsed.token_budget == BUDGET
    assert parsed.agent_log == [storydoc.log_row_mapping(ROW)]
    content = parsed.as_content()
    assert content["id"] == "FLOW-001" and content["reuse_plan"] == "Reuses @repo/shared."


def test_render_new_then_parse_markdown() -> None:
    text = storydoc.render_new(
        StoryFormat.MARKDOWN, meta=META, token_budget=BUDGET, log=[ROW], tz_label="America/Denver"
    )
    front, body, _ = split_front_matter(text)
    assert front is not None and body.startswith("\n# FLOW-001: A story\n")
    assert "| Timestamp (America/Denver) | Agent | Action | Outputs |" in body
    parsed = parse(text, StoryFormat.MARKDOWN, source="FLOW-001.md")
    assert parsed.meta == META
    assert parsed.reuse_plan == ""  # only the placeholder comment
    assert parsed.token_budget == BUDGET
    assert parsed.agent_log == [storydoc.log_row_mapping(ROW)]
    assert parsed.sections == {"description": "", "acceptance_criteria": ""}
    content = parsed.as_content()
    assert content["description"] == "" and content["agent_log"] == parsed.agent_log


def test_render_new_markdown_with_a_body() -> None:
    text = storydoc.render_new(
        StoryFormat.MARKDOWN,
        meta=META,
        token_budget=BUDGET,
        log=[],
        tz_label="UTC",
        body={"description": "Why.", "reuse_plan": "Reuses X."},
    )
    parsed = parse(text, StoryFormat.MARKDOWN, source="FLOW-001.md")
    assert parsed.reuse_plan == "Reuses X."
    assert parsed.sections["description"] == "Why."
    assert parsed.agent_log == []


def test_parse_without_sections_gives_none() -> None:
    parsed = parse("---\nid: REVI-001\n---\n# nothing\n", StoryFormat.MARKDOWN, source="x.md")
    assert parsed.reuse_plan is None and parsed.token_budget is None and parsed.agent_log is None
    parsed = parse("id: FLOW-001\nagent_log: not a list\n", StoryFormat.YAML, source="s.yaml")
    assert parsed.reuse_plan is None and parsed.agent_log is None


# ---- storydoc: projecting onto files people edit ------------------------------------------

NEW_META = {**META, "status": "generated", "updated_at": "2025-02-03T04:05:06Z"}
NEW_BUDGET = {**BUDGET, "actual_measurements": [{"phase": "elaboration", "tokens_used": 150}]}
NEW_ROWS = [
    AgentLogRow(
        timestamp="2025-02-03T04:05:06Z",
        agent="dev|bot",
        action="status: pending -> generated",
        outputs="a | b\nc",
    ),
    AgentLogRow(timestamp="2025-02-03T04:06:00Z", agent="pm", action="noted", outputs=""),
]

YAML_STORY = """\
# FLOW-001: story definition (a person's header comment)
id: FLOW-001
title: A story
status: pending
priority: P1
phase: 2
depends_on:
- FLOW-000
requires:
- db-schema-002
breaking_change: false
graph_integration: true
token_budget_multiplier: 1.5
created_at: '2025-01-02T03:04:05Z'
updated_at: '2025-01-02T03:04:05Z'
blocked_reason: waiting for the API
description: |
  Written by a person.

  With a blank line.
# The criteria below are ours, storyflow.
acceptance_criteria:
- it works  # inline comment
reuse_plan: Reuses @repo/shared.
token_budget:
  total_used: 0
agent_log:
  - timestamp: '2025-01-02T03:04:05Z'
    agent: tester
    action: story created (pending)
    outputs: story.yaml

# a comment after the log
notes: kept as written
"""


def _yaml_expected_prefix() -> str:
    """The person's lines up to the engine's keys, with only status/updated_at changed."""
    return YAML_STORY.split("description: |", maxsplit=1)[0]


def test_project_yaml_updates_engine_keys_and_appends_rows_with_the_existing_indent() -> None:
    out = storydoc.project(
        YAML_STORY,
        StoryFormat.YAML,
        meta=NEW_META,
        remove=frozenset({"blocked_reason", "blocked_from"}),
        token_budget=NEW_BUDGET,
        new_rows=NEW_ROWS,
        tz_label="UTC",
    )
    expected = (
        _yaml_expected_prefix()
        .replace("status: pending\n", "status: generated\n")
        .replace("updated_at: '2025-01-02T03:04:05Z'\n", "updated_at: '2025-02-03T04:05:06Z'\n")
        .replace("blocked_reason: waiting for the API\n", "")
        + "description: |\n"
        "  Written by a person.\n"
        "\n"
        "  With a blank line.\n"
        "# The criteria below are ours, storyflow.\n"
        "acceptance_criteria:\n"
        "- it works  # inline comment\n"
        "reuse_plan: Reuses @repo/shared.\n"
        + dump_yaml({"token_budget": NEW_BUDGET})
        + "agent_log:\n"
        "  - timestamp: '2025-01-02T03:04:05Z'\n"
        "    agent: tester\n"
        "    action: story created (pending)\n"
        "    outputs: story.yaml\n"
        "  - timestamp: '2025-02-03T04:05:06Z'\n"
        "    agent: dev|bot\n"
        "    action: 'status: pending -> generated'\n"
        "    outputs: |-\n"
        "      a | b\n"
        "      c\n"
        "  - timestamp: '2025-02-03T04:06:00Z'\n"
        "    agent: pm\n"
        "    action: noted\n"
        "    outputs: ''\n"
        "\n"
        "# a comment after the log\n"
        "notes: kept as written\n"
    )
    parsed = parse(out, StoryFormat.YAML, source="story.yaml")
    assert parsed.meta["status"] == "generated"
    assert parsed.meta["updated_at"] == "2025-02-03T04:05:06Z"
    assert "blocked_reason" not in parsed.meta
    assert parsed.meta["notes"] == "kept as written"
    assert parsed.meta["description"] == "Written by a person.\n\nWith a blank line.\n"
    assert parsed.token_budget == NEW_BUDGET
    assert parsed.agent_log is not None and len(parsed.agent_log) == 3
    assert parsed.agent_log[1] == {
        "timestamp": "2025-02-03T04:05:06Z",
        "agent": "dev|bot",
        "action": "status: pending -> generated",
        "outputs": "a | b\nc",
    }
    assert out == expected


def test_project_yaml_appends_to_an_unindented_log_and_an_empty_log() -> None:
    text = storydoc.render_new(
        StoryFormat.YAML, meta=META, token_budget=BUDGET, log=[ROW], tz_label="UTC"
    )
    out = storydoc.project(
        text,
        StoryFormat.YAML,
        meta=META,
        remove=frozenset(),
        token_budget=None,
        new_rows=NEW_ROWS[1:],
        tz_label="UTC",
    )
    assert (
        out
        == text
        + "- timestamp: '2025-02-03T04:06:00Z'\n  agent: pm\n  action: noted\n  outputs: ''\n"
    )
    empty = text.split("agent_log:")[0] + "agent_log: []\n"
    out = storydoc.project(
        empty,
        StoryFormat.YAML,
        meta=META,
        remove=frozenset(),
        token_budget=None,
        new_rows=NEW_ROWS[1:],
        tz_label="UTC",
    )
    assert parse(out, StoryFormat.YAML, source="s").agent_log == [
        storydoc.log_row_mapping(NEW_ROWS[1])
    ]
    missing = text.split("agent_log:")[0]
    out = storydoc.project(
        missing,
        StoryFormat.YAML,
        meta=META,
        remove=frozenset(),
        token_budget=None,
        new_rows=NEW_ROWS[1:],
        tz_label="UTC",
    )
    assert parse(out, StoryFormat.YAML, source="s").agent_log == [
        storydoc.log_row_mapping(NEW_ROWS[1])
    ]


def test_project_yaml_refuses_a_flow_style_log() -> None:
    text = "id: FLOW-001\nagent_log: [{timestamp: t, agent: a, action: x, outputs: ''}]\n"
    with pytest.raises(InvalidInput) as error:
        storydoc.project(
            text,
            StoryFormat.YAML,
            meta={},
            remove=frozenset(),
            token_budget=None,
            new_rows=NEW_ROWS[1:],
            tz_label="UTC",
        )
    assert error.value.code == "INVALID_YAML"


def test_project_yaml_without_changes_is_byte_identical() -> None:
    meta = {k: v for k, v in META.items()}
    out = storydoc.project(
        YAML_STORY,
        StoryFormat.YAML,
        meta=meta,
        remove=frozenset(),
        token_budget=None,
        new_rows=[],
        tz_label="UTC",
    )
    assert out == YAML_STORY


MARKDOWN_STORY = """\
---
# owner: alice (a person's comment in the front matter)
id: REVI-001
title: Sync engine
status: pending
priority: P1
created_at: '2025-01-02T03:04:05Z'
updated_at: '2025-01-02T03:04:05Z'
blocked_reason: old
---

# REVI-001: Sync engine

## Description

Sync the | pipes | of things.  <!-- a person's note -->

~~~
## Token Budget
a heading inside a fence is not the section
~~~

## Reuse Plan

Reuses @repo/shared.

## Token Budget

<!-- Rendered by storyflow from the token ledger. Record usage with storyflow token
log, or add entries at the end of actual_measurements: storyflow sync logs them. -->

```yaml
token_budget:
  total_used: 0
```

## Agent Log

Append-only.

| Timestamp (America/Denver) | Agent | Action | Outputs |
|---|---|---|---|
| 2025-01-02T03:04:05-07:00 | pm | story created (pending) | REVI-001.md |

## Notes

Written by a person after the log.
"""


def test_project_markdown_touches_only_engine_owned_parts() -> None:
    meta = {
        "id": "REVI-001",
        "title": "Sync engine",
        "status": "generated",
        "priority": "P1",
        "created_at": "2025-01-02T03:04:05Z",
        "updated_at": "2025-02-03T04:05:06Z",
    }
    out = storydoc.project(
        MARKDOWN_STORY,
        StoryFormat.MARKDOWN,
        meta=meta,
        remove=frozenset({"blocked_reason"}),
        token_budget=NEW_BUDGET,
        new_rows=NEW_ROWS,
        tz_label="America/Denver",
    )
    old_block = "```yaml\ntoken_budget:\n  total_used: 0\n```\n"
    new_block = "```yaml\n" + dump_yaml({"token_budget": NEW_BUDGET}) + "```\n"
    last_row = "| 2025-01-02T03:04:05-07:00 | pm | story created (pending) | REVI-001.md |\n"
    new_rows = (
        "| 2025-02-03T04:05:06Z | dev\\|bot | status: pending -> generated | a \\| b c |\n"
        "| 2025-02-03T04:06:00Z | pm | noted |  |\n"
    )
    expected = (
        MARKDOWN_STORY.replace("status: pending\n", "status: generated\n")
        .replace("updated_at: '2025-01-02T03:04:05Z'", "updated_at: '2025-02-03T04:05:06Z'")
        .replace("blocked_reason: old\n", "")
        .replace(old_block, new_block)
        .replace(last_row, last_row + new_rows)
    )
    assert out == expected

    parsed = parse(out, StoryFormat.MARKDOWN, source="REVI-001.md")
    assert parsed.meta == meta
    assert parsed.token_budget == NEW_BUDGET
    assert parsed.agent_log is not None
    assert [r["agent"] for r in parsed.agent_log] == ["pm", "dev|bot", "pm"]
    assert parsed.agent_log[1]["outputs"] == "a | b c"
    assert parsed.sections["notes"] == "Written by a person after the log."
    assert "a heading inside a fence" in parsed.sections["description"]


def test_project_markdown_adds_missing_token_budget_and_log_sections() -> None:
    text = "---\nid: REVI-002\nstatus: pending\n---\n\n# REVI-002\n\n## Agent Log\n\nNo rows yet.\n"
    out = storydoc.project(
        text,
        StoryFormat.MARKDOWN,
        meta={"status": "generated"},
        remove=frozenset(),
        token_budget={"total_used": 5},
        new_rows=NEW_ROWS[1:],
        tz_label="UTC",
    )
    parsed = parse(out, StoryFormat.MARKDOWN, source="REVI-002.md")
    assert parsed.token_budget == {"total_used": 5}
    assert parsed.agent_log == [storydoc.log_row_mapping(NEW_ROWS[1])]
    # The budget section goes in before the Agent Log; the person's line stays.
    assert out.index("## Token Budget") < out.index("## Agent Log") < out.index("No rows yet.")
    bare = "---\nid: REVI-003\n---\n\n# REVI-003\n"
    out = storydoc.project(
        bare,
        StoryFormat.MARKDOWN,
        meta={},
        remove=frozenset(),
        token_budget=None,
        new_rows=NEW_ROWS[1:],
        tz_label="UTC",
    )
    assert out.startswith(bare)
    assert parse(out, StoryFormat.MARKDOWN, source="x").agent_log == [
        storydoc.log_row_mapping(NEW_ROWS[1])
    ]


def test_project_markdown_without_changes_is_byte_identical() -> None:
    meta = {"id": "REVI-001", "status": "pending"}
    out = storydoc.project(
        MARKDOWN_STORY,
        StoryFormat.MARKDOWN,
        meta=meta,
        remove=frozenset(),
        token_budget=None,
        new_rows=[],
        tz_label="UTC",
    )
    assert out == MARKDOWN_STORY


# ---- storydoc: the Agent Log table --------------------------------------------------------


def test_parse_log_table() -> None:
    text = (
        "Append-only.\n\n"
        "| Timestamp (UTC) | Agent | Action | Outputs |\n"
        "|:---|---|---:|:---:|\n"
        "| t1 | a | did \\| that | out.md |\n"
        "|t2|b|x||\n"
        "not a row\n"
    )
    assert parse_log_table(text) == [
        {"timestamp": "t1", "agent": "a", "action": "did | that", "outputs": "out.md"},
        {"timestamp": "t2", "agent": "b", "action": "x", "outputs": ""},
    ]
    assert parse_log_table("") == []
    assert parse_log_table("| Timestamp | Agent |\n|---|---|\n") == []


def test_parse_log_table_keeps_extra_cells() -> None:
    rows = parse_log_table("| Timestamp | Agent |\n|---|---|\n| t | a | surplus |\n")
    assert rows == [{"timestamp": "t", "agent": "a", "col2": "surplus"}]


def test_log_rows_round_trip_through_markdown() -> None:
    row = AgentLogRow(timestamp="t", agent="a|b", action="x || y", outputs="p\\q | r")
    line = storydoc.log_row_markdown(row)
    assert line.count("\n") == 1
    header = "| Timestamp | Agent | Action | Outputs |\n|---|---|---|---|\n"
    assert parse_log_table(header + line) == [storydoc.log_row_mapping(row)]


def test_project_markdown_finds_sections_after_a_tilde_fence_holding_backticks() -> None:
    # A person documents a Markdown snippet: the ~~~ fence holds a ``` line, which does not
    # close it (CommonMark: only the same fence character closes a fence).
    text = MARKDOWN_STORY.replace(
        "~~~\n## Token Budget\na heading inside a fence is not the section\n~~~\n",
        "~~~markdown\n```python\nprint('hi')\n~~~\n",
    )
    assert markdown_sections(split_front_matter(text)[1])["description"][1].endswith("~~~")
    out = storydoc.project(
        text,
        StoryFormat.MARKDOWN,
        meta={"status": "generated"},
        remove=frozenset(),
        token_budget=NEW_BUDGET,
        new_rows=NEW_ROWS[1:],
        tz_label="America/Denver",
    )
    assert out.count("## Token Budget") == 1
    assert out.count("## Agent Log") == 1
    parsed = parse(out, StoryFormat.MARKDOWN, source="REVI-001.md")
    assert parsed.token_budget == NEW_BUDGET
    assert parsed.agent_log is not None
    assert [r["action"] for r in parsed.agent_log] == ["story created (pending)", "noted"]


@pytest.mark.parametrize(
    ("head", "kept"),
    [
        ("agent_log:  # append-only, newest last\n", "agent_log:  # append-only, newest last\n"),
        ("agent_log: []  # none yet\n", "agent_log:   # none yet\n"),
        ("agent_log: ~\n", "agent_log:\n"),
    ],
)
def test_project_yaml_keeps_a_comment_on_the_agent_log_line(head: str, kept: str) -> None:
    text = "id: FLOW-001\n" + head + "notes: x\n"
    out = storydoc.project(
        text,
        StoryFormat.YAML,
        meta={},
        remove=frozenset(),
        token_budget=None,
        new_rows=NEW_ROWS[1:],
        tz_label="UTC",
    )
    assert out == "id: FLOW-001\n" + kept + dump_yaml([storydoc.log_row_mapping(NEW_ROWS[1])]) + (
        "notes: x\n"
    )
    assert parse(out, StoryFormat.YAML, source="story.yaml").agent_log == [
        storydoc.log_row_mapping(NEW_ROWS[1])
    ]


def test_a_yaml_artifact_under_a_markdown_name_becomes_its_front_matter() -> None:
    """The flat layout stores artifacts as Markdown: a submitted YAML file keeps its text
    (comments too) as the front matter, and the stored file parses to the same fields."""
    kind = ArtifactKind.ELABORATION
    raw = "# the analyst's notes\nstory_id: REVI-001\nverdict: PASS\nsummary: clear\n"
    fields = {"story_id": "REVI-001", "verdict": "PASS", "summary": "clear"}
    stored = storydoc.artifact_text_as(raw, kind, "elab.yaml", "ELAB-REVI-001-1.md", "REVI-001")
    assert stored == "---\n" + raw + "---\n\n# REVI-001: elaboration\n"
    assert storydoc.parse_artifact(stored, kind, "x.md", "x.md") == fields
    # a document start marker is not doubled; a document end marker falls back to the fields
    marked = storydoc.artifact_text_as("---\n" + raw, kind, "e.yaml", "E.md", "REVI-001")
    assert marked == stored
    ended = storydoc.artifact_text_as(raw + "...\n", kind, "e.yaml", "E.md", "REVI-001")
    assert storydoc.parse_artifact(ended, kind, "E.md", "E.md") == fields
    # same format, story_id present: the text as submitted
    assert storydoc.artifact_text_as(raw, kind, "a.yaml", "b.yaml", "REVI-001") == raw


def test_a_converted_artifact_names_its_story() -> None:
    """A converted submission without story_id is stored with it, so the file stands on its
    own; one stored under a name of its own format is kept byte for byte."""
    kind = ArtifactKind.ELABORATION
    raw = "# notes\nverdict: PASS\n"
    fields = {"story_id": "FLOW-001", "verdict": "PASS"}
    as_md = storydoc.artifact_text_as(raw, kind, "in.yaml", "ELAB-FLOW-001-1.md", "FLOW-001")
    assert as_md == "---\nstory_id: FLOW-001\n" + raw + "---\n\n# FLOW-001: elaboration\n"
    assert storydoc.parse_artifact(as_md, kind, "x.md", "x.md") == fields
    flow = storydoc.artifact_text_as("{verdict: PASS}\n", kind, "in.yaml", "E.md", "FLOW-001")
    assert storydoc.parse_artifact(flow, kind, "E.md", "E.md") == fields
    assert storydoc.artifact_text_as(raw, kind, "in.yaml", "elaboration.yaml", "FLOW-001") == raw


def test_a_markdown_artifact_under_a_yaml_name_gives_its_fields_as_yaml() -> None:
    kind = ArtifactKind.ELABORATION
    raw = "---\nverdict: PASS\n---\n\n# Elaboration\n\n## Summary\n\nClear scope.\n"
    stored = storydoc.artifact_text_as(raw, kind, "elab.md", "elaboration.yaml", "FLOW-001")
    assert storydoc.parse_artifact(stored, kind, "elaboration.yaml", "e") == {
        "story_id": "FLOW-001",
        "verdict": "PASS",
        "summary": "Clear scope.",
    }


def test_a_stage_folder_removed_while_it_is_checked_is_not_taken_for_unwritable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another story's projection removes a stage folder it just emptied between the look
    for the nearest existing folder and the access() on it: the check looks again (the
    folder above is writable) instead of refusing with WORKSPACE_NOT_WRITABLE."""
    from storyflow.adapters.files import story_files

    stage = tmp_path / "plans" / "flow" / "ready-to-work"
    stage.mkdir(parents=True)
    files = story_files.StoryFiles(tmp_path, max_bytes=1 << 20)
    real_access = os.access
    raced: list[Path] = []

    def access(path: Any, mode: int) -> bool:
        if Path(path) == stage and not raced:  # removed just before this call
            stage.rmdir()
            raced.append(stage)
        return real_access(path, mode)

    monkeypatch.setattr(story_files.os, "access", access)
    files._check_writable(stage / "FLOW-001")
    assert raced == [stage] and not stage.exists()
