"""The faithfulness check: it passes on DAG-faithful labels and fails on labels that break the story."""

import numpy as np
import pyro
import pytest

from engine.causal import faithfulness
from engine.model.dag import load_dag
from engine.model.scm import build_scm
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def scm():
    dag = load_dag(ROOT / "dags" / "dsprites.yaml")
    return build_scm(dag, dag.labels)


@pytest.fixture(scope="module")
def labels(scm):
    pyro.set_rng_seed(0)
    return {k: v.numpy() for k, v in scm(100_000).items()}


def by_text(statements):
    return {s.text: s for s in statements}


def test_faithful_labels_pass_every_statement(scm, labels):
    statements = faithfulness.check(scm, labels)
    kinds = {s.kind for s in statements}
    assert kinds == {"independence", "dependence", "fit"}
    assert all(s.passed for s in statements), faithfulness.table(statements)
    texts = by_text(statements)
    assert "x _||_ shape | orientation" in texts and "y _||_ x | scale" in texts
    assert len([s for s in statements if s.kind == "dependence"]) == 4  # one per edge


def test_a_hidden_edge_breaks_an_independence(scm, labels):
    """Make x drift with shape too (an edge the DAG lacks): x _||_ shape | orientation must fail."""
    broken = dict(labels)
    broken["x"] = np.clip(labels["x"] + 6 * (labels["shape"] == 2), 0, 31)
    texts = by_text(faithfulness.check(scm, broken))
    assert not texts["x _||_ shape | orientation"].passed
    assert not texts["p(x | orientation) as declared"].passed
    assert texts["y _||_ shape | scale"].passed


def test_independent_factors_fail_every_dependence(scm, labels):
    """dSprites itself (factors independent) is not faithful to the story."""
    rng = np.random.default_rng(0)
    shuffled = {k: rng.permutation(v) for k, v in labels.items()}
    statements = faithfulness.check(scm, shuffled)
    assert not any(s.passed for s in statements if s.kind == "dependence")
