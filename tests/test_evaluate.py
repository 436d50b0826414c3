"""Evaluation metrics: IoU, intervention families, twin-network label correctness, learned gaps."""

import numpy as np
import pytest
import torch

from engine import evaluate
from engine.worlds.dsprites import render as dsprites
from engine.worlds.world import Family, build_world
from engine.model.dag import load_dag, parse_dag
from engine.model.scm import SCM, build_scm
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def scm():
    return build_scm(load_dag(ROOT / "dags" / "dsprites.yaml"))


def test_iou():
    a = np.zeros((3, 4, 4))
    b = np.zeros((3, 4, 4))
    a[0, :2], b[0, 1:3] = 1, 1  # 4 shared of 12
    a[1], b[1] = 1, 1
    assert evaluate.iou(a, b).tolist() == pytest.approx([1 / 3, 1.0, 1.0])  # two empty images agree


def test_families_follow_the_dag(scm):
    names = [f.name for f in evaluate.families(scm, build_world(scm.dag))]
    assert names == ["null", "do(shape=square)", "do(shape=ellipse)", "do(shape=heart)", "do(orientation)", "do(scale)", "do(x, y)", "do(shape, x, y)"]
    hidden = build_scm(load_dag(ROOT / "dags" / "dsprites_hidden_orientation.yaml"))
    assert "do(orientation)" not in [f.name for f in evaluate.families(hidden, build_world(hidden.dag))]


def test_families_of_a_world_without_its_own_come_from_the_dag():
    # light, pendulum -> shadow_x, shadow_len; all four -> img
    pendulum = build_scm(load_dag(ROOT / "dags" / "pendulum.yaml"))
    names = [f.name for f in evaluate.families(pendulum, build_world(pendulum.dag))]
    assert names == ["null", "do(light)", "do(pendulum)", "do(shadow_x)", "do(shadow_len)", "do(light, pendulum, shadow_x, shadow_len)"]


def test_random_targets_of_a_real_node_are_other_units_values():
    pendulum = build_scm(load_dag(ROOT / "dags" / "pendulum.yaml"))
    factual = {"light": torch.rand(100, dtype=torch.float64) * 70 + 60}
    act, keep = evaluate.targets(Family("do(light)", ("light",)), pendulum, factual, torch.Generator().manual_seed(0))
    assert keep.all() and (act["light"] != factual["light"]).all()
    assert set(act["light"].tolist()) <= set(factual["light"].tolist())


def test_random_targets_always_change_the_value(scm):
    factual = {"x": torch.randint(0, 32, (5000,)), "y": torch.randint(0, 32, (5000,))}
    act, keep = evaluate.targets(Family("do(x, y)", ("x", "y")), scm, factual, torch.Generator().manual_seed(0))
    assert keep.all() and (act["x"] != factual["x"]).all() and (act["y"] != factual["y"]).all()
    act, keep = evaluate.targets(Family("do(shape=heart)", ("shape",), "heart"), scm, {"shape": torch.tensor([0, 2, 1])}, None)
    assert keep.tolist() == [True, False, True] and (act["shape"] == 2).all()


@pytest.mark.parametrize("family", [Family("do(shape=square)", ("shape",), "square"), Family("do(scale)", ("scale",))])
def test_engine_matches_the_twin_network_and_naive_does_not(scm, family):
    tv, naive = evaluate.label_correctness(scm, family, seed=1, n=100_000)
    assert tv < 0.02
    assert naive > 0.1


def test_learned_gaps_measure_the_distance_to_the_truth():
    # a -> b, b's table learned (still at its uniform start) against a declared truth
    dag = parse_dag("""
nodes:
  a: {mechanism: categorical, domain: [p, q], params: {probs: [0.5, 0.5]}}
  b: {mechanism: categorical, parents: [a], domain: [u, v], params: {learn: true, probs: [[0.9, 0.1], [0.3, 0.7]]}}
""")
    gaps = evaluate.learned_gaps(build_scm(dag))
    assert gaps["b"]["configurations"] == 2
    assert gaps["b"]["tv_mean"] == pytest.approx((0.4 + 0.2) / 2)
    assert gaps["b"]["tv_max"] == pytest.approx(0.4)
    assert evaluate.learned_gaps(build_scm(dag, world=True)) == {}


class Rendered:
    """An exact image mechanism: the renderer itself (no noise), to check the metrics' known answers."""

    abduction = "none: the image is the renderer's"
    learnable = False

    def __init__(self, blank: bool = False):
        self.blank = blank

    def noise(self, n):
        return {}

    def assign(self, parents, noise):
        images = dsprites.render(*(parents[k].cpu().numpy() for k in ("shape", "scale", "orientation", "x", "y")))
        return torch.zeros(images.shape) if self.blank else torch.as_tensor(images, dtype=torch.float32)

    def abduct(self, value, parents):
        return {}

    def truth(self):
        return self


def exact(dag_file: str, blank: bool = False):
    dag = load_dag(ROOT / "dags" / dag_file)
    scm = build_scm(dag, dag.labels)
    return SCM(dag, {**scm.mechanisms, "img": Rendered(blank)})


def test_an_exact_model_scores_one_everywhere():
    # shape, scale, orientation, x, y independent roots -> img (the renderer)
    scm = exact("dsprites_independent.yaml")
    results, _ = evaluate.run(scm, build_world(scm.dag), n=200, seed=0)
    for name, metrics in results["families"].items():
        assert metrics["iou"] == 1.0 and metrics["above_0.9"] == 1.0, name
    assert results["composition"] == {"iou_after_1": 1.0, "mae_255_after_1": 0.0, "iou_after_10": 1.0, "mae_255_after_10": 0.0}
    assert results["reversibility"]["iou_after_5"] == 1.0  # roots: do(new) then do(old) restores every label
    assert results["reversibility"]["labels_back_after_5"] == 1.0


def test_a_blank_model_scores_zero():
    scm = exact("dsprites.yaml", blank=True)
    results, _ = evaluate.run(scm, build_world(scm.dag), n=100, seed=0)
    assert all(m["iou"] == 0.0 for m in results["families"].values())


def test_a_truthful_oracle_scores_perfectly():
    class Truth:
        def score(self, images, labels):
            return {"shape_accuracy": 1.0}

    scm = exact("dsprites.yaml")
    world = build_world(scm.dag)
    metrics = evaluate.Evaluation(scm, world, world.test_units(50, seed=1), oracles=Truth()).family(evaluate.families(scm, world)[1])
    assert metrics["shape_accuracy"] == 1.0 and metrics["iou"] == 1.0
    assert world.is_test(world.test_units(50, seed=1).index).all()  # held-out units only
