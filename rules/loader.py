"""Safe YAML loading that remembers where every key and value came from.

Only ``yaml.SafeLoader``'s composer and scalar constructor are used, and only
the tags of JSON's values (``!!str``, ``!!int``, ``!!float``, ``!!bool``,
``!!null``, ``!!map``, ``!!seq``): a tag that builds anything else (a date, bytes,
a set, a Python object) is refused where it is written. Aliases are expanded
with a budget of nodes and of text, so that a "billion laughs" document, or an
alias repeating a long text, is refused quickly instead of eating memory and
time. ``\\u`` escapes of a UTF-16 surrogate pair (``"\\ud83d\\ude00"``, as JSON
writes them) are joined into their character; a lone surrogate, which no
UTF-8 text can hold, is refused where it is written.

NEL (U+0085), LINE SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029) are
ordinary characters, as in YAML 1.2 and in editors: PyYAML (YAML 1.1) reads
them as line breaks, so a pasted one ended a comment early (the rest of the
line became a key), split a value, and moved every position after it a line
down. They are handed to PyYAML as private-use characters the text lacks and
given back in every value, key and message, so lines are counted as an
editor counts them (LF, CR LF, CR).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import Diagnostic, WorkflowInvalid
from .visible_text import quoted

MAX_BYTES = 1_000_000
MAX_TEXT = 1_000_000  # characters of scalar text in the document, aliases expanded
MAX_NODES = 50_000
MAX_DEPTH = 100

Path = tuple[Any, ...]


@dataclass(frozen=True)
class Position:
    """Where a node starts (1-based), and its scalar style (``None`` plain, ``'"'``, ``"'"``, ``"|"``, ``">"``)."""

    line: int
    col: int
    style: str | None = None


@dataclass
class Document:
    """A loaded YAML document with the position of each value and each mapping key, by path."""

    filename: str
    data: Any
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)
    text: str = ""

    def locate(self, path: Path, offset: int) -> tuple[int, int]:
        """``(line, col)`` in the file of character ``offset`` of the text value at ``path``.

        The value as parsed differs from its source where YAML folds lines
        (plain and block scalars), strips indentation, or unescapes (``\\"``,
        ``''``, ``\\u00e9``): the source is walked beside the value to find it.
        """
        return self.locate_in(self.where(path), _get(self.data, path), offset)

    def locate_in(self, pos: Position, value: Any, offset: int) -> tuple[int, int]:
        """``(line, col)`` of character ``offset`` of ``value``, a scalar written at ``pos``."""
        if not isinstance(value, str) or not self.text or offset < 0:
            return pos.line, pos.col
        starts = [0] + [m.end() for m in _LINE_BREAK.finditer(self.text)]
        if starts[-1] < len(self.text):
            starts.append(len(self.text))  # the end of the last line (str.splitlines' last start)
        if pos.line - 1 >= len(starts):
            return pos.line, pos.col
        i = starts[pos.line - 1] + pos.col - 1
        if pos.style in ('"', "'"):
            i += 1
        elif pos.style in ("|", ">"):
            i = starts[pos.line] if pos.line < len(starts) else i  # content starts on the next line
        i = _walk(self.text, i, value, offset, pos.style)
        line = max(n for n, start in enumerate(starts) if start <= i)
        return line + 1, i - starts[line] + 1

    def where(self, path: Path, *, key: bool = False) -> Position:
        """The position of the value at ``path`` (or of its key), else of its nearest ancestor."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Position(1, 1))


def _get(data: Any, path: Path) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


