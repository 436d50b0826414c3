"""Numeric answers, rung 3: Monte Carlo over exact noise posteriors against closed forms.

    # x -> y -> z, each a discretized_normal on the grid 0, 0.25, 0.5, 0.75, 1
    #   x ~ N(0.5, 0.3),  y | x ~ N(0.05 + 0.9 x, 0.3),  z | y ~ N(0.1 + 0.7 y, 0.3), discretized at the midpoints

A discretized normal's noise is its quantile U: given value k, U is uniform on
[F_mu(b_k), F_mu(b_{k+1})], and the value under new parents is the bin of the same U under the
new mu. So a counterfactual probability is the overlap of two quantile intervals over the
first one's length: exact answers to compare the Monte Carlo with (within 4 standard errors).
"""

import numpy as np
import pytest
import torch

from engine.causal import inference
from engine.model.dag import load_dag, parse_dag
from engine.model.scm import build_scm
from engine.worlds.world import Units, World
from tests.conftest import ROOT
from tests.query.toy import ask, toy_scm


def normal_cdf(x, mu, sigma):
    """The normal CDF in float64 (no scipy in the test dependencies)."""
    return torch.special.ndtr((torch.as_tensor(x, dtype=torch.float64) - mu) / sigma).numpy()

GRID = np.linspace(0, 1, 5)
EDGES = np.concatenate([[-np.inf], (GRID[1:] + GRID[:-1]) / 2, [np.inf]])
CHAIN = """
name: chain
nodes:
  x: {mechanism: discretized_normal, domain: {linspace: [0, 1, 5]}, params: {loc: 0.5, sigma: 0.3}}
  y: {mechanism: discretized_normal, parents: [x], domain: {linspace: [0, 1, 5]}, params: {loc: {intercept: 0.05, x: 0.9}, sigma: 0.3}}
  z: {mechanism: discretized_normal, parents: [y], domain: {linspace: [0, 1, 5]}, params: {loc: {intercept: 0.1, y: 0.7}, sigma: 0.3}}
"""


