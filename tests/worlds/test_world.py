"""The World contract: the hashed split, the registry, and worlds named by DAGs."""

import numpy as np
import pytest

from engine.errors import DagError
from engine.model.dag import load_dag, parse_dag
from engine.worlds import world as worlds
from tests.conftest import ROOT


def test_the_split_is_a_fixed_hash_of_the_index_about_a_tenth():
    index = np.arange(200_000)
    test = worlds.held_out(index)
    assert 0.09 < test.mean() < 0.11
    assert np.array_equal(worlds.held_out(index[::-1]), test[::-1])  # order does not matter
    assert worlds.held_out(np.array([0]))[0] == test[0]


def test_a_dag_without_world_is_dsprites_and_every_shipped_dag_builds_its_world():
    dag = parse_dag("nodes:\n  shape: {mechanism: categorical, domain: [square, ellipse, heart], params: {probs: uniform}}\n")
    assert dag.world.name is None and worlds.build_world(dag).name == worlds.WORLDS.default == "dsprites"
    for path in (ROOT / "dags").glob("*.yaml"):
        world = worlds.build_world(load_dag(path))
        units = world.units(np.array([0, 5]))
        images = world.images(units)
        assert images.dtype == np.uint8 and images.shape[0] == 2, path.name
        assert set(load_dag(path).labels) <= set(units.labels), path.name


def test_train_and_test_units_never_overlap():
    world = worlds.build_world(load_dag(ROOT / "dags" / "pendulum.yaml"))
    train, test = world.train_units(10**9, 0), world.test_units(500, 0)
    assert len(train) + len(test) <= len(world) and not set(train.index) & set(test.index)
    assert world.is_test(test.index).all() and not world.is_test(train.index).any()


def test_world_errors_name_the_file_and_line(write_dag):
    path = write_dag("name: t\nworld: {dsprites: 3}\nnodes:\n  shape: {mechanism: categorical, domain: [square, ellipse, heart], params: {probs: uniform}}\n")
    with pytest.raises(DagError, match=r"dag.yaml:2: world 'dsprites': options must be \{npz: PATH\}"):
        worlds.build_world(load_dag(path))
    with pytest.raises(DagError, match="world must name a registered world"):
        parse_dag("world: [1, 2]\nnodes:\n  a: {mechanism: categorical, domain: [p], params: {probs: [1]}}\n")
