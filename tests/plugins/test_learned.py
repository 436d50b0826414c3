"""Learned label mechanisms: the world keeps the declared truth; SVI recovers it from samples."""

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from engine.model.dag import parse_dag
from engine.errors import DagError
from engine.model.scm import build_scm
from plugins.learned import LearnedTable, MlpCategorical

# a -> b ; a -> c   (b: a learned table; c: a neural conditional of a discretized normal)
DAG = """
nodes:
  a: {mechanism: categorical, domain: [p, q, r], params: {probs: [0.2, 0.3, 0.5]}}
  b:
    mechanism: categorical
    parents: [a]
    domain: [u, v]
    params:
      learn: true
      probs: {p: [0.9, 0.1], q: [0.5, 0.5], r: [0.2, 0.8]}
  c:
    mechanism: mlp_categorical
    parents: [a]
    domain: {linspace: [0, 1, 5]}
    params:
      hidden: [16]
      truth: {mechanism: discretized_normal, params: {loc: {a: {p: 0.1, q: 0.5, r: 0.9}}, sigma: 0.2}}
"""


def fit(mechanism, values, parents, steps=200):
    pyro.clear_param_store()
    svi = SVI(mechanism.model, mechanism.guide, pyro.optim.Adam({"lr": 0.1}), Trace_ELBO())
    for _ in range(steps):
        svi.step(values, parents)


def test_world_keeps_the_declared_truth():
    model, world = build_scm(parse_dag(DAG)), build_scm(parse_dag(DAG), world=True)
    assert isinstance(model.mechanisms["b"], LearnedTable) and isinstance(model.mechanisms["c"], MlpCategorical)
    assert model.mechanisms["b"].learnable and not world.mechanisms["b"].learnable
    assert type(world.mechanisms["c"]).__name__ == "DiscretizedNormal"


@pytest.mark.parametrize("node", ["b", "c"])
def test_svi_recovers_the_declared_conditional(node):
    torch.manual_seed(0)
    model, world = build_scm(parse_dag(DAG)), build_scm(parse_dag(DAG), world=True)
    values = world(20_000)
    learned, truth = model.mechanisms[node], world.mechanisms[node]
    fit(learned, values[node], {"a": values["a"]})
    configs = {"a": torch.arange(3)}
    size = truth.domain.size
    p = torch.stack([learned.log_prob(torch.full((3,), k), configs) for k in range(size)], 1).exp()
    q = torch.stack([truth.log_prob(torch.full((3,), k), configs) for k in range(size)], 1).exp()
    tv = 0.5 * (p - q).abs().sum(1)
    assert tv.max() < 0.03, tv


def test_learned_mechanisms_keep_exact_abduction():
    model = build_scm(parse_dag(DAG))
    values = build_scm(parse_dag(DAG), world=True)(1000)
    for node in "bc":
        m = model.mechanisms[node]
        with torch.no_grad():
            assert torch.equal(m.assign({"a": values["a"]}, m.abduct(values[node], {"a": values["a"]})), values[node])


def test_mlp_categorical_needs_a_truth():
    with pytest.raises(DagError, match="node 'c'.*truth"):
        build_scm(parse_dag(DAG.replace("      truth: {mechanism: discretized_normal, params: {loc: {a: {p: 0.1, q: 0.5, r: 0.9}}, sigma: 0.2}}\n", "")))
