"""Numeric answers: one answerer per estimand (probability, expectation, distribution), and arithmetic.

A statement's leaves are answered exactly where they can be: no units after ``|``, no
``@do`` term (or every term in one world and no evidence: that is ``| do(...)``), no image
statistic, every node involved discrete with a ``log_prob``. The rest are Monte Carlo, and the
leaves over one population share one set of draws, so ``P(a) - P(b)`` is estimated draw by
draw (common random numbers). The standard error of any arithmetic over the leaves is the
delta method's: each leaf carries its per-draw influence ``w_i (f_i - mean)``, the operations
combine them (``(a/b)' = a'/b - a b'/b^2``), and the variance is the sum of their squares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from engine.lang import nodes as ast
from engine.query import sampling
from engine.query.answers import NumericAnswer
from engine.query.points import Points, ZeroDivision, all_hold, evaluate, exact_nodes, exact_points
from engine.query.query import Arithmetic, Constant, Leaf, leaves, map_quantities

LABEL_DRAWS = 100_000  # stderr of a probability at most 0.0016
IMAGE_DRAWS = 1_000  # an expectation of an image statistic: each draw decodes an image in every world
IMAGE_EVENT_DRAWS = 10_000  # a probability or distribution over image statistics: stderr at most 0.005
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class Estimate:
    """A number and, for Monte Carlo, its per-draw influence in each population's draws."""

    value: float
    influence: dict[tuple, torch.Tensor] = field(default_factory=dict)

    @property
    def stderr(self) -> float:
        return math.sqrt(sum(float((v**2).sum()) for v in self.influence.values()))

    def combine(self, other: "Estimate", value: float, da: float, db: float) -> "Estimate":
        """``value = f(self, other)`` with partial derivatives ``da``, ``db``: the influences add."""
        out = {k: da * v for k, v in self.influence.items()}
        for k, v in other.influence.items():
            out[k] = out[k] + db * v if k in out else db * v
        return Estimate(value, out)


def mean(points: Points, f: torch.Tensor) -> Estimate:
    """sum_i w_i f_i, and its influence w_i (f_i - mean) unless exact."""
    if len(f) and bool((f == f[0]).all()):  # a constant: exactly, without rounding in the weights' sum
        return Estimate(float(f[0]), {} if points.exact else {points.key: torch.zeros_like(f)})
    m = float((points.weights * f).sum())
    return Estimate(m, {} if points.exact else {points.key: points.weights * (f - m)})


# ---- one answerer per estimand ----------------------------------------------------------------

ANSWERERS: dict[str, Callable] = {}


def answerer(kind: str):
    """Decorator: the function that answers leaves of ``kind`` from their points."""

    def decorate(fn):
        ANSWERERS[kind] = fn
        return fn

    return decorate


@answerer("probability")
def probability(ctx, leaf: Leaf, points: Points) -> Estimate:
    """P(events | population) = sum_i w_i 1[every event holds at i]."""
    return mean(points, all_hold(leaf.body, points.values, ctx.dag))


@answerer("expectation")
def expectation(ctx, leaf: Leaf, points: Points) -> Estimate:
    """E[expr | population] = sum_i w_i expr(i)."""
    return mean(points, evaluate(leaf.body, points.values, points.weights, ctx.dag))


@answerer("distribution")
def distribution(ctx, leaf: Leaf, points: Points) -> tuple[dict, float, dict]:
    """A table {shown value: probability} (discrete) or a summary (mean, sd, quantiles) of a real quantity."""
    quantities = leaf.body
    w = points.weights
    if len(quantities) == 1 and (quantities[0].statistic or not ctx.dag.nodes[quantities[0].node].domain.is_discrete):
        return _summary(ctx, quantities[0], points)
    sizes = [ctx.dag.nodes[q.node].domain.size for q in quantities]
    flat = torch.zeros_like(points.values[quantities[0]])
    for q, size in zip(quantities, sizes):
        flat = flat * size + points.values[q]
    cells = math.prod(sizes)
    p = torch.zeros(cells, dtype=torch.float64).index_add_(0, flat, w)
    if points.exact:
        se = torch.zeros(cells, dtype=torch.float64)
    else:
        s_k = torch.zeros(cells, dtype=torch.float64).index_add_(0, flat, w**2)
        se = ((1 - p) ** 2 * s_k + p**2 * (float((w**2).sum()) - s_k)).clamp_min(0).sqrt()
    table, errors = {}, {}
    exact = points.exact
    for cell in range(cells):
        key, rest = [], cell
        for q, size in reversed(list(zip(quantities, sizes))):
            key.append(ctx.dag.nodes[q.node].domain.decode(rest % size))
            rest //= size
        key = key[0] if len(key) == 1 else tuple(reversed(key))
        table[key], errors[key] = float(p[cell]), float(se[cell])
    return table, max(errors.values()), {} if exact else {"stderrs": errors}


