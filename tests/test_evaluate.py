"""Evaluation metrics: IoU, intervention families, twin-network label correctness, learned gaps."""

import numpy as np
import pytest
import torch

from engine import distributed, evaluate, images
from engine.worlds.dsprites import render as dsprites
from engine.worlds.world import Family, build_world
from engine.model.dag import load_dag, parse_dag
from engine.model.scm import SCM, build_scm
from tests.conftest import ROOT, torchrun


@pytest.fixture(scope="module")
def scm():
    return build_scm(load_dag(ROOT / "dags" / "dsprites.yaml"))


def test_iou():
    a = np.zeros((3, 4, 4))
    b = np.zeros((3, 4, 4))
    a[0, :2], b[0, 1:3] = 1, 1  # 4 shared of 12
    a[1], b[1] = 1, 1
    assert images.iou(a, b).tolist() == pytest.approx([1 / 3, 1.0, 1.0])  # two empty images agree


def test_families_follow_the_dag(scm):
    names = [f.name for f in evaluate.families(scm, build_world(scm.dag))]
    assert names == ["null", "do(shape=square)", "do(shape=ellipse)", "do(shape=heart)", "do(orientation)", "do(scale)", "do(x, y)", "do(shape, x, y)",
                     "do(orientation, rare)", "do(scale, rare)", "do(shape, orientation)", "do(shape, scale)"]
    hidden = build_scm(load_dag(ROOT / "dags" / "dsprites_hidden_orientation.yaml"))
    assert not {"do(orientation)", "do(orientation, rare)", "do(shape, orientation)"} & {f.name for f in evaluate.families(hidden, build_world(hidden.dag))}


def test_rare_families_are_skipped_for_uniform_roots():
    # shape, scale, orientation, x, y: independent uniform roots -> img
    independent = build_scm(load_dag(ROOT / "dags" / "dsprites_independent.yaml"))
    names = [f.name for f in evaluate.families(independent, build_world(independent.dag))]
    assert not [n for n in names if "rare" in n] and "do(shape, orientation)" in names


def test_families_of_a_world_without_its_own_come_from_the_dag():
    # light, pendulum -> shadow_x, shadow_len; all four -> img
    pendulum = build_scm(load_dag(ROOT / "dags" / "pendulum.yaml"))
    names = [f.name for f in evaluate.families(pendulum, build_world(pendulum.dag))]
    assert names == ["null", "do(light)", "do(pendulum)", "do(shadow_x)", "do(shadow_len)", "do(light, pendulum, shadow_x, shadow_len)"]


def test_random_targets_of_a_real_node_are_other_units_values():
    pendulum = build_scm(load_dag(ROOT / "dags" / "pendulum.yaml"))
    factual = {"light": torch.rand(100, dtype=torch.float64) * 70 + 60}
    act, rows = evaluate.targets(Family("do(light)", ("light",)), pendulum, factual, torch.Generator().manual_seed(0))
    assert rows.tolist() == list(range(100)) and (act["light"] != factual["light"]).all()
    assert set(act["light"].tolist()) <= set(factual["light"].tolist())


def test_random_targets_always_change_the_value(scm):
    factual = {"x": torch.randint(0, 32, (5000,)), "y": torch.randint(0, 32, (5000,))}
    act, rows = evaluate.targets(Family("do(x, y)", ("x", "y")), scm, factual, torch.Generator().manual_seed(0))
    assert len(rows) == 5000 and (act["x"] != factual["x"]).all() and (act["y"] != factual["y"]).all()
    act, rows = evaluate.targets(Family("do(shape=heart)", ("shape",), "heart"), scm, {"shape": torch.tensor([0, 2, 1])}, None)
    assert rows.tolist() == [0, 2] and (act["shape"] == 2).all()


