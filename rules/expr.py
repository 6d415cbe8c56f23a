"""The rule expression language: a small, safe, Python-looking language.

An expression is read by a hand-written tokenizer and a Pratt parser, checked
against the context schema (``rules.context``), and built once into a tree of
Python closures. The user's text is never handed to Python's own evaluator or
compiler; the only things an expression can reach are context values (read
with ``Mapping.get``), list indexes, and the registered functions.

Language
    Literals: ``12``, ``0.95``, ``.5``, ``1e3``; ``'text'`` or ``"text"`` (escapes
    ``\\\\ \\" \\' \\n \\t \\r``, and ``\\u00e9`` or ``\\u{1F600}`` for a character by its code;
    any other backslash is kept as written, so a pattern like ``"\\d+"`` means what it says);
    ``true false null``; lists ``[a, b,]``.
    Durations ``30s 15m 2h 7d 1.5h`` are numbers of seconds.
    Names: ``task.category``, ``task.data.customer.tier``. Subscripts
    (``task.data["a b"]``, ``votes.labels[0]``, ``prediction.scores["bug"]``)
    only at or below data fields, which have no fixed shape.
    Operators, loosest first: ``or``; ``and``; ``not``; ``== != < <= > >= in
    not in`` (no chains: ``a < b < c`` is refused); ``+ -``; ``* /``; unary
    ``-``. Functions: ``len min max abs matches sample`` and plugin functions.

Semantics
    - Missing data is null: a missing root, field, key or list index is null,
      and so is a subscript that does not fit the value (``[-1]`` is the last item).
    - ``==``/``!=`` compare values; ``1 == 1.0`` but ``true != 1`` (a boolean is
      not a number); lists and objects compare item by item.
    - ``< <= > >=`` compare two numbers or two texts; with null on either side
      they are false; other mixes are an :class:`EvaluationError`.
    - ``in``: an item of a list, a substring of a text, a key of an object;
      anything ``in null`` is false (so ``not in null`` is true).
    - ``+ - * /`` take numbers (not booleans); ``+`` also joins two texts or two
      lists, of at most ``MAX_JOINED`` characters or items (a run of joins is
      joined once). A null operand gives null, and so does division by zero.
    - ``and or not`` go by truthiness (null, false, 0, "", [] and {} are false),
      short-circuit, and give true or false.
    - ``len(x)``; ``min``/``max`` of arguments, of one list, or of one object's
      values (``max(prediction.scores)``: the top score; nulls ignored, nothing
      left gives null); ``abs(x)``; null in, null out.
      ``matches(text, "pattern")``: a regular-expression search with a literal
      pattern in RE2 syntax (linear-time matching: no backreferences or
      lookaround), compiled when the rule loads to at most
      ``MAX_PATTERN_PROGRAM`` instructions, counting a Unicode class (``\\p{L}``)
      as one character, and at most ``MAX_CLASS_PROGRAM`` with its classes;
      null text gives false.
      ``sample(rate)``: true for a stable share ``rate`` of tasks, from a
      SHA-256 of the task's external id (else its id); the tasks of
      ``sample(0.1)`` are among those of ``sample(0.2)``.
    - Parts made only of literals are computed when the expression compiles,
      so ``1 + "a"`` or ``len(5)`` is a load-time :class:`ExpressionError`; so
      is an operation that fails for every type its operands may have, where
      literals and the facts of ``FACT_TYPES`` fix them (``task.age > "1d"``,
      ``task.category in 5``).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import itertools
import json
import keyword
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .context import CONTEXT_SCHEMA, FACT_TYPES, GROUP, LEAF, OPEN, SECTION_ROOTS, all_names, field_kind, open_names
from .durations import NUMBER, UNITS, literal
from .errors import RulesError
from .requires import NOTHING, Requires, all_of, any_of, one_of

__all__ = [
    "BUILTIN_FUNCTIONS",
    "Builtin",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "MAX_DEPTH",
    "MAX_JOINED",
    "MAX_LENGTH",
    "MAX_PATTERN",
    "MAX_CLASS_PROGRAM",
    "MAX_PATTERN_PROGRAM",
    "compile_expression",
]

MAX_LENGTH = 10_000
MAX_DEPTH = 64
MAX_PATTERN = 500
MAX_PATTERN_PROGRAM = 1_000  # RE2 instructions: past about this, matching falls back to RE2's slower NFA
MAX_CLASS_PROGRAM = 10_000  # with Unicode classes, each of which compiles to many (`\p{L}`: 1,200)
MAX_JOINED = 1_000_000  # characters of text, or items of a list, that `+` may build
DURATION_UNITS = UNITS


class ExpressionError(RulesError):
    """An expression cannot be compiled; ``offset`` is where in its source (0-based)."""

    def __init__(self, message: str, offset: int = 0, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.suggestion = suggestion


class EvaluationError(RulesError):
    """An expression failed on some data (``cannot add text and number in `a + 1```)."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class _Clash(Exception):
    """A value of the wrong kind; the node that caught it names the place."""


# ---------------------------------------------------------------- values

_PLAIN = (int, float, str)  # exact types: a bool is not an int here
_NUMBER_TYPES = (int, float)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_list(value: object) -> bool:
    return isinstance(value, (list, tuple))


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "text"
    if _is_list(value):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


_TRUTHY_EXACT = frozenset((bool, int, float, str, list, tuple, dict))


def _truthy(value: object) -> bool:
    if value is True:
        return True
    if value is False or value is None:
        return False
    if type(value) in _TRUTHY_EXACT or isinstance(value, (int, float, str, list, tuple, Mapping)):
        return bool(value)
    return True


def _equal(a: object, b: object) -> bool:
    """Equality where booleans are not numbers, and lists and objects compare deeply."""
    if a is b:
        return True
    if type(a) in _PLAIN and type(b) in _PLAIN:  # the common case, fast
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_list(a) and _is_list(b):
        return len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if _is_list(a) or _is_list(b) or isinstance(a, Mapping) or isinstance(b, Mapping):
        return False
    try:
        return bool(a == b)
    except Exception:  # an odd plugin value
        return False


