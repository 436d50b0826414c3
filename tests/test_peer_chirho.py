"""ChiRho as a peer (benchmarks/peer_chirho.py): small agreement checks on two-node table SCMs."""

import pytest
import torch

pytest.importorskip("chirho")

from benchmarks.peer_chirho import (  # noqa: E402
    Rung3,
    chirho_counterfactual,
    chirho_probability,
    engine_counterfactual,
    engine_probability,
    ess,
    histogram,
    noise_program,
    table_program,
    tv,
    weighted_share,
    z_score,
)
from engine.api import Model  # noqa: E402
from engine.causal import inference  # noqa: E402
from engine.model.dag import parse_dag  # noqa: E402
from engine.model.scm import build_scm  # noqa: E402

# a -> b, both tables with Gumbel-max noise; b's odds of hi rise sixfold from a=p to a=q, lo's fall sixfold
PAIR = """
nodes:
  a: {mechanism: categorical, domain: [p, q], params: {probs: [0.5, 0.5]}}
  b:
    mechanism: categorical
    parents: [a]
    domain: [lo, mid, hi]
    params: {probs: {p: [0.6, 0.3, 0.1], q: [0.1, 0.3, 0.6]}}
"""
P, Q = 0, 1
LO, MID, HI = 0, 1, 2
SIZES = {"b": 3}

# shape -> scale with dSprites' own tables (the engine's Model checks its nodes against the dSprites world)
SHAPE_SCALE = """
nodes:
  shape: {mechanism: categorical, domain: [square, ellipse, heart], params: {probs: [0.35, 0.30, 0.35]}}
  scale:
    mechanism: categorical
    parents: [shape]
    domain: {linspace: [0.5, 1.0, 6]}
    params:
      probs:
        square:  [0.30, 0.25, 0.20, 0.12, 0.08, 0.05]
        ellipse: [0.10, 0.20, 0.25, 0.25, 0.12, 0.08]
        heart:   [0.04, 0.06, 0.10, 0.20, 0.25, 0.35]
"""


@pytest.fixture
def scm():
    inference.seed(0)
    return build_scm(parse_dag(PAIR))


def unit(b: int) -> dict:
    return {"a": torch.tensor([P]), "b": torch.tensor([b])}


def test_explicit_noise_agrees_with_the_engine(scm):
    # given (a=p, b=mid), do(a=q): lo's odds fell below mid's, so lo is impossible (counterfactual stability)
    actions = {"a": torch.tensor([Q])}
    values, log_w = chirho_counterfactual(noise_program(scm), unit(MID), actions, ("b",), 30_000)
    engine, engine_w = engine_counterfactual(scm, unit(MID), actions, 50_000)
    accepted = ess(log_w)
    assert 3_000 < accepted < 6_000  # rejection: p(a=p, b=mid) = 0.15 of 30,000 prior draws
    peer, ref = histogram(values, ("b",), SIZES, log_w), histogram(engine, ("b",), SIZES, engine_w)
    assert peer[LO] == 0 and ref[LO] == 0
    # two free cells: TV = |difference in P(hi)|, sd <= 0.5 * sqrt(1/3,000 + 1/50,000) = 0.0094; 0.035 is over 3.5 sd
    assert tv(peer, ref) < 0.035


def test_naive_program_answers_interventionally(scm):
    # given (a=p, b=hi), do(a=q): hi's odds rose most, so the counterfactual keeps hi with certainty;
    # plain Categorical sites redraw b from p(b | a=q) = [0.1, 0.3, 0.6] instead: TV 0.4 from the truth
    actions = {"a": torch.tensor([Q])}
    values, log_w = chirho_counterfactual(noise_program(scm), unit(HI), actions, ("b",), 20_000)
    engine, engine_w = engine_counterfactual(scm, unit(HI), actions, 20_000)
    naive, naive_w = chirho_counterfactual(table_program(scm), unit(HI), actions, ("b",), 20_000)
    assert ess(log_w) > 500 and (values["b"][torch.isfinite(log_w)] == HI).all()
    assert (engine["b"] == HI).all()
    interventional = torch.tensor([0.1, 0.3, 0.6], dtype=torch.float64)
    # 20,000 draws over three cells: TV sd about 0.003, so 0.02 is a wide margin
    assert tv(histogram(naive, ("b",), SIZES, naive_w), interventional) < 0.02
    assert abs(tv(histogram(naive, ("b",), SIZES, naive_w), histogram(engine, ("b",), SIZES, engine_w)) - 0.4) < 0.02


def test_rung3_probability_agrees_and_the_interventional_one_does_not():
    # P(scale@do(shape=square) = 1.0 | scale = 1.0): the largest sprites, had they been squares. ChiRho keeps the
    # draws with scale = 1.0, p = 0.35 * 0.05 + 0.30 * 0.08 + 0.35 * 0.35 = 0.164 of 20,000 (sd 52): se about 0.008
    dag = parse_dag(SHAPE_SCALE)
    query = Rung3("scale 1 seen", "P(scale@do(shape=square) = 1.0 | scale = 1.0)", ("scale",),
                  (("scale", "=", 1.0),), ({"shape": "square"},), ((1, "scale", "=", 1.0),), 20_000)
    model = Model(dag, build_scm(dag, world=True))
    answer, _ = engine_probability(model, query, 20_000)
    inference.seed(0)
    p, se, accepted = weighted_share(*chirho_probability(noise_program(build_scm(dag)), dag, query, 20_000))
    assert 3_000 < accepted < 3_600
    assert z_score(answer.value, answer.stderr, p, se) < 4
    # the interventional answer is square's table, P(scale = 1.0 | do(shape=square)) = 0.05: it forgets that these
    # sprites were large (three in four of them hearts), and lies far outside both sides' errors
    wrong = model.ask("P(scale = 1.0 | do(shape=square))")
    assert wrong.value == pytest.approx(0.05) and wrong.stderr == 0
    assert z_score(wrong.value, wrong.stderr, p, se) > 4
    assert z_score(wrong.value, wrong.stderr, answer.value, answer.stderr) > 4
