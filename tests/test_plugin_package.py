"""examples/plugin_package: a mechanism from another package, found through its entry point, end to end."""

import sys
import tomllib

import pytest
import torch

from engine.worlds.dsprites import data
from engine.causal import faithfulness
from engine.causal import inference
from engine.model import registry
from engine.model.dag import load_dag
from engine.model.scm import build_scm
from tests.conftest import ROOT

PACKAGE = ROOT / "examples" / "plugin_package"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The package as pip would leave it: its module importable, its entry points in dist-info metadata."""
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    points = project["entry-points"][registry.ENTRY_POINT_GROUP]
    info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [f"[{registry.ENTRY_POINT_GROUP}]"] + [f"{name} = {target}" for name, target in points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PACKAGE))
    registry.load_plugins()  # the built-ins first, so the copy below holds them
    monkeypatch.setattr(registry.MECHANISMS, "loaded", False)
    monkeypatch.setattr(registry.MECHANISMS, "entries", dict(registry.MECHANISMS.entries))
    yield
    sys.modules.pop("cq_von_mises", None)


def test_the_entry_point_feeds_the_registry(installed):
    assert registry.get_mechanism("von_mises").__module__ == "cq_von_mises"


def test_a_dag_using_the_plugin_runs_end_to_end(installed):
    # shape -> orientation (von_mises, from the plugin) -> x ; shape -> scale -> y ; all -> img
    dag = load_dag(PACKAGE / "dsprites_von_mises.yaml")
    labels = data.resample(dag, 50_000, seed=0)
    world = build_scm(dag, dag.labels, world=True)
    statements = faithfulness.check(world, {n: labels.labels[n] for n in dag.labels})
    assert all(s.passed for s in statements), faithfulness.table(statements)
    # counterfactual through the plugin's exact abduction: non-descendants keep their values
    factual = {n: torch.as_tensor(labels.labels[n][:500]) for n in dag.labels}
    draw = inference.counterfactual(world, factual, {"shape": torch.full((500,), 2)})
    assert torch.equal(draw.values["scale"][factual["shape"] == 2], factual["scale"][factual["shape"] == 2])
    null = inference.counterfactual(world, factual, {})
    assert all(torch.equal(null.values[n], factual[n]) for n in dag.labels)
    # the image node is built too: the full SCM samples images with the plugin upstream
    assert build_scm(dag)(4)["img"].shape == (4, 64, 64)
