"""Counterfactual, interventional and observational answers on a label chain known in closed form."""

import math

import pytest
import torch

from engine.causal import inference
from engine.model.dag import parse_dag
from engine.model.scm import build_scm

# a -> b -> c
CHAIN = """
nodes:
  a: {mechanism: categorical, domain: [p, q], params: {probs: [0.3, 0.7]}}
  b:
    mechanism: discretized_normal
    parents: [a]
    domain: {linspace: [0, 1, 5]}
    params: {loc: {intercept: 0.3, a: {p: 0.0, q: 0.4}}, sigma: 0.25}
  c:
    mechanism: categorical
    parents: [b]
    domain: [lo, hi]
    params: {probs: [[0.9, 0.1], [0.7, 0.3], [0.5, 0.5], [0.3, 0.7], [0.1, 0.9]]}
"""
N = 20_000


@pytest.fixture
def scm():
    inference.seed(0)
    return build_scm(parse_dag(CHAIN))


def units(scm, n=N):
    return scm(n)


def cdf(mu, sigma=0.25):
    edges = [0.125, 0.375, 0.625, 0.875]
    return [0.0] + [0.5 * (1 + math.erf((e - mu) / (sigma * math.sqrt(2)))) for e in edges] + [1.0]


def test_null_intervention_returns_the_unit(scm):
    factual = units(scm)
    draw = inference.counterfactual(scm, factual, {})
    for node in "abc":
        assert torch.equal(draw.values[node], factual[node])


def test_non_descendants_keep_their_values(scm):
    factual = units(scm)
    draw = inference.counterfactual(scm, factual, {"b": torch.full((N,), 4)})
    assert torch.equal(draw.values["a"], factual["a"])
    assert (draw.values["b"] == 4).all()
    assert (draw.values["c"] >= factual["c"]).float().mean() > 0.99  # hi is likelier at b = 1


def test_intervening_on_a_leaf_changes_nothing_upstream(scm):
    factual = units(scm)
    draw = inference.counterfactual(scm, factual, {"c": torch.zeros(N, dtype=torch.long)})
    assert torch.equal(draw.values["a"], factual["a"]) and torch.equal(draw.values["b"], factual["b"])


def test_counterfactual_distribution_in_closed_form(scm):
    """b = 1 under a = p; under do(a = q) the quantile interval of b=1 overlaps each new bin."""
    factual = {"a": torch.zeros(N, dtype=torch.long), "b": torch.ones(N, dtype=torch.long), "c": torch.zeros(N, dtype=torch.long)}
    draw = inference.counterfactual(scm, factual, {"a": torch.ones(N, dtype=torch.long)})
    f1, f2 = cdf(0.3), cdf(0.7)
    lo, hi = f1[1], f1[2]
    exact = [max(0.0, min(hi, f2[j + 1]) - max(lo, f2[j])) / (hi - lo) for j in range(5)]
    freq = torch.bincount(draw.values["b"], minlength=5).double() / N
    assert freq.tolist() == pytest.approx(exact, abs=0.015)


def test_same_seed_same_answer(scm):
    factual = units(scm, 100)
    inference.seed(3)
    one = inference.counterfactual(scm, factual, {"a": torch.ones(100, dtype=torch.long)}).values
    inference.seed(3)
    two = inference.counterfactual(scm, factual, {"a": torch.ones(100, dtype=torch.long)}).values
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_interventional_cuts_the_parents(scm):
    draw = inference.interventional(scm, {"b": torch.tensor(0)}, N)
    assert (draw.values["b"] == 0).all()
    assert float((draw.values["a"] == 1).double().mean()) == pytest.approx(0.7, abs=0.015)
    assert float((draw.values["c"] == 1).double().mean()) == pytest.approx(0.1, abs=0.01)


def test_observational_is_bayes(scm):
    """P(a = q | c = hi) by likelihood weighting against the exact sum over b."""
    draw, ess = inference.observational(scm, {"c": torch.tensor(1)}, 4000, particles=200_000)
    assert (draw.values["c"] == 1).all()
    p_hi = [0.1, 0.3, 0.5, 0.7, 0.9]
    joint = {}
    for a, prior, mu in [(0, 0.3, 0.3), (1, 0.7, 0.7)]:
        f = cdf(mu)
        joint[a] = prior * sum((f[k + 1] - f[k]) * p_hi[k] for k in range(5))
    exact = joint[1] / (joint[0] + joint[1])
    assert float((draw.values["a"] == 1).double().mean()) == pytest.approx(exact, abs=0.025)
    assert ess > 1000


def test_impossible_evidence_is_reported():
    never_hi = CHAIN.replace("[[0.9, 0.1], [0.7, 0.3], [0.5, 0.5], [0.3, 0.7], [0.1, 0.9]]", "[[1, 0], [1, 0], [1, 0], [1, 0], [1, 0]]")
    with pytest.raises(inference.ImpossibleEvidence):
        inference.observational(build_scm(parse_dag(never_hi)), {"c": torch.tensor(1)}, 4)
