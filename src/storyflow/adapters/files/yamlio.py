"""Safe YAML in and out, with the limits untrusted files need.

Loading: the C safe loader (fast on bulk paths), with YAML 1.1's ``yes/no/on/off`` booleans
and implicit timestamps switched off (they stay strings), and an expansion limit that stops
alias bombs before anything walks the document. Writing: block style, key order kept.
Editing files people also edit goes through ``splice_top_level`` so their comments survive.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from storyflow.errors import InvalidInput

MAX_EXPANDED_NODES = 200_000
MAX_DEPTH = 100

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loader: only true/false are booleans; dates and times stay strings."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        """The tag of a node. A plain scalar's depends on its text alone (no path
        resolvers here), so it is remembered: the C composer asks for every node, and
        the keys and short values of storyflow's files repeat from file to file."""
        if kind is not yaml.ScalarNode or not implicit[0] or len(value) > _RESOLVED_MAX_LEN:
            return str(super().resolve(kind, value, implicit))
        tag = _RESOLVED.get(value)
        if tag is None:
            tag = str(super().resolve(kind, value, implicit))
            if len(_RESOLVED) >= _RESOLVED_MAX:
                _RESOLVED.clear()
            _RESOLVED[value] = tag
        return tag

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """PyYAML's, but a key written twice is refused (PyYAML keeps the last value: a
        second ``verdict:`` would silently win). Keys merged in with ``<<`` may be
        overridden, as YAML allows."""
        _refuse_duplicate_keys(node)
        return dict(super().construct_mapping(node, deep=deep))


class _DuplicateKey(Exception):
    def __init__(self, node: yaml.Node) -> None:
        super().__init__(node.value)
        self.node = node


def _refuse_duplicate_keys(node: yaml.MappingNode) -> None:
    seen: set[tuple[str, str]] = set()
    for key_node, _ in node.value:
        if type(key_node) is yaml.ScalarNode and not key_node.tag.endswith(":merge"):
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise _DuplicateKey(key_node)
            seen.add(key)


