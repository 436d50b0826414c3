"""The statements of a .cq program: frozen dataclasses that remember where they were written.

Every node but a Value carries the 1-based ``line`` and ``column`` of its first character, so that the
executor can point at the exact item it rejects with :meth:`Program.error`. Statements also
keep their own source ``text`` (without the trailing comment) for reports. Names stay names:
whether ``y`` is a node, ``u`` a bound unit or ``heart`` a value is for the executor to say.

The tree, statement by statement (``|`` between alternatives)::

    Bind(name, unit: IndexUnit | Selection | PngUnit)                      img = data[3]
    Counterfactual(unit: VarRef | IndexUnit | Selection | PngUnit,
                   interventions: tuple[Assignment], samples)              given img, do(shape=square)
    Interventional(interventions: tuple[Assignment], samples)             do(shape=heart) samples 16
    Observational(evidence: tuple[Assignment], samples)                   given shape=heart
    Numeric(expr: Distribution | Probability | Expectation | Causation | BinOp | Number,
            draws: int | None)                                           P(y > 0.5 | do(x=1)) draws 100

    BinOp(op: "+" | "-" | "*" | "/", left, right)    Number(value: Value)
    Probability(events: tuple[Event], given)          P(y > 0.5, scale=1.0 | shape=heart)
    Distribution(quantities: tuple[Term | Statistic], given)   P(y), P(y, scale | u)
    Expectation(expr: Term | Statistic | Number | BinOp, given)   E[area(img) | do(scale=1.0)]
    Causation(kind: "PN" | "PS" | "PNS", event, cause: Intervention, alternative: Intervention, given)
    Given(evidence: tuple[Event], do: Intervention | None, units: tuple[VarRef | IndexUnit | Selection | PngUnit])
    Event(left: Term | Statistic, op: "=" | "!=" | "<" | "<=" | ">" | ">=", right: Value | Term | Statistic)
    Term(node, world: Intervention | None)            y, y@do(shape=square)
    Statistic(name, term: Term)                       area(img@do(scale=1.0))
    Intervention(assignments: tuple[Assignment])      do(shape=square) in a numeric query
    Assignment(name, value: Value)                    shape=square;  Value(value: str | float, unit)

    IndexUnit(world, index)                           data[3], NAME[12]
    Selection(world, conditions: tuple[Event], start, stop)   data[shape=heart], data[:100]
    PngUnit(path, labels: tuple[Assignment])          png("a.png", shape=heart)
    VarRef(name)                                      img, a unit bound earlier
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Iterator, Literal, Union

from engine.errors import QueryError
from engine.lang.source import error_at

__all__ = [  # error_at is re-exported: it lives in source.py
    "UNITS", "Value", "Assignment", "Intervention", "IndexUnit", "Selection", "PngUnit", "VarRef", "Unit",
    "Term", "Statistic", "Event", "Given", "Number", "BinOp", "Probability", "Distribution", "Expectation",
    "Causation", "Bind", "Counterfactual", "Interventional", "Observational", "Numeric", "Statement",
    "Program", "walk", "error_at",
]

UNITS = {"rad": 1.0, "deg": math.pi / 180.0, "pi": math.pi}  # how many radians one unit is


@dataclass(frozen=True)
class Value:
    """The right-hand side of ``name=value``: a name (``square``) or a number with an optional unit.

    ``unit`` is None for names and for plain numbers (an angle written without a unit is in
    radians); it is ``"rad"``, ``"deg"`` or ``"pi"`` when written (``1.5rad``, ``90deg``, ``0.5pi``).
    Numbers are always finite (the parser rejects ``1e999``).
    """

    value: str | float
    unit: str | None = None

    @property
    def is_name(self) -> bool:
        return isinstance(self.value, str)

    def number(self) -> float:
        """The number in base units: ``90deg`` and ``0.5pi`` both give π/2, ``0.25`` gives 0.25."""
        if self.is_name:
            raise TypeError(f"{self.value!r} is a name, not a number")
        return self.value * UNITS[self.unit or "rad"]

    def __str__(self) -> str:
        if self.is_name:
            return self.value
        return f"{self.value:g}{self.unit or ''}"


@dataclass(frozen=True)
class Assignment:
    """One ``name=value`` item: an intervention in ``do(...)``, evidence after ``given``, or a PNG label."""

    name: str
    value: Value
    line: int
    column: int


@dataclass(frozen=True)
class Intervention:
    """``do(name=value, ...)`` inside a numeric query (``y@do(...)``, ``| do(...)``, PN's causes); never empty."""

    assignments: tuple[Assignment, ...]
    line: int
    column: int


# ---- units ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexUnit:
    """``world[index]``: datum ``index`` (a whole number, 0 or more) of the world or data set ``world``.

    ``data[3]`` (``data``: the DAG's world, whatever its name), ``NAME[12]``; whether ``world``
    exists and the index is in range is for the executor to say.
    """

    world: str
    index: int
    line: int
    column: int


@dataclass(frozen=True)
class Selection:
    """``world[start:stop, conditions]``: the population of the world's data that match.

    ``data[shape=heart, scale>=0.5]`` keeps the data whose labels satisfy every condition
    (each an :class:`Event` on a bare :class:`Term`); ``data[0:10000]``, ``data[5:]`` and
    ``data[:100]`` keep a Python slice (``start`` and ``stop`` are None where left out, and never
    negative; ``stop > start`` when both are given); ``data[:100, shape=heart]`` does both: the
    slice first, then the conditions.
    """

    world: str
    conditions: tuple[Event, ...]
    start: int | None
    stop: int | None
    line: int
    column: int


@dataclass(frozen=True)
class PngUnit:
    """``png("path", name=value, ...)``: a user image, with the labels it was given (maybe none)."""

    path: str
    labels: tuple[Assignment, ...]
    line: int
    column: int


@dataclass(frozen=True)
class VarRef:
    """A unit bound earlier by ``name = ...``; the executor looks the name up."""

    name: str
    line: int
    column: int


Unit = Union[IndexUnit, Selection, PngUnit]


# ---- numeric queries ------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """A node, in the factual world (``y``) or in the world of an intervention (``y@do(shape=square)``)."""

    node: str
    world: Intervention | None
    line: int
    column: int


@dataclass(frozen=True)
class Statistic:
    """``name(term)``: a statistic of a node's value, e.g. ``area(img)``, the pixel area of an image."""

    name: str
    term: Term
    line: int
    column: int


_NEGATION = {"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


@dataclass(frozen=True)
class Event:
    """``left op right``: ``y > 0.5``, ``shape=heart``, ``y@do(shape=square) = y``, ``area(img) > 100``.

    ``right`` is a :class:`Value` when written as a number or a bare name. A bare name may be a
    value of the left node's domain (``shape=heart``) or another node in the factual world
    (``y@do(shape=square) = y``): the executor tells which. ``right`` is a :class:`Term` only when
    written with ``@do(...)``, and a :class:`Statistic` when written as a call.
    """

    left: Term | Statistic
    op: Literal["=", "!=", "<", "<=", ">", ">="]
    right: Value | Term | Statistic
    line: int
    column: int

    def negated(self) -> Event:
        """The complement: ``y > 0.5`` -> ``y <= 0.5``."""
        return replace(self, op=_NEGATION[self.op])

    def in_world(self, world: Intervention) -> Event:
        """The event read in ``world``: every term on either side gets ``@world`` (a Value stays as it is)."""

        def moved(side):
            if isinstance(side, Term):
                return replace(side, world=world)
            if isinstance(side, Statistic):
                return replace(side, term=replace(side.term, world=world))
            return side

        return replace(self, left=moved(self.left), right=moved(self.right))


@dataclass(frozen=True)
class Given:
    """What follows ``|`` in ``P(... | ...)``, ``E[... | ...]`` or ``PN(...)``, in three groups.

    ``evidence``: items with an operator (``shape=heart``, ``y > 0.5``), to condition on.
    ``do``: the one ``do(...)`` item, if any (the parser rejects a second one).
    ``units``: bare names (``u``, units bound earlier) and inline units (``data[3]``,
    ``data[shape=heart]``): the query is asked of these units (or populations).
    """

    evidence: tuple[Event, ...]
    do: Intervention | None
    units: tuple[VarRef | IndexUnit | Selection | PngUnit, ...]
    line: int
    column: int


@dataclass(frozen=True)
class Number:
    """A number in arithmetic (``1 - P(y > 0.5)``, ``E[2 * y]``), kept as written, unit and all."""

    value: Value
    line: int
    column: int


@dataclass(frozen=True)
class BinOp:
    """``left op right`` for ``+ - * /``, left-associative, ``*`` and ``/`` before ``+`` and ``-``."""

    op: Literal["+", "-", "*", "/"]
    left: Expr
    right: Expr
    line: int
    column: int


@dataclass(frozen=True)
class Probability:
    """``P(event, ... | given)``: the probability that every event holds (``,`` and ``and`` both join)."""

    events: tuple[Event, ...]
    given: Given | None
    line: int
    column: int


@dataclass(frozen=True)
class Distribution:
    """``P(y | given)`` or ``P(y, scale | given)``: the (joint) distribution of bare quantities.

    Not a number: it stands alone as a whole statement, never inside arithmetic.
    """

    quantities: tuple[Term | Statistic, ...]
    given: Given | None
    line: int
    column: int


@dataclass(frozen=True)
class Expectation:
    """``E[expr | given]``: the expected value of arithmetic over nodes and statistics."""

    expr: Term | Statistic | Number | BinOp
    given: Given | None
    line: int
    column: int


@dataclass(frozen=True)
class Causation:
    """``PN(e, do(x), do(x'))``, ``PS(...)``, ``PNS(...)``: Pearl's probabilities of causation.

    ``e`` is one outcome event (``y > 0.5``), written without ``@``; ``cause`` is the treatment
    ``do(x)`` and ``alternative`` the contrast ``do(x')``; an optional ``| given`` holds evidence
    and units but no ``do``. With ``e_x`` for ``e`` read in the world ``do(x)``, ``¬e`` for its
    complement (``y <= 0.5``) and ``x`` as evidence meaning each ``name=value`` of ``do(x)`` held:

    * PNS (necessary and sufficient) = P(e_x, ¬e_x')      -> ``P(y@do(x) > 0.5, y@do(x') <= 0.5 | given)``
    * PN (necessary)                 = P(¬e_x' | x, e)    -> ``P(y@do(x') <= 0.5 | x, y > 0.5, given)``
    * PS (sufficient)                = P(e_x | x', ¬e)    -> ``P(y@do(x) > 0.5 | x', y <= 0.5, given)``

    :meth:`expand` gives that :class:`Probability`, in the ``@`` form.

    >>> from engine.lang import parse
    >>> p = parse("PN(y > 0.5, do(shape=heart), do(shape=square))").statements[0].expr.expand()
    >>> e = p.events[0]
    >>> e.left.node, e.left.world.assignments[0].value, e.op, e.right
    ('y', Value(value='square', unit=None), '<=', Value(value=0.5, unit=None))
    >>> [(e.left.node, e.op, str(e.right)) for e in p.given.evidence]
    [('shape', '=', 'heart'), ('y', '>', '0.5')]
    """

    kind: Literal["PN", "PS", "PNS"]
    event: Event
    cause: Intervention
    alternative: Intervention
    given: Given | None
    line: int
    column: int

    def expand(self) -> Probability:
        """The same query as a :class:`Probability` over ``@do`` terms (see the class docstring)."""
        e, x, x_ = self.event, self.cause, self.alternative
        if self.kind == "PNS":
            return self._probability((e.in_world(x), e.negated().in_world(x_)), ())
        if self.kind == "PN":
            return self._probability((e.negated().in_world(x_),), (*self._held(x), e))
        return self._probability((e.in_world(x),), (*self._held(x_), e.negated()))

    def _held(self, world: Intervention) -> tuple[Event, ...]:
        return tuple(
            Event(Term(a.name, None, a.line, a.column), "=", a.value, a.line, a.column) for a in world.assignments
        )

    def _probability(self, events: tuple[Event, ...], evidence: tuple[Event, ...]) -> Probability:
        given = self.given
        if evidence:
            given = given or Given((), None, (), self.line, self.column)
            given = replace(given, evidence=evidence + given.evidence)
        return Probability(events, given, self.line, self.column)


Expr = Union[Number, BinOp, Probability, Distribution, Expectation, Causation, Term, Statistic]


# ---- statements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bind:
    """``name = unit``: give a unit (or a selection) a name for later statements."""

    name: str
    unit: Unit
    line: int
    column: int
    text: str


@dataclass(frozen=True)
class Counterfactual:
    """``given unit, do(...) [samples n]``: what the unit would have looked like under the interventions."""

    unit: VarRef | IndexUnit | Selection | PngUnit
    interventions: tuple[Assignment, ...]
    samples: int
    line: int
    column: int
    text: str


@dataclass(frozen=True)
class Interventional:
    """``do(...) [samples n]``: images drawn from the model with the interventions applied."""

    interventions: tuple[Assignment, ...]
    samples: int
    line: int
    column: int
    text: str


@dataclass(frozen=True)
class Observational:
    """``given name=value, ... [samples n]``: images drawn conditioned on label evidence."""

    evidence: tuple[Assignment, ...]
    samples: int
    line: int
    column: int
    text: str


@dataclass(frozen=True)
class Numeric:
    """``expr [draws n]``: a number (or, for a bare ``P(y)``, a distribution) estimated by Monte Carlo.

    ``draws`` is the number of draws written after ``draws`` (at most ``MAX_DRAWS``), or None
    for the executor's default. ``expr`` holds at least one P, E, PN, PS or PNS, and uses either
    ``| do(...)`` or ``@do(...)`` terms, not both.
    """

    expr: Distribution | Probability | Expectation | Causation | BinOp | Number
    draws: int | None
    line: int
    column: int
    text: str


Statement = Union[Bind, Counterfactual, Interventional, Observational, Numeric]


@dataclass(frozen=True)
class Program:
    """The statements of one .cq file in order, with the file's path and text for error messages."""

    statements: tuple[Statement, ...]
    path: str = "<query>"
    source: str = field(default="", repr=False, compare=False)

    def error(self, node, message: str) -> QueryError:
        """A QueryError at ``node`` (anything with line and column): ``path:line:column: message``, line, caret."""
        return error_at(self.path, self.source, node.line, node.column, message)


def walk(node) -> Iterator:
    """``node`` and every dataclass inside it (Values and Assignments too), depth first, field by field."""
    if isinstance(node, tuple):
        for item in node:
            yield from walk(item)
    elif is_dataclass(node):
        yield node
        for f in fields(node):
            yield from walk(getattr(node, f.name))
