"""Parse .cq text into a :class:`~engine.lang.nodes.Program`, or fail with a QueryError that says where.

The grammar is ``cq.lark`` beside this file, parsed LALR(1); syntax errors are put into words by
``mistakes.py``. Checks that need only the statement itself (``samples 0``, ``data[-1]``,
``do()``, a name set twice, a keyword bound as a name, two ``do(...)`` after one ``|``) are made
while the tree becomes dataclasses, and are reported the same way: ``path:line:column: message``,
the line, and a caret under the column. The language itself is described in ``engine/lang/__init__.py``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedInput, VisitError
from lark.lark import PostLex

from engine.errors import QueryError
from engine.lang.mistakes import KEYWORDS, syntax_error
from engine.lang.nodes import (
    Assignment,
    BinOp,
    Bind,
    Causation,
    Counterfactual,
    Distribution,
    Event,
    Expectation,
    Given,
    IndexUnit,
    Intervention,
    Interventional,
    Number,
    Numeric,
    Observational,
    PngUnit,
    Probability,
    Program,
    Selection,
    Statistic,
    Term,
    Value,
    VarRef,
    walk,
)
from engine.lang.source import error_at, show

# Each sample is an image in the answer, decoded, kept and drawn in the report: a thousand
# already fills pages, and a typo such as `samples 1e9` must not reach the decoder.
MAX_SAMPLES = 1000
# Draws are label-level Monte Carlo samples, batched: ten million keeps one query to seconds and
# its tensors to about 40 MB a node; more would not change a printed digit (error ~ 1/sqrt(n)).
MAX_DRAWS = 10_000_000
# An index is kept in the executor's int64 arrays.
MAX_INDEX = 2**63 - 1

_DIGITS = re.compile(r"[0-9]+")  # a count or an index: ASCII digits, no sign, point or exponent


class _WholeWords(PostLex):
    """Lex a word whole in every parser state, so that a keyword glued to more (``samples2``) is one name.

    lark's contextual lexer tries only the terminals that the parser's state accepts; where
    'samples' is expected and a name is not, ``samples2`` would lex as ``samples`` ``2``.
    """

    always_accept = ("NAME",)

    def process(self, stream):
        return stream


_LARK = Lark.open("cq.lark", rel_to=__file__, parser="lalr", propagate_positions=True, postlex=_WholeWords())


def parse(text: str, path: str = "<query>") -> Program:
    """Parse the text of a .cq program; ``path`` only names it in error messages.

    A UTF-8 byte-order mark at the start is dropped; lines and columns count from after it.
    """
    text = text.removeprefix("\ufeff")
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
    """Read and parse a .cq file (UTF-8, with or without a byte-order mark)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise QueryError(f"{show(str(path))}: cannot read the query file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        where = f"{e.reason} at byte {e.start}"
        raise QueryError(f"{show(str(path))}: the query file is not UTF-8 text ({where})") from None
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

    def _digits(self, token: Token, least: int, most: int, what: str, why: str = "") -> int:
        """A count (``least`` 1) or an index (``least`` 0): ASCII digits only, from ``least`` to ``most``."""
        span = f"from {least} to {most}" if most < MAX_INDEX else f"({least} or more)"
        if not _DIGITS.fullmatch(token) or (least and not token.strip("0")):
            raise self._error(token, f"{what} must be a whole number {span} written in digits, got '{token}'")
        if len(token.lstrip("0")) > len(str(most)) or int(token) > most:
            raise self._error(token, f"{what} {token} is more than {most}{why}")
        return int(token)

    def _count(self, token: Token | None) -> int:
        if token is None:
            return 1
        return self._digits(token, 1, MAX_SAMPLES, "samples", " (MAX_SAMPLES: each sample is an image in the answer)")

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

    # ---- statements ----

    @v_args(meta=True)
    def bind(self, meta, children):
        name, unit = children
        if name in KEYWORDS:
            raise self._error(name, f"'{name}' is a keyword and cannot name a unit; choose another name")
        return Bind(str(name), unit, meta.line, meta.column, self._source(meta))

    @v_args(meta=True)
    def counterfactual(self, meta, children):
        unit, act, samples = children
        return Counterfactual(unit, act.assignments, self._count(samples), meta.line, meta.column, self._source(meta))

    @v_args(meta=True)
    def interventional(self, meta, children):
        act, samples = children
        return Interventional(act.assignments, self._count(samples), meta.line, meta.column, self._source(meta))

    @v_args(meta=True)
    def observational(self, meta, children):
        *evidence, samples = children
        evidence = self._unique(evidence, "the evidence")
        return Observational(evidence, self._count(samples), meta.line, meta.column, self._source(meta))

    @v_args(meta=True)
    def numeric(self, meta, children):
        expr, draws = children
        self._check_numeric(expr)
        count = None if draws is None else self._digits(draws, 1, MAX_DRAWS, "draws", " (MAX_DRAWS)")
        return Numeric(expr, count, meta.line, meta.column, self._source(meta))

    def _check_numeric(self, expr) -> None:
        """A whole numeric statement: a query in it, distributions alone, one way of writing do."""
        nodes = list(walk(expr))
        if not any(isinstance(n, (Probability, Distribution, Expectation, Causation)) for n in nodes):
            message = "a numeric statement asks for P(...), E[...], PN(...), PS(...) or PNS(...); a number is no query"
            raise self._error(expr, message)
        for n in nodes:
            if isinstance(n, Distribution) and n is not expr:
                raise self._error(n, "P(y) is a distribution, not a number: arithmetic needs P(event), e.g. P(y > 0.5)")
        given_do = [n.do for n in nodes if isinstance(n, Given) and n.do is not None]
        at_do = [n for n in nodes if isinstance(n, Term) and n.world is not None]
        if given_do and at_do:
            second = max(given_do[0], at_do[0], key=lambda n: (n.line, n.column))
            raise self._error(
                second,
                "a statement uses either '| do(...)' or '@do(...)' terms, not both: "
                "write every term with @do(...) (y@do(scale=1.0)) to compare worlds",
            )

    # ---- numeric queries ----

    @v_args(meta=True)
    def probability(self, meta, children):
        *items, given = children
        events = [i for i in items if isinstance(i, Event)]
        if events and len(events) < len(items):
            bare = next(i for i in items if not isinstance(i, Event))
            raise self._error(
                bare, "P(...) holds either events (P(y > 0.5, scale=1.0)) or bare nodes (P(y, scale)), not both"
            )
        if events:
            return Probability(tuple(events), given, meta.line, meta.column)
        return Distribution(tuple(items), given, meta.line, meta.column)

    @v_args(meta=True)
    def expectation(self, meta, children):
        expr, given = children
        return Expectation(expr, given, meta.line, meta.column)

    @v_args(meta=True)
    def causation(self, meta, children):
        kind, event, cause, alternative, given = children
        for side in (event.left, event.right):
            term = side.term if isinstance(side, Statistic) else side
            if isinstance(term, Term) and term.world is not None:
                message = f"the outcome of {kind}(...) is read in the worlds of its two do(...): write it without @do"
                raise self._error(term, message)
        if given is not None and given.do is not None:
            message = f"{kind}(...) takes its interventions before '|'; the given holds only evidence and units"
            raise self._error(given.do, message)
        return Causation(str(kind), event, cause, alternative, given, meta.line, meta.column)

    @v_args(meta=True)
    def given(self, meta, children):
        dos = [c for c in children if isinstance(c, Intervention)]
        if len(dos) > 1:
            message = "one do(...) after '|': put every intervention in it, e.g. do(scale=1.0, shape=heart)"
            raise self._error(dos[1], message)
        evidence = tuple(c for c in children if isinstance(c, Event))
        units = tuple(c for c in children if not isinstance(c, (Event, Intervention)))
        return Given(evidence, dos[0] if dos else None, units, meta.line, meta.column)

    @v_args(meta=True)
    def event(self, meta, children):
        left, op, right = children
        return Event(left, op, right, meta.line, meta.column)

    def op(self, children):
        return str(children[0])

    @v_args(meta=True)
    def term(self, meta, children):
        name, world = children if len(children) == 2 else (children[0], None)
        return Term(str(name), world, meta.line, meta.column)

    @v_args(meta=True)
    def statistic(self, meta, children):
        name, term = children
        if name in ("P", "E", "PN", "PS", "PNS"):
            message = f"{name}(...) cannot stand inside another query; a statistic is a name such as area(img)"
            raise self._error(name, message)
        return Statistic(str(name), term, meta.line, meta.column)

    @v_args(meta=True)
    def binop(self, meta, children):
        left, op, right = children
        return BinOp(str(op), left, right, meta.line, meta.column)

    @v_args(inline=True)
    def constant(self, token):
        return Number(self._number(token), token.line, token.column)

    # ---- units ----

    @v_args(meta=True)
    def intervention(self, meta, children):
        if not children:
            raise self._error(meta, "do() needs at least one intervention, e.g. do(shape=square)")
        return Intervention(self._unique(children, "do(...)"), meta.line, meta.column)

    @v_args(inline=True)
    def var_ref(self, name):
        return VarRef(str(name), name.line, name.column)

    @v_args(meta=True)
    def index_unit(self, meta, children):
        world, token = children
        return IndexUnit(str(world), self._digits(token, 0, MAX_INDEX, f"the {world} index"), meta.line, meta.column)

    @v_args(meta=True)
    def selection(self, meta, children):
        world, *parts = children
        start, stop = next((p for p in parts if isinstance(p, list)), (None, None))
        conditions = next((p for p in parts if isinstance(p, tuple)), ())
        return Selection(str(world), conditions, start, stop, meta.line, meta.column)

    def slice(self, children):
        start, stop = children
        bounds = [None if t is None else self._digits(t, 0, MAX_INDEX, "a slice bound") for t in children]
        if None not in bounds and bounds[1] <= bounds[0]:
            raise self._error(stop, f"the slice {start}:{stop} is empty: its stop must be greater than its start")
        return bounds

    def conditions(self, children):
        return tuple(children)

    @v_args(meta=True)
    def condition(self, meta, children):
        name, op, value = children
        return Event(Term(str(name), None, name.line, name.column), op, value, meta.line, meta.column)

    @v_args(meta=True)
    def png_unit(self, meta, children):
        path, *labels = children
        return PngUnit(path[1:-1], self._unique(labels, "the png(...) labels"), meta.line, meta.column)

    # ---- values ----

    @v_args(inline=True)
    def assignment(self, name, value):
        return Assignment(str(name), value, name.line, name.column)

    @v_args(inline=True)
    def name(self, token):
        return Value(1.0, "pi") if token == "pi" else Value(str(token))

    @v_args(inline=True)
    def number(self, token):
        return self._number(token)

    def _number(self, token: Token) -> Value:
        value = _number(token)
        if not math.isfinite(value.value):
            raise self._error(token, f"'{token}' is too large a number")
        return value


def _number(token: Token) -> Value:
    """``90deg`` -> Value(90.0, "deg"); ``0.5`` -> Value(0.5, None); ``-pi`` -> Value(-1.0, "pi")."""
    number, unit = re.fullmatch(r"(.*?)(deg|rad|pi)?", str(token)).groups()
    return Value(float(number + "1" if number in ("+", "-") else number), unit)