# shape -> orientation (discretized normal, loc by shape, sigma 1.1, 40 angles on [0, 2pi]);  shape -> scale (a table)
def test_rare_orientations_are_the_least_likely_tenth_given_the_shape(scm):
    grid = np.linspace(0, 2 * np.pi, 40)
    edges = np.concatenate([[-np.inf], (grid[1:] + grid[:-1]) / 2, [np.inf]])
    rare = evaluate.rare_values(scm, "orientation", {"shape": torch.tensor([0, 1, 2])})
    for shape, loc in enumerate([1.6, 3.0, 4.4]):
        p = np.diff(torch.special.ndtr((torch.as_tensor(edges) - loc) / 1.1).numpy())  # p(orientation | shape) in closed form
        assert set(rare[shape].tolist()) == set(np.argsort(p)[:4].tolist())
        assert p[rare[shape]].max() < np.sort(p)[4]  # every rare value below every other one
    assert rare[0].tolist() == [38, 39, 37, 36]  # a square's mode is 1.6 rad: the rarest turns are near 2pi, rarest first


def test_the_rare_scale_is_the_least_likely_one_and_ties_go_far_from_the_mode(scm):
    rare = evaluate.rare_values(scm, "scale", {"shape": torch.tensor([0, 1, 2])})
    assert rare.tolist() == [[5], [5], [0]]  # probs square [.30 .. .05], ellipse [.10 .. .08], heart [.04 .. .35]
    tied = build_scm(parse_dag("""
nodes:
  a: {mechanism: categorical, domain: [p, q], params: {probs: [0.5, 0.5]}}
  b: {mechanism: categorical, parents: [a], domain: {linspace: [0, 1, 5]}, params: {probs: {p: [0.1, 0.6, 0.1, 0.1, 0.1], q: [0.2, 0.2, 0.2, 0.2, 0.2]}}}
"""))
    assert evaluate.rare_values(tied, "b", {"a": torch.tensor([0])}, share=0.4).tolist() == [[4, 3]]  # mode 1: 4 is farthest, then 3
    assert evaluate.uniform_root(tied, "a") and not evaluate.uniform_root(tied, "b")


def test_rare_targets_follow_each_units_parents(scm):
    factual = {"shape": torch.randint(0, 3, (3000,)), "orientation": torch.randint(0, 40, (3000,))}
    act, rows = evaluate.targets(Family("do(orientation, rare)", ("orientation",), evaluate.RARE), scm, factual, torch.Generator().manual_seed(0))
    rare = evaluate.rare_values(scm, "orientation", factual)[rows]
    assert (act["orientation"][:, None] == rare).any(1).all()
    assert (act["orientation"] != factual["orientation"][rows]).all() and len(rows) > 2900
    assert len(set(act["orientation"][factual["shape"][rows] == 2].tolist())) == 4  # spread over the four rare turns


def test_grid_targets_fill_every_cell_with_units_that_move(scm):
    factual = {"shape": torch.randint(0, 3, (500,)), "scale": torch.randint(0, 6, (500,))}
    act, rows = evaluate.targets(Family("do(shape, scale)", ("shape", "scale"), evaluate.GRID), scm, factual, torch.Generator().manual_seed(0))
    cells = act["shape"] * 6 + act["scale"]
    assert torch.bincount(cells, minlength=18).tolist() == [28] * 18  # ceil(500 / 18) = 28 >= CELL_UNITS
    moved = (act["shape"] != factual["shape"][rows]) | (act["scale"] != factual["scale"][rows])
    assert moved.all()
    act, rows = evaluate.targets(Family("g", ("shape", "scale"), evaluate.GRID), scm, {k: v[:30] for k, v in factual.items()}, torch.Generator())
    assert len(rows) == 18 * evaluate.CELL_UNITS and rows.max() < 30  # few units: each serves several cells


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
        assert "bound" not in metrics  # every factor labelled: nothing to guess
    cells = results["families"]["do(shape, orientation)"]["cells"]
    assert cells["values"][0] == ["square", "ellipse", "heart"] and cells["values"][1][:3] == ["0deg", "9deg", "18deg"]
    assert np.array(cells["units"]).min() >= evaluate.CELL_UNITS and np.array(cells["iou"]).min() == 1.0
    assert results["composition"] == {"iou_after_1": 1.0, "mae_255_after_1": 0.0, "iou_after_10": 1.0, "mae_255_after_10": 0.0}
    assert results["reversibility"]["iou_after_5"] == 1.0  # roots: do(new) then do(old) restores every label
    assert results["reversibility"]["labels_back_after_5"] == 1.0