class _SyntaxLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """For checks that build no data: every node keeps one tag, so composing a document
    calls no Python resolver (the C composer asks for every node)."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        return _STR


_RESOLVED: dict[str, str] = {}  # plain scalar text -> tag, for _Loader.resolve
_RESOLVED_MAX = 50_000
_RESOLVED_MAX_LEN = 80


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


class _FencedDumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """For YAML inside a Markdown code fence: no line of the output may start with a fence
    (```, ~~~), so text of several lines is written double-quoted on one line."""


def _fenced_str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = '"' if "\n" in data or "`" in data or "~" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_FencedDumper.add_representer(str, _fenced_str_presenter)


def _expanded_size(node: yaml.Node, limit: int) -> int:
    """Count nodes as if every alias were copied, memoising shared nodes; stop past limit."""
    memo: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in memo:
            return memo[key]
        memo[key] = 1  # breaks recursive structures
        total = 1
        if isinstance(n, yaml.SequenceNode):
            for child in n.value:
                total += size(child)
                if total > limit:
                    break
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        memo[key] = total
        return total

    return size(node)


def _nests_too_deep(node: yaml.Node, limit: int) -> bool:
    """Whether collections nest deeper than ``limit`` with aliases followed. Recursion stops
    past ``limit``; a node that contains itself is left to ``load_mapping``."""
    memo: dict[int, int] = {}

    def height(n: yaml.Node, level: int) -> int:
        if level > limit:
            return limit + 1
        key = id(n)
        if key in memo:
            return memo[key]
        memo[key] = 0  # until known: a node reached again from inside itself
        if isinstance(n, yaml.SequenceNode):
            children = list(n.value)
        elif isinstance(n, yaml.MappingNode):
            children = [c for pair in n.value for c in pair]
        else:
            memo[key] = 0
            return 0
        tallest = 0
        for child in children:
            tallest = max(tallest, height(child, level + 1))
            if tallest > limit:
                break
        memo[key] = tallest + 1
        return memo[key]

    return height(node, 1) > limit


_INDENT_8 = re.compile(r"^ {8}", re.M)


def _inline(line: str) -> int:
    """Indicators after which a collection may open on the same line."""
    return line.count("- ") + line.count("? ") + line.count(": ")


def _depth_bound(text: str) -> int:
    """An upper bound on nesting depth, from a line scan. Along any path, block collections
    that start on a new line are more indented than their parent (at most max_indent + 1
    levels), those that start on the same line follow a '- ', '? ' or ': ' (at most that many
    per line), and every flow collection opens with '[' or '{'."""
    flow = text.count("[") + text.count("{")
    if flow > MAX_DEPTH:
        return flow
    # At most one block collection starts at each line's first character, and the others
    # follow an indicator: small files are settled by counting (all in C).
    loose = text.count("\n") + 1 + _inline(text)
    if loose + flow <= MAX_DEPTH:
        return loose + flow
    # Larger files: no line indented 8 spaces or more (one C-level scan) and the most
    # indicators on a line give the same bound as the exact scan below, at a third of its cost.
    if not _INDENT_8.search(text):
        bound = 8 * (max(map(_inline, text.split("\n"))) + 1) + flow
        if bound <= MAX_DEPTH:
            return bound
    max_indent = 0
    max_inline = 0
    for line in text.splitlines():
        body = line.lstrip(" ")
        if not body or body[0] == "#":
            continue
        max_indent = max(max_indent, len(line) - len(body))
        max_inline = max(max_inline, body.count("- ") + body.count("? ") + body.count(": "))
    return (max_indent + 1) * (max_inline + 1) + flow


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before the composer (recursive C code) sees the
    document: a few kilobytes of '[' would otherwise overflow the C stack and kill the
    process. The event parser is iterative."""
    if _depth_bound(text) <= MAX_DEPTH:
        return  # most files: no second pass
    loader = _Loader(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise InvalidInput(
                        f"{source}: YAML nests deeper than {MAX_DEPTH} levels",
                        code="YAML_TOO_COMPLEX",
                        hint="flatten the document",
                        details={"file": source},
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def _error_line(exc: yaml.YAMLError, line_offset: int) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return None if mark is None else mark.line + 1 + line_offset


_STR, _MAP, _SEQ = (f"tag:yaml.org,2002:{t}" for t in ("str", "map", "seq"))


class _Unusual(Exception):
    """A node the fast constructor leaves to PyYAML's (merge keys, tags, complex keys)."""


def _construct(loader: Any, node: yaml.Node, *, aliases: bool) -> Any:
    """The document's data. Plain mappings, sequences and strings are built directly (the
    safe constructor's generic machinery is half the cost of a load on bulk paths); other
    scalars go through the loader's own constructors; anything else (aliases, merge keys,
    explicit tags, non-scalar keys) through ``construct_document``, as before."""
    if aliases:
        return loader.construct_document(node)

    def build(current: yaml.Node) -> Any:
        tag = current.tag
        if tag == _STR:
            return current.value
        kind = type(current)
        if kind is yaml.MappingNode:
            if tag != _MAP:
                raise _Unusual
            data = {}
            others: set[tuple[str, str]] = set()  # keys that are not strings, as written
            for key_node, value_node in current.value:
                if type(key_node) is not yaml.ScalarNode or key_node.tag.endswith(":merge"):
                    raise _Unusual
                if key_node.tag == _STR:
                    key = key_node.value
                    if key in data:  # no key of another type equals a string
                        raise _DuplicateKey(key_node)
                else:  # 1 and true are one key to Python, two to YAML (and to PyYAML)
                    key = build(key_node)
                    if (key_node.tag, key_node.value) in others:
                        raise _DuplicateKey(key_node)
                    others.add((key_node.tag, key_node.value))
                data[key] = build(value_node)
            return data
        if kind is yaml.SequenceNode:
            if tag != _SEQ:
                raise _Unusual
            return [build(child) for child in current.value]
        return loader.construct_object(current)

    try:
        return build(node)
    except _Unusual:
        return loader.construct_document(node)


def load_yaml(text: str, *, source: str, line_offset: int = 0, construct: bool = True) -> Any:
    """Parse one YAML document safely; errors name the file and line. With
    ``construct=False`` only check it (and return its root node, untagged): a third of
    the cost."""
    loader = (_Loader if construct else _SyntaxLoader)(text)
    try:
        _check_depth(text, source)
        node = loader.get_single_node()
        if node is None:
            return None
        # Without aliases a document has at most one node per character (and a bit): the
        # walk is needed only for aliases or for a text that long.
        might_expand = "*" in text or 2 * len(text) + 2 > MAX_EXPANDED_NODES
        if might_expand and _expanded_size(node, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
            raise InvalidInput(
                f"{source}: YAML expands beyond {MAX_EXPANDED_NODES} nodes (alias bomb?)",
                code="YAML_TOO_COMPLEX",
                hint="remove the repeated aliases; storyflow files never need them",
                details={"file": source},
            )
        # Through aliases (``*name``), which the text scan above cannot see.
        if "*" in text and _nests_too_deep(node, MAX_DEPTH):
            raise InvalidInput(
                f"{source}: YAML nests deeper than {MAX_DEPTH} levels (through aliases)",
                code="YAML_TOO_COMPLEX",
                hint="remove the aliases; storyflow files never need them",
                details={"file": source},
            )
        if not construct:
            if type(node) is yaml.MappingNode:
                _refuse_duplicate_keys(node)  # the top level's: cheap, and what files state
            return node
        return _construct(loader, node, aliases="*" in text)
    except _DuplicateKey as exc:
        line = exc.node.start_mark.line + 1 + line_offset
        raise InvalidInput(
            f"{source}:{line}: the key {exc.node.value!r} is written twice in one mapping",
            code="DUPLICATE_KEY",
            hint="keep one of them: YAML allows each key once per mapping",
            details={"file": source, "line": line, "key": exc.node.value},
        ) from None
    except yaml.YAMLError as exc:
        line = _error_line(exc, line_offset)
        where = f"{source}:{line}" if line else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        # PyYAML >= 6.0.4 bounds nesting itself, and its scanner looks ahead through flow
        # collections: it can refuse before the event count above reaches MAX_DEPTH.
        too_deep = "maximum nesting depth" in problem
        raise InvalidInput(
            f"{where}: YAML nests deeper than {MAX_DEPTH} levels"
            if too_deep
            else f"{where}: malformed YAML: {problem}",
            code="YAML_TOO_COMPLEX" if too_deep else "INVALID_YAML",
            hint="flatten the document"
            if too_deep
            else "fix the YAML syntax at that line (quote values that contain ': ' or '#')",
            details={"file": source, "line": line},
        ) from exc
    except RecursionError as exc:
        raise InvalidInput(
            f"{source}: YAML nests too deeply",
            code="YAML_TOO_COMPLEX",
            hint="flatten the document",
            details={"file": source},
        ) from exc
    finally:
        loader.dispose()


def check_mapping(text: str, *, source: str, line_offset: int = 0) -> None:
    """Raise what ``load_mapping`` would raise for syntax, without building the data."""
    if _plain_mapping(text):
        return
    node = load_yaml(text, source=source, line_offset=line_offset, construct=False)
    if node is not None and not isinstance(node, yaml.MappingNode):
        raise InvalidInput(
            f"{source}: expected a YAML mapping at the top level",
            code="INVALID_YAML",
            hint="the document must be 'key: value' pairs",
            details={"file": source},
        )


_CParser: Any = getattr(getattr(yaml, "_yaml", None), "CParser", None)  # None: no libyaml

# A line at column 0 that is neither blank nor a comment.
_TOP_LINE = re.compile(r"^[^\s#].*", re.M)
# Where an alias or an anchor may begin (a '*' or '&' in the middle of a word cannot).
_NODE_PROPERTY = re.compile(r"(?:^|[\s\[{,])[*&]", re.M)


def _plain_mapping(text: str) -> bool:
    """Whether libyaml's parser settles ``check_mapping`` alone, ten times cheaper than
    composing the nodes: a document without aliases or anchors, with no line breaks but
    \\n, every line at column 0 a plain ``key:`` (so the top level is a mapping, and each
    of its keys is seen) or an item of a sequence under the key above (``agent_log:``
    writes them there), no key twice, and no error from the parser. Anything else, or
    an error, is settled by composing the document, which also says what is wrong."""
    if _CParser is None or not text or 2 * len(text) + 2 > MAX_EXPANDED_NODES:
        return False
    if any(c in text for c in "\r\x85\u2028\u2029"):
        return False
    if ("*" in text or "&" in text) and _NODE_PROPERTY.search(text):
        return False
    keys: set[str] = set()
    for line in _TOP_LINE.findall(text):
        if line == "-" or line.startswith("- "):  # an item of the key above's sequence
            if not keys:
                return False
            continue
        match = _TOP_KEY.match(line)
        if match is None or match.group(1) in keys:
            return False
        keys.add(match.group(1))
    if not keys or _depth_bound(text) > MAX_DEPTH:
        return False
    try:
        _CParser(text).raw_parse()
    except yaml.YAMLError:
        return False
    return True


def load_mapping(text: str, *, source: str, line_offset: int = 0) -> dict[str, Any]:
    data = load_yaml(text, source=source, line_offset=line_offset)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{source}: expected a YAML mapping at the top level, found {type(data).__name__}",
            code="INVALID_YAML",
            hint="the document must be 'key: value' pairs",
            details={"file": source},
        )
    if "*" in text and _contains_itself(data):
        raise InvalidInput(
            f"{source}: YAML refers to itself (an alias inside its own anchor)",
            code="YAML_TOO_COMPLEX",
            hint="remove the aliases; storyflow files never need them",
            details={"file": source},
        )
    return {str(k): v for k, v in data.items()}


def _contains_itself(data: Any) -> bool:
    """Whether a list or mapping holds itself: such data has no JSON (or database) form."""
    path: set[int] = set()

    def walk(value: Any) -> bool:
        if not isinstance(value, dict | list):
            return False
        if id(value) in path:
            return True
        path.add(id(value))
        found = any(walk(child) for child in (value.values() if isinstance(value, dict) else value))
        path.discard(id(value))
        return found

    return walk(data)


def dump_yaml(data: Any, *, fenced: bool = False) -> str:
    """Block-style YAML. Documents of short single-line scalars (all the engine renders on
    every change: Token Budget blocks, Agent Log rows, metadata) are written directly, an
    order of magnitude faster than the emitter; anything else goes through PyYAML.
    ``fenced``: for a Markdown code fence, every scalar on its key's line (no line starts
    with a fence a scalar holds)."""
    if isinstance(data, dict | list) and data:
        out: list[str] = []
        try:
            _emit(data, "", out)
        except _NeedsEmitter:
            pass
        else:
            return "".join(out)
    if fenced:
        width = 2**31 - 1  # no folding: a folded line could start with ```
        return str(
            yaml.dump(data, Dumper=_FencedDumper, sort_keys=False, allow_unicode=True, width=width)
        )
    return str(yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100))


