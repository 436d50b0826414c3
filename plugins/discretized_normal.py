"""An ordinal node: a normal over the node's value grid, discretized at the midpoints.

    mu = intercept + sum_p term_p(parent p),   U ~ Uniform(0, 1)
    value = the grid index k with F(b_k) < U <= F(b_{k+1}),   F = Normal(mu, sigma).cdf

where b_k are the midpoints between grid values (b_0 = -inf, b_K = +inf). A numeric parent
adds ``coef * value``; a categorical parent adds a per-name offset. The noise is a quantile,
so counterfactuals are monotone: a unit high for its parents stays high under new parents.
Abduction is exact: given value k, U ~ Uniform(F(b_k), F(b_{k+1})).

YAML::

    y:
      mechanism: discretized_normal
      parents: [scale]
      domain: {linspace: [0, 1, 32]}
      params:
        loc: {intercept: -0.3, scale: 1.0}       # mu = -0.3 + 1.0 * scale
        sigma: 0.25
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from engine.model.dag import number
from engine.model.mechanism import Mechanism
from engine.model.registry import register_mechanism


@register_mechanism("discretized_normal")
class DiscretizedNormal(Mechanism):
    """Grid-valued node with a parent-dependent location and inverse-CDF uniform noise."""

    abduction = "exact: uniform on the observed value's quantile interval"

    def __init__(self, node, parents, *, path="<dag>"):
        super().__init__(node, parents, path=path)
        self.check_params({"loc", "sigma"})
        if self.domain.kind != "grid":
            raise self.error("discretized_normal needs a numeric grid domain, e.g. {linspace: [0, 1, 32]}")
        self.sigma = number(self.param("sigma", required=True), self.node.where(path))
        if self.sigma <= 0:
            raise self.error(f"sigma must be > 0, got {self.sigma:g}")
        self.intercept, self.terms = self._loc(self.param("loc", 0.0))
        grid = torch.tensor(self.domain.values, dtype=torch.float64)
        self.edges = (grid[1:] + grid[:-1]) / 2

    def _loc(self, spec):
        where = self.node.where(self.path)
        if not isinstance(spec, dict):
            return number(spec, where), {}
        unknown = set(spec) - {"intercept"} - set(self.parents)
        if unknown:
            raise self.error(f"loc: {sorted(unknown)} are not parents; valid keys: intercept, {', '.join(self.parents)}")
        terms = {}
        for p, domain in self.parents.items():
            term = spec.get(p, 0.0)
            if domain.kind == "grid":
                terms[p] = number(term, where) * torch.tensor(domain.values, dtype=torch.float64)
            elif isinstance(term, dict) and set(term) == set(domain.values):
                terms[p] = torch.tensor([number(term[v], where) for v in domain.values], dtype=torch.float64)
            else:
                raise self.error(f"loc: '{p}' is categorical; give an offset for each of {domain.describe()}")
        return number(spec.get("intercept", 0.0), where), terms

    def loc(self, parents: dict[str, torch.Tensor], n: int) -> torch.Tensor:
        """mu per unit, shape (N,)."""
        mu = torch.full((n,), self.intercept, dtype=torch.float64, device=self.edges.device)
        for p, table in self.terms.items():
            mu = mu + table[parents[p]]
        return mu

    def cdf(self, parents, n: int) -> torch.Tensor:
        """F at the K + 1 bin edges (0 and 1 at the ends), shape (N, K + 1)."""
        normal = torch.distributions.Normal(self.loc(parents, n)[:, None], self.sigma)
        inner = normal.cdf(self.edges[None, :])
        return torch.cat([torch.zeros(n, 1, dtype=inner.dtype, device=inner.device), inner, torch.ones_like(inner[:, :1])], 1)

    def noise(self, n):
        zeros = torch.zeros(n, dtype=torch.float64, device=self.edges.device)
        return {self.site: dist.Uniform(zeros, torch.ones_like(zeros))}

    def assign(self, parents, noise):
        u = noise[self.site]
        cdf = self.cdf(parents, u.shape[0])[:, 1:-1].contiguous()
        return torch.searchsorted(cdf, u[:, None].contiguous(), right=False).squeeze(1)

    def abduct(self, value, parents):
        cdf = self.cdf(parents, value.shape[0])
        lo, hi = cdf.gather(1, value[:, None]).squeeze(1), cdf.gather(1, value[:, None] + 1).squeeze(1)
        u = lo + (hi - lo) * torch.rand_like(lo)
        return {self.site: torch.maximum(u, torch.nextafter(lo, hi))}

    def log_prob(self, value, parents):
        cdf = self.cdf(parents, value.shape[0])
        return (cdf.gather(1, value[:, None] + 1) - cdf.gather(1, value[:, None])).squeeze(1).log()

    def to(self, device):
        self.edges = self.edges.to(device)
        self.terms = {p: t.to(device) for p, t in self.terms.items()}
        return self