def test_a_blank_model_scores_zero():
    scm = exact("dsprites.yaml", blank=True)
    results, _ = evaluate.run(scm, build_world(scm.dag), n=100, seed=0)
    assert all(m["iou"] == 0.0 for m in results["families"].values())


def test_cells_are_indexed_by_the_counterfactual_labels_and_drawn(tmp_path):
    # shape -> orientation, scale -> img: the renderer, but blank wherever the answer is a heart
    class HeartsBlank(Rendered):
        def assign(self, parents, noise):
            return super().assign(parents, noise) * (parents["shape"] != 2)[:, None, None]

    scm = exact("dsprites.yaml")
    scm = SCM(scm.dag, {**scm.mechanisms, "img": HeartsBlank()})
    results, _ = evaluate.run(scm, build_world(scm.dag), n=60, seed=0, out=tmp_path)
    cells = results["families"]["do(shape, scale)"]["cells"]
    assert cells["nodes"] == ["shape", "scale"] and cells["values"][1] == ["0.5", "0.6", "0.7", "0.8", "0.9", "1"]
    assert np.array(cells["iou"]).tolist() == [[1.0] * 6, [1.0] * 6, [0.0] * 6]
    text = evaluate.table(results)
    assert "worst cells of do(shape, scale): (heart, 0.5) iou 0.0000 (20 units)" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iou_shape_orientation.png", "iou_shape_scale.png"]
    assert (tmp_path / "iou_shape_scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_truthful_oracle_scores_perfectly():
    class Truth:
        def score(self, images, labels):
            return {"shape_accuracy": 1.0}

    scm = exact("dsprites.yaml")
    world = build_world(scm.dag)
    metrics = evaluate.Evaluation(scm, world, world.test_units(50, seed=1), oracles=Truth()).family(evaluate.families(scm, world)[1])
    assert metrics["shape_accuracy"] == 1.0 and metrics["iou"] == 1.0
    assert world.is_test(world.test_units(50, seed=1).index).all()  # held-out units only


def test_heatmaps_go_through_an_output_and_its_manifest(tmp_path):
    from engine.outputs import prepare_output, read_manifest

    cells = {"nodes": ["shape", "scale"], "values": [["a", "b"], ["0.5", "1"]], "metric": "iou", "units": [[20, 20], [20, 20]], "iou": [[1.0, 0.5], [0.9, None]]}
    with prepare_output(tmp_path, "eval") as output:
        written = evaluate.heatmaps({"families": {"do(shape, scale)": {"cells": cells}}}, output)
    assert [p.name for p in written] == ["iou_shape_scale.png"] and read_manifest(tmp_path)["eval"] == ["iou_shape_scale.png"]
    assert evaluate.worst_cells(cells, k=2) == ["(a, 1) iou 0.5000 (20 units)", "(b, 0.5) iou 0.9000 (20 units)"]


def test_the_bound_is_reported_beside_the_iou_when_the_dag_hides_a_factor(monkeypatch):
    # shape -> scale -> y; x; orientation hidden -> img (blank: the bound does not depend on the model)
    class Blank(Rendered):
        def assign(self, parents, noise):
            return torch.zeros(len(parents["shape"]), 64, 64)

    monkeypatch.setattr(evaluate, "label_correctness", lambda *args, **kwargs: (0.0, 0.0))
    scm = exact("dsprites_hidden_orientation.yaml")
    scm = SCM(scm.dag, {**scm.mechanisms, "img": Blank()})
    world = build_world(scm.dag)
    evaluation = evaluate.Evaluation(scm, world, world.test_units(40, seed=0))
    assert list(evaluation.hidden) == ["orientation"]
    families = {f.name: f for f in evaluate.families(scm, world)}
    results = {name: evaluation.family(families[name]) for name in ("null", "do(shape=square)", "do(shape=heart)")}
    assert results["null"]["bound_exact"] == 1.0 and results["null"]["iou"] == 0.0
    assert results["do(shape=heart)"]["bound"] < results["do(shape=square)"]["bound"] < 1.0
    for name in ("do(shape=square)", "do(shape=heart)"):  # a guess that ignores the factual image does worse
        assert results[name]["bound_uncoupled"] < results[name]["bound"]
    header = evaluate.table({"families": results, "composition": {}, "reversibility": {}}).splitlines()[0].split()
    assert header[:6] == ["family", "units", "iou", "bound", "bound_exact", "bound_uncoupled"]


class HeartsBlankEverywhere(Rendered):
    """The renderer, but blank wherever the answer is a heart: scores that differ between units."""

    def assign(self, parents, noise):
        return super().assign(parents, noise) * (parents["shape"] != 2)[:, None, None]


def hearts_blank() -> SCM:
    scm = exact("dsprites.yaml")
    return SCM(scm.dag, {**scm.mechanisms, "img": HeartsBlankEverywhere()})


def sharded_eval(n: int) -> dict:
    torch.set_num_threads(1)
    ranks, _ = distributed.join(torch.device("cpu"), seconds=60)
    scm = hearts_blank()
    results, _ = evaluate.run(scm, build_world(scm.dag), n=n, seed=0, ranks=ranks)
    ranks.leave()
    return results


def test_two_ranks_evaluate_their_shares_and_rank_0_merges_them(monkeypatch):
    monkeypatch.setattr(evaluate, "label_correctness", lambda *args, **kwargs: (0.0, 0.0))  # the forked ranks inherit it
    two = torchrun(sharded_eval, 60)
    assert two[1] == {} and two[0]["processes"] == 2 and two[0]["units"] == 60
    scm = hearts_blank()
    world = build_world(scm.dag)
    units = world.test_units(60, 0)
    shares = [evaluate.evaluate_share(scm, world, units, rank, 2)[1] for rank in (0, 1)]
    assert [s["share"] for s in shares] == [30, 30]
    assert "labels_tv" in shares[0]["families"]["null"] and "labels_tv" not in shares[1]["families"]["null"]  # simulated once
    assert two[0]["families"] == evaluate.merge(shares)["families"]
    one, _ = evaluate.run(scm, world, n=60, seed=0)
    null = one["families"]["null"]["iou"]  # no random targets: the one-process mean, from two weighted shares
    assert 0 < null < 1 and two[0]["families"]["null"]["iou"] == pytest.approx(null)
    assert two[0]["families"]["do(shape, scale)"]["cells"]["iou"] == [[1.0] * 6, [1.0] * 6, [0.0] * 6]
    assert np.array(two[0]["families"]["do(shape, scale)"]["cells"]["units"]).min() >= 2 * evaluate.CELL_UNITS


def test_the_picture_shows_k_units_of_a_family_that_skips_some():
    scm = exact("dsprites.yaml")
    world = build_world(scm.dag)
    evaluation = evaluate.Evaluation(scm, world, world.test_units(40, seed=0))
    inputs, answers, truths = evaluation.samples(Family("do(shape=square)", ("shape",), "square"))
    assert len(inputs) == len(answers) == len(truths) == 8  # a third of the first units are squares already
    assert np.array_equal(answers, truths)  # the exact model's counterfactual is the truth


def test_the_picture_looks_past_a_long_run_of_units_the_family_cannot_move():
    # a whole split is in index order, dSprites' squares first: do(shape=square) finds its units further on
    scm = exact("dsprites.yaml")
    world = build_world(scm.dag)
    units = world.test_units(40, seed=0)
    order = np.argsort(units.labels["shape"] != 0, kind="stable")  # every square first
    squares_first = units.subset(order)
    evaluation = evaluate.Evaluation(scm, world, squares_first)
    inputs, answers, truths = evaluation.samples(Family("do(shape=square)", ("shape",), "square"), chunk=4)
    assert len(inputs) == 8 and np.array_equal(answers, truths)
    only_squares = evaluate.Evaluation(scm, world, units.subset(np.flatnonzero(units.labels["shape"] == 0)))
    assert [len(a) for a in only_squares.samples(Family("do(shape=square)", ("shape",), "square"))] == [0, 0, 0]
