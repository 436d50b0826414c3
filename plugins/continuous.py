"""Real-valued nodes: a uniform root and additive Gaussian noise, all with exact abduction.

    uniform:                  value = low + (high - low) U,       U ~ Uniform(0, 1)
    normal, linear_gaussian:  value = mu(parents) + sigma U,      U ~ N(0, 1)
    mlp_gaussian:             value = f_theta(parents) + sigma U, f an MLP fitted by SVI

    mu(parents) = intercept + sum_{numeric p} coef_p * p + sum_{names p} offset_p[p]

The assignment is invertible in U, so abduction is a point, U = (value - mu) / sigma, stepped by
ulps where the division rounds, so that ``assign(abduct(value)) == value`` bit for bit (within an
ulp where no float U does it). A counterfactual keeps each unit's residual: ``value' = value +
mu(parents') - mu(parents)``. YAML::

    a: {mechanism: uniform, domain: {real: [0, 1]}}     # params low, high: default the bounds
    b: {mechanism: normal, domain: real, params: {loc: 0.5, sigma: 2}}
    c:
      mechanism: linear_gaussian                        # (normal with parents is the same)
      parents: [a, shape]
      domain: real
      params: {loc: {intercept: 0.1, a: 2.0, shape: {square: 0, ellipse: 0.5, heart: 1}}, sigma: 0.3}
    d:
      mechanism: mlp_gaussian                           # N(MLP(one-hot names, numbers), sigma)
      parents: [a, shape]
      domain: real
      params:                                           # sigma: 0.3 would fix sigma; without it sigma is learned
        hidden: [64]
        truth: {mechanism: linear_gaussian, params: {loc: {a: 2.0, shape: {square: 0, ellipse: 0.5, heart: 1}}, sigma: 0.3}}
"""

from __future__ import annotations

import dataclasses
import math

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from engine.limits import MAX_WIDTH
from engine.model.mechanism import Mechanism
from engine.model.registry import get_mechanism, register_mechanism
from engine.model.yamlfile import number
from plugins.vae_decoder import mlp


def invert(value: torch.Tensor, loc, scale) -> torch.Tensor:
    """The U with ``loc + scale * U == value`` exactly: the quotient, stepped one ulp at a time where it rounds off."""
    u = (value - loc) / scale
    up, down = torch.full_like(u, math.inf), torch.full_like(u, -math.inf)
    for _ in range(4):
        back = loc + scale * u
        if torch.equal(back, value):
            break
        u = torch.where(back < value, torch.nextafter(u, up), torch.where(back > value, torch.nextafter(u, down), u))
    return u


class Additive(Mechanism):
    """value = loc(parents, n) + scale() U, U ~ N(0, 1); subclasses give ``loc`` (float64, (N,)) and ``scale``."""

    abduction = "exact: U = (value - mu(parents)) / sigma"
    device = torch.device("cpu")

    def noise(self, n):
        zeros = torch.zeros(n, dtype=torch.float64, device=self.device)
        return {self.site: dist.Normal(zeros, torch.ones_like(zeros))}

    def assign(self, parents, noise):
        u = noise[self.site]
        return self.loc(parents, u.shape[0]) + self.scale() * u

    def abduct(self, value, parents):
        return {self.site: invert(value.double(), self.loc(parents, value.shape[0]), self.scale())}

    def log_prob(self, value, parents):
        return dist.Normal(self.loc(parents, value.shape[0]), self.scale()).log_prob(value.double())

    def to(self, device):
        self.device = torch.device(device)
        return self


def _real(m: Mechanism) -> None:
    if m.domain.kind != "real":
        raise m.error(f"{m.node.mechanism} needs a real domain (domain: real or {{real: [low, high]}}), not {m.domain.describe()}")


def _sigma(m: Mechanism, default: float | None) -> float:
    sigma = number(m.param("sigma", default, required=default is None), m.node.where(m.path))
    if sigma <= 0:
        raise m.error(f"sigma must be a number > 0, got {sigma:g}")
    return sigma


@register_mechanism("normal")
@register_mechanism("linear_gaussian")
class LinearGaussian(Additive):
    """mu = intercept + sum_p term_p(parent p): ``coef * value`` for a numeric parent, an offset per name."""

    def __init__(self, node, parents, *, path="<dag>"):
        super().__init__(node, parents, path=path)
        self.check_params({"loc", "sigma"})
        _real(self)
        self.sigma = _sigma(self, 1.0)
        self.intercept, self.slopes, self.offsets = self._loc(self.param("loc", 0.0))

    def _loc(self, spec):
        where, keys = self.node.where(self.path), ", ".join(["intercept", *self.parents])
        if not isinstance(spec, dict):
            if self.parents:
                raise self.error(f"loc must be a mapping with keys {keys} (a term for each parent), got {spec!r}")
            return number(spec, where), {}, {}
        unknown = [str(k) for k in spec if k != "intercept" and k not in self.parents]
        if unknown:
            raise self.error(f"loc: {unknown} are not parents; valid keys: {keys}")
        missing = [p for p in self.parents if p not in spec]
        if missing:
            raise self.error(f"loc needs a term for every parent; missing {missing} (write 0 for no effect)")
        slopes, offsets = {}, {}
        for p, domain in self.parents.items():
            if domain.is_numeric:
                slopes[p] = number(spec[p], where)
            elif domain.kind == "names" and isinstance(spec[p], dict) and set(spec[p]) == set(domain.values):
                offsets[p] = torch.tensor([number(spec[p][v], where) for v in domain.values], dtype=torch.float64)
            elif domain.kind == "names":
                example = ", ".join(f"{v}: 0.0" for v in domain.values[:3]) + (", ..." if domain.size > 3 else "")
                raise self.error(f"loc: '{p}' takes the names {domain.describe()}; give an offset for each name, e.g. {p}: {{{example}}}")
            else:
                raise self.error(f"loc: '{p}' is an image; a linear_gaussian's parents must be names or numbers")
        return number(spec.get("intercept", 0.0), where), slopes, offsets

    def loc(self, parents, n):
        """mu per unit, float64 of shape (N,)."""
        mu = torch.full((n,), self.intercept, dtype=torch.float64, device=self.device)
        for p, coef in self.slopes.items():
            mu = mu + coef * self.parents[p].values_of(parents[p])
        for p, table in self.offsets.items():
            mu = mu + table[parents[p]]
        return mu

    def scale(self):
        return self.sigma

    def to(self, device):
        self.offsets = {p: t.to(device) for p, t in self.offsets.items()}
        return super().to(device)


