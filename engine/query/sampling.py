"""Monte Carlo points: units drawn for a population, their noise, and their values in every world.

For a population the draws are, in order of preference:

- the units named after ``|`` (a bound unit, an inline one, a selection of the world's data),
  each draw a unit (a selection's, uniformly) with a fresh draw of its noise posterior;
- units from the model given label evidence, drawn *exactly*: the joint of the evidence's
  ancestors under ``do`` is enumerated (``engine.causal.exact``), multiplied by the evidence
  and sampled; the other nodes are drawn forward from their mechanisms;
- otherwise likelihood weighting: point evidence ``node = value`` is clamped and weighted by
  ``p(value | parents)``, any other evidence by its indicator; the effective sample size is reported.

For counterfactual terms (``y@do(shape=square)``) each draw's exogenous noise is its posterior:
abducted by each mechanism (``engine.causal.inference.abduct``) where a value was given or
clamped, and the forward draw's own noise elsewhere (that is an exact posterior draw too).
Every world then runs the same noise, ``condition(noise) + do(world)``: Pearl's Y_x, and
terms over the same population share draws (common random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro.poutine as poutine
import torch

from engine.causal import exact, inference
from engine.model.scm import SCM
from engine.query.points import Points, holds
from engine.query.query import Comparison, Constant, Population, Quantity
from engine.query import statistics

LABEL_CHUNK = 250_000  # draws per batch without images
IMAGE_CHUNK = 1024  # draws per batch when an image is drawn


class ZeroEvidence(ValueError):
    """No draw, or no state, satisfies the evidence."""


@dataclass(frozen=True)
class _Batch:
    values: dict[str, torch.Tensor]  # every node of the sub-model, in the population's own world
    noise: dict[str, torch.Tensor] | None
    log_w: torch.Tensor


def simulate(ctx, population: Population, quantities: set[Quantity], n: int) -> Points:
    """``n`` draws of ``quantities`` (and the evidence) over ``population``; weights from the evidence."""
    evidence = population.evidence
    wanted = set(quantities) | {q for e in evidence for q in e.quantities}
    nodes = {q.node for q in wanted}
    keep = nodes | ctx.dag.ancestors(nodes)
    sub = SCM(ctx.dag, {m: ctx.scm.mechanisms[m] for m in ctx.dag.order if m in keep})
    worlds = sorted({q.world for q in wanted if q.world}, key=repr)
    plan = _plan(ctx, population, sub, bool(worlds))
    unhandled = [q for e in evidence if e not in plan.handled for q in e.quantities]
    plan.factual = not worlds or any(not q.world for q in [*quantities, *unhandled])
    chunk = IMAGE_CHUNK if any(ctx.dag.nodes[m].domain.is_image for m in sub.order) else LABEL_CHUNK
    parts, log_ws = [], []
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        batch = plan.draw(size)
        values = {(): batch.values}
        for world in worlds:
            values[world] = _run(sub, size, batch.noise, {k: _full(ctx, k, v, size) for k, v in world})
        got = {q: _value(ctx, q, values[q.world]) for q in wanted}
        log_w = batch.log_w
        for e in evidence:
            if e not in plan.handled:
                log_w = log_w + torch.where(holds(e, got, ctx.dag), 0.0, -torch.inf).double()
        parts.append({q: got[q] for q in quantities})
        log_ws.append(log_w)
    log_w = torch.cat(log_ws)
    if not torch.isfinite(log_w).any():
        raise ZeroEvidence(f"no draw of {n:,} satisfies {population.text}: its probability is 0 or too small to estimate (try more draws)")
    weights = torch.softmax(log_w, 0)
    ess = float(1 / (weights**2).sum())
    values = {q: torch.cat([p[q] for p in parts]) for q in quantities}
    weighted = plan.weighted or any(e not in plan.handled for e in evidence)
    ess = ess if weighted else None  # equal weights: every draw counts
    return Points(values, weights, False, n, plan.method(n, ess, worlds), population.key, ess)


class _Plan:
    """How one population's draws are made."""

    handled: tuple[Comparison, ...] = ()
    weighted = False
    factual = True  # whether the population's own values are needed (else only its noise)

    def __init__(self, ctx, population: Population, sub: SCM, noise: bool):
        self.ctx, self.population, self.sub, self.noise = ctx, population, sub, noise
        self.abducted: list[str] = []

    def draw(self, n: int) -> _Batch:
        raise NotImplementedError

    def method(self, n: int, ess: float | None, worlds) -> str:
        how = "Monte Carlo"
        if worlds:
            amortised = [m for m in self.abducted if not self.sub.mechanisms[m].abduction.startswith("exact")]
            how += " over " + ("exact noise posteriors" if not amortised else f"noise posteriors ({', '.join(amortised)}: amortised)")
        text = f"{how}, {self.describe(n)}"
        return text + (f", ESS {ess:,.0f}" if ess is not None and "ESS" not in text else "")

    def describe(self, n: int) -> str:
        raise NotImplementedError

    def _forward(self, n: int, fixed: dict[str, torch.Tensor], log_w=None) -> _Batch:
        """Draw forward with ``fixed`` clamped; each fixed node's noise abducted, the rest the draw's own."""
        do = {k: _full(self.ctx, k, v, n) for k, v in self.population.do} | fixed
        trace = poutine.trace(poutine.do(self.sub, data=do)).get_trace(n)
        values = trace.nodes["_RETURN"]["value"]
        noise = None
        if self.noise:
            noise = {}
            for name, m in self.sub.mechanisms.items():
                if name in fixed:
                    noise.update(m.abduct(values[name], self.sub.parents(name, values)))
                else:
                    noise.update({site: trace.nodes[site]["value"] for site in m.noise(1)})
        log_w = torch.zeros(n, dtype=torch.float64) if log_w is None else log_w
        return _Batch(values, noise, log_w)


