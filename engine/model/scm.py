"""The structural causal model: a Pyro program built from a DAG and its mechanisms.

For each node in topological order the model draws the exogenous noise sites ``U_<node>``
from the mechanism's prior, then records the value ``<node> = f(parents, U)`` as a point-mass
sample site. Queries are handlers around this unchanged program::

    scm = build_scm(load_dag("dags/<name>.yaml"))
    with pyro.poutine.do(data={"shape": torch.tensor([0])}):
        trace = pyro.poutine.trace(scm).get_trace(1)
    trace.nodes["y"]["value"]        # y under do(shape=square)
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from engine.model.dag import DagSpec
from engine.model.mechanism import Mechanism
from engine.model.registry import get_mechanism


class Assigned(dist.Delta):
    """A point mass at a structural assignment; log-density 0 at the value, -inf elsewhere."""

    def log_prob(self, x):
        equal = x == self.v  # broadcast first: x and v may differ in batch shape
        hit = equal.reshape(equal.shape[: equal.dim() - self.event_dim] + (-1,)).all(-1)
        return torch.zeros(hit.shape, device=x.device).masked_fill(~hit, float("-inf"))


class SCM:
    """A Pyro model over the DAG's nodes: call it with the number of units to draw."""

    def __init__(self, dag: DagSpec, mechanisms: dict[str, Mechanism]):
        self.dag = dag
        self.mechanisms = mechanisms
        self.order = tuple(n for n in dag.order if n in mechanisms)

    def __call__(self, n: int) -> dict[str, torch.Tensor]:
        values = {}
        with pyro.plate("units", n):
            for name in self.order:
                mechanism = self.mechanisms[name]
                parents = {p: values[p] for p in self.dag.nodes[name].parents}
                noise = {site: pyro.sample(site, prior) for site, prior in mechanism.noise(n).items()}
                value = mechanism.assign(parents, noise)
                values[name] = pyro.sample(name, Assigned(value, event_dim=value.dim() - 1))
        return values

    def parents(self, name: str, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The parent values of ``name`` taken from ``values``, by name."""
        return {p: values[p] for p in self.dag.nodes[name].parents}

    def to(self, device) -> "SCM":
        for mechanism in self.mechanisms.values():
            mechanism.to(device)
        return self


def build_scm(dag: DagSpec, nodes=None, *, world: bool = False) -> SCM:
    """Instantiate each node's mechanism (all nodes, or ``nodes`` and their ancestors).

    With ``world``, learned mechanisms are replaced by the declared truth that generates data.
    """
    keep = set(dag.order) if nodes is None else set(nodes) | dag.ancestors(nodes)
    mechanisms = {}
    for name in dag.order:
        if name in keep:
            spec = dag.nodes[name]
            cls = get_mechanism(spec.mechanism, dag.where(name))
            parents = {p: dag.nodes[p].domain for p in spec.parents}
            mechanism = cls(spec, parents, path=dag.path)
            mechanisms[name] = mechanism.truth() if world else mechanism
    return SCM(dag, mechanisms)
