"""Real-valued mechanisms: exact abduction, closed-form counterfactuals and moments, Normal densities, SVI."""

import dataclasses
import math

import pytest
import torch

from engine.causal import inference
from engine.errors import DagError
from engine.learn.svi import SVI
from engine.model.dag import parse_dag
from engine.model.scm import build_scm
from plugins.continuous import LinearGaussian, MlpGaussian

# a -> b -> c, and s -> b, g -> b:  a ~ Uniform(-1, 3);  s a names root, g a grid root
#   b = 0.5 + 2 a + 0.25 g + offset[s] + 0.7 U_b,   c = -1.3 b + 3.1 U_c
#   d = MLP(b, s) + sigma U_d                          (world: d = b + [s = hi] + 0.2 U_d)
DAG = """
nodes:
  a: {mechanism: uniform, domain: {real: [-1, 3]}}
  s: {mechanism: categorical, domain: [lo, hi], params: {probs: [0.5, 0.5]}}
  g: {mechanism: categorical, domain: {linspace: [0, 1, 3]}, params: {probs: uniform}}
  b:
    mechanism: linear_gaussian
    parents: [a, s, g]
    domain: real
    params: {loc: {intercept: 0.5, a: 2.0, g: 0.25, s: {lo: 0.0, hi: 1.5}}, sigma: 0.7}
  c: {mechanism: normal, parents: [b], domain: real, params: {loc: {b: -1.3}, sigma: 3.1}}
  d:
    mechanism: mlp_gaussian
    parents: [b, s]
    domain: real
    params:
      hidden: [16]
      truth: {mechanism: linear_gaussian, params: {loc: {b: 1.0, s: {lo: 0, hi: 1}}, sigma: 0.2}}
"""

# a -> b -> c, every node linear Gaussian: a ~ N(1, 2^2), b = 0.5 + 2 a + 0.5 U_b, c = -1 + 0.8 b + 0.3 U_c
CHAIN = """
nodes:
  a: {mechanism: normal, domain: real, params: {loc: 1.0, sigma: 2.0}}
  b: {mechanism: linear_gaussian, parents: [a], domain: real, params: {loc: {intercept: 0.5, a: 2.0}, sigma: 0.5}}
  c: {mechanism: linear_gaussian, parents: [b], domain: real, params: {loc: {intercept: -1.0, b: 0.8}, sigma: 0.3}}
"""


@pytest.fixture
def units():
    inference.seed(0)
    scm = build_scm(parse_dag(DAG))
    return scm, scm(5000)


@pytest.mark.parametrize("node", ["a", "b", "c", "d"])
def test_abduction_reproduces_every_value_exactly(units, node):
    scm, values = units
    m, parents = scm.mechanisms[node], scm.parents(node, values)
    with torch.no_grad():
        assert torch.equal(m.assign(parents, m.abduct(values[node], parents)), values[node])


def test_the_null_intervention_returns_the_unit_exactly(units):
    scm, values = units
    with torch.no_grad():
        draw = inference.counterfactual(scm, values, {})
    assert all(torch.equal(draw.values[k], values[k]) for k in values)


def test_chain_counterfactual_in_closed_form():
    """Under do(b = b'), a unit's c keeps its residual: c' = c + 0.8 (b' - b); a is untouched."""
    inference.seed(1)
    scm = build_scm(parse_dag(CHAIN))
    factual = scm(1000)
    b_new = torch.linspace(-3, 3, 1000, dtype=torch.float64)
    draw = inference.counterfactual(scm, factual, {"b": b_new})
    assert torch.equal(draw.values["a"], factual["a"]) and torch.equal(draw.values["b"], b_new)
    torch.testing.assert_close(draw.values["c"], factual["c"] + 0.8 * (b_new - factual["b"]), rtol=0, atol=1e-12)


def test_samples_have_the_closed_form_mean_and_variance():
    """E[b] = 0.5 + 2 E[a] = 2.5, Var b = 4 * 4 + 0.25; E[c] = -1 + 0.8 * 2.5, Var c = 0.64 Var b + 0.09."""
    inference.seed(2)
    values = build_scm(parse_dag(CHAIN))(400_000)
    var_b = 16.25
    for node, mean, var in [("a", 1.0, 4.0), ("b", 2.5, var_b), ("c", 1.0, 0.64 * var_b + 0.09)]:
        assert values[node].dtype == torch.float64
        assert float(values[node].mean()) == pytest.approx(mean, abs=4 * math.sqrt(var / 400_000))
        assert float(values[node].var()) == pytest.approx(var, rel=0.01)


def test_log_prob_is_the_normal_density(units):
    scm, values = units
    b = scm.mechanisms["b"]
    parents = scm.parents("b", values)
    mu = 0.5 + 2 * parents["a"] + 0.25 * torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)[parents["g"]] + 1.5 * parents["s"]
    expected = torch.distributions.Normal(mu, 0.7).log_prob(values["b"])
    torch.testing.assert_close(b.log_prob(values["b"], parents), expected, rtol=0, atol=1e-12)