class _UnitsPlan(_Plan):
    """Draws from the units after ``|``: a unit each draw (uniform over a selection), its noise from its posterior."""

    def __init__(self, ctx, population, sub, noise):
        super().__init__(ctx, population, sub, noise)
        self.abducted = list(sub.order)

    def draw(self, n):
        sets = self.population.units
        which = torch.randint(len(sets), (n,))
        values = None
        for i, units in enumerate(sets):
            rows = (which == i).nonzero().squeeze(1)
            pick = torch.randint(len(units), (len(rows),)).numpy()
            got = self.ctx.units.fetch(units, pick, self.sub.order)
            if values is None:
                values = {k: v.new_empty((n, *v.shape[1:])) for k, v in got.items()}
            for k, v in got.items():
                values[k][rows] = v
        noise = inference.abduct(self.sub, values) if self.noise else None
        return _Batch(values, noise, torch.zeros(n, dtype=torch.float64))

    def describe(self, n):
        return f"{n:,} draws for {', '.join(u.text for u in self.population.units)}"


class _ExactPlan(_Plan):
    """Label evidence on enumerable nodes: units drawn from the exact posterior, the rest forward."""

    def __init__(self, ctx, population, sub, noise, handled, nodes):
        super().__init__(ctx, population, sub, noise)
        self.handled, self.nodes = handled, nodes
        self.abducted = [m for m in nodes if m not in dict(population.do)]
        if nodes:
            joint = ctx.enumeration.joint(nodes, dict(population.do))
            grid = _grid(ctx, nodes)
            for e in handled:
                joint = joint * holds(e, grid, ctx.dag).reshape(joint.shape)
            total = float(joint.sum())
            if total <= 0:
                raise impossible(ctx, population)
            self.table = joint / total

    def draw(self, n):
        fixed = exact.sample(self.table, self.nodes, n) if self.nodes else {}
        if self.factual:
            return self._forward(n, fixed)
        # only counterfactual worlds are read: the evidence's nodes need their noise posterior, the rest their prior
        noise = {}
        for name, m in self.sub.mechanisms.items():
            if name in fixed:
                noise.update(m.abduct(fixed[name], self.sub.parents(name, fixed)))
            else:
                noise.update({site: prior.sample() for site, prior in m.noise(n).items()})
        return _Batch(fixed, noise, torch.zeros(n, dtype=torch.float64))

    def describe(self, n):
        do = self.ctx.resolver.world_text(self.population.do) if self.population.do else ""
        if not self.nodes:
            return f"{n:,} draws" + (f" under {do}" if do else "")
        return f"{n:,} units drawn from the exact posterior given {self.population.text}" + (f" under {do}" if do else "")