@register_mechanism("uniform")
class Uniform(Additive):
    """A root: value = low + (high - low) U, U ~ Uniform(0, 1); log p = -log(high - low) on [low, high]."""

    abduction = "exact: U = (value - low) / (high - low)"

    def __init__(self, node, parents, *, path="<dag>"):
        super().__init__(node, parents, path=path)
        self.check_params({"low", "high"})
        _real(self)
        if parents:
            raise self.error(f"uniform is for a root node; it has parents {list(parents)} (use linear_gaussian)")
        d = self.domain
        for key in ("low", "high"):
            if self.param(key) is None and not math.isfinite(getattr(d, key)):
                raise self.error(f"uniform on unbounded real numbers needs '{key}' (or a bounded domain: {{real: [low, high]}})")
            setattr(self, key, number(self.param(key, getattr(d, key)), self.node.where(path)))
        if not d.low <= self.low < self.high <= d.high:
            raise self.error(f"uniform needs low < high inside the {d.describe()}, got low {self.low:g}, high {self.high:g}")

    def loc(self, parents, n):
        return torch.full((n,), self.low, dtype=torch.float64, device=self.device)

    def scale(self):
        return self.high - self.low

    def noise(self, n):
        zeros = torch.zeros(n, dtype=torch.float64, device=self.device)
        return {self.site: dist.Uniform(zeros, torch.ones_like(zeros))}

    def log_prob(self, value, parents):
        value = value.double()
        inside = (value >= self.low) & (value <= self.high)
        return torch.full_like(value, -math.log(self.high - self.low)).masked_fill(~inside, -math.inf)


@register_mechanism("mlp_gaussian")
class MlpGaussian(Additive, nn.Module):
    """p(value | parents) = N(MLP(one-hot names, numeric values), sigma), fitted by SVI; sigma fixed or learned."""

    learnable = True

    def __init__(self, node, parents, *, path="<dag>"):
        nn.Module.__init__(self)
        Mechanism.__init__(self, node, parents, path=path)
        self.check_params({"hidden", "sigma", "truth"})
        _real(self)
        if any(d.is_image for d in parents.values()):
            raise self.error("mlp_gaussian takes names and numbers as parents, not images")
        hidden = self.param("hidden", [64])
        if not isinstance(hidden, list) or len(hidden) > 16 or not all(isinstance(h, int) and not isinstance(h, bool) and 0 < h <= MAX_WIDTH for h in hidden):
            raise self.error(f"hidden must be a list of at most 16 layer widths from 1 to {MAX_WIDTH:,}, got {hidden!r}")
        truth = self.param("truth", required=True)
        if not isinstance(truth, dict) or not isinstance(truth.get("mechanism"), str) or set(truth) - {"mechanism", "params"}:
            raise self.error("truth must be {mechanism: NAME, params: {...}}: the world's mechanism that generates the data")
        spec = dataclasses.replace(node, mechanism=truth["mechanism"], params=truth.get("params") or {})
        self.__dict__["world"] = get_mechanism(spec.mechanism, node.where(path))(spec, parents, path=path)  # not fitted or saved
        self.sigma = None if self.param("sigma") is None else _sigma(self, None)  # None: learned, from 1
        self.log_sigma = nn.Parameter(torch.zeros((), dtype=torch.float64)) if self.sigma is None else None
        self.config = {"hidden": hidden, "sigma": self.sigma or "learned"}
        self.net = mlp([sum(d.size if d.kind == "names" else 1 for d in parents.values()) or 1, *hidden, 1])

    @property
    def device(self) -> torch.device:
        return self.net[0].weight.device

    def truth(self) -> Mechanism:
        return self.__dict__["world"]

    def loc(self, parents, n):
        """f_theta(parents) per unit, float64 of shape (N,)."""
        parts = [F.one_hot(parents[p], d.size).float() if d.kind == "names" else d.values_of(parents[p]).float()[:, None]
                 for p, d in self.parents.items()]
        x = torch.cat(parts, 1) if parts else torch.ones(n, 1, device=self.device)
        return self.net(x).squeeze(1).double()

    def scale(self):
        return self.sigma if self.log_sigma is None else self.log_sigma.exp()

    def model(self, value: torch.Tensor, parents: dict[str, torch.Tensor]) -> None:
        """p(value | parents) = N(f_theta(parents), sigma), observed."""
        pyro.module(self.name, self)
        with pyro.plate(f"{self.name}_batch", value.shape[0]):
            pyro.sample(self.name, dist.Normal(self.loc(parents, value.shape[0]), self.scale()), obs=value.double())

    def guide(self, value: torch.Tensor, parents: dict[str, torch.Tensor]) -> None:
        """Nothing is latent: the ELBO is the log-likelihood."""

    def to(self, *args, **kwargs):
        return nn.Module.to(self, *args, **kwargs)
