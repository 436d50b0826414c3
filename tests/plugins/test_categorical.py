"""The categorical table with Gumbel-max noise: sampling, exact abduction, counterfactuals."""

import math

import pytest
import torch

from engine.model.dag import parse_dag
from engine.model.scm import build_scm

EULER = 0.5772156649015329

# a -> b
DAG = """
nodes:
  a: {mechanism: categorical, domain: [p, q], params: {probs: [0.25, 0.75]}}
  b:
    mechanism: categorical
    parents: [a]
    domain: [u, v, w]
    params: {probs: {p: [0.6, 0.3, 0.1], q: [0.1, 0.2, 0.7]}}
"""


@pytest.fixture
def b():
    torch.manual_seed(0)
    return build_scm(parse_dag(DAG)).mechanisms["b"]


def draw(mechanism, parents, n):
    return mechanism.assign(parents, {k: d.sample() for k, d in mechanism.noise(n).items()})


def test_samples_follow_the_table(b):
    n = 200_000
    for a, row in [(0, [0.6, 0.3, 0.1]), (1, [0.1, 0.2, 0.7])]:
        values = draw(b, {"a": torch.full((n,), a)}, n)
        freq = torch.bincount(values, minlength=3).double() / n
        assert torch.allclose(freq, torch.tensor(row, dtype=torch.float64), atol=4e-3)


def test_log_prob_is_the_table(b):
    lp = b.log_prob(torch.tensor([0, 2, 1]), {"a": torch.tensor([0, 1, 1])})
    assert torch.allclose(lp.exp(), torch.tensor([0.6, 0.7, 0.2], dtype=torch.float64))


def test_abduction_reproduces_the_value(b):
    n = 10_000
    parents = {"a": torch.randint(0, 2, (n,))}
    value = torch.randint(0, 3, (n,))
    assert torch.equal(b.assign(parents, b.abduct(value, parents)), value)


def test_posterior_of_the_winning_noise_is_gumbel_in_closed_form(b):
    """Given b = k, U_k = M - log p_k with M ~ Gumbel(0, 1): mean -log p_k + gamma, variance pi^2 / 6."""
    n = 200_000
    parents = {"a": torch.zeros(n, dtype=torch.long)}
    u = b.abduct(torch.full((n,), 1), parents)["U_b"][:, 1]
    assert float(u.mean()) == pytest.approx(-math.log(0.3) + EULER, abs=0.015)
    assert float(u.var()) == pytest.approx(math.pi**2 / 6, rel=0.02)


def test_posterior_matches_rejection_sampling(b):
    """The abducted noise has the law of prior noise that happens to produce the observed value."""
    n = 400_000
    parents = {"a": torch.zeros(n, dtype=torch.long)}
    prior = b.noise(n)["U_b"].sample()
    kept = prior[b.assign(parents, {"U_b": prior}) == 2]
    abducted = b.abduct(torch.full((len(kept),), 2), {"a": torch.zeros(len(kept), dtype=torch.long)})["U_b"]
    assert torch.allclose(abducted.mean(0), kept.mean(0), atol=0.03)
    assert torch.allclose(abducted.std(0), kept.std(0), atol=0.03)


def test_counterfactual_matches_rejection_sampling(b):
    """P(b under a=q | b = u under a=p), by abduction and by brute force."""
    n = 400_000
    p, q = torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)
    prior = {"U_b": b.noise(n)["U_b"].sample()}
    factual = b.assign({"a": p}, prior)
    brute = torch.bincount(b.assign({"a": q}, prior)[factual == 0], minlength=3).double()
    brute /= brute.sum()
    noise = b.abduct(torch.zeros(n, dtype=torch.long), {"a": p})
    exact = torch.bincount(b.assign({"a": q}, noise), minlength=3).double() / n
    assert torch.allclose(exact, brute, atol=0.01)


def test_standard_gumbel_draws_what_full_tensors_of_zeros_and_ones_draw():
    import pyro.distributions as dist

    from plugins.categorical import standard_gumbel

    torch.manual_seed(0)
    full = dist.Gumbel(torch.zeros(500, 3, dtype=torch.float64), torch.ones(500, 3, dtype=torch.float64)).sample()
    torch.manual_seed(0)
    expanded = standard_gumbel(torch.zeros((), dtype=torch.float64), (500, 3))
    assert expanded.batch_shape == (500, 3) and torch.equal(expanded.sample(), full)
