"""Exact enumeration: joints under do, pruning to ancestors, against hand computation and brute force.

    # a -> b -> c,  a -> c        (a in {lo, hi}, b on the grid 0, 0.5, 1, c in {calm, alarm})
"""

import itertools

import pytest
import torch

from engine.causal.exact import Enumeration, eliminate, Factor, sample
from engine.model.dag import parse_dag
from engine.model.scm import build_scm
from tests.query.toy import TOY

PA = [0.4, 0.6]
PB = [[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]]
PC_YES = [[0.0, 0.3, 0.8], [0.0, 0.5, 0.9]]


@pytest.fixture(scope="module")
def enumeration():
    dag = parse_dag(TOY, "toy.yaml")
    return Enumeration(build_scm(dag, ["a", "b", "c"]))


def brute(do=None):
    """P(a, b, c) by summing the product of the tables over every state."""
    do = do or {}
    joint = torch.zeros(2, 3, 2, dtype=torch.float64)
    for a, b, c in itertools.product(range(2), range(3), range(2)):
        pa = float(a == do["a"]) if "a" in do else PA[a]
        pb = float(b == do["b"]) if "b" in do else PB[a][b]
        yes = PC_YES[a][b]
        pc = float(c == do["c"]) if "c" in do else (yes if c else 1 - yes)
        joint[a, b, c] = pa * pb * pc
    return joint


@pytest.mark.parametrize("do", [{}, {"b": 2}, {"a": 1}, {"c": 1}, {"a": 0, "b": 1}])
def test_the_joint_matches_brute_force(enumeration, do):
    assert torch.allclose(enumeration.joint(["a", "b", "c"], do), brute(do), atol=1e-12)


def test_marginals_by_hand(enumeration):
    assert float(enumeration.joint(["c"])[1]) == pytest.approx(0.514, abs=1e-12)  # sum_a,b P(a) P(b|a) P(yes|a,b)
    assert float(enumeration.joint(["c"], {"b": 2})[1]) == pytest.approx(0.86, abs=1e-12)  # 0.4 * 0.8 + 0.6 * 0.9
    ac = enumeration.joint(["c", "a"])  # axes in the order asked
    assert ac.shape == (2, 2) and float(ac[1, 1]) == pytest.approx(0.6 * 0.69, abs=1e-12)


def test_an_intervention_cuts_the_parents_and_leaves_upstream_alone(enumeration):
    assert enumeration.relevant(["c"], {"b": 0}) == ["a", "b", "c"]
    assert enumeration.relevant(["b"], {"b": 0}) == ["b"]
    assert torch.allclose(enumeration.joint(["a"], {"c": 1}), torch.tensor(PA, dtype=torch.float64))


def test_why_not(enumeration):
    assert enumeration.why_not(["c"], {}) is None
    dag = parse_dag(TOY, "toy.yaml")
    full = Enumeration(build_scm(dag))
    assert "not discrete" in full.why_not(["r"], {})
    assert full.why_not(["c"], {}) is None  # r is not an ancestor of c: pruned
    small = Enumeration(build_scm(dag, ["c"]), max_cells=5)
    assert "12 states" in small.why_not(["c"], {})


def test_elimination_and_sampling():
    f = Factor(("x", "y"), torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64))
    g = Factor(("y",), torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert torch.allclose(eliminate([f, g], ["x"]), torch.tensor([0.5, 1.1], dtype=torch.float64))
    assert torch.allclose(eliminate([f, g], ["y", "x"]), torch.tensor([[0.1, 0.3], [0.4, 0.8]], dtype=torch.float64))
    torch.manual_seed(0)
    table = torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64)
    drawn = sample(table, ["x", "y"], 200_000)
    share = ((drawn["x"] == 1) & (drawn["y"] == 0)).double().mean()
    assert float(share) == pytest.approx(0.3, abs=0.005)