class ChainWorld(World):
    """Unit i: x = i % 5, y = (i // 5) % 5, z = (i // 25) % 5 (class indices)."""

    name = "chain"

    def __len__(self):
        return 125

    def units(self, index):
        i = np.asarray(index, dtype=np.int64)
        return Units(i, {"x": i % 5, "y": (i // 5) % 5, "z": (i // 25) % 5})


def mu_y(x):
    return 0.05 + 0.9 * x


def mu_z(y):
    return 0.1 + 0.7 * y


def interval(mu, k, sigma=0.3):
    """The quantile interval of value k under N(mu, sigma) discretized."""
    return normal_cdf(EDGES[k], mu, sigma), normal_cdf(EDGES[k + 1], mu, sigma)


def moved(mu, k, new_mu, sigma=0.3):
    """P(value under new_mu = j) for each j, given value k under mu: overlaps of quantile intervals."""
    lo, hi = interval(mu, k, sigma)
    out = np.array([max(0.0, min(hi, b) - max(lo, a)) for a, b in (interval(new_mu, j, sigma) for j in range(5))])
    return out / (hi - lo)


@pytest.fixture(scope="module")
def chain():
    return build_scm(parse_dag(CHAIN, "chain.yaml"))


def one(scm, text, world=None, seed=0):
    inference.seed(seed)
    return ask(scm, text, world or ChainWorld(scm.dag))[-1]


def close(answer, truth):
    assert answer.stderr > 0 and abs(answer.value - truth) < 4 * answer.stderr + 1e-12, (answer.value, truth, answer.stderr)


def unit(x, y, z):
    return x + 5 * y + 25 * z


def test_a_unit_counterfactual_is_the_overlap_of_quantile_intervals(chain):
    u = unit(1, 1, 2)  # x = 0.25, y = 0.25, z = 0.5
    truth = moved(mu_y(0.25), 1, mu_y(1.0))[4:].sum()  # y@do(x=1) > 0.8: the value 1
    close(one(chain, f"u = chain[{u}]\nP(y@do(x=1) > 0.8 | u)"), truth)
    answer = one(chain, f"P(y@do(x=1) > 0.8 | chain[{u}])")  # a unit written inline
    close(answer, truth)
    assert answer.method == "Monte Carlo over exact noise posteriors, 100,000 draws for chain[56]"


def test_two_steps_down_the_chain_share_the_unit_noise(chain):
    x, y, z = 0, 1, 1
    py = moved(mu_y(0.0), y, mu_y(1.0))  # y's counterfactual distribution
    truth = sum(py[j] * moved(mu_z(GRID[y]), z, mu_z(GRID[j]))[4:].sum() for j in range(5))
    close(one(chain, f"P(z@do(x=1) > 0.8 | chain[{unit(x, y, z)}])"), truth)


def test_a_population_given_evidence(chain):
    # P(y@do(x=1) >= 0.75 | y = 0.25): x from its exact posterior given y, then the overlap
    prior = np.diff(normal_cdf(EDGES, 0.5, 0.3))
    likelihood = np.array([np.diff(interval(mu_y(GRID[i]), 1))[0] for i in range(5)])
    posterior = prior * likelihood / (prior * likelihood).sum()
    truth = sum(posterior[i] * moved(mu_y(GRID[i]), 1, mu_y(1.0))[3:].sum() for i in range(5))
    answer = one(chain, "P(y@do(x=1) >= 0.75 | y = 0.25)")
    close(answer, truth)
    assert "exact posterior given y = 0.25" in answer.method


def test_a_selection_of_the_world_units(chain):
    rows = [unit(0, y, z) for z in range(5) for y in range(5)]  # the 25 units with x = 0
    truth = np.mean([moved(mu_y(0.0), (i // 5) % 5, mu_y(1.0))[3:].sum() for i in rows])
    close(one(chain, "P(y@do(x=1) > 0.5 | chain[x=0])"), truth)
    close(one(chain, "s = chain[x < 0.1]\nP(y@do(x=1) > 0.5 | s)", seed=3), truth)


def test_pns_pn_ps_by_their_closed_forms(chain):
    e = EDGES[3]  # y > 0.5 iff U > F_mu(e): one shared quantile decides both worlds
    f_hi, f_lo = normal_cdf(e, mu_y(1.0), 0.3), normal_cdf(e, mu_y(0.0), 0.3)
    pns = one(chain, "PNS(y > 0.5, do(x=1), do(x=0))")
    close(pns, f_lo - f_hi)
    assert pns.details["expansion"] == "P(y@do(x=1) > 0.5, y@do(x=0) <= 0.5)"
    pn = one(chain, "PN(y > 0.5, do(x=1), do(x=0))")  # given x = 1 and y > 0.5: U > f_hi; y_0 <= 0.5 iff U <= f_lo
    close(pn, (f_lo - f_hi) / (1 - f_hi))
    assert pn.details["expansion"] == "P(y@do(x=0) <= 0.5 | x = 1, y > 0.5)"
    ps = one(chain, "PS(y > 0.5, do(x=1), do(x=0))")  # given x = 0 and y <= 0.5: U <= f_lo; y_1 > 0.5 iff U > f_hi
    close(ps, (f_lo - f_hi) / f_lo)


def test_the_null_intervention_and_a_leaf_intervention_change_nothing(chain):
    u = unit(2, 3, 1)
    null = one(chain, f"P(y@do(x=0.5) = y | chain[{u}])")  # x = 0.5 is the unit's own value
    assert null.value == 1.0 and null.stderr == 0
    leaf = one(chain, f"P(x@do(z=0) = x, y@do(z=0) = y | chain[{u}])")
    assert leaf.value == 1.0
    toy = toy_scm()  # categorical (Gumbel-max) noise: the same for names
    from tests.query.toy import ToyWorld

    assert one(toy, "P(c@do(a=lo) = c | toy[4])", ToyWorld(toy.dag)).value == 1.0  # toy[4] has a = lo


def test_differences_share_draws(chain):
    u = unit(1, 1, 2)
    a = one(chain, f"P(y@do(x=1) > 0.8 | chain[{u}])")
    b = one(chain, f"P(y@do(x=0.75) > 0.6 | chain[{u}])")
    d = one(chain, f"P(y@do(x=1) > 0.8 | chain[{u}]) - P(y@do(x=0.75) > 0.6 | chain[{u}])")
    close(d, moved(mu_y(0.25), 1, mu_y(1.0))[4:].sum() - moved(mu_y(0.25), 1, mu_y(0.75))[3:].sum())
    assert "common random numbers" in d.method and d.kind == "expression"
    assert d.stderr < (a.stderr**2 + b.stderr**2) ** 0.5  # the per-draw difference is less noisy (monotone noise)


def test_unit_do_after_the_bar_is_the_world_of_the_query(chain):
    u = unit(1, 1, 2)
    answer = one(chain, f"P(y > 0.8 | chain[{u}], do(x=1))")
    close(answer, moved(mu_y(0.25), 1, mu_y(1.0))[4:].sum())


def test_draws_and_seeds(chain):
    text = f"P(y@do(x=1) > 0.8 | chain[{unit(1, 1, 2)}]) draws 3000"
    a, b, c = one(chain, text), one(chain, text), one(chain, text, seed=5)
    assert a.draws == 3000 and a.value == b.value and a.value != c.value


def test_pns_of_a_categorical_whose_alternative_never_fires():
    toy = toy_scm()  # P(alarm | a, b=0) = 0, so c@do(b=0) is calm for every unit: PNS = P(c@do(b=1) = alarm) = 0.86
    from tests.query.toy import ToyWorld

    close(one(toy, "PNS(c=alarm, do(b=1), do(b=0))", ToyWorld(toy.dag)), 0.86)


# ---- image statistics: the plumbing, with an untrained decoder ---------------------------------


@pytest.fixture(scope="module")
def dsprites():
    torch.manual_seed(0)
    return build_scm(load_dag(ROOT / "dags" / "dsprites.yaml"))


def test_image_statistics_of_a_unit(dsprites):
    from engine.worlds.dsprites import render

    index = 500_000
    image = render.render_index(np.array([index]))[0].astype(np.float64)
    inference.seed(0)
    program = f"u = dsprites[{index}]\nE[area(img) | u]\nE[cx(img) | u]\nE[area(img@do(scale=0.5)) - area(img) | u] draws 50"
    area, cx, shifted = ask(dsprites, program, _dsprites_world(dsprites.dag))
    assert area.value == pytest.approx(image.sum()) and area.stderr == 0  # the factual image is the observed one
    columns = np.arange(64)
    assert cx.value == pytest.approx((image.sum(0) * columns).sum() / image.sum())
    assert shifted.draws == 50 and "noise posteriors (img: amortised)" in shifted.method
    assert np.isfinite(shifted.value)


def test_image_statistics_need_the_image_model():
    dag = load_dag(ROOT / "dags" / "dsprites.yaml")
    labels = build_scm(dag, dag.labels, world=True)
    from engine.errors import QueryError

    with pytest.raises(QueryError, match="needs the image mechanism.*--model"):
        ask(labels, "E[area(img) | dsprites[3]]", world=_dsprites_world(dag))
    with pytest.raises(QueryError, match="--model"):
        ask(labels, "do(shape=heart) samples 2", world=_dsprites_world(dag))


def test_a_distribution_of_a_statistic(dsprites):
    inference.seed(0)
    (answer,) = ask(dsprites, "P(cy(img) | do(shape=heart)) draws 40", world=_dsprites_world(dsprites.dag))
    assert answer.kind == "distribution" and answer.draws == 40 and set(answer.value) >= {"mean", "q50"}
    assert answer.samples.shape == (40,)


def _dsprites_world(dag):
    from engine.worlds.world import build_world

    return build_world(dag)
