"""An angle node with a von Mises distribution over its grid, centred by its parents.

    p(k | parents) ∝ exp(kappa * cos(theta_k - mu)),   mu = loc[parent value]
    U ~ Uniform(0, 1),   value = the k whose CDF interval (in grid order) holds U

Abduction is exact: given value k, U is uniform on k's CDF interval.

YAML::

    orientation:
      mechanism: von_mises
      parents: [shape]
      domain: {linspace: [0, 2pi, 40]}
      params:
        loc: {square: 0.785, ellipse: 1.571, heart: 3.142}   # mu per parent value (radians)
        kappa: 2.0                                          # concentration
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from engine.model.mechanism import Mechanism


class VonMises(Mechanism):
    """A circular grid node with one categorical parent (or none: ``loc`` is then a number)."""

    abduction = "exact: uniform on the observed value's CDF interval"

    def __init__(self, node, parents, *, path="<dag>"):
        super().__init__(node, parents, path=path)
        self.check_params({"loc", "kappa"})
        if self.domain.kind != "grid":
            raise self.error("von_mises needs an angle grid domain, e.g. {linspace: [0, 2pi, 40]}")
        if len(parents) > 1 or any(d.kind != "names" for d in parents.values()):
            raise self.error("von_mises takes at most one categorical parent")
        kappa = self.param("kappa", required=True)
        if not isinstance(kappa, (int, float)) or kappa < 0:
            raise self.error(f"kappa must be a number >= 0, got {kappa!r}")
        loc = self.param("loc", required=True)
        self.parent = next(iter(parents), None)
        if self.parent is None:
            mus = [loc]
        else:
            values = parents[self.parent].values
            if not isinstance(loc, dict) or set(loc) != set(values):
                raise self.error(f"loc needs one angle per value of '{self.parent}': {', '.join(values)}")
            mus = [loc[v] for v in values]
        theta = torch.tensor(self.domain.values, dtype=torch.float64)
        weights = torch.exp(kappa * torch.cos(theta[None] - torch.tensor(mus, dtype=torch.float64)[:, None]))
        probs = weights / weights.sum(1, keepdim=True)
        self.cdf = torch.cat([torch.zeros(len(mus), 1, dtype=torch.float64), probs.cumsum(1)], 1)
        self.cdf[:, -1] = 1.0

    def _cdf(self, parents, n):
        rows = parents[self.parent] if self.parent else torch.zeros(n, dtype=torch.long)
        return self.cdf[rows]

    def noise(self, n):
        zeros = torch.zeros(n, dtype=torch.float64)
        return {self.site: dist.Uniform(zeros, torch.ones_like(zeros))}

    def assign(self, parents, noise):
        u = noise[self.site]
        inner = self._cdf(parents, u.shape[0])[:, 1:-1].contiguous()
        return torch.searchsorted(inner, u[:, None].contiguous()).squeeze(1)

    def abduct(self, value, parents):
        cdf = self._cdf(parents, value.shape[0])
        lo, hi = cdf.gather(1, value[:, None]).squeeze(1), cdf.gather(1, value[:, None] + 1).squeeze(1)
        u = lo + (hi - lo) * torch.rand_like(lo)
        return {self.site: torch.maximum(u, torch.nextafter(lo, hi))}

    def log_prob(self, value, parents):
        cdf = self._cdf(parents, value.shape[0])
        return (cdf.gather(1, value[:, None] + 1) - cdf.gather(1, value[:, None])).squeeze(1).log()


__all__ = ["VonMises"]
