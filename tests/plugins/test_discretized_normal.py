"""The ordinal discretized normal: closed-form probabilities, exact interval abduction, monotone counterfactuals."""

import math

import pytest
import torch

from engine.model.dag import parse_dag
from engine.model.scm import build_scm

# s -> y
DAG = """
nodes:
  s: {mechanism: categorical, domain: [small, big], params: {probs: [0.5, 0.5]}}
  y:
    mechanism: discretized_normal
    parents: [s]
    domain: {linspace: [0, 1, 5]}
    params:
      loc: {intercept: 0.2, s: {small: 0.0, big: 0.5}}
      sigma: 0.3
"""


def phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@pytest.fixture
def y():
    torch.manual_seed(0)
    return build_scm(parse_dag(DAG)).mechanisms["y"]


def closed_form(mu, sigma=0.3):
    edges = [0.125, 0.375, 0.625, 0.875]
    cdf = [0.0] + [phi((e - mu) / sigma) for e in edges] + [1.0]
    return [cdf[k + 1] - cdf[k] for k in range(5)], cdf


def test_probabilities_in_closed_form(y):
    for s, mu in [(0, 0.2), (1, 0.7)]:
        expected, _ = closed_form(mu)
        lp = y.log_prob(torch.arange(5), {"s": torch.full((5,), s)})
        assert lp.exp().tolist() == pytest.approx(expected, abs=1e-12)


def test_samples_follow_the_probabilities(y):
    n = 200_000
    values = y.assign({"s": torch.ones(n, dtype=torch.long)}, {"U_y": y.noise(n)["U_y"].sample()})
    freq = torch.bincount(values, minlength=5).double() / n
    assert freq.tolist() == pytest.approx(closed_form(0.7)[0], abs=4e-3)


def test_abduction_is_the_uniform_on_the_value_interval(y):
    n = 100_000
    parents = {"s": torch.zeros(n, dtype=torch.long)}
    u = y.abduct(torch.full((n,), 1), parents)["U_y"]
    _, cdf = closed_form(0.2)
    assert float(u.min()) > cdf[1] and float(u.max()) <= cdf[2]
    assert float(u.mean()) == pytest.approx((cdf[1] + cdf[2]) / 2, abs=1e-3)
    assert torch.equal(y.assign(parents, {"U_y": u}), torch.ones(n, dtype=torch.long))


def test_abduction_reproduces_every_value_even_in_the_tails(y):
    value = torch.arange(5).repeat(2000)
    parents = {"s": torch.randint(0, 2, value.shape)}
    assert torch.equal(y.assign(parents, y.abduct(value, parents)), value)


def test_counterfactuals_are_monotone(y):
    """A unit high for a small s stays at least as high for a big s (same quantile)."""
    n = 50_000
    small, big = torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)
    factual = y.assign({"s": small}, {"U_y": y.noise(n)["U_y"].sample()})
    counterfactual = y.assign({"s": big}, y.abduct(factual, {"s": small}))
    assert (counterfactual >= factual).all()
    assert (counterfactual > factual).float().mean() > 0.3


def test_numeric_parent_is_a_slope(write_dag):
    # x -> z with mu = 0.1 + 0.5 * x
    dag = parse_dag("""
nodes:
  x: {mechanism: categorical, domain: {linspace: [0, 1, 3]}, params: {probs: [0.2, 0.3, 0.5]}}
  z:
    mechanism: discretized_normal
    parents: [x]
    domain: {linspace: [0, 1, 11]}
    params: {loc: {intercept: 0.1, x: 0.5}, sigma: 0.1}
""")
    z = build_scm(dag).mechanisms["z"]
    assert z.loc({"x": torch.tensor([0, 1, 2])}, 3).tolist() == pytest.approx([0.1, 0.35, 0.6])