def _summary(ctx, q, points: Points) -> tuple[dict, float, dict]:
    values, w = points.values[q].double(), points.weights
    m = float((w * values).sum())
    sd = math.sqrt(max(float((w * (values - m) ** 2).sum()), 0.0))
    order = torch.argsort(values)
    cumulative = torch.cumsum(w[order], 0)
    summary = {"mean": m, "sd": sd}
    for level in QUANTILES:
        i = min(int(torch.searchsorted(cumulative, torch.tensor(level, dtype=torch.float64))), len(order) - 1)
        summary[f"q{round(level * 100):02d}"] = float(values[order[i]])
    stderr = 0.0 if points.exact else sd / math.sqrt(points.ess or points.draws)
    return summary, stderr, {"samples": values.numpy(), "weights": w.numpy()}


# ---- a whole statement ------------------------------------------------------------------------


def default_draws(found: list[Leaf]) -> int:
    """Draws when the statement names none: enough for a probability's stderr <= 0.005, fewer for image expectations."""
    images = [leaf for leaf in found if any(q.statistic for q in leaf.quantities)]
    if not images:
        return LABEL_DRAWS
    return IMAGE_DRAWS if all(leaf.kind == "expectation" for leaf in images) else IMAGE_EVENT_DRAWS


def answer(ctx, statement: ast.Numeric) -> NumericAnswer:
    """Answer one numeric statement: resolve it, draw or enumerate points per population, combine."""
    tree = ctx.resolver.statement(statement)
    notes = dict(ctx.resolver.notes)
    plans = [_exact_form(ctx, leaf) for leaf in leaves(tree)]
    draws = statement.draws or default_draws(leaves(tree))
    points = _points(ctx, plans, draws)
    details = {"snapped": notes} if notes else {}
    if isinstance(statement.expr, ast.Causation):
        details["expansion"] = written(statement.expr.expand())
    methods = list(dict.fromkeys(p.method for p in points.values()))
    mc = {p.key: p for p in points.values() if not p.exact}
    total = sum(p.draws for p in mc.values())
    ess = [round(p.ess, 1) for p in mc.values() if p.ess is not None]
    if ess:
        details["ess"] = ess[0] if len(ess) == 1 else ess
    if isinstance(tree, Leaf) and tree.kind == "distribution":
        leaf, (exact_leaf, _) = tree, plans[0]
        value, stderr, extra = distribution(ctx, exact_leaf, points[0])
        samples, weights = extra.pop("samples", None), extra.pop("weights", None)
        details |= {"nodes": [q.text for q in leaf.body]} | extra
        return NumericAnswer("distribution", statement.text, statement.line, value, stderr, " + ".join(methods), total, details, samples, weights)
    try:
        estimates = {i: ANSWERERS[leaf.kind](ctx, leaf, points[i]) for i, (leaf, _) in enumerate(plans)}
    except ZeroDivision as e:
        raise ctx.program.error(e.where.right, f"division by zero: {written(e.where.right)} is 0 for some units") from None
    try:
        result = _combine(tree, iter(range(len(plans))), estimates)
    except ZeroDivisionError as e:
        raise ctx.program.error(e.args[0], f"division by zero: {e.args[1]} is 0") from None
    shared = [k for k in mc if sum(1 for leaf, p in plans if not p and leaf.population.key == k) > 1]
    method = " + ".join(methods)
    if shared and isinstance(tree, Arithmetic):
        method += "; terms over the same population share draws (common random numbers), stderr from the per-draw difference"
    kind = "expression" if isinstance(tree, Arithmetic) else tree.kind
    return NumericAnswer(kind, statement.text, statement.line, result.value, result.stderr, method, total, details)


