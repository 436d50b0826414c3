"""Weighted points: what every numeric answer averages over, exact states or Monte Carlo draws.

An exact answer's points are the states of the joint of its label nodes, weighted by their
probability given the evidence (``engine.causal.exact``); a Monte Carlo answer's are draws,
weighted by likelihood weighting where it conditions that way (``engine.query.sampling``).
Either way a probability is ``sum_i w_i 1[events hold at i]`` and an expectation
``sum_i w_i f(i)``, with the weights normalised; only the Monte Carlo ones have a standard error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.causal.exact import Enumeration
from engine.model.dag import DagSpec
from engine.query.query import Comparison, Constant, Leaf, Quantity

OPS = {"=": torch.eq, "!=": torch.ne, "<": torch.lt, "<=": torch.le, ">": torch.gt, ">=": torch.ge}


class ZeroDivision(ArithmeticError):
    """A denominator that is 0 at some point of positive weight."""

    def __init__(self, where):
        super().__init__("division by zero")
        self.where = where


@dataclass(frozen=True)
class Points:
    """Values of quantities at P points, with normalised float64 weights."""

    values: dict[Quantity, torch.Tensor]  # (P,): class indices, numbers, or statistics
    weights: torch.Tensor
    exact: bool
    draws: int = 0  # Monte Carlo draws (0: exact)
    method: str = "exact enumeration"
    key: tuple | None = None  # draws shared by the leaves of one population (common random numbers)
    ess: float | None = None  # the effective sample size, where the draws are weighted


def exact_nodes(leaf: Leaf, dag: DagSpec) -> list[str] | None:
    """The label nodes an exact answer to ``leaf`` enumerates, or None when it cannot be exact in form."""
    if leaf.population.units:
        return None
    nodes = []
    for q in leaf.quantities:
        if q.world or q.statistic or not dag.nodes[q.node].domain.is_discrete:
            return None
        nodes.append(q.node)
    return [n for n in dag.order if n in nodes]


def exact_points(leaf: Leaf, enumeration: Enumeration, nodes: list[str], dag: DagSpec) -> tuple[Points, float]:
    """The states of the joint of ``nodes`` under the leaf's do, weighted by P(state | evidence); also P(evidence)."""
    do = dict(leaf.population.do)
    joint = enumeration.joint(nodes, do).reshape(-1)
    values, flat = {}, torch.arange(joint.numel())
    for node, size in reversed(list(zip(nodes, [dag.nodes[n].domain.size for n in nodes]))):
        values[Quantity(node)] = flat % size
        flat = flat // size
    weights = joint.clone()
    for event in leaf.population.evidence:
        weights = weights * holds(event, values, dag)
    evidence = float(weights.sum())
    keep = weights > 0
    if evidence > 0:
        weights = weights[keep] / evidence
        values = {q: v[keep] for q, v in values.items()}
    return Points(values, weights, True), evidence


def numeric(q: Quantity, value: torch.Tensor, dag: DagSpec) -> torch.Tensor:
    """A quantity's numeric value (float64): a grid node's value, a real node's number, a statistic."""
    if q.statistic:
        return value.double()
    domain = dag.nodes[q.node].domain
    return domain.values_of(value) if domain.is_discrete else value.double()


def holds(c: Comparison, values: dict[Quantity, torch.Tensor], dag: DagSpec) -> torch.Tensor:
    """Where the comparison holds, as a bool tensor over the points."""
    left = values[c.left] if c.by_index else numeric(c.left, values[c.left], dag)
    if isinstance(c.right, Constant):
        right = torch.tensor(c.right.value, dtype=left.dtype)
    else:
        right = values[c.right] if c.by_index else numeric(c.right, values[c.right], dag)
    return OPS[c.op](left, right)


def all_hold(events, values, dag) -> torch.Tensor:
    """1.0 where every comparison holds, else 0.0 (float64)."""
    out = None
    for e in events:
        h = holds(e, values, dag)
        out = h if out is None else out & h
    return out.double()


def evaluate(expr, values: dict[Quantity, torch.Tensor], weights: torch.Tensor, dag: DagSpec) -> torch.Tensor:
    """An E[...] expression at every point (float64); a zero denominator at a weighted point raises ZeroDivision."""
    if isinstance(expr, Constant):
        return torch.full_like(weights, expr.value)
    if isinstance(expr, Quantity):
        return numeric(expr, values[expr], dag)
    left, right = evaluate(expr.left, values, weights, dag), evaluate(expr.right, values, weights, dag)
    if expr.op == "/":
        if bool(((right == 0) & (weights > 0)).any()):
            raise ZeroDivision(expr.where)
        return left / torch.where(right == 0, torch.ones_like(right), right)
    return {"+": torch.add, "-": torch.sub, "*": torch.mul}[expr.op](left, right)

