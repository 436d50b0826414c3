"""A conditional probability table with Gumbel-max noise.

    U ~ Gumbel(0, 1)^K,   value = argmax_k (log p(k | parents) + U_k)

so ``value`` has exactly the declared distribution. Abduction is exact (Oberst and Sontag,
2019): given ``value = k``, the maximum ``M = max_j (log p_j + U_j)`` is Gumbel(0, 1) and
independent of k, ``U_k = M - log p_k``, and every other ``log p_j + U_j`` is a Gumbel(log p_j)
truncated below M.

YAML::

    scale:
      mechanism: categorical
      parents: [shape]
      domain: {linspace: [0.5, 1.0, 6]}
      params:
        probs:            # one row per parent value; a root gives a single list
          square:  [0.30, 0.25, 0.20, 0.12, 0.08, 0.05]
          ellipse: [0.15, 0.20, 0.30, 0.20, 0.10, 0.05]
          heart:   [0.05, 0.05, 0.10, 0.20, 0.25, 0.35]

``probs: uniform`` gives every value the same probability whatever the parents.
``learn: true`` fits the table from data instead (see plugins/learned.py).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from engine.model.mechanism import Mechanism
from engine.model.registry import register_mechanism
from plugins.tables import flat_index, parent_table

TOLERANCE = 1e-6


@register_mechanism("categorical")
class Categorical(Mechanism):
    """p(value | parents) from a declared table; exact Gumbel-max abduction."""

    abduction = "exact: Gumbel-max posterior (truncated Gumbels below a Gumbel maximum)"

    def __new__(cls, node, parents, **kwargs):
        if cls is Categorical and node.params.get("learn") is True:
            from plugins.learned import LearnedTable

            cls = LearnedTable
        return super().__new__(cls)

    def __init__(self, node, parents, *, path="<dag>"):
        super().__init__(node, parents, path=path)
        self.check_params({"probs", "learn"})
        if not isinstance(self.param("learn", False), bool):
            raise self.error(f"learn must be true or false, got {self.param('learn')!r}")
        if self.domain.is_image:
            raise self.error("categorical needs a domain of names or a grid, not an image")
        self.sizes = [(p, d.size) for p, d in parents.items()]
        spec = self.param("probs", required=True)
        if spec == "uniform":
            self.probs = torch.full((1, self.domain.size), 1 / self.domain.size, dtype=torch.float64)
            self.sizes = []
        else:
            table = parent_table(spec, list(parents.items()), self._row, self.error, "probs: ")
            self.probs = table.reshape(-1, self.domain.size)

    def _row(self, row, where: str) -> torch.Tensor:
        k = self.domain.size
        if not isinstance(row, list) or len(row) != k or not all(isinstance(v, (int, float)) for v in row):
            raise self.error(f"{where}expected a list of {k} probabilities (one per value of {self.domain.describe()}), got {row!r}")
        t = torch.tensor(row, dtype=torch.float64)
        if (t < 0).any() or abs(float(t.sum()) - 1) > TOLERANCE:
            raise self.error(f"{where}probabilities must be >= 0 and sum to 1, got {row} (sum {float(t.sum()):g})")
        return t

    def logits(self, parents: dict[str, torch.Tensor]) -> torch.Tensor:
        """log p(. | parents) per unit, shape (N, K)."""
        index = flat_index(parents, self.sizes)
        if index is None:
            n = next(iter(parents.values())).shape[0] if parents else 1
            return self.probs[0].log().expand(n, -1)
        return self.probs[index].log()

    def noise(self, n):
        return {self.site: standard_gumbel(self.probs.new_zeros(()), (n, self.domain.size)).to_event(1)}

    def assign(self, parents, noise):
        u = noise[self.site]
        logits = self._batched(parents, u.shape[0])
        return torch.argmax(logits + u, dim=-1)

    def abduct(self, value, parents):
        logits = self._batched(parents, value.shape[0])
        gumbel = standard_gumbel(logits.new_zeros(()), logits.shape)
        top = gumbel.sample()[:, :1]  # M ~ Gumbel(0, 1): the perturbed maximum
        g = logits + gumbel.sample()
        truncated = -torch.log(torch.exp(-top) + torch.exp(-g))  # Gumbel(logits) truncated below M
        perturbed = truncated.scatter(1, value[:, None], top)
        u = perturbed - logits
        possible = torch.isfinite(logits)
        return {self.site: torch.where(possible, u, gumbel.sample())}

    def log_prob(self, value, parents):
        logits = self._batched(parents, value.shape[0])
        return logits.gather(1, value[:, None]).squeeze(1)

    def _batched(self, parents, n: int) -> torch.Tensor:
        logits = self.logits(parents)
        return logits.expand(n, -1) if logits.shape[0] != n else logits

    def to(self, device):
        self.probs = self.probs.to(device)
        return self


def standard_gumbel(zero: torch.Tensor, shape) -> dist.Gumbel:
    """Gumbel(0, 1) over ``shape``, from scalars expanded: the same draws as one built from full
    tensors of zeros and ones, without building, validating and transforming them (100,000-unit
    label simulations spent a third of their time there)."""
    return dist.Gumbel(zero, zero + 1).expand(shape)
