"""examples/world_plugin: a world from another package, found through its entry point, end to end."""

import sys
import tomllib

import numpy as np
import pytest
import torch

from engine import evaluate
from engine.causal import inference
from engine.learn.train import TrainConfig, train
from engine.model.dag import load_dag
from engine.learn.checkpoint import load_model
from engine.worlds import world as worlds
from tests.conftest import ROOT

PACKAGE = ROOT / "examples" / "world_plugin"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The package as pip would leave it: its module importable, its entry point in dist-info metadata."""
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    points = project["entry-points"][worlds.ENTRY_POINT_GROUP]
    info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [f"[{worlds.ENTRY_POINT_GROUP}]"] + [f"{name} = {target}" for name, target in points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PACKAGE))
    worlds.WORLDS.load()  # the built-ins first, so the copy below holds them
    monkeypatch.setattr(worlds.WORLDS, "loaded", False)
    monkeypatch.setattr(worlds.WORLDS, "entries", dict(worlds.WORLDS.entries))
    yield
    sys.modules.pop("cq_stripes", None)


def test_an_unknown_world_lists_the_registered_ones(write_dag):
    dag = load_dag(write_dag("world: nowhere\nnodes:\n  a: {mechanism: categorical, domain: [p, q], params: {probs: [0.5, 0.5]}}\n"))
    with pytest.raises(worlds.DagError, match=r"dag.yaml:1: unknown world 'nowhere'; registered worlds: .*dsprites.*pendulum"):
        worlds.build_world(dag)


def test_the_entry_point_feeds_the_registry(installed):
    assert worlds.WORLDS.get("stripes").__module__ == "cq_stripes"


def test_a_dag_over_the_plugin_world_trains_answers_and_evaluates(installed, tmp_path):
    # thickness -> height ; both -> img (the plugin world's renderer is the truth)
    config = TrainConfig(dag=str(PACKAGE / "stripes.yaml"), out=str(tmp_path / "run"), n=3000, epochs=2, batch_size=64, lr=1e-2, eval_n=100)
    train(config, log=lambda s: None)
    dag, scm = load_model(tmp_path / "run")
    world = worlds.build_world(dag)
    units = world.units(np.arange(20))
    factual = {n: torch.as_tensor(units.labels[n]) for n in dag.labels} | {"img": torch.as_tensor(world.images(units), dtype=torch.float32)}
    null = inference.counterfactual(scm, factual, {})
    assert torch.equal(null.values["img"], factual["img"])  # exact pixel-noise abduction
    moved = inference.counterfactual(scm, factual, {"thickness": torch.ones(20, dtype=torch.long)})
    torch.testing.assert_close(moved.values["height"], factual["height"] + 0.4 * (1 - factual["thickness"].double()), rtol=0, atol=1e-12)  # the noise is kept
    results, _ = evaluate.run(scm, world, n=100, seed=0)
    assert set(results["families"]) == {"null", "do(thickness)", "do(height)", "do(thickness, height)"}
    assert results["families"]["null"]["iou"] == 1.0
