"""The SCM as a Pyro program: sites, and pyro.condition / poutine.do working on it unchanged."""

import pyro
import pyro.poutine as poutine
import pytest
import torch

from engine.model.dag import load_dag
from engine.model.scm import build_scm
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def scm():
    dag = load_dag(ROOT / "dags" / "dsprites.yaml")
    return build_scm(dag, dag.labels)


def test_sites_are_noise_then_value_in_topological_order(scm):
    trace = poutine.trace(scm).get_trace(7)
    sites = [n for n in trace.nodes if trace.nodes[n]["type"] == "sample" and n != "units"]
    expected = []
    for node in ("shape", "orientation", "scale", "x", "y"):
        expected += [f"U_{node}", node]
    assert sites == expected
    assert trace.nodes["shape"]["value"].shape == (7,)


def test_do_changes_descendants_only(scm):
    # shape -> orientation -> x ; shape -> scale -> y ; do(scale) leaves shape, orientation, x alone
    pyro.set_rng_seed(1)
    factual = poutine.trace(scm).get_trace(2000)
    noise = {n: factual.nodes[n]["value"] for n in factual.nodes if n.startswith("U_")}
    forced = torch.full((2000,), 5)
    with poutine.condition(data=noise), poutine.do(data={"scale": forced}):
        values = scm(2000)
    for node in ("shape", "orientation", "x"):
        assert torch.equal(values[node], factual.nodes[node]["value"])
    assert torch.equal(values["scale"], forced)
    assert (values["y"] >= factual.nodes["y"]["value"]).all()  # bigger sprites sit lower: monotone
    assert not torch.equal(values["y"], factual.nodes["y"]["value"])


def test_condition_on_values_scores_consistent_noise(scm):
    """Conditioning the point-mass value sites gives log-density 0 when consistent, -inf otherwise."""
    pyro.set_rng_seed(2)
    factual = poutine.trace(scm).get_trace(5)
    data = {n: s["value"] for n, s in factual.nodes.items() if s["type"] == "sample" and n != "units"}
    replay = poutine.trace(poutine.condition(scm, data=data)).get_trace(5)
    assert torch.isfinite(replay.log_prob_sum())
    data["shape"] = (data["shape"] + 1) % 3
    wrong = poutine.trace(poutine.condition(scm, data=data)).get_trace(5)
    assert wrong.log_prob_sum() == float("-inf")


def test_point_mass_broadcasts_batch_shapes():
    """A value with extra batch dimensions (as multi-world handlers make) is scored elementwise."""
    from engine.model.scm import Assigned

    site = Assigned(torch.tensor([[1], [2]]), event_dim=0)  # shape (2, 1)
    lp = site.log_prob(torch.tensor([1, 2, 3]))  # shape (3,) -> (2, 3)
    assert lp.shape == (2, 3)
    assert lp.tolist() == [[0.0, float("-inf"), float("-inf")], [float("-inf"), 0.0, float("-inf")]]