def _render(value: object) -> str:
    """A value the way people read it in a trace: JSON, shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=_json_fallback)
    except (TypeError, ValueError, RecursionError):
        text = f"<{_type_name(value)}>"
    return text if len(text) <= 80 else text[:79] + "…"


def _json_fallback(value: object) -> object:
    return dict(value) if isinstance(value, Mapping) else repr(value)


# ---------------------------------------------------------------- operators

def _ordered(symbol: str, test: Callable[[Any, Any], bool]) -> Callable[[object, object], bool]:
    def compare(a: object, b: object) -> bool:
        if type(a) in _NUMBER_TYPES and type(b) in _NUMBER_TYPES:  # the common case, fast
            return test(a, b)
        if a is None or b is None:
            return False
        if (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return test(a, b)
        raise _Clash(f"cannot compare {_type_name(a)} and {_type_name(b)} with {symbol}")

    return compare


def _contains(item: object, container: object) -> bool:
    if container is None:
        return False
    if isinstance(container, str):
        if item is None:
            return False
        if not isinstance(item, str):
            raise _Clash(f"cannot look for {_type_name(item)} in text")
        return item in container
    if _is_list(container):
        return any(_equal(item, x) for x in container)
    if isinstance(container, Mapping):
        try:
            return item in container
        except TypeError:  # unhashable
            return False
    raise _Clash(f"cannot look inside {_type_name(container)} with `in`")


_COMPARISONS: dict[str, Callable[[object, object], bool]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": _ordered("<", operator.lt),
    "<=": _ordered("<=", operator.le),
    ">": _ordered(">", operator.gt),
    ">=": _ordered(">=", operator.ge),
    "in": _contains,
    "not in": lambda a, b: not _contains(a, b),
}


# An integer result past 4,300 digits fails like a float overflow: Python refuses to print it, and
# each product of such numbers costs more (a rule of many factors could stall every evaluation).
_INT_LIMIT = 10**4300
_INT_LIMIT_BITS = _INT_LIMIT.bit_length()


def _too_long(number: int) -> bool:
    """More than 4,300 digits (the bit length decides but at the boundary)."""
    bits = number.bit_length()
    return bits > _INT_LIMIT_BITS or (bits == _INT_LIMIT_BITS and abs(number) >= _INT_LIMIT)


def _fits(result: object) -> bool:
    """A finite float, or an integer short enough for the general operator not to refuse it."""
    if result.__class__ is float:
        return result - result == 0.0
    return result.__class__ is not int or not _too_long(result)


def _arithmetic(verb: str, apply: Callable[[Any, Any], Any]) -> Callable[[object, object], object]:
    def arith(a: object, b: object) -> object:
        if a is None or b is None:
            return None
        if _is_number(a) and _is_number(b):
            try:
                result = apply(a, b)
            except ZeroDivisionError:
                return None
            except OverflowError:
                raise _Clash(f"the result of {verb} is too large") from None
            if result.__class__ is float and result - result != 0.0 and a - a == 0.0 and b - b == 0.0:
                # finite inputs gave inf or NaN: floats overflow quietly, unlike Python ints
                raise _Clash(f"the result of {verb} is too large")
            if result.__class__ is int and _too_long(result):
                raise _Clash(f"the result of {verb} is too large (more than 4,300 digits)")
            return result
        raise _Clash(f"cannot {verb} {_type_name(a)} and {_type_name(b)}")

    return arith


def _add(a: object, b: object) -> object:
    if (isinstance(a, str) and isinstance(b, str)) or (_is_list(a) and _is_list(b)):
        if len(a) + len(b) > MAX_JOINED:  # type: ignore[arg-type]
            raise _Clash(_too_long_join(a))
        return [*a, *b] if _is_list(a) else a + b
    return _plus(a, b)


def _too_long_join(value: object) -> str:
    what = "characters" if isinstance(value, str) else "items"
    return f"the result of add is too long (more than {MAX_JOINED:,} {what})"


def _chain(start: int, acc: object, steps: Iterable[tuple[Callable[[object, object], object], object, str]]) -> object:
    """``acc`` combined with each ``(operator, operand, where)`` in turn, left to right.

    A run of texts (or of lists) joined by ``+`` is joined once at its end, not
    step by step: ``s + s + … + s`` costs its length, not its length times the
    number of terms. Its size is checked as it grows (:data:`MAX_JOINED`).
    """
    parts: list[Any] | None = None  # the run being joined, when acc is its first part
    size = 0
    for apply, right, where in steps:
        if parts is not None:
            if apply is _add and (isinstance(right, str) if isinstance(acc, str) else _is_list(right)):
                size += len(right)  # type: ignore[arg-type]
                if size > MAX_JOINED:
                    raise EvaluationError(f"{_too_long_join(acc)} in `{where}`", start)
                parts.append(right)
                continue
            acc, parts = _joined(acc, parts), None
        if apply is _add and ((isinstance(acc, str) and isinstance(right, str)) or (_is_list(acc) and _is_list(right))):
            size = len(acc) + len(right)  # type: ignore[arg-type]
            if size > MAX_JOINED:
                raise EvaluationError(f"{_too_long_join(acc)} in `{where}`", start)
            parts = [acc, right]
            continue
        try:
            acc = apply(acc, right)
        except _Clash as exc:
            raise EvaluationError(f"{exc} in `{where}`", start) from None
    return acc if parts is None else _joined(acc, parts)


def _joined(first: object, parts: list[Any]) -> object:
    """The join of a run of texts (``first`` is one) or of lists."""
    return "".join(parts) if isinstance(first, str) else [item for part in parts for item in part]


_plus = _arithmetic("add", operator.add)
_ARITHMETIC: dict[str, Callable[[object, object], object]] = {
    "+": _add,
    "-": _arithmetic("subtract", operator.sub),
    "*": _arithmetic("multiply", operator.mul),
    "/": _arithmetic("divide", operator.truediv),
}


def _negate(value: object) -> object:
    if value is None:
        return None
    if _is_number(value):
        return -value
    raise _Clash(f"cannot negate {_type_name(value)}")


def _lookup(container: object, key: object) -> object:
    """``container[key]`` for objects and lists; null whenever that does not fit."""
    if isinstance(container, Mapping):
        try:
            return container.get(key)
        except TypeError:  # unhashable key
            return None
    if _is_list(container) and isinstance(key, int) and not isinstance(key, bool):
        try:
            return container[key]
        except IndexError:
            return None
    return None


# ---------------------------------------------------------------- functions

@dataclass(frozen=True)
class Builtin:
    """A built-in function: its arity (``max_args`` ``None`` = any) and a line for docs."""

    name: str
    min_args: int
    max_args: int | None
    summary: str


BUILTIN_FUNCTIONS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin("len", 1, 1, "len(x): the length of a text, list or object; null for null"),
        Builtin("min", 1, None, "min(a, b, ...), min(list) or min(object): the smallest (of an object, "
                "of its values), nulls ignored"),
        Builtin("max", 1, None, "max(a, b, ...), max(list) or max(object): the largest (of an object, "
                "of its values), nulls ignored"),
        Builtin("abs", 1, 1, "abs(x): the absolute value of a number"),
        Builtin("matches", 2, 2, 'matches(text, "pattern"): a regular-expression search; null text is false'),
        Builtin("sample", 1, 1, "sample(rate): true for a stable, task-seeded share of tasks (0.1 = 10%)"),
    )
}


def _len(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value)
    raise _Clash(f"len() needs text, a list or an object, not {_type_name(value)}")


def _extreme(name: str, pick: Callable[[list], Any]) -> Callable[..., object]:
    """``min``/``max`` of the arguments, of one list, or of one object's values (``max(prediction.scores)``)."""
    def extreme(*args: object) -> object:
        values = _candidates(args)
        present = [v for v in values if v is not None]
        if not present:
            return None
        if all(map(_is_number, present)) or all(isinstance(v, str) for v in present):
            return pick(present)
        kinds = sorted({_type_name(v) for v in present})
        raise _Clash(f"{name}() needs all numbers or all texts, not {' and '.join(kinds)}")

    return extreme


def _candidates(args: tuple[object, ...]) -> Iterable[object]:
    """The values ``min``/``max`` choose from: one list's items, one object's values, else the arguments."""
    if len(args) == 1:
        (only,) = args
        if _is_list(only):
            return only
        if isinstance(only, Mapping):
            return only.values()
    return args


def _abs(value: object) -> object:
    if value is None:
        return None
    if _is_number(value):
        return abs(value)
    raise _Clash(f"abs() needs a number, not {_type_name(value)}")


_PURE_BUILTINS: dict[str, Callable[..., object]] = {
    "len": _len,
    "min": _extreme("min", min),
    "max": _extreme("max", max),
    "abs": _abs,
}


def _matcher(pattern: Any) -> Callable[[object], bool]:
    def matches(text: object) -> bool:
        if text is None:
            return False
        if not isinstance(text, str):
            raise _Clash(f"matches() needs text, not {_type_name(text)}")
        return pattern.search(text) is not None

    return matches


