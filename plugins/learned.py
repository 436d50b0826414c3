"""Label mechanisms whose conditionals are learned from data instead of declared.

Both keep Gumbel-max noise and its exact abduction (they are categoricals over the node's
domain); only ``log p(value | parents)`` is fitted, by maximum likelihood inside SVI
(``cq train``: the node is observed, so the ELBO is its log-likelihood). The YAML still says
how the world generates the data (the *truth*), which the model never reads::

    scale:
      mechanism: categorical
      parents: [shape]
      domain: {linspace: [0.5, 1.0, 6]}
      params:
        learn: true               # fit the table; start from uniform
        probs: {...}              # the world's table: generates the data, hidden from the model

    x:
      mechanism: mlp_categorical  # p(x | parents) = softmax(MLP(one-hot parents))
      parents: [orientation]
      domain: {linspace: [0, 1, 32]}
      params:
        hidden: [64]
        truth:                    # the world's mechanism for this node
          mechanism: discretized_normal
          params: {loc: {intercept: 0.2, orientation: 0.1}, sigma: 0.18}
"""

from __future__ import annotations

import dataclasses

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from engine.limits import MAX_WIDTH
from engine.model.mechanism import Mechanism
from engine.model.registry import get_mechanism, register_mechanism
from plugins.categorical import Categorical, standard_gumbel
from plugins.tables import flat_index


class Fitted(Categorical, nn.Module):
    """A categorical whose logits are a module, fitted by maximum likelihood inside SVI."""

    learnable = True

    def __init__(self, node, parents, *, path="<dag>"):
        nn.Module.__init__(self)
        Mechanism.__init__(self, node, parents, path=path)
        self.sizes = [(p, d.size) for p, d in parents.items()]
        self.config: dict = {}

    def model(self, value: torch.Tensor, parents: dict[str, torch.Tensor]) -> None:
        """p(value | parents) = Categorical(softmax(logits(parents))), observed."""
        pyro.module(self.name, self)
        with pyro.plate(f"{self.name}_batch", value.shape[0]):
            pyro.sample(self.name, dist.Categorical(logits=self.logits(parents).float()), obs=value)

    def guide(self, value: torch.Tensor, parents: dict[str, torch.Tensor]) -> None:
        """Nothing is latent: the ELBO is the log-likelihood."""

    def truth(self) -> Mechanism:
        return self.__dict__["world"]

    def declare(self, world: Mechanism) -> None:
        """Keep the world's mechanism outside the module tree (it is not fitted or saved)."""
        self.__dict__["world"] = world

    def noise(self, n):
        return {self.site: standard_gumbel(torch.zeros((), dtype=torch.float64, device=self._device()), (n, self.domain.size)).to_event(1)}

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def to(self, *args, **kwargs):
        return nn.Module.to(self, *args, **kwargs)


class LearnedTable(Fitted):
    """``categorical`` with ``learn: true``: one free logit row per parent configuration."""

    def __init__(self, node, parents, *, path="<dag>"):
        super().__init__(node, parents, path=path)
        declared = dataclasses.replace(node, params={k: v for k, v in node.params.items() if k != "learn"})
        self.declare(Categorical(declared, parents, path=path))
        rows = self.truth().probs.shape[0]
        self.sizes = self.truth().sizes
        self.table = nn.Parameter(torch.zeros(rows, self.domain.size))

    def logits(self, parents):
        index = flat_index(parents, self.sizes)
        rows = self.table[index] if index is not None else self.table[:1].expand(_batch(parents), -1)
        return F.log_softmax(rows.double(), -1)


@register_mechanism("mlp_categorical")
class MlpCategorical(Fitted):
    """p(value | parents) = softmax(MLP(one-hot of every parent)); for parents with many values."""

    def __init__(self, node, parents, *, path="<dag>"):
        super().__init__(node, parents, path=path)
        self.check_params({"hidden", "truth"})
        if self.domain.is_image or any(d.is_image for d in parents.values()):
            raise self.error("mlp_categorical needs label domains for the node and its parents")
        hidden = self.param("hidden", [64])
        if not isinstance(hidden, list) or len(hidden) > 16 or not all(isinstance(h, int) and not isinstance(h, bool) and 0 < h <= MAX_WIDTH for h in hidden):
            raise self.error(f"hidden must be a list of at most 16 layer widths from 1 to {MAX_WIDTH:,}, got {hidden!r}")
        truth = self.param("truth", required=True)
        if not isinstance(truth, dict) or not isinstance(truth.get("mechanism"), str):
            raise self.error("truth must be {mechanism: NAME, params: {...}}: the world's mechanism that generates the data")
        spec = dataclasses.replace(node, mechanism=truth["mechanism"], params=truth.get("params") or {})
        self.declare(get_mechanism(spec.mechanism, node.where(path))(spec, parents, path=path))
        self.config = {"hidden": hidden}
        widths = [sum(d.size for d in parents.values()) or 1, *hidden, self.domain.size]
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])

    def logits(self, parents):
        n = _batch(parents)
        parts = [F.one_hot(parents[p], d.size).float() for p, d in self.parents.items()]
        x = torch.cat(parts, 1) if parts else torch.ones(n, 1, device=self._device())
        return F.log_softmax(self.net(x).double(), -1)


def _batch(parents) -> int:
    return next(iter(parents.values())).shape[0] if parents else 1
