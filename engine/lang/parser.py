"""Parse .cq text into a :class:`~engine.lang.nodes.Program`, or fail with a QueryError that says where.

The grammar is ``cq.lark`` beside this file, parsed LALR(1); syntax errors are put into words by
``mistakes.py``. Checks that need only the statement itself (``samples 0``, ``dsprites[-1]``,
``do()``, a name set twice, a keyword bound as a name) are made while the tree becomes
dataclasses, and are reported the same way: ``path:line:column: message``, the line, and a
caret under the column. The language itself is described in ``engine/lang/__init__.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedInput, VisitError

from engine.errors import QueryError
from engine.lang.mistakes import KEYWORDS, syntax_error
from engine.lang.nodes import (
    Assignment,
    Bind,
    Counterfactual,
    DspritesUnit,
    Interventional,
    Observational,
    PngUnit,
    Program,
    Value,
    VarRef,
    error_at,
)

_LARK = Lark.open("cq.lark", rel_to=__file__, parser="lalr", propagate_positions=True)


def parse(text: str, path: str = "<query>") -> Program:
    """Parse the text of a .cq program; ``path`` only names it in error messages."""
    try:
        tree = _parse_tree(text)
    except UnexpectedInput as e:
        raise syntax_error(e, text, path, _parse_tree) from None
    try:
        statements = _ToNodes(text, path).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, QueryError):
            raise e.orig_exc from None
        raise
    return Program(statements, path, text)


def parse_file(path: str | Path) -> Program:
    """Read and parse a .cq file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise QueryError(f"{path}: cannot read the query file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise QueryError(f"{path}: the query file is not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse(text, str(path))


def _parse_tree(text: str) -> Tree:
    # The last statement ends at a new line, so that an error at its end points past its last character.
    return _LARK.parse(text if text.endswith("\n") else text + "\n")


class _ToNodes(Transformer):
    """Turn the parse tree into frozen dataclasses, checking what can be checked locally."""

    def __init__(self, text: str, path: str):
        super().__init__()
        self.text, self.path = text, path

    def _error(self, where, message: str) -> QueryError:
        return error_at(self.path, self.text, where.line, where.column, message)

    def _whole(self, token: Token, least: int, what: str) -> int:
        value = _number(token)
        if value.unit or not value.value.is_integer() or value.value < least:
            raise self._error(token, f"{what} must be a whole number ({least} or more), got '{token}'")
        return int(value.value)

    def _count(self, token: Token | None) -> int:
        return 1 if token is None else self._whole(token, 1, "samples")

    def _unique(self, items: list[Assignment], where: str) -> tuple[Assignment, ...]:
        seen = set()
        for item in items:
            if item.name in seen:
                raise self._error(item, f"'{item.name}' is set twice in {where}; give each name once")
            seen.add(item.name)
        return tuple(items)

    def _source(self, meta) -> str:
        return self.text[meta.start_pos : meta.end_pos]

    def start(self, statements):
        return tuple(statements)

    @v_args(meta=True)
    def bind(self, meta, children):
        name, unit = children
        if name in KEYWORDS:
            raise self._error(name, f"'{name}' is a keyword and cannot name a unit; choose another name")
        return Bind(str(name), unit, meta.line, meta.column, self._source(meta))

    @v_args(meta=True)
    def counterfactual(self, meta, children):
        unit, interventions, samples = children
        return Counterfactual(unit, interventions, self._count(samples), meta.line, meta.column, self._source(meta))

    @v_args(meta=True)
    def interventional(self, meta, children):
        interventions, samples = children
        return Interventional(interventions, self._count(samples), meta.line, meta.column, self._source(meta))

    @v_args(meta=True)
    def observational(self, meta, children):
        *evidence, samples = children
        evidence = self._unique(evidence, "the evidence")
        return Observational(evidence, self._count(samples), meta.line, meta.column, self._source(meta))

    @v_args(meta=True)
    def intervention(self, meta, children):
        if not children:
            raise self._error(meta, "do() needs at least one intervention, e.g. do(shape=square)")
        return self._unique(children, "do(...)")

    @v_args(inline=True)
    def var_ref(self, name):
        return VarRef(str(name), name.line, name.column)

    @v_args(meta=True)
    def dsprites_unit(self, meta, children):
        (token,) = children
        return DspritesUnit(self._whole(token, 0, "the dsprites index"), meta.line, meta.column)

    @v_args(meta=True)
    def png_unit(self, meta, children):
        path, *labels = children
        return PngUnit(path[1:-1], self._unique(labels, "the png(...) labels"), meta.line, meta.column)

    @v_args(inline=True)
    def assignment(self, name, value):
        return Assignment(str(name), value, name.line, name.column)

    @v_args(inline=True)
    def name(self, token):
        return Value(1.0, "pi") if token == "pi" else Value(str(token))

    @v_args(inline=True)
    def number(self, token):
        return _number(token)


def _number(token: Token) -> Value:
    """``90deg`` -> Value(90.0, "deg"); ``0.5`` -> Value(0.5, None); ``-pi`` -> Value(-1.0, "pi")."""
    number, unit = re.fullmatch(r"(.*?)(deg|rad|pi)?", str(token)).groups()
    return Value(float(number + "1" if number in ("+", "-") else number), unit)