def _task_fraction(ctx: Mapping[str, object]) -> float:
    """A stable number in [0, 1) for the context's task."""
    task = ctx.get("task")
    key = None
    if isinstance(task, Mapping):
        key = task.get("external_id")
        if key is None or key == "":
            key = task.get("id")
    if key is None or key == "":
        raise EvaluationError("sample() needs the task's external_id or id")
    digest = hashlib.sha256(str(key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# ---------------------------------------------------------------- tokens

@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # num, str, name, op, bad, end
    text: str  # the source text; for ``bad`` the message
    offset: int
    end: int
    value: object = None


_NUMBER = NUMBER  # durations and numbers: one definition (rules.durations)
_WORD = re.compile(r"[A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_HEX_BRACED = re.compile(r"\{([0-9A-Fa-f]{1,6})\}")
_BAD_U = ("`\\u` is a character's code: four hex digits (`\\u00e9`) or one to six in braces "
          "(`\\u{1F600}`)")
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", "[", "]", ",", ".")
_REFUSED_SYMBOLS = {
    "**": "`**` (power) is not part of the language",
    "//": "`//` (floor division) is not part of the language; use /",
    "&&": "use `and` instead of `&&`",
    "||": "use `or` instead of `||`",
    "%": "`%` (remainder) is not part of the language",
    "=": "use == to compare (`=` would assign, which is not part of the language)",
    "!": "use `not` instead of `!`",
    "&": "use `and` instead of `&`",
    "|": "use `or` instead of `|`",
    ":": "`:` is not part of the language (no slices, dictionaries or lambdas)",
    "{": "`{` is not part of the language (no dictionaries or sets)",
    "}": "`}` is not part of the language (no dictionaries or sets)",
}
_SYMBOLS = sorted([*_OPERATORS, *_REFUSED_SYMBOLS], key=len, reverse=True)  # longest match wins


def _tokenize(src: str, strict: bool = True) -> list[_Token]:
    """All tokens, ending with ``end``; a ``bad`` token (raised when the parser reaches it) stops the scan.
    ``strict=False`` (a stored version) keeps a ``\\u`` that is no escape as written, as it was read then."""
    tokens: list[_Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
            continue
        if "0" <= c <= "9" or (c == "." and i + 1 < n and "0" <= src[i + 1] <= "9" and not _ends_operand(tokens)):
            tok = _scan_number(src, i)
        elif c in "'\"":
            tok = _scan_string(src, i, strict)
        elif c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z"):
            m = _NAME.match(src, i)
            assert m is not None
            tok = _Token("name", m.group(), i, m.end())
        else:
            tok = _scan_symbol(src, i)
        tokens.append(tok)
        if tok.kind == "bad":
            break
        i = tok.end
    tokens.append(_Token("end", "", n, n))
    return tokens


def _ends_operand(tokens: list[_Token]) -> bool:
    """Whether the last token ends an operand (so a following ``.`` reads a field, not ``.5``)."""
    return bool(tokens) and (tokens[-1].kind == "name" or tokens[-1].text in (")", "]"))


def _scan_number(src: str, i: int) -> _Token:
    m = _NUMBER.match(src, i)
    assert m is not None
    digits = m.group()
    word = _WORD.match(src, m.end())
    suffix = word.group() if word else ""
    end = m.end() + len(suffix)
    if suffix and suffix not in DURATION_UNITS:
        return _Token("bad", f"invalid number `{src[i:end]}` (durations are a number and one of s, m, h, d)", i, end)
    try:
        value = literal(digits, suffix)
    except (ValueError, OverflowError):
        return _Token("bad", "number is too long", i, end)
    if value in (float("inf"), float("-inf")):
        return _Token("bad", "number is too large", i, end)
    return _Token("num", src[i:end], i, end, value)


def _scan_string(src: str, i: int, strict: bool = True) -> _Token:
    quote, j, n = src[i], i + 1, len(src)
    parts: list[str] = []
    while j < n:
        c = src[j]
        if c == quote:
            return _Token("str", src[i : j + 1], i, j + 1, "".join(parts))
        if c == "\\" and j + 1 < n and src[j + 1] == "u":
            char, end = _unicode_escape(src, j)
            if char is not None:
                parts.append(char)
                j = end
                continue
            if strict:
                return _Token("bad", end, j, j + 2)
        if c == "\\" and j + 1 < n:
            parts.append(_ESCAPES.get(src[j + 1], src[j : j + 2]))
            j += 2
            continue
        parts.append(c)
        j += 1
    return _Token("bad", f"text is never closed: add a closing {quote}", i, n)


def _unicode_escape(src: str, j: int) -> tuple[str, int] | tuple[None, str]:
    """The character of the ``\\u`` escape at ``src[j]`` and where the escape ends, or ``None`` and why
    it is refused. ``\\u00e9``, ``\\u{1F600}``, and a UTF-16 pair ``\\ud83d\\ude00`` (as JSON writes 😀) joined
    into one character; a lone half of a pair, which no text can hold, is refused."""
    braced = _HEX_BRACED.match(src, j + 2)
    if braced:
        code, end = int(braced.group(1), 16), braced.end()
    elif _HEX4.match(src, j + 2):
        code, end = int(src[j + 2 : j + 6], 16), j + 6
        low = _HEX4.match(src, end + 2) if src.startswith("\\u", end) else None
        if 0xD800 <= code < 0xDC00 and low and 0xDC00 <= int(low.group(), 16) < 0xE000:
            code, end = 0x10000 + ((code - 0xD800) << 10) + (int(low.group(), 16) - 0xDC00), end + 6
    else:
        return None, _BAD_U
    if 0xD800 <= code < 0xE000:
        return None, (f"`{src[j:end]}` is half of a UTF-16 pair, which no text can hold alone; write the "
                      "character, or its code in braces (`\\u{1F600}`)")
    if code > 0x10FFFF:
        return None, f"`{src[j:end]}` is past the last character's code, 10FFFF"
    return chr(code), end


_UNICODE_CLASS = re.compile(r"\{[^}]*\}|[A-Za-z]")  # what follows `\p` or `\P`: `{L}`, `{Greek}`, `L`
_COUNTED_REPEAT = re.compile(r"(?<!\\)\{[0-9]+(?:,[0-9]*)?\}")


def _pattern_size_problem(text: str, size: int, program_size: Callable[[str], int]) -> str | None:
    """Why a pattern that compiles to ``size`` RE2 instructions is too large; ``None`` when it is not.

    A Unicode class (``\\p{L}``, ``\\pN``, ``\\P{Greek}``) compiles to a tree of UTF-8 byte ranges,
    1,200 instructions for ``\\p{L}``, yet matches as one character: the pattern is measured with each
    class as one character (``program_size`` of the text with a plain letter for each), against
    :data:`MAX_PATTERN_PROGRAM`, and as it is against :data:`MAX_CLASS_PROGRAM`. So ``\\p{L}+`` and
    ``^[\\p{L}\\p{N} ]+$`` pass, while ``[^x]{1000}`` or ``\\p{L}{10}`` (11,964) do not.
    """
    plain, classes = _unicode_classes(text)
    counted = _COUNTED_REPEAT.search(plain) is not None
    if not classes:
        why = ("counted repeats multiply it: `[a-z]{500}` is about 500, `.{100}` 800" if counted
               else "each character, class and group adds to it")
        return (f"the pattern is too large: it compiles to {size:,} RE2 instructions, more than "
                f"{MAX_PATTERN_PROGRAM:,} ({why})")
    shape = program_size(plain)
    if shape > MAX_PATTERN_PROGRAM:
        why = "counted repeats multiply it: `[a-z]{500}` is about 500" if counted else "each character adds to it"
        return (f"the pattern is too large: counting each Unicode class as one character, it compiles to "
                f"{shape:,} RE2 instructions, more than {MAX_PATTERN_PROGRAM:,} ({why})")
    if size <= MAX_CLASS_PROGRAM:
        return None
    shown = ", ".join(f"`{c}`" for c in dict.fromkeys(classes))
    why = ("a counted repeat multiplies a class: `\\p{L}{3}` is about 3,600" if counted
           else "each class written adds its own")
    return (f"the pattern is too large: with its Unicode classes ({shown}) it compiles to {size:,} RE2 "
            f"instructions, more than {MAX_CLASS_PROGRAM:,} (`\\p{{L}}` alone is 1,200; {why})")


def _unicode_classes(text: str) -> tuple[str, list[str]]:
    """``text`` with each Unicode class (``\\p{L}``, ``\\pN``, ``\\P{Greek}``) as the letter ``a``, and
    the classes found. A doubled backslash (``\\\\p``) is a backslash, not a class."""
    out: list[str] = []
    found: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "\\" and i + 1 < n:
            m = _UNICODE_CLASS.match(text, i + 2) if text[i + 1] in "pP" else None
            if m is not None:
                found.append(text[i:m.end()])
                out.append("a")
                i = m.end()
            else:
                out.append(text[i : i + 2])
                i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out), found


def _scan_symbol(src: str, i: int) -> _Token:
    for sym in _SYMBOLS:
        if src.startswith(sym, i):
            if sym in _REFUSED_SYMBOLS:
                return _Token("bad", _REFUSED_SYMBOLS[sym], i, i + len(sym))
            return _Token("op", sym, i, i + len(sym))
    c = src[i]
    shown = f"`{c}`" if c.isprintable() else f"U+{ord(c):04X}"
    return _Token("bad", f"unexpected character {shown}", i, i + 1)


# ---------------------------------------------------------------- parsing

_Fn = Callable[[Mapping[str, object], "list[str] | None"], object]


_Fast = Callable[[Mapping[str, object]], object]


@dataclass(frozen=True, slots=True)
class _Node:
    fn: _Fn  # ``fn(ctx, trace_lines_or_None)``: evaluates, and traces when given a list
    start: int
    end: int
    literal: bool = False  # does not depend on the context; its source says what it is
    value: object = None  # the value, when literal
    fast: _Fast | None = None  # ``fast(ctx)``: the same value, never traced (None: derived from ``fn``)
    boolean: bool = False  # always gives exactly True or False
    field: tuple[str, str] | None = None  # (root, key) when the node reads just ``root.key``
    kinds: frozenset[str] | None = None  # the types (``_type_name``) its value may have; None: any
    fact: str | None = None  # the fact it reads, when FACT_TYPES fixes that fact's type
    requires: Requires = NOTHING  # the values facts must have for it to hold (rules.requires)


def _fast(node: _Node) -> _Fast:
    """The untraced evaluator of a node: ``fast(ctx)`` gives what ``fn(ctx, None)`` gives."""
    if node.fast is not None:
        return node.fast
    if node.literal and not isinstance(node.value, (list, tuple, Mapping)):
        value = node.value
        return lambda ctx: value
    fn = node.fn
    return lambda ctx: fn(ctx, None)


_BOOLEAN = frozenset({"boolean"})
# A value of each type, to try an operation on: whether it clashes depends on the types alone.
_SAMPLES: dict[str, object] = {"null": None, "boolean": True, "number": 1, "text": "a", "list": [], "object": {}}
_A_TYPE = {"number": "a number", "text": "text", "boolean": "true or false", "list": "a list", "object": "an object"}


@functools.lru_cache(maxsize=1024)
def _always_clashes(test: Callable[..., object], kinds: tuple[frozenset[str] | None, ...]) -> _Clash | None:
    """The clash ``test`` meets for every combination of the operands' types (an open one may be any); else None."""
    types = [_SAMPLES.keys() if k is None else k for k in kinds]
    if not types or any(not t <= _SAMPLES.keys() for t in types) or math.prod(map(len, types)) > 256:
        return None
    first = None
    for combo in itertools.product(*types):
        try:
            test(*(_SAMPLES[k] for k in combo))
        except _Clash as exc:
            first = first or exc
            continue
        except Exception:  # noqa: BLE001 - any other outcome: not a type clash
            return None
        return None
    return first


@functools.lru_cache(maxsize=256)
def _arithmetic_kinds(op: str, left: frozenset[str] | None, right: frozenset[str] | None) -> frozenset[str] | None:
    """The types ``left OP right`` may give (null in, null out; ``/`` by zero is null)."""
    if left is None or right is None:
        return None
    out: set[str] = set()
    for a, b in itertools.product(left, right):
        if a == "null" or b == "null":
            out.add("null")
        elif a == b == "number":
            out.update(("number", "null") if op == "/" else ("number",))
        elif op == "+" and a == b and a in ("text", "list"):
            out.add(a)
    return frozenset(out)


OR_BP, AND_BP, NOT_BP, CMP_BP, ADD_BP, MUL_BP, UNARY_BP = 1, 2, 3, 4, 5, 6, 7
_INFIX_OPS = {"==": CMP_BP, "!=": CMP_BP, "<": CMP_BP, "<=": CMP_BP, ">": CMP_BP, ">=": CMP_BP,
              "+": ADD_BP, "-": ADD_BP, "*": MUL_BP, "/": MUL_BP}
_INFIX_WORDS = {"or": OR_BP, "and": AND_BP, "in": CMP_BP}
_LITERAL_WORDS = {"true": True, "false": False, "null": None}
_PYTHON_WORDS = {
    "True": "write `true` (lowercase)",
    "False": "write `false` (lowercase)",
    "None": "write `null` for a missing value",
    "is": "use == or != instead of `is`",
    "lambda": "`lambda` is not part of the language",
    "for": "comprehensions (`for … in …`) are not part of the language",
    "if": "conditional expressions (`… if … else …`) are not part of the language; write separate rules",
    "else": "conditional expressions (`… if … else …`) are not part of the language; write separate rules",
}
_EMPTY: Mapping[str, object] = {}


_Impl = Callable[[Mapping[str, object], list[object]], object]


def _binding(op: str) -> int:
    return CMP_BP if op == "not in" else _INFIX_OPS.get(op) or _INFIX_WORDS.get(op, 0)


def _const_fn(value: object) -> _Fn:
    return lambda ctx, tr: value


class _Parser:
    """Pratt parser that builds closures as it goes; depth-limited, never deeply recursive."""

    def __init__(self, src: str, roots: frozenset[str], section: str | None,
                 functions: Mapping[str, Callable[..., object]], strict: bool = True) -> None:
        self.src = src
        self.strict = strict
        self.tokens = _tokenize(src, strict)
        self.pos = 0
        self.depth = 0
        self.allowed = roots
        self.section = section
        self.functions = functions
        self.names: set[str] = set()
        self.roots: set[str] = set()
        self.problem: ExpressionError | None = None
        self.type_problem: ExpressionError | None = None

    # ---- tokens
    def peek(self, ahead: int = 0) -> _Token:
        tok = self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]
        if tok.kind == "bad":
            raise ExpressionError(tok.text, tok.offset)
        return tok

    def advance(self) -> _Token:
        tok = self.peek()
        self.pos += 1
        return tok

    def at(self, text: str, kind: str = "op") -> bool:
        tok = self.peek()
        return tok.kind == kind and tok.text == text

    def nest(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested too deeply (more than {MAX_DEPTH} levels)", tok.offset)

    def unnest(self) -> None:
        self.depth -= 1

    def snippet(self, start: int, end: int) -> str:
        text = self.src[start:end]
        if "\n" in text or "\r" in text:
            text = " ".join(text.split())
        return text if len(text) <= 80 else text[:79] + "…"

    def unexpected(self, tok: _Token, expected: str) -> ExpressionError:
        if tok.kind == "name" and tok.text in _PYTHON_WORDS:
            return ExpressionError(_PYTHON_WORDS[tok.text], tok.offset)
        if tok.kind == "name" and tok.text in DURATION_UNITS and self.pos and self.tokens[self.pos - 1].kind == "num":
            return ExpressionError(f"write durations without a space, like `2{tok.text}`", tok.offset)
        if tok.kind == "end":
            return ExpressionError(f"expected {expected}, but the expression ends here", tok.offset)
        return ExpressionError(f"expected {expected}, found {_describe(tok)}", tok.offset)

    # ---- expressions
    def parse(self) -> _Node:
        if self.peek().kind == "end":
            raise ExpressionError("empty expression", 0)
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "end":
            raise self.unexpected(tok, "an operator or the end of the expression")
        if self.problem is not None:
            raise self.problem
        if self.type_problem is not None:
            raise self.type_problem
        return node

    def infix(self) -> tuple[str | None, int]:
        tok = self.peek()
        if tok.kind == "op" and tok.text in _INFIX_OPS:
            return tok.text, _INFIX_OPS[tok.text]
        if tok.kind == "name":
            if tok.text in _INFIX_WORDS:
                return tok.text, _INFIX_WORDS[tok.text]
            if tok.text == "not":
                after = self.peek(1)
                if after.kind == "name" and after.text == "in":
                    return "not in", CMP_BP
        return None, 0

    def expr(self, bp: int) -> _Node:
        left = self.prefix(bp)
        while True:
            op, lbp = self.infix()
            if op is None or lbp <= bp:
                return left
            if lbp == CMP_BP:
                self.skip_operator(op)
                left = self.comparison(op, left, self.expr(CMP_BP))
                if self.infix()[1] == CMP_BP:
                    raise ExpressionError("chained comparisons are not supported; use and", self.peek().offset)
                continue
            operands, ops = [left], []
            while op is not None and _binding(op) == lbp:
                self.skip_operator(op)
                ops.append(op)
                operands.append(self.expr(lbp))
                op = self.infix()[0]
            left = self.logic(ops[0], operands) if lbp <= AND_BP else self.arithmetic(ops, operands)

    def skip_operator(self, op: str) -> None:
        self.advance()
        if op == "not in":
            self.advance()

    def prefix(self, bp: int) -> _Node:
        tok = self.peek()
        if tok.kind in ("num", "str"):
            self.advance()
            return self.no_postfix(self.constant(tok.value, tok.offset, tok.end))
        if tok.kind == "name":
            return self.word(tok, bp)
        if tok.kind == "op" and tok.text == "(":
            return self.no_postfix(self.parenthesized(tok))
        if tok.kind == "op" and tok.text == "[":
            return self.no_postfix(self.list_literal(tok))
        if tok.kind == "op" and tok.text == "-":
            self.advance()
            self.nest(tok)
            operand = self.expr(UNARY_BP)
            self.unnest()
            return self.negation(tok, operand)
        raise self.unexpected(tok, "an expression")

    def word(self, tok: _Token, bp: int) -> _Node:
        text = tok.text
        _check_word(tok)
        if text in _LITERAL_WORDS:
            self.advance()
            return self.no_postfix(self.constant(_LITERAL_WORDS[text], tok.offset, tok.end))
        if text == "not":
            if bp > NOT_BP:
                raise ExpressionError("put `not …` in parentheses here, like `a == (not b)`", tok.offset)
            self.advance()
            self.nest(tok)
            operand = self.expr(NOT_BP)
            self.unnest()
            fn, ffn = operand.fn, _fast(operand)
            if operand.boolean:
                fast: _Fast = lambda ctx: not ffn(ctx)
            else:
                fast = lambda ctx: not _truthy(ffn(ctx))
            node = _Node(lambda ctx, tr: not _truthy(fn(ctx, tr)), tok.offset, operand.end, fast=fast, boolean=True,
                         kinds=_BOOLEAN)
            return self.settle(node, [operand])
        if text in _PYTHON_WORDS or text in _INFIX_WORDS:
            raise self.unexpected(tok, "an expression")
        if keyword.iskeyword(text):
            raise ExpressionError(f"`{text}` is a Python keyword, not part of the language", tok.offset)
        self.advance()
        if self.at("("):
            return self.no_postfix(self.call(tok))
        return self.name(tok)

    def parenthesized(self, open_tok: _Token) -> _Node:
        self.advance()
        self.nest(open_tok)
        if self.peek().kind == "end":
            raise ExpressionError("`(` is never closed", open_tok.offset)
        if self.at(")"):
            raise ExpressionError("empty parentheses: expected an expression inside `( )`", open_tok.offset)
        inner = self.expr(0)
        if self.at(","):
            raise ExpressionError("tuples are not part of the language; use a list like `[a, b]`", self.peek().offset)
        self.close(open_tok, ")")
        self.unnest()
        return replace(inner, start=open_tok.offset, end=self.tokens[self.pos - 1].end)

    def list_literal(self, open_tok: _Token) -> _Node:
        found = self.items(open_tok, "]")
        fns = tuple(item.fn for item in found)
        ffns = tuple(_fast(item) for item in found)
        node = _Node(lambda ctx, tr: [f(ctx, tr) for f in fns], open_tok.offset, self.tokens[self.pos - 1].end,
                     fast=lambda ctx: [f(ctx) for f in ffns], kinds=frozenset({"list"}))
        return self.settle(node, found)

    def close(self, open_tok: _Token, closer: str) -> None:
        tok = self.peek()
        if tok.kind == "op" and tok.text == closer:
            self.advance()
            return
        if tok.kind == "end":
            raise ExpressionError(f"`{open_tok.text}` is never closed", open_tok.offset)
        raise self.unexpected(tok, f"`{closer}`")

    def items(self, open_tok: _Token, closer: str) -> list[_Node]:
        """Comma-separated expressions up to ``closer`` (a trailing comma is fine)."""
        self.advance()
        self.nest(open_tok)
        found: list[_Node] = []
        while True:
            tok = self.peek()
            if tok.kind == "end":
                raise ExpressionError(f"`{open_tok.text}` is never closed", open_tok.offset)
            if tok.kind == "op" and tok.text == closer:
                break
            found.append(self.expr(0))
            if self.at(","):
                self.advance()
            elif not self.at(closer):
                if self.peek().kind == "end":
                    raise ExpressionError(f"`{open_tok.text}` is never closed", open_tok.offset)
                raise self.unexpected(self.peek(), f"`,` or `{closer}`")
        self.advance()
        self.unnest()
        return found

    def no_postfix(self, node: _Node) -> _Node:
        tok = self.peek()
        if tok.kind != "op":
            return node
        if tok.text == ".":
            raise ExpressionError("fields can only be read from context names, like `task.category`", tok.offset)
        if tok.text == "[":
            raise self.subscript_error(tok)
        if tok.text == "(":
            raise ExpressionError("only registered functions can be called", tok.offset)
        return node

    @staticmethod
    def subscript_error(tok: _Token) -> ExpressionError:
        where = ", ".join(open_names())
        return ExpressionError(f"subscript is only allowed on data fields ({where})", tok.offset)

    # ---- nodes
    def constant(self, value: object, start: int, end: int) -> _Node:
        return _Node(_const_fn(value), start, end, literal=True, value=value, boolean=isinstance(value, bool),
                     kinds=frozenset({_type_name(value)}))

    def settle(self, node: _Node, children: list[_Node]) -> _Node:
        """Check a node whose operands are all literal now, and fold it to a constant when it is a scalar."""
        if not all(c.literal for c in children):
            return node
        try:
            value = node.fn(_EMPTY, None)
        except EvaluationError as exc:
            raise ExpressionError(exc.message, node.start) from None
        if isinstance(value, (list, tuple, Mapping)):
            return replace(node, literal=True, value=value)
        return self.constant(value, node.start, node.end)

    def negation(self, tok: _Token, operand: _Node) -> _Node:
        fn, ffn, where = operand.fn, _fast(operand), self.snippet(tok.offset, operand.end)

        def negate(ctx: Mapping[str, object], tr: list[str] | None) -> object:
            try:
                return _negate(fn(ctx, tr))
            except _Clash as exc:
                raise EvaluationError(f"{exc} in `{where}`", tok.offset) from None

        def fast(ctx: Mapping[str, object]) -> object:
            value = ffn(ctx)
            if type(value) in _NUMBER_TYPES:
                return -value
            try:
                return _negate(value)
            except _Clash as exc:
                raise EvaluationError(f"{exc} in `{where}`", tok.offset) from None

        self.check_types(_negate, [operand], self.snippet(tok.offset, operand.end), tok.offset)
        kinds = None if operand.kinds is None else operand.kinds & {"number", "null"}
        return self.settle(_Node(negate, tok.offset, operand.end, fast=fast, kinds=kinds), [operand])

    def logic(self, op: str, operands: list[_Node]) -> _Node:
        fns = tuple(o.fn for o in operands)
        if op == "and":
            def fn(ctx: Mapping[str, object], tr: list[str] | None) -> bool:
                for f in fns:
                    if not _truthy(f(ctx, tr)):
                        return False
                return True
        else:
            def fn(ctx: Mapping[str, object], tr: list[str] | None) -> bool:
                for f in fns:
                    if _truthy(f(ctx, tr)):
                        return True
                return False
        fast = _fast_logic(op == "and", [(_fast(o), o.boolean) for o in operands])
        requires = (all_of if op == "and" else any_of)(o.requires for o in operands)
        return self.settle(_Node(fn, operands[0].start, operands[-1].end, fast=fast, boolean=True, kinds=_BOOLEAN,
                                 requires=requires), operands)

    def arithmetic(self, ops: list[str], operands: list[_Node]) -> _Node:
        start = operands[0].start
        first = operands[0].fn
        steps = tuple((_ARITHMETIC[op], o.fn, self.snippet(start, o.end)) for op, o in zip(ops, operands[1:]))

        def fn(ctx: Mapping[str, object], tr: list[str] | None) -> object:
            return _chain(start, first(ctx, tr), ((apply, get(ctx, tr), where) for apply, get, where in steps))

        fast = _fast_arithmetic(start, _fast(operands[0]),
                                tuple((op, _fast(o), where) for (op, (_a, _g, where), o) in zip(ops, steps, operands[1:])))
        last = operands[-1]
        if (len(ops) == 1 and ops[0] in _RAW_ARITHMETIC and _scalar_literal(last)
                and type(last.value) in _NUMBER_TYPES and not operands[0].literal):
            fast = _fast_arithmetic_const(start, _fast(operands[0]), ops[0], last.value, steps[0][2])
        kinds, facts = operands[0].kinds, [operands[0].fact]
        checked = self.strict and not all(o.literal for o in operands)
        for op, (apply, _get, where), operand in zip(ops, steps, operands[1:]):
            facts.append(operand.fact)
            if checked:
                self.refuse_clash(apply, (kinds, operand.kinds), where, start, facts)
            kinds = _arithmetic_kinds(op, kinds, operand.kinds)
        return self.settle(_Node(fn, start, operands[-1].end, fast=fast, kinds=kinds), operands)

    def comparison(self, op: str, left: _Node, right: _Node) -> _Node:
        test, lf, rf = _COMPARISONS[op], left.fn, right.fn
        where = self.snippet(left.start, right.end)
        show_left, show_right = self.shower(left), self.shower(right, wrap=True)

        def fn(ctx: Mapping[str, object], tr: list[str] | None) -> bool:
            a, b = lf(ctx, tr), rf(ctx, tr)
            try:
                result = test(a, b)
            except _Clash as exc:
                raise EvaluationError(f"{exc} in `{where}`", left.start) from None
            if tr is not None:
                tr.append(f"{show_left(a)} {op} {show_right(b)} → {_render(result)}")
            return result

        fast = _fast_comparison(op, left, right, where)
        self.check_types(test, [left, right], where, left.start)
        return self.settle(_Node(fn, left.start, right.end, fast=fast, boolean=True, kinds=_BOOLEAN,
                                 requires=_comparison_requires(op, left, right)), [left, right])

    def shower(self, node: _Node, wrap: bool = False) -> Callable[[object], str]:
        """How a trace shows an operand: its source, and its value unless it is a literal."""
        text = self.snippet(node.start, node.end)
        if node.literal:
            return lambda value: text
        if wrap:
            return lambda value: f"({text} = {_render(value)})"
        return lambda value: f"{text} = {_render(value)}"

    def check_types(self, test: Callable[..., object], operands: list[_Node], where: str, offset: int) -> None:
        """Refuse an operation that fails whatever the facts: every type its operands may have clashes.

        All-literal operands are left to :meth:`settle`, which computes the node and reports its failure.
        """
        if self.strict and not all(o.literal for o in operands):
            self.refuse_clash(test, tuple(o.kinds for o in operands), where, offset, [o.fact for o in operands])

    def refuse_clash(self, test: Callable[..., object], kinds: tuple[frozenset[str] | None, ...], where: str,
                     offset: int, facts: list[str | None]) -> None:
        """Keep a type problem when ``test`` clashes for every combination of ``kinds``; ``facts`` are named."""
        clash = _always_clashes(test, kinds)
        if clash is None or self.type_problem is not None:
            return
        why = "; ".join(f"`{f}` is always {_A_TYPE[FACT_TYPES[f]]}" for f in dict.fromkeys(facts) if f)
        # raised after the syntax and the names are checked, as a name's problem is
        self.type_problem = ExpressionError(f"{clash} in `{where}` for every task" + (f": {why}" if why else ""),
                                            offset)

    # ---- names
    def name(self, tok: _Token) -> _Node:
        """A context name with its fields and subscripts; a wrong name is reported after the syntax checks."""
        root = tok.text
        problem: ExpressionError | None = None
        path, written, steps = [root], [root], []
        fast_steps: list[tuple[str | None, _Fast | None]] = []
        kind = field_kind(path) if root in CONTEXT_SCHEMA else OPEN  # after a problem, only the syntax is checked
        while self.peek().kind == "op" and self.peek().text in ".[(":
            nxt = self.peek()
            if nxt.text == "(":
                raise ExpressionError("only registered functions can be called", nxt.offset)
            if nxt.text == "[":
                if kind is not OPEN:
                    raise self.subscript_error(nxt)
                key = self.items(nxt, "]")
                if len(key) != 1:
                    raise ExpressionError('a subscript takes exactly one key, like `task.data["key"]`', nxt.offset)
                steps.append((None, key[0].fn))
                fast_steps.append((None, _fast(key[0])))
                written.append("")  # what follows a subscript is no name to suggest from
                continue
            self.advance()
            field_tok = self.peek()
            if field_tok.kind != "name":
                raise self.unexpected(field_tok, "a field name after `.`")
            _check_word(field_tok)
            self.advance()
            steps.append((field_tok.text, None))
            fast_steps.append((field_tok.text, None))
            written.append(field_tok.text)
            if kind is not OPEN:
                path.append(field_tok.text)
                kind = field_kind(path)
                if kind is None:
                    problem, kind = self.unknown_name(tok, ".".join(path)), OPEN
        if root not in CONTEXT_SCHEMA:
            problem = self.unknown_name(tok, ".".join(written[: written.index("")] if "" in written else written))
        elif root not in self.allowed:
            problem = ExpressionError(f"`{root}` is not available here ({self.availability()})", tok.offset)
        elif kind is GROUP:
            hint = self.group_hint(root)
            problem = ExpressionError(f"`{root}` is a group of fields, not a value; did you mean `{hint}`?",
                                      tok.offset, hint)
        end = self.tokens[self.pos - 1].end
        if problem:
            return self.defer(problem, tok.offset, end)
        self.names.add(".".join(path))
        self.roots.add(root)
        field = (root, fast_steps[0][0]) if len(fast_steps) == 1 and fast_steps[0][1] is None else None
        dotted = ".".join(written)
        fact = dotted if dotted in FACT_TYPES and all(key_fn is None for _, key_fn in steps) else None
        return _Node(_getter(root, steps), tok.offset, end, fast=_fast_getter(root, fast_steps), field=field,
                     kinds=frozenset({FACT_TYPES[fact]}) if fact else None, fact=fact)

    def defer(self, problem: ExpressionError, start: int, end: int) -> _Node:
        """Keep the first name problem for after parsing (syntax errors come first); stand in a null."""
        if self.problem is None:
            self.problem = problem
        return _Node(_const_fn(None), start, end)

    def unknown_name(self, tok: _Token, dotted: str) -> ExpressionError:
        parent = dotted.rpartition(".")[0]
        if parent and field_kind(parent.split(".")) is LEAF:
            return ExpressionError(f"unknown name `{dotted}`: `{parent}` is a single value with no fields", tok.offset)
        if dotted in self.functions or dotted in BUILTIN_FUNCTIONS:
            return ExpressionError(f"`{dotted}` is a function; call it like `{dotted}(…)`", tok.offset)
        available = [n for n in all_names() if n.split(".")[0] in self.allowed]
        head = ".".join(dotted.split(".")[:2])
        hint = _suggest(head, available) or _suggest(head, all_names())
        message = f"unknown name `{dotted}`" + (f"; did you mean `{hint}`?" if hint else "")
        return ExpressionError(message, tok.offset, hint)

    def group_hint(self, root: str) -> str:
        same = [n for n in all_names() if n.endswith("." + root) and n.split(".")[0] in self.allowed]
        if same:
            return same[0]
        fields = CONTEXT_SCHEMA[root]
        assert isinstance(fields, dict)
        return f"{root}.{next(iter(fields))}"

    def availability(self) -> str:
        ordered = [r for r in CONTEXT_SCHEMA if r in self.allowed]
        if self.section:
            return f"{self.section} sees {', '.join(ordered)}"
        if not ordered:
            return "no context names are available"
        return f"only {', '.join(ordered)} {'is' if len(ordered) == 1 else 'are'}"

    # ---- calls
    def call(self, tok: _Token) -> _Node:
        name = tok.text
        if name in CONTEXT_SCHEMA:
            raise ExpressionError("only registered functions can be called", tok.offset)
        if name not in BUILTIN_FUNCTIONS and name not in self.functions:
            known = sorted([*BUILTIN_FUNCTIONS, *self.functions])
            hint = _suggest(name, known)
            message = f"unknown function `{name}`" + (
                f"; did you mean `{hint}`?" if hint else f" (functions: {', '.join(known)})")
            node = self.defer(ExpressionError(message, tok.offset, hint), tok.offset, tok.end)
            self.items(self.peek(), ")")
            return replace(node, end=self.tokens[self.pos - 1].end)
        args = self.items(self.peek(), ")")
        end = self.tokens[self.pos - 1].end
        if name in BUILTIN_FUNCTIONS:
            return self.builtin_call(tok, args, end)
        return self.plugin_call(tok, args, end)

    def builtin_call(self, tok: _Token, args: list[_Node], end: int) -> _Node:
        spec = BUILTIN_FUNCTIONS[tok.text]
        if len(args) < spec.min_args or (spec.max_args is not None and len(args) > spec.max_args):
            raise ExpressionError(f"{spec.name}() takes {_arity(spec)}, got {len(args)}", tok.offset)
        if spec.name == "sample":
            return self.sample_call(tok, args[0], end)
        where = self.snippet(tok.offset, end)
        if spec.name == "matches":
            search = self.pattern_matcher(args[1])
            self.check_types(search, args[:1], where, tok.offset)
            impl: _Impl = lambda ctx, values: search(values[0])
            node = self.function_node(tok, args, end, impl, unary=search, boolean=True)
        else:
            pure = _PURE_BUILTINS[spec.name]
            self.check_types(pure, args, where, tok.offset)
            impl = lambda ctx, values: pure(*values)
            node = self.function_node(tok, args, end, impl, unary=pure if len(args) == 1 else None)
            if spec.name in ("len", "abs"):  # a number, or null for null
                kinds = args[0].kinds
                node = replace(node, kinds=frozenset({"number"}) | ({"null"} if kinds is None or "null" in kinds
                                                                     else set()))
        return self.settle(node, args)

    def pattern_matcher(self, arg: _Node) -> Callable[[object], bool]:
        if not (arg.literal and isinstance(arg.value, str)):
            raise ExpressionError('the pattern of matches() must be written as text, like "^refund"', arg.start)
        if len(arg.value) > MAX_PATTERN:
            raise ExpressionError(f"the pattern is longer than {MAX_PATTERN} characters", arg.start)
        # RE2, not Python's re: rule files are untrusted, and a pattern like ^(a+)+$ backtracks
        # for minutes in re on 35 characters; RE2 matches in time linear in the text. Imported
        # here: only workflows that use matches() pay for it.
        import re2

        options = re2.Options()
        options.log_errors = False  # the error is reported as file:line:col, not on stderr
        try:
            pattern = re2.compile(arg.value, options=options)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
            if "pattern too large" in reason:  # RE2's own limit, past ours: say it as ours is said
                raise ExpressionError("the pattern is too large for RE2 to build (a counted repeat multiplies "
                                      "it: `[a-z]{500}` is about 500 instructions, `\\p{L}{3}` about 3,600)",
                                      arg.start) from None
            backref = "perl operator" in reason or any(f"escape sequence: \\{d}" in reason for d in "123456789")
            hint = (" (RE2 syntax: no backreferences or lookaround)" if backref
                    else " (patterns are RE2 syntax: github.com/google/re2/wiki/Syntax)")
            raise ExpressionError(f"invalid pattern: {reason}{hint}", arg.start) from None
        # Matching is linear in the text, but by a factor up to the program's size once RE2's DFA gives
        # way to its NFA: [^x]{1000} written 49 times (392,005 instructions) took 2 s per 30 KB.
        if self.strict and pattern.programsize > MAX_PATTERN_PROGRAM:
            problem = _pattern_size_problem(arg.value, pattern.programsize,
                                            lambda text: re2.compile(text, options=options).programsize)
            if problem is not None:
                raise ExpressionError(problem, arg.start)
        return _matcher(pattern)

    def sample_call(self, tok: _Token, rate: _Node, end: int) -> _Node:
        if "task" not in self.allowed:
            raise ExpressionError(f"sample() needs `task`, which is not available here ({self.availability()})",
                                  tok.offset)
        if rate.literal and not (_is_number(rate.value) and 0 <= rate.value <= 1):
            raise ExpressionError("sample() takes a share between 0 and 1, like 0.1 for 10% of tasks", rate.start)
        self.names.update(("task.external_id", "task.id"))
        self.roots.add("task")

        def sample(ctx: Mapping[str, object], values: list[object]) -> bool:
            share = values[0]
            if share is None:
                return False
            if not _is_number(share):
                raise _Clash(f"sample() needs a number, not {_type_name(share)}")
            return _task_fraction(ctx) < share

        return self.function_node(tok, [rate], end, sample, boolean=True)

    def plugin_call(self, tok: _Token, args: list[_Node], end: int) -> _Node:
        name, fn = tok.text, self.functions[tok.text]
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            signature = None
        if signature is not None:
            try:
                signature.bind(*args)
            except TypeError:
                raise ExpressionError(f"{name}() cannot take {len(args)} argument(s)", tok.offset) from None

        def guarded(ctx: Mapping[str, object], values: list[object]) -> object:
            try:
                return fn(*values)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - a plugin's failure (sys.exit() too), reported with its name
                raise EvaluationError(f"function `{name}` failed: {type(exc).__name__}: {exc}", tok.offset) from exc

        return self.function_node(tok, args, end, guarded)

    def function_node(self, tok: _Token, args: list[_Node], end: int, impl: _Impl,
                      unary: Callable[[object], object] | None = None, boolean: bool = False) -> _Node:
        """A call of ``impl(ctx, values)``; a true/false result adds a trace line showing the arguments.

        ``unary``, when given, is ``impl`` for the first argument alone (``impl(ctx, [v]) == unary(v)``).
        """
        fns = tuple(a.fn for a in args)
        ffns = tuple(_fast(a) for a in args)
        where = self.snippet(tok.offset, end)
        showers = tuple(self.shower(a) for a in args)
        name = tok.text

        def call(ctx: Mapping[str, object], tr: list[str] | None) -> object:
            values = [f(ctx, tr) for f in fns]
            try:
                result = impl(ctx, values)
            except _Clash as exc:
                raise EvaluationError(f"{exc} in `{where}`", tok.offset) from None
            if tr is not None and isinstance(result, bool):
                shown = ", ".join(show(v) for show, v in zip(showers, values))
                tr.append(f"{name}({shown}) → {_render(result)}")
            return result

        if unary is not None:
            arg = ffns[0]

            def fast(ctx: Mapping[str, object]) -> object:
                value = arg(ctx)
                try:
                    return unary(value)
                except _Clash as exc:
                    raise EvaluationError(f"{exc} in `{where}`", tok.offset) from None
        else:
            def fast(ctx: Mapping[str, object]) -> object:
                values = [f(ctx) for f in ffns]
                try:
                    return impl(ctx, values)
                except _Clash as exc:
                    raise EvaluationError(f"{exc} in `{where}`", tok.offset) from None

        return _Node(call, tok.offset, end, fast=fast, boolean=boolean, kinds=_BOOLEAN if boolean else None)


def _check_word(tok: _Token) -> None:
    if tok.text.startswith("_"):
        raise ExpressionError("names starting with an underscore are not part of the language", tok.offset)
    if "__" in tok.text:
        raise ExpressionError("names containing a double underscore are not part of the language", tok.offset)


def _describe(tok: _Token) -> str:
    text = tok.text if len(tok.text) <= 30 else tok.text[:29] + "…"
    if tok.kind == "num":
        return f"number `{text}`"
    if tok.kind == "str":
        return f"text {text}"
    return f"`{text}`"


def _arity(spec: Builtin) -> str:
    if spec.max_args is None:
        return f"at least {spec.min_args} argument{'s' if spec.min_args != 1 else ''}"
    return f"{spec.min_args} argument{'s' if spec.min_args != 1 else ''}"


def _suggest(word: str, candidates: list[str]) -> str | None:
    """The closest candidate: a case-insensitive match, a matching last part, else difflib's best."""
    lowered = word.lower()
    for candidate in candidates:
        if candidate.lower() == lowered:
            return candidate
    if "." not in word:
        for candidate in candidates:
            if candidate.rpartition(".")[2] == word:
                return candidate
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def _getter(root: str, steps: list[tuple[str | None, _Fn | None]]) -> _Fn:
    """A closure reading ``root`` then each step (a fixed key, or a computed subscript) from a context."""
    if len(steps) == 1 and steps[0][1] is None:
        only = steps[0][0]

        def read_field(ctx: Mapping[str, object], tr: list[str] | None) -> object:
            value = ctx.get(root)
            return value.get(only) if type(value) is dict or isinstance(value, Mapping) else None

        return read_field
    if all(key_fn is None for _, key_fn in steps):
        keys = tuple(key for key, _ in steps)

        def read(ctx: Mapping[str, object], tr: list[str] | None) -> object:
            value = ctx.get(root)
            for key in keys:
                if not isinstance(value, Mapping):
                    return None
                value = value.get(key)
            return value

        return read
    fixed = tuple(steps)

    def read_subscripted(ctx: Mapping[str, object], tr: list[str] | None) -> object:
        value = ctx.get(root)
        for key, key_fn in fixed:
            if value is None:
                return None
            value = _lookup(value, key if key_fn is None else key_fn(ctx, tr))
        return value

    return read_subscripted


# ---------------------------------------------------------------- untraced evaluators
#
# Each node also gets ``fast(ctx)``: the same value as ``fn(ctx, None)`` with no
# trace argument, specialised at compile time (a fixed key path read in one
# closure, a literal operand captured rather than called, the common exact
# types tested first and everything else handed to the general operator).

def _fast_getter(root: str, steps: list[tuple[str | None, _Fast | None]]) -> _Fast:
    """``fast(ctx)`` reading ``root`` then each step (a fixed key, or a computed subscript)."""
    if not steps:
        return lambda ctx: ctx.get(root)
    if any(key_fn is not None for _, key_fn in steps):
        fixed = tuple(steps)

        def read_subscripted(ctx: Mapping[str, object]) -> object:
            value = ctx.get(root)
            for key, key_fn in fixed:
                if value is None:
                    return None
                value = _lookup(value, key if key_fn is None else key_fn(ctx))
            return value

        return read_subscripted
    keys = tuple(key for key, _ in steps)
    if len(keys) == 1:
        (k1,) = keys

        def read1(ctx: Mapping[str, object]) -> object:
            value = ctx.get(root)
            if type(value) is dict:
                return value.get(k1)
            return value.get(k1) if isinstance(value, Mapping) else None

        return read1
    if len(keys) == 2:
        k1, k2 = keys

        def read2(ctx: Mapping[str, object]) -> object:
            value = ctx.get(root)
            if type(value) is not dict and not isinstance(value, Mapping):
                return None
            value = value.get(k1)
            if type(value) is dict:
                return value.get(k2)
            return value.get(k2) if isinstance(value, Mapping) else None

        return read2

    def read(ctx: Mapping[str, object]) -> object:
        value = ctx.get(root)
        for key in keys:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value

    return read


def _fast_logic(is_and: bool, parts: list[tuple[_Fast, bool]]) -> _Fast:
    """``and``/``or`` over the operands' evaluators; boolean operands skip the truthiness test."""
    if len(parts) == 2:
        (a, ba), (b, bb) = parts
        if is_and:
            if ba and bb:
                return lambda ctx: a(ctx) and b(ctx)
            if ba:
                return lambda ctx: a(ctx) and _truthy(b(ctx))
            if bb:
                return lambda ctx: _truthy(a(ctx)) and b(ctx)
            return lambda ctx: _truthy(a(ctx)) and _truthy(b(ctx))
        if ba and bb:
            return lambda ctx: a(ctx) or b(ctx)
        if ba:
            return lambda ctx: a(ctx) or _truthy(b(ctx))
        if bb:
            return lambda ctx: _truthy(a(ctx)) or b(ctx)
        return lambda ctx: _truthy(a(ctx)) or _truthy(b(ctx))
    fns = tuple(f for f, _ in parts)
    if all(boolean for _, boolean in parts):
        if is_and:
            def all_of(ctx: Mapping[str, object]) -> bool:
                for f in fns:
                    if not f(ctx):
                        return False
                return True

            return all_of

        def any_of(ctx: Mapping[str, object]) -> bool:
            for f in fns:
                if f(ctx):
                    return True
            return False

        return any_of
    if is_and:
        def all_truthy(ctx: Mapping[str, object]) -> bool:
            for f in fns:
                if not _truthy(f(ctx)):
                    return False
            return True

        return all_truthy

    def any_truthy(ctx: Mapping[str, object]) -> bool:
        for f in fns:
            if _truthy(f(ctx)):
                return True
        return False

    return any_truthy


_RAW_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def _fast_arithmetic(start: int, first: _Fast, steps: tuple[tuple[str, _Fast, str], ...]) -> _Fast:
    """``+ - * /`` left to right; two exact numbers go straight to the operator (``/`` and odd cases do not)."""
    if len(steps) == 1:
        ((op, get, where),) = steps
        apply = _ARITHMETIC[op]
        raw = _RAW_ARITHMETIC.get(op)

        if raw is not None:
            def arith1(ctx: Mapping[str, object]) -> object:
                a, b = first(ctx), get(ctx)
                if type(a) in _NUMBER_TYPES and type(b) in _NUMBER_TYPES:
                    try:
                        result = raw(a, b)
                    except OverflowError:
                        pass  # the general operator reports it
                    else:
                        if _fits(result):
                            return result  # else inf, NaN or a huge integer: the general operator reports it
                try:
                    return apply(a, b)
                except _Clash as exc:
                    raise EvaluationError(f"{exc} in `{where}`", start) from None

            return arith1

        def divide1(ctx: Mapping[str, object]) -> object:
            a, b = first(ctx), get(ctx)
            try:
                return apply(a, b)
            except _Clash as exc:
                raise EvaluationError(f"{exc} in `{where}`", start) from None

        return divide1
    applied = tuple((_ARITHMETIC[op], get, where) for op, get, where in steps)
    if any(op == "+" for op, _, _ in steps):
        return lambda ctx: _chain(start, first(ctx), ((apply, get(ctx), where) for apply, get, where in applied))

    def arith(ctx: Mapping[str, object]) -> object:
        acc = first(ctx)
        for apply, get, where in applied:
            right = get(ctx)
            try:
                acc = apply(acc, right)
            except _Clash as exc:
                raise EvaluationError(f"{exc} in `{where}`", start) from None
        return acc

    return arith


def _fast_arithmetic_const(start: int, first: _Fast, op: str, c: object, where: str) -> _Fast:
    """``x + c`` (``-``, ``*``) with ``c`` a literal number: an exact number goes straight to the operator."""
    apply, raw = _ARITHMETIC[op], _RAW_ARITHMETIC[op]

    def arith_const(ctx: Mapping[str, object]) -> object:
        a = first(ctx)
        if type(a) in _NUMBER_TYPES:
            try:
                result = raw(a, c)
            except OverflowError:
                pass  # the general operator reports it
            else:
                if _fits(result):
                    return result  # else inf, NaN or a huge integer: the general operator reports it
        try:
            return apply(a, c)
        except _Clash as exc:
            raise EvaluationError(f"{exc} in `{where}`", start) from None

    return arith_const


def _comparison_requires(op: str, left: _Node, right: _Node) -> Requires:
    """``root.key == literal`` (either way round) or ``root.key in [literals…]``: the value it needs."""
    if op == "==" and left.field is not None and right.literal:
        return one_of(".".join(left.field), [right.value])
    if op == "==" and right.field is not None and left.literal:
        return one_of(".".join(right.field), [left.value])
    if op == "in" and left.field is not None and right.literal and isinstance(right.value, (list, tuple)):
        return one_of(".".join(left.field), right.value)
    return NOTHING


def _scalar_literal(node: _Node) -> bool:
    return node.literal and not isinstance(node.value, (list, tuple, Mapping))


def _fast_comparison(op: str, left: _Node, right: _Node, where: str) -> _Fast:
    """A comparison's evaluator; a literal side is captured, the common exact types are tested first."""
    test = _COMPARISONS[op]
    offset = left.start
    lf, rf = _fast(left), _fast(right)

    def general(a: object, b: object) -> bool:
        try:
            return test(a, b)
        except _Clash as exc:
            raise EvaluationError(f"{exc} in `{where}`", offset) from None

    if _scalar_literal(right) and not _scalar_literal(left):
        c = right.value
        if op in ("==", "!="):
            if type(c) is bool:  # only the same boolean equals a boolean
                return (lambda ctx: lf(ctx) is c) if op == "==" else (lambda ctx: lf(ctx) is not c)
            if type(c) in _PLAIN:
                if left.field is not None:
                    return _field_equals_const(op == "==", left.field, c)
                if op == "==":
                    def eq_const(ctx: Mapping[str, object]) -> bool:
                        a = lf(ctx)
                        return a == c if type(a) in _PLAIN else _equal(a, c)

                    return eq_const

                def ne_const(ctx: Mapping[str, object]) -> bool:
                    a = lf(ctx)
                    return a != c if type(a) in _PLAIN else not _equal(a, c)

                return ne_const
        elif op in _ORDERED and (type(c) in _NUMBER_TYPES or type(c) is str):
            kinds = _NUMBER_TYPES if type(c) is not str else (str,)
            if left.field is not None:
                return _field_ordered_const(op, left.field, c, kinds, general)
            return _ordered_const(op, lf, c, kinds, general)
    elif _scalar_literal(left) and not _scalar_literal(right):
        c = left.value
        if op in ("in", "not in") and type(c) is str:
            return _text_in(op == "in", c, rf, general)
    if op in ("==", "!="):
        if op == "==":
            def eq(ctx: Mapping[str, object]) -> bool:
                a, b = lf(ctx), rf(ctx)
                if type(a) in _PLAIN and type(b) in _PLAIN:
                    return a is b or a == b  # `is`: a NaN read twice is the same value
                return _equal(a, b)

            return eq

        def ne(ctx: Mapping[str, object]) -> bool:
            a, b = lf(ctx), rf(ctx)
            if type(a) in _PLAIN and type(b) in _PLAIN:
                return a is not b and a != b
            return not _equal(a, b)

        return ne
    if op in _ORDERED:
        raw = _ORDERED[op]

        def ordered(ctx: Mapping[str, object]) -> bool:
            a, b = lf(ctx), rf(ctx)
            if type(a) in _NUMBER_TYPES and type(b) in _NUMBER_TYPES:
                return raw(a, b)
            return general(a, b)

        return ordered
    return lambda ctx: general(lf(ctx), rf(ctx))


_ORDERED: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _ordered_const(op: str, lf: _Fast, c: object, kinds: tuple, general: Callable[[object, object], bool]) -> _Fast:
    """``x < c`` (and the rest) with ``c`` a literal number or text: the matching exact type compares inline."""
    if op == "<":
        def lt(ctx: Mapping[str, object]) -> bool:
            a = lf(ctx)
            if type(a) in kinds:
                return a < c
            return a is not None and general(a, c)

        return lt
    if op == "<=":
        def le(ctx: Mapping[str, object]) -> bool:
            a = lf(ctx)
            if type(a) in kinds:
                return a <= c
            return a is not None and general(a, c)

        return le
    if op == ">":
        def gt(ctx: Mapping[str, object]) -> bool:
            a = lf(ctx)
            if type(a) in kinds:
                return a > c
            return a is not None and general(a, c)

        return gt

    def ge(ctx: Mapping[str, object]) -> bool:
        a = lf(ctx)
        if type(a) in kinds:
            return a >= c
        return a is not None and general(a, c)

    return ge


def _field_equals_const(positive: bool, field: tuple[str, str], c: object) -> _Fast:
    """``root.key == c`` / ``!=`` with ``c`` a literal number or text, the field read inline."""
    root, key = field
    if positive:
        def eq(ctx: Mapping[str, object]) -> bool:
            v = ctx.get(root)
            a = v.get(key) if type(v) is dict else (v.get(key) if isinstance(v, Mapping) else None)
            return a == c if type(a) in _PLAIN else _equal(a, c)

        return eq

    def ne(ctx: Mapping[str, object]) -> bool:
        v = ctx.get(root)
        a = v.get(key) if type(v) is dict else (v.get(key) if isinstance(v, Mapping) else None)
        return a != c if type(a) in _PLAIN else not _equal(a, c)

    return ne


def _field_ordered_const(op: str, field: tuple[str, str], c: object, kinds: tuple,
                         general: Callable[[object, object], bool]) -> _Fast:
    """``root.key < c`` (and the rest), the field read inline."""
    root, key = field
    if op == "<":
        def lt(ctx: Mapping[str, object]) -> bool:
            v = ctx.get(root)
            a = v.get(key) if type(v) is dict else (v.get(key) if isinstance(v, Mapping) else None)
            if type(a) in kinds:
                return a < c
            return a is not None and general(a, c)

        return lt
    if op == "<=":
        def le(ctx: Mapping[str, object]) -> bool:
            v = ctx.get(root)
            a = v.get(key) if type(v) is dict else (v.get(key) if isinstance(v, Mapping) else None)
            if type(a) in kinds:
                return a <= c
            return a is not None and general(a, c)

        return le
    if op == ">":
        def gt(ctx: Mapping[str, object]) -> bool:
            v = ctx.get(root)
            a = v.get(key) if type(v) is dict else (v.get(key) if isinstance(v, Mapping) else None)
            if type(a) in kinds:
                return a > c
            return a is not None and general(a, c)

        return gt

    def ge(ctx: Mapping[str, object]) -> bool:
        v = ctx.get(root)
        a = v.get(key) if type(v) is dict else (v.get(key) if isinstance(v, Mapping) else None)
        if type(a) in kinds:
            return a >= c
        return a is not None and general(a, c)

    return ge


def _text_in(positive: bool, item: str, rf: _Fast, general: Callable[[object, object], bool]) -> _Fast:
    """``"text" in x`` / ``not in``: an exact list of texts (or an empty one) is scanned inline."""
    def contains(ctx: Mapping[str, object]) -> bool:
        container = rf(ctx)
        if type(container) is list:
            for x in container:
                if type(x) is str:
                    if x == item:
                        return positive
                elif _equal(item, x):
                    return positive
            return not positive
        return general(item, container)

    return contains


# ---------------------------------------------------------------- public API

class Expression:
    """A compiled expression: evaluate it against a context mapping as often as needed."""

    __slots__ = ("source", "names", "roots", "_fn", "fast", "boolean", "constant", "requires")

    def __init__(self, source: str, fn: _Fn, names: frozenset[str], roots: frozenset[str],
                 fast: _Fast | None = None, boolean: bool = False, constant: bool = False,
                 requires: Requires = NOTHING) -> None:
        self.source = source
        #: the values facts must have for the value to be true, by fact (``{"task.queue":
        #: frozenset({"triage"})}``): :mod:`rules.requires`
        self.requires: Mapping[str, frozenset[object]] = dict(requires)
        #: whether the value is known at compile time (literals and operators on them; no call)
        self.constant = constant
        self.names = names
        self.roots = roots
        self._fn = fn
        #: ``fast(ctx)``: the value, untraced, for hot loops; unlike :meth:`evaluate` it lets a
        #: RecursionError (data nested too deeply) through.
        self.fast: Callable[[Mapping[str, object]], object] = fast if fast is not None else (lambda ctx: fn(ctx, None))
        #: whether the value is always exactly true or false
        self.boolean = boolean

    def evaluate(self, ctx: Mapping[str, object]) -> object:
        """The value of the expression for ``ctx`` (roots like ``task`` mapped to their data)."""
        try:
            return self.fast(ctx)
        except RecursionError:
            raise EvaluationError(f"data nested too deeply to evaluate `{self.source}`") from None

    def trace(self, ctx: Mapping[str, object]) -> tuple[object, list[str]]:
        """The value and one line per comparison evaluated, like ``task.age = 7300 > 2h → true``."""
        lines: list[str] = []
        return self._run(ctx, lines), lines

    def _run(self, ctx: Mapping[str, object], lines: list[str] | None) -> object:
        try:
            return self._fn(ctx, lines)
        except RecursionError:
            raise EvaluationError(f"data nested too deeply to evaluate `{self.source}`") from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def compile_expression(
    source: str | int | float | bool | None,
    *,
    roots: Iterable[str] | None = None,
    functions: Mapping[str, Callable[..., object]] | None = None,
    section: str | None = None,
    strict: bool = True,
) -> Expression:
    """Compile ``source`` once; raises :class:`ExpressionError` (with an offset) for any mistake in it.

    ``roots`` limits the context roots the expression may use (default: all);
    ``section`` (a workflow section name) may stand in for them, and names the
    section in messages. ``functions`` adds plugin functions (plain callables).
    ``strict=False`` is for a workflow already applied: the refusals of what
    would run but never as meant (a pattern past :data:`MAX_PATTERN_PROGRAM`,
    an operation that fails for every value of a fact's type, a ``\\u`` that is
    no character's code, kept as written) are left out, so a version an older
    Labelyard stored keeps loading.
    """
    allowed, section = _allowed_roots(roots, section)
    extra = _check_functions(functions)
    if source is None or isinstance(source, (bool, int, float)):
        return Expression(_render(source), _const_fn(source), frozenset(), frozenset(),
                          fast=lambda ctx: source, boolean=isinstance(source, bool), constant=True)
    if not isinstance(source, str):
        raise ExpressionError(
            f"expected an expression (text, a number, true/false or null), not {_type_name(source)}", 0)
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    parser = _Parser(source, allowed, section, extra, strict)
    try:
        node = parser.parse()
    except RecursionError:
        raise ExpressionError(f"expression nested too deeply (more than {MAX_DEPTH} levels)", 0) from None
    return Expression(source, node.fn, frozenset(parser.names), frozenset(parser.roots),
                      fast=_fast(node), boolean=node.boolean, constant=node.literal, requires=node.requires)


def _allowed_roots(roots: Iterable[str] | None, section: str | None) -> tuple[frozenset[str], str | None]:
    if section is not None and section not in SECTION_ROOTS:
        raise ValueError(f"unknown section {section!r}")
    if roots is None:
        allowed = SECTION_ROOTS[section] if section else frozenset(CONTEXT_SCHEMA)
    else:
        allowed = frozenset(roots)
        unknown = allowed - CONTEXT_SCHEMA.keys()
        if unknown:
            raise ValueError(f"unknown context roots: {', '.join(sorted(unknown))}")
    if section is None:
        matching = [name for name, names in SECTION_ROOTS.items() if names == allowed]
        section = matching[0] if len(matching) == 1 else None
    return allowed, section


def _check_functions(functions: Mapping[str, Callable[..., object]] | None) -> Mapping[str, Callable[..., object]]:
    """Plugin functions must be callables with plain names that clash with nothing built in."""
    if not functions:
        return {}
    for name, fn in functions.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or "__" in name:
            raise ValueError(f"invalid function name {name!r}")
        if name in BUILTIN_FUNCTIONS or name in CONTEXT_SCHEMA or name in _LITERAL_WORDS or keyword.iskeyword(name):
            raise ValueError(f"function name {name!r} clashes with a built-in name")
        if not callable(fn):
            raise ValueError(f"function {name!r} is not callable")
    return dict(functions)
