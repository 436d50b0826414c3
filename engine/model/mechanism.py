"""The contract every mechanism plugin fulfils.

A mechanism is the structural assignment of one node, ``value = f(parents, U)``, with its
exogenous noise ``U`` drawn independently of everything else. It knows its own node only
(never the DAG, the query or the data set) and works on batches:

- values are batched tensors in the form the node's Domain encodes (``engine.model.domains``):
  ``long`` class indices for names and grids, ``float64`` numbers for real nodes, shape ``(N,)``;
  images are float tensors of shape ``(N, H, W)`` (0/1, or gray levels 0..255);
- ``parents`` is always a dict keyed by parent name (never by position).

A subclass implements:

``noise(n) -> {site: Distribution}``
    The prior of each exogenous site, batched over ``n`` units. A mechanism with one noise
    names it ``U_<node>``; one with several names them ``U_<node>_<part>``.
``assign(parents, noise) -> value``
    The deterministic structural assignment.
``abduct(value, parents) -> {site: Tensor}``
    One draw per unit from the posterior of the noise given the observed value and parents
    (exact where the mechanism allows it), so ``assign(parents, abduct(value, parents)) == value``.
``log_prob(value, parents) -> Tensor``
    ``log p(value | parents)`` per unit (label mechanisms; used for conditioning and checks).

Parameters come from the node's YAML ``params`` and are validated in ``__init__``, raising
``DagError`` that names the file and node. Learnable mechanisms are also ``torch.nn.Module``s
with Pyro ``model(value, parents)`` and ``guide(value, parents)`` methods that ``cq train``
fits with SVI; their ``truth()`` is the declared mechanism that generates the world's data.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from engine.model.dag import NodeSpec
from engine.model.domains import Domain
from engine.errors import DagError


class Mechanism:
    """Base class: holds the node spec and the parents' domains; subclasses add the maths."""

    #: whether ``cq train`` fits this mechanism's parameters
    learnable: bool = False
    #: how ``abduct`` infers the noise, as reported in answers
    abduction: str = "posterior draw"

    def __init__(self, node: NodeSpec, parents: dict[str, Domain], *, path: str = "<dag>"):
        self.node = node
        self.parents = parents
        self.path = path

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def domain(self) -> Domain:
        return self.node.domain

    @property
    def site(self) -> str:
        """The name of the main exogenous noise site."""
        return f"U_{self.node.name}"

    def error(self, message: str) -> DagError:
        """A DagError naming this node's file, line and node."""
        return DagError(f"{self.node.where(self.path)}: {message}")

    def param(self, key: str, default=None, *, required: bool = False):
        if required and key not in self.node.params:
            raise self.error(f"mechanism '{self.node.mechanism}' needs the parameter '{key}'")
        return self.node.params.get(key, default)

    def check_params(self, allowed: set[str]) -> None:
        unknown = set(self.node.params) - allowed
        if unknown:
            raise self.error(f"unknown parameter(s) {sorted(unknown)} for '{self.node.mechanism}'; valid: {sorted(allowed)}")

    def noise(self, n: int) -> dict[str, Distribution]:
        raise NotImplementedError

    def assign(self, parents: dict[str, torch.Tensor], noise: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def abduct(self, value: torch.Tensor, parents: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def log_prob(self, value: torch.Tensor, parents: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError(f"mechanism '{self.node.mechanism}' has no label likelihood")

    def truth(self) -> "Mechanism":
        """The mechanism that generates the world's data: itself, unless it is learned."""
        return self

    def to(self, device) -> "Mechanism":
        """Move tensors to ``device`` (label mechanisms override; modules use nn.Module.to)."""
        return self
