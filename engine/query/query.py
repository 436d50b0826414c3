"""A typed query: what a numeric statement asks, with every name and value resolved.

``y@do(shape=square)`` is a :class:`Quantity` (node, world, statistic), ``y > 0.5`` a
:class:`Comparison` whose constant the node's Domain has read, everything after ``|`` a
:class:`Population`; a statement is a tree of :class:`Leaf` queries (one P, E or P(y) each)
joined by :class:`Arithmetic`. ``engine.query.resolve`` builds it from the syntax.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Union

from engine.query.units import UnitSet

World = tuple  # ((node, encoded value), ...) sorted by node; () is the factual world


@dataclass(frozen=True)
class Quantity:
    """A node's value (or a statistic of it) in one world."""

    node: str
    world: World = ()
    statistic: str | None = None
    text: str = field(default="", compare=False)


@dataclass(frozen=True)
class Constant:
    """A number, or a class index (``by_index`` comparisons)."""

    value: float
    text: str = field(default="", compare=False)


@dataclass(frozen=True)
class Comparison:
    """``left op right``; ``by_index`` compares class indices (names, snapped grid values), else numbers."""

    left: Quantity
    op: str
    right: Quantity | Constant
    by_index: bool
    text: str = field(default="", compare=False)

    @property
    def quantities(self) -> tuple[Quantity, ...]:
        return (self.left,) + ((self.right,) if isinstance(self.right, Quantity) else ())


@dataclass(frozen=True)
class Arithmetic:
    """``left op right`` for + - * /, over quantities, constants or leaves."""

    op: str
    left: Any
    right: Any
    where: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class Population:
    """The units a query is asked of: drawn from the model under ``do`` given ``evidence``, or from ``units``."""

    evidence: tuple[Comparison, ...] = ()
    do: World = ()
    units: tuple[UnitSet, ...] = ()
    text: str = field(default="", compare=False)
    where: Any = field(default=None, compare=False)

    @property
    def key(self) -> tuple:
        return (self.evidence, self.do, tuple(u.key for u in self.units))


@dataclass(frozen=True)
class Leaf:
    """One P(events), E[expr] or P(quantities) over a population."""

    kind: str  # probability, expectation or distribution
    body: Any  # tuple[Comparison] | expression | tuple[Quantity]
    population: Population
    where: Any = field(compare=False)

    @property
    def asked(self) -> set[Quantity]:
        """The quantities the leaf asks about (not those of its evidence)."""
        return set(quantities_of(self.body))

    @property
    def quantities(self) -> set[Quantity]:
        """Every quantity the leaf reads, its evidence's included."""
        found = set(quantities_of(self.body))
        for e in self.population.evidence:
            found |= set(e.quantities)
        return found


Expr = Union[Leaf, Arithmetic, Constant]


def quantities_of(body) -> list[Quantity]:
    """Every Quantity in a body (comparisons, arithmetic or a tuple of them), in order."""
    if isinstance(body, Quantity):
        return [body]
    if isinstance(body, Comparison):
        return list(body.quantities)
    if isinstance(body, Arithmetic):
        return quantities_of(body.left) + quantities_of(body.right)
    if isinstance(body, tuple):
        return [q for item in body for q in quantities_of(item)]
    return []


def map_quantities(body, fn):
    """The body with ``fn`` applied to every Quantity in it."""
    if isinstance(body, Quantity):
        return fn(body)
    if isinstance(body, Comparison):
        right = map_quantities(body.right, fn)
        return replace(body, left=fn(body.left), right=right)
    if isinstance(body, Arithmetic):
        return replace(body, left=map_quantities(body.left, fn), right=map_quantities(body.right, fn))
    if isinstance(body, tuple):
        return tuple(map_quantities(b, fn) for b in body)
    return body



def leaves(expr: Expr) -> list[Leaf]:
    """The leaves of a tree, left to right."""
    if isinstance(expr, Leaf):
        return [expr]
    if isinstance(expr, Arithmetic):
        return leaves(expr.left) + leaves(expr.right)
    return []