_ESCAPE_LENGTH = {"x": 4, "u": 6, "U": 10}
_HIGH_ESCAPE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}")
_LOW_ESCAPE = re.compile(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_length(src: str, i: int) -> int:
    """Source characters of the escape at ``src[i]``: a surrogate pair's two ``\\u`` escapes are one character."""
    length = _ESCAPE_LENGTH.get(src[i + 1], 2)
    if src[i + 1] == "u" and _HIGH_ESCAPE.fullmatch(src, i, i + 6) and _LOW_ESCAPE.fullmatch(src, i + 6, i + 12):
        return 12
    return length


def _walk(src: str, i: int, value: str, offset: int, style: str | None) -> int:
    """The index in ``src`` of ``value[offset]``, walking from ``i`` where the scalar's text starts."""
    j = 0
    while j < offset and i < len(src):
        c = src[i]
        if style == '"' and c == "\\" and src[i + 1:i + 2] in ("\n", "\r"):
            i += 2  # an escaped line break: no character, and the next line's indentation goes too
            while i < len(src) and src[i] in " \t\r\n":
                i += 1
        elif style == '"' and c == "\\" and i + 1 < len(src):
            i += _escape_length(src, i)
            j += 1
        elif style == "'" and c == "'" and src[i + 1:i + 2] == "'":
            i += 2
            j += 1
        elif c == value[j]:
            i += 1
            j += 1
        elif c in " \t\r\n":
            i += 1  # indentation, or the line break of a fold
        elif value[j] in " \n":
            j += 1  # a fold the source wrote as a line break, already skipped
        else:
            break
    while i < len(src) and j < len(value) and value[j] not in " \t\n":  # the character is further on:
        if src[i] in " \t\r\n":
            i += 1  # past a line break and indentation
        elif style == '"' and src[i] == "\\" and src[i + 1:i + 2] in ("\n", "\r"):
            i += 2  # past an escaped line break
        else:
            break
    return i


def load_document(text: str, filename: str) -> Document:
    """Parse ``text``; raise :class:`WorkflowInvalid` with ``file:line:col`` diagnostics on bad YAML."""
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise WorkflowInvalid([Diagnostic(filename, 1, 1, f"file is larger than {MAX_BYTES:,} bytes")])
    stand_ins = _StandIns(text)
    try:
        return _load(text, filename, stand_ins)
    except WorkflowInvalid as exc:
        if not stand_ins.active:
            raise
        raise WorkflowInvalid([Diagnostic(d.file, d.line, d.col, stand_ins.message(d.message), d.severity)
                               for d in exc.diagnostics]) from None


def _load(text: str, filename: str, stand_ins: _StandIns) -> Document:
    import yaml

    try:
        loader = _core_loader()(stand_ins.hide(text))
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (checked before parsing)
        line, col = _line_col(text, exc.position)
        raise WorkflowInvalid([Diagnostic(filename, line, col, f"YAML: character U+{exc.character:04X} is not "
                                          "allowed in YAML (a control character)")]) from None
    try:
        root = loader.get_single_node()
    except RecursionError:
        raise WorkflowInvalid([Diagnostic(filename, 1, 1, "YAML nested too deeply (refused as a possible YAML bomb)")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise WorkflowInvalid([Diagnostic(filename, line, col, f"YAML syntax: {_syntax_message(exc)}")]) from None
    except yaml.YAMLError as exc:
        raise WorkflowInvalid([Diagnostic(filename, 1, 1, f"YAML: {exc}")]) from None
    finally:
        loader.dispose()
    doc = Document(filename, None, text=text)
    if root is None:
        doc.data = None
        return doc
    builder = _Builder(loader, doc, stand_ins)
    doc.data = builder.build(root, ())
    if builder.errors:
        raise WorkflowInvalid(list(set(builder.errors)))  # a mistake inside an anchor, once however many aliases
    return doc


_DUPLICATE_ANCHOR = re.compile(r"found duplicate anchor (['\"])(?P<name>.*)\1; first occurrence")
_WHILE = re.compile(r"while (?:parsing|scanning) an? (?P<what>.+)")


def _syntax_message(exc: Any) -> str:
    """PyYAML's error as one sentence: its ``problem`` is often half of it, the ``context`` the other half."""
    problem, context, start = exc.problem, exc.context, exc.context_mark
    if problem == "but found another document":
        return "a workflow or rule-test file is one YAML document; another starts here"
    anchor = _DUPLICATE_ANCHOR.fullmatch(context or "")
    if anchor and start is not None:
        return f"anchor {quoted(anchor['name'])} defined twice (first at {start.line + 1}:{start.column + 1})"
    if problem and problem.startswith("found character '\\t'"):
        return "a tab here is not allowed by the YAML reader; use spaces (or quote the value that holds it)"
    if not problem:
        return context or "invalid YAML"
    where = _WHILE.fullmatch(context or "")
    if where and start is not None and (start.line, start.column) != (exc.problem_mark.line, exc.problem_mark.column):
        return f"{problem} (in the {where['what']} that starts at {start.line + 1}:{start.column + 1})"
    return problem


_LINE_BREAK = re.compile(r"\r\n|[\r\n]")  # as editors and YAML 1.2 count lines (not NEL, LS or PS)
_BREAKS_TO_YAML_11 = "\x85\u2028\u2029"  # line breaks to PyYAML alone


class _StandIns:
    """Private-use characters that ``text`` lacks, for its NEL, LS and PS, so PyYAML reads those
    as the ordinary characters they are in YAML 1.2; :meth:`back` restores them."""

    def __init__(self, text: str):
        found = [c for c in _BREAKS_TO_YAML_11 if c in text]
        used = set(text) if found else set()
        free = (chr(c) for c in (*range(0xE000, 0xF900), *range(0xF0000, 0xFFFFE)) if chr(c) not in used)
        pairs = {c: next(free) for c in found}
        self._to = str.maketrans(pairs)
        self._back = str.maketrans({v: k for k, v in pairs.items()})
        self.active = bool(pairs)

    def hide(self, text: str) -> str:
        return text.translate(self._to) if self.active else text

    def back(self, value: Any) -> Any:
        return value.translate(self._back) if self.active and isinstance(value, str) else value

    def message(self, text: str) -> str:
        """PyYAML's message with the characters it quotes shown as escapes (``'\u2028'``)."""
        if not self.active:
            return text
        return "".join(f"\\u{ord(c):04x}" if c in _BREAKS_TO_YAML_11 else c for c in self.back(text))


def _line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of character ``index`` of ``text``, as editors count lines."""
    breaks = list(_LINE_BREAK.finditer(text[:index]))
    if not breaks:
        return 1, index + 1
    return len(breaks) + 1, index - breaks[-1].end() + 1


def _past_properties(text: str, index: int) -> int:
    """Where a node's content starts: past its anchor (``&name``) and tag (``!tag``), which its mark includes."""
    while index < len(text) and text[index] in "&!":
        while index < len(text) and text[index] not in " \t\r\n":
            index += 1
        while index < len(text) and text[index] in " \t\r\n":
            index += 1
    return index


class _Budget(Exception):
    pass


class _Alias:
    """An alias (``*name``) as composed: the node it names, and where the alias itself is written."""

    __slots__ = ("node", "start_mark")

    def __init__(self, node: Any, start_mark: Any) -> None:
        self.node = node
        self.start_mark = start_mark


class _Builder:
    def __init__(self, loader: Any, doc: Document, stand_ins: _StandIns):
        self.loader = loader
        self.doc = doc
        self.stand_ins = stand_ins
        self.nodes = 0
        self.text = 0  # characters of scalar text built, aliases expanded
        self.alias: Any = None  # the mark of the outermost alias being expanded
        self.errors: list[Diagnostic] = []

    def build(self, node: Any, path: Path) -> Any:
        try:
            return self._build(node, path, 0)
        except _Budget as exc:
            mark = exc.args[0].start_mark if exc.args else node.start_mark
            if self.nodes > MAX_NODES:
                message = (f"document expands to more than {MAX_NODES:,} nodes "
                           "(nested aliases? refused as a possible YAML bomb)")
            elif self.text > MAX_TEXT:
                mark = self.alias or mark
                message = (f"aliases expand the document to more than {MAX_TEXT:,} characters of text "
                           "(refused as a possible YAML bomb)")
            else:
                message = f"YAML nested more than {MAX_DEPTH} levels deep"
            self.errors = [Diagnostic(self.doc.filename, mark.line + 1, mark.column + 1, message)]
            return None

    def _build(self, node: Any, path: Path, depth: int) -> Any:
        import yaml

        if isinstance(node, _Alias):
            outermost = self.alias is None
            if outermost:
                self.alias = node.start_mark
            value = self._build(node.node, path, depth)
            if outermost:
                self.alias = None
            return value
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            raise _Budget(node)
        mark = node.start_mark
        style = getattr(node, "style", None) if isinstance(node, yaml.ScalarNode) else None
        line, col = mark.line + 1, mark.column + 1
        if isinstance(node, yaml.ScalarNode) and self.doc.text[mark.index:mark.index + 1] in ("&", "!"):
            start = _past_properties(self.doc.text, mark.index)
            line, col = _line_col(self.doc.text, start)
        self.doc.values[path] = Position(line, col, style)
        allowed = _SCALAR_TAGS if isinstance(node, yaml.ScalarNode) else _PLAIN_COLLECTION_TAGS
        if node.tag not in allowed and not _plain_text(node):
            self.errors.append(
                Diagnostic(self.doc.filename, mark.line + 1, mark.column + 1, f"YAML: tag `{node.tag}` is not allowed")
            )
            return None
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._build_key(key_node, path)
                if key is _SKIP:
                    continue
                key_mark = key_node.start_mark
                if key in result:
                    self.errors.append(
                        Diagnostic(
                            self.doc.filename,
                            key_mark.line + 1,
                            key_mark.column + 1,
                            f"duplicate key {quoted(key)}",
                        )
                    )
                    continue
                self.doc.keys[path + (key,)] = Position(key_mark.line + 1, key_mark.column + 1)
                result[key] = self._build(value_node, path + (key,), depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self._build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        value = self._scalar(node, Position(line, col, style))
        return None if value is _SKIP else value

    def _scalar(self, node: Any, pos: Position) -> Any:
        """A scalar's value (text, number, boolean or null), counted against the text budget."""
        import yaml

        self.text += len(node.value)
        if self.text > MAX_TEXT:
            raise _Budget(node)
        mark = node.start_mark
        if node.tag == _STR or _plain_text(node):
            value: Any = self.stand_ins.back(node.value)  # a plain `=` or `<<` is text, as in YAML 1.2
        else:
            try:
                value = self.loader.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                self.errors.append(Diagnostic(self.doc.filename, mark.line + 1, mark.column + 1, f"YAML: {problem}"))
                return _SKIP
        if isinstance(value, str) and _SURROGATE.search(value):
            value = _PAIR.sub(_join_pair, value)
            lone = _SURROGATE.search(value)
            if lone:
                line, col = self.doc.locate_in(pos, value, lone.start())
                self.errors.append(Diagnostic(
                    self.doc.filename, line, col,
                    f"YAML: `\\u{ord(lone.group()):04x}` is half of a UTF-16 surrogate pair, not a character "
                    "(write the character itself, or both halves of its pair)"))
                return _SKIP
        return value

    def _build_key(self, node: Any, path: Path) -> Any:
        import yaml

        if isinstance(node, _Alias):
            node = node.node  # an alias as a key: the anchored key, checked as it is
        mark = node.start_mark
        if node.tag == "tag:yaml.org,2002:merge":
            self.errors.append(
                Diagnostic(self.doc.filename, mark.line + 1, mark.column + 1, "merge keys (`<<`) are not supported")
            )
            return _SKIP
        if not isinstance(node, yaml.ScalarNode):
            self.errors.append(
                Diagnostic(self.doc.filename, mark.line + 1, mark.column + 1, "mapping keys must be plain text")
            )
            return _SKIP
        if node.tag not in _SCALAR_TAGS and not _plain_text(node):
            self.errors.append(
                Diagnostic(self.doc.filename, mark.line + 1, mark.column + 1, f"YAML: tag `{node.tag}` is not allowed")
            )
            return _SKIP
        value = self._scalar(node, Position(mark.line + 1, mark.column + 1, node.style))
        if value is _SKIP:
            return _SKIP
        return value if isinstance(value, str) else str(value)


def _plain_text(node: Any) -> bool:
    """A plain ``=`` or ``<<`` (PyYAML gives them tags of their own): text, as in YAML 1.2."""
    return getattr(node, "style", "") is None and node.value in ("=", "<<")  # only scalars have a `style`


def _join_pair(match: re.Match) -> str:
    """The character a UTF-16 surrogate pair stands for."""
    high, low = (ord(c) for c in match.group())
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


_CORE_LOADER: Any = None
_BOOL, _INT, _FLOAT, _TIMESTAMP = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                                   "tag:yaml.org,2002:timestamp")


def _core_loader() -> Any:
    """``yaml.SafeLoader`` reading plain scalars as YAML 1.2's core schema does.

    YAML 1.1 (PyYAML's default) reads ``on``, ``off``, ``yes`` and ``no`` as
    booleans, so a queue named ``on`` or ``choices: [yes, no]`` silently
    changed; ``2024-01-01`` as a date, which JSON cannot store; ``010`` as
    octal, ``1:30`` as 90; and ``1e3`` as text. Here, as in YAML 1.2, only
    ``true``/``false`` are booleans, integers are decimal (or ``0x``/``0o``),
    floats include ``1e3``, ``.inf`` and ``.nan``, and dates stay text.
    """
    global _CORE_LOADER
    if _CORE_LOADER is None:
        import yaml

        class CoreLoader(yaml.SafeLoader):
            def compose_node(self, parent: Any, index: Any) -> Any:
                if self.check_event(yaml.AliasEvent):  # keep where the alias is written (for its budget)
                    mark = self.peek_event().start_mark
                    return _Alias(super().compose_node(parent, index), mark)
                return super().compose_node(parent, index)

        CoreLoader.yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        CoreLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
        CoreLoader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                         list("-+0123456789"))
        CoreLoader.add_implicit_resolver(
            _FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+.0123456789"))
        CoreLoader.add_constructor(_INT, lambda loader, node: _core_int(loader.construct_scalar(node), node))
        _CORE_LOADER = CoreLoader
    return _CORE_LOADER


def _core_int(text: str, node: Any = None) -> int:
    try:
        return int(text, 0) if text[:2] in ("0x", "0o") else int(text, 10)
    except ValueError:  # past Python's 4,300 digits
        import yaml

        raise yaml.constructor.ConstructorError(
            None, None, "an integer of more than 4,300 digits", node.start_mark if node is not None else None
        ) from None


_SKIP = object()
_PLAIN_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:omap"}
# JSON's values only: a date (`!!timestamp`) or bytes (`!!binary`) has no place in a workflow's JSON
_STR = "tag:yaml.org,2002:str"
_SCALAR_TAGS = {_STR, _BOOL, _INT, _FLOAT, "tag:yaml.org,2002:null"}