def _exact_form(ctx, leaf: Leaf) -> tuple[Leaf, bool]:
    """The leaf as it will be answered, and whether exactly (a one-world leaf without evidence becomes | do)."""
    worlds = {q.world for q in leaf.quantities}
    p = leaf.population
    if len(worlds) == 1 and () not in worlds and not p.evidence and not p.units and not p.do:
        (world,) = worlds
        moved = _reworld(leaf, world)
        if _enumerable(ctx, moved):
            return moved, True
    return leaf, _enumerable(ctx, leaf)


def _enumerable(ctx, leaf: Leaf) -> bool:
    nodes = exact_nodes(leaf, ctx.dag)
    return nodes is not None and ctx.enumeration.why_not(nodes, dict(leaf.population.do)) is None


def _reworld(leaf: Leaf, world) -> Leaf:
    body = map_quantities(leaf.body, lambda q: replace(q, world=()))
    return replace(leaf, body=body, population=replace(leaf.population, do=world))


def _points(ctx, plans, draws: int) -> dict[int, Points]:
    """Points per leaf: its own exact states, or its population's shared draws."""
    out, groups = {}, {}
    for i, (leaf, exact) in enumerate(plans):
        if exact:
            points, evidence = exact_points(leaf, ctx.enumeration, exact_nodes(leaf, ctx.dag), ctx.dag)
            if evidence <= 0:
                raise ctx.program.error(leaf.population.where or leaf.where, str(sampling.impossible(ctx, leaf.population)))
            out[i] = points
        else:
            groups.setdefault(leaf.population.key, []).append(i)
    for key, members in groups.items():
        population = plans[members[0]][0].population
        quantities = set().union(*(plans[i][0].asked for i in members))
        try:
            points = sampling.simulate(ctx, population, quantities, draws)
        except sampling.ZeroEvidence as e:
            raise ctx.program.error(population.where or plans[members[0]][0].where, str(e)) from None
        for i in members:
            out[i] = points
    return out


def _combine(expr, order, estimates) -> Estimate:
    if isinstance(expr, Leaf):
        return estimates[next(order)]
    if isinstance(expr, Constant):
        return Estimate(expr.value)
    a, b = _combine(expr.left, order, estimates), _combine(expr.right, order, estimates)
    if expr.op == "+":
        return a.combine(b, a.value + b.value, 1.0, 1.0)
    if expr.op == "-":
        return a.combine(b, a.value - b.value, 1.0, -1.0)
    if expr.op == "*":
        return a.combine(b, a.value * b.value, b.value, a.value)
    if b.value == 0:
        raise ZeroDivisionError(expr.where.right, written(expr.where.right))
    return a.combine(b, a.value / b.value, 1 / b.value, -a.value / b.value**2)


# ---- statements as written -----------------------------------------------------------------------


def written(node) -> str:
    """A numeric query's syntax tree as .cq text (used for PN/PS/PNS expansions and messages)."""
    if isinstance(node, ast.Value):
        return str(node)
    if isinstance(node, ast.Term):
        return node.node + (f"@{written(node.world)}" if node.world else "")
    if isinstance(node, ast.Statistic):
        return f"{node.name}({written(node.term)})"
    if isinstance(node, ast.Intervention):
        return "do(" + ", ".join(f"{a.name}={a.value}" for a in node.assignments) + ")"
    if isinstance(node, ast.Event):
        return f"{written(node.left)} {node.op} {written(node.right)}"
    if isinstance(node, ast.Number):
        return str(node.value)
    if isinstance(node, ast.BinOp):
        return f"({written(node.left)} {node.op} {written(node.right)})"
    if isinstance(node, ast.Given):
        items = [written(e) for e in node.evidence] + ([written(node.do)] if node.do else [])
        items += [written(u) for u in node.units]
        return " | " + ", ".join(items)
    if isinstance(node, ast.VarRef):
        return node.name
    if isinstance(node, ast.IndexUnit):
        return f"{node.world}[{node.index}]"
    if isinstance(node, ast.Probability):
        return "P(" + ", ".join(written(e) for e in node.events) + (written(node.given) if node.given else "") + ")"
    if isinstance(node, ast.Expectation):
        return "E[" + written(node.expr) + (written(node.given) if node.given else "") + "]"
    return type(node).__name__