class _NeedsEmitter(Exception):
    pass


def _fast_scalar(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value)
        if "." not in text or "e" in text or "n" in text:  # 1e-05, inf, nan: PyYAML's way
            raise _NeedsEmitter
        return text
    plain = _plain_scalar(value)
    if plain is None:
        raise _NeedsEmitter
    return plain


def _fast_key(key: Any) -> str:
    if not isinstance(key, str) or not _PLAIN.fullmatch(key) or key.lower() in _SPECIAL_WORDS:
        raise _NeedsEmitter
    return key


def _emit(value: dict[Any, Any] | list[Any], indent: str, out: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _emit_entry(f"{indent}{_fast_key(key)}:", item, indent, out)
        return
    for item in value:
        if isinstance(item, dict) and item:
            start = len(out)
            _emit(item, indent + "  ", out)
            out[start] = indent + "- " + out[start][len(indent) + 2 :]
        elif isinstance(item, dict | list):
            raise _NeedsEmitter  # nested or empty collections in a list: rare, let PyYAML
        else:
            out.append(f"{indent}- {_fast_scalar(item)}\n")


def _emit_entry(head: str, item: Any, indent: str, out: list[str]) -> None:
    if isinstance(item, dict):
        if not item:
            out.append(head + " {}\n")
        else:
            out.append(head + "\n")
            _emit(item, indent + "  ", out)
    elif isinstance(item, list):
        if not item:
            out.append(head + " []\n")
        else:
            out.append(head + "\n")
            _emit(item, indent, out)  # PyYAML writes sequences in mappings unindented
    else:
        out.append(f"{head} {_fast_scalar(item)}\n")


# A string that reads back as itself when written plain: starts with a letter, no YAML
# indicators, and not a word the resolvers (ours or a YAML 1.1 reader's) turn into
# something else.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_./@+-]*(?: [A-Za-z0-9_./@+()-]+)*")
_SPECIAL_WORDS = frozenset(
    {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "nan", "inf"}
)


def _plain_scalar(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if len(value) <= 80 and _PLAIN.fullmatch(value) and value.lower() not in _SPECIAL_WORDS:
            return value
        if len(value) <= 80 and value.isprintable():
            return "'" + value.replace("'", "''") + "'"  # single quotes read back verbatim
        return None
    return None


def dump_entry(key: str, value: Any) -> str:
    """``key: value`` as YAML; the scalars the engine renders on every change skip the
    emitter (12 yaml.dump calls were a third of a projection), everything else uses it."""
    plain = _plain_scalar(value)
    if plain is not None:
        return f"{key}: {plain}\n"
    if isinstance(value, list) and not value:
        return f"{key}: []\n"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [_plain_scalar(v) for v in value]
        if all(item is not None for item in items):
            return f"{key}:\n" + "".join(f"- {item}\n" for item in items)
    return dump_yaml({key: value})


# ---- front matter -------------------------------------------------------------------------

_FENCE = "---"


def split_front_matter(text: str) -> tuple[str | None, str, int]:
    """Return (front matter YAML or None, body, line number where the body starts - 1). A
    byte order mark before the fence (some editors write one) is not part of the file."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.startswith(_FENCE):
        return None, text, 0
    lines = text.split("\n")
    if lines[0].rstrip() != _FENCE:
        return None, text, 0
    for index in range(1, len(lines)):
        if lines[index].rstrip() in (_FENCE, "..."):
            front = "\n".join(lines[1:index]) + "\n"
            body = "\n".join(lines[index + 1 :])
            return front, body, index + 1
    return None, text, 0


def join_front_matter(front: str, body: str) -> str:
    return f"{_FENCE}\n{front.rstrip(chr(10))}\n{_FENCE}\n{body}"


# ---- top-level block splicing -------------------------------------------------------------

_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_\-]*)\s*:(\s|$)")


def _blocks(text: str) -> list[tuple[str | None, list[str]]]:
    """Split YAML text into top-level blocks: (key, lines). Comments and blank lines that
    precede a key belong to the block before it, so a key's own lines are contiguous."""
    blocks: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in text.splitlines(keepends=True):
        match = _TOP_KEY.match(line)
        if match:
            blocks.append((match.group(1), [line]))
        else:
            blocks[-1][1].append(line)
    return blocks


def splice_top_level(
    text: str, values: Mapping[str, Any], *, remove: frozenset[str] = frozenset()
) -> str:
    """Replace (or append) the top-level keys in ``values`` and drop ``remove``, leaving
    every other line of ``text`` (comments included) as it was."""
    rendered = {key: dump_entry(key, value) for key, value in values.items()}
    out: list[str] = []
    seen: set[str] = set()
    for key, lines in _blocks(text):
        if key is None or (key not in rendered and key not in remove):
            out.extend(lines)
            continue
        trailing = _trailing_trivia(lines)
        if key in rendered and key not in seen:
            out.append(rendered[key])
            seen.add(key)
        out.extend(trailing)
    missing = [rendered[k] for k in values if k not in seen]
    if missing:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.extend(missing)
    return "".join(out)


def _trailing_trivia(lines: list[str]) -> list[str]:
    """Blank and comment lines at column 0 ending a block (they introduce the next key)."""
    tail: list[str] = []
    for line in reversed(lines[1:]):
        stripped = line.strip()
        if stripped == "" or (line.startswith("#")):
            tail.append(line)
        else:
            break
    return list(reversed(tail))


# ---- Markdown sections --------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def section_key(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def markdown_sections(body: str) -> dict[str, tuple[str, str]]:
    """``## Title`` sections of a Markdown body: key -> (title, text). Fenced code is skipped
    when looking for headings; a repeated title keeps its first section."""
    sections: dict[str, tuple[str, str]] = {}
    current: str | None = None
    title = ""
    buffer: list[str] = []
    fence: str | None = None

    def flush() -> None:
        if current is not None and current not in sections:
            sections[current] = (title, "".join(buffer).strip("\n"))

    for line in body.splitlines(keepends=True):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
        match = _HEADING.match(line) if fence is None else None
        if match and len(match.group(1)) == 2:
            flush()
            title = match.group(2)
            current = section_key(title)
            buffer = []
        elif match and len(match.group(1)) == 1:
            flush()
            current = None
            buffer = []
        else:
            buffer.append(line)
    flush()
    return sections


def strip_comments(text: str) -> str:
    """Markdown text without HTML comments (placeholders are comments)."""
    return re.sub(r"<!--.*?-->", "", text, flags=re.S).strip()