class _WeightedPlan(_Plan):
    """Likelihood weighting: point evidence clamped and weighted by its likelihood, the rest by indicators."""

    weighted = True

    def __init__(self, ctx, population, sub, noise):
        super().__init__(ctx, population, sub, noise)
        do = dict(population.do)
        self.clamp, handled = {}, []
        for e in population.evidence:
            q = e.left
            if e.op == "=" and not q.world and not q.statistic and q.node not in do and q.node not in self.clamp and _point(e):
                self.clamp[q.node] = e.right.value
                handled.append(e)
        self.handled = tuple(handled)
        self.abducted = list(self.clamp)

    def draw(self, n):
        fixed = {k: _full(self.ctx, k, v, n) for k, v in self.clamp.items()}
        batch = self._forward(n, fixed)
        log_w = batch.log_w
        for k, v in fixed.items():
            log_w = log_w + self.sub.mechanisms[k].log_prob(v, self.sub.parents(k, batch.values)).double()
        return _Batch(batch.values, batch.noise, log_w)

    def describe(self, n):
        return f"likelihood weighting, {n:,} draws"

    def method(self, n, ess, worlds):
        return super().method(n, ess, worlds).replace("Monte Carlo, likelihood weighting", "likelihood weighting")


def _plan(ctx, population: Population, sub: SCM, noise: bool) -> _Plan:
    if population.units:
        return _UnitsPlan(ctx, population, sub, noise)
    do = dict(population.do)
    factual = tuple(e for e in population.evidence if all(not q.world and not q.statistic for q in e.quantities))
    nodes = sorted({q.node for e in factual for q in e.quantities}, key=ctx.dag.order.index)
    if not factual or ctx.enumeration.why_not(nodes, do) is None:
        relevant = ctx.enumeration.relevant(nodes, do) if factual else []
        return _ExactPlan(ctx, population, sub, noise, factual, relevant)
    return _WeightedPlan(ctx, population, sub, noise)


def impossible(ctx, population: Population) -> ZeroEvidence:
    """The error for evidence of probability zero: ``P(shape = heart) is 0 under do(...)``."""
    under = f" under {ctx.resolver.world_text(population.do)}" if population.do else ""
    return ZeroEvidence(f"P({population.text}) is 0{under}: no unit satisfies the evidence")


def _point(e: Comparison) -> bool:
    return isinstance(e.right, Constant)


def _grid(ctx, nodes: list[str]) -> dict[Quantity, torch.Tensor]:
    sizes = [ctx.dag.nodes[n].domain.size for n in nodes]
    flat, out = torch.arange(int(torch.tensor(sizes).prod())), {}
    for node, size in reversed(list(zip(nodes, sizes))):
        out[Quantity(node)] = flat % size
        flat = flat // size
    return out


def _full(ctx, node: str, value, n: int) -> torch.Tensor:
    if isinstance(value, torch.Tensor) and value.dim() == 1 and len(value) == n:
        return value
    return torch.full((n,), value, dtype=ctx.dag.nodes[node].domain.dtype)


def _run(sub: SCM, n: int, noise, do) -> dict[str, torch.Tensor]:
    with poutine.condition(data=noise), poutine.do(data=do):
        return poutine.trace(sub).get_trace(n).nodes["_RETURN"]["value"]


def _value(ctx, q: Quantity, values: dict[str, torch.Tensor]) -> torch.Tensor:
    v = values[q.node]
    if q.statistic:
        return statistics.statistic(q.statistic)(v, ctx.dag.nodes[q.node].domain)
    return v