def test_uniform_density_abduction_and_moments(units):
    scm, values = units
    a = scm.mechanisms["a"]
    lp = a.log_prob(torch.tensor([-1.0, 0.0, 3.0, 3.5], dtype=torch.float64), {})
    assert lp.tolist() == [-math.log(4)] * 3 + [-math.inf]
    assert a.abduct(torch.tensor([-1.0, 1.0, 3.0], dtype=torch.float64), {})["U_a"].tolist() == [0.0, 0.5, 1.0]
    assert float(values["a"].mean()) == pytest.approx(1.0, abs=0.05) and values["a"].min() >= -1 and values["a"].max() <= 3


def test_names_parent_adds_its_offset(units):
    scm, _ = units
    b = scm.mechanisms["b"]
    parents = {"a": torch.zeros(2, dtype=torch.float64), "s": torch.tensor([0, 1]), "g": torch.tensor([0, 0])}
    assert b.loc(parents, 2).tolist() == [0.5, 2.0]
    assert type(scm.mechanisms["c"]) is LinearGaussian  # normal is linear_gaussian by another name


@pytest.mark.parametrize("old, new, message", [
    ("sigma: 0.7}", "sigma: 0}", "node 'b'.*sigma must be a number > 0"),
    ("sigma: 0.7}", "sigma: 0.7, scale: 1}", "node 'b'.*unknown parameter.*scale.*valid: \\['loc', 'sigma'\\]"),
    ("g: 0.25,", "g: 0.25, z: 1,", "node 'b'.*\\['z'\\] are not parents; valid keys: intercept, a, s, g"),
    ("g: 0.25, ", "", "node 'b'.*missing \\['g'\\]"),
    ("hi: 1.5}", "hi: 1.5, mid: 2}", "node 'b'.*'s' takes the names \\{lo, hi\\}; give an offset for each name, e.g. s: \\{lo: 0.0, hi: 0.0\\}"),
    ("{mechanism: normal, parents: [b], domain: real", "{mechanism: normal, parents: [b], domain: [x, y]", "node 'c'.*needs a real domain"),
    ("{real: [-1, 3]}}", "real}", "node 'a'.*unbounded real numbers needs 'low'"),
    ("{real: [-1, 3]}}", "{real: [-1, 3]}, params: {low: -2}}", "node 'a'.*low < high inside the real numbers in \\[-1, 3\\]"),
    ("      truth: {mechanism: linear_gaussian", "      tru: {mechanism: linear_gaussian", "node 'd'.*unknown parameter"),
    ("      hidden: [16]", "      hidden: [16]\n      sigma: -1", "node 'd'.*sigma must be a number > 0"),
])
def test_parameter_errors_name_the_node(old, new, message):
    assert old in DAG
    with pytest.raises(DagError, match=message):
        build_scm(parse_dag(DAG.replace(old, new)))


def test_mlp_gaussian_trains_and_keeps_the_declared_truth():
    inference.seed(3)
    dag = parse_dag(DAG)
    world = build_scm(dag, world=True)
    d = build_scm(dag).mechanisms["d"]
    assert isinstance(d, MlpGaussian) and d.learnable and d.config == {"hidden": [16], "sigma": "learned"}
    truth = d.truth()
    assert isinstance(truth, LinearGaussian) and world.mechanisms["d"] is not d and type(world.mechanisms["d"]) is LinearGaussian
    assert (truth.intercept, truth.slopes, truth.sigma) == (0.0, {"b": 1.0}, 0.2) and truth.offsets["s"].tolist() == [0.0, 1.0]
    values = world(2000)
    args = {"d": (values["d"], {"b": values["b"], "s": values["s"]})}
    svi = SVI({"d": (d.model, d.guide)}, lr=0.01)
    losses = [svi.step(args) for _ in range(200)]
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    assert d.scale().item() < 1.0  # sigma is learned, starting from 1


def test_mlp_gaussian_with_a_fixed_sigma_keeps_it(units):
    scm, values = units
    d = MlpGaussian(dataclasses.replace(scm.dag.nodes["d"], params={**scm.dag.nodes["d"].params, "sigma": 0.3}), scm.mechanisms["d"].parents)
    assert d.scale() == 0.3 and d.config["sigma"] == 0.3 and [n for n, _ in d.named_parameters()][0].startswith("net.")
    parents = scm.parents("d", values)
    with torch.no_grad():
        expected = torch.distributions.Normal(d.loc(parents, 5000), 0.3).log_prob(values["d"])
        torch.testing.assert_close(d.log_prob(values["d"], parents), expected, rtol=0, atol=1e-12)


def test_dowhy_peer_agrees():
    pytest.importorskip("dowhy.gcm")
    from benchmarks.peer_dowhy import TOLERANCE, compare

    rows = compare(n=2000, seed=0)
    assert {r["query"] for r in rows} >= {"do(b=2)", "do(b=b+1)"}
    assert max(r["max_abs_diff"] for r in rows) < TOLERANCE
