"""ChiRho as a peer (benchmarks/peer_chirho.py): a small agreement check on a two-node table SCM."""

import pytest
import torch

pytest.importorskip("chirho")

from benchmarks.peer_chirho import (  # noqa: E402
    chirho_counterfactual,
    engine_counterfactual,
    ess,
    histogram,
    noise_program,
    table_program,
    tv,
)
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
