"""YAML DAG files: parsing, domains, and every user error with its file, line and node."""

import math

import pytest

from engine.model.dag import load_dag, parse_dag
from engine.errors import DagError
from engine.model.scm import build_scm
from tests.conftest import ROOT

# a -> b
CHAIN = """
name: chain
nodes:
  a:
    mechanism: categorical
    domain: [lo, hi]
    params: {probs: [0.5, 0.5]}
  b:
    mechanism: categorical
    parents: [a]
    domain: {linspace: [0, 1, 3]}
    params: {probs: {lo: [0.8, 0.1, 0.1], hi: [0.1, 0.1, 0.8]}}
"""


def test_default_dag_is_the_seed_story():
    dag = load_dag(ROOT / "dags" / "dsprites.yaml")
    edges = set(dag.graph.edges)
    assert {("shape", "orientation"), ("shape", "scale"), ("orientation", "x"), ("scale", "y")} <= edges
    assert {(f, "img") for f in ("shape", "scale", "orientation", "x", "y")} <= edges
    assert dag.order.index("img") == len(dag.order) - 1
    assert dag.labels == ("shape", "orientation", "scale", "x", "y")
    orientation = dag.nodes["orientation"].domain
    assert orientation.size == 40 and orientation.values[-1] == pytest.approx(2 * math.pi)
    build_scm(dag, dag.labels)


def test_domains_and_snapping():
    dag = parse_dag(CHAIN)
    assert dag.order == ("a", "b")
    b = dag.nodes["b"].domain
    assert b.values == (0.0, 0.5, 1.0)
    assert b.snap(0.7) == 1 and b.snap(0.8) == 2 and b.encode(0.7) == 1
    assert dag.nodes["a"].domain.encode("hi") == 1
    assert dag.nodes["b"].line == 8


def test_hash_follows_text():
    assert parse_dag(CHAIN).hash == parse_dag(CHAIN).hash
    assert parse_dag(CHAIN).hash != parse_dag(CHAIN + "\n# changed\n").hash


@pytest.mark.parametrize(
    "edit, words",
    [
        (("parents: [a]", "parents: [c]"), ["node 'b'", "unknown parent 'c'", "nodes are a, b"]),
        (("mechanism: categorical\n    parents", "mechanism: nope\n    parents"), ["node 'b'", "unknown mechanism 'nope'", "categorical", "discretized_normal"]),
        (("hi: [0.1, 0.1, 0.8]", "hi: [0.1, 0.1]"), ["node 'b'", "a=hi", "3 probabilities"]),
        (("hi: [0.1, 0.1, 0.8]", "hi: [0.1, 0.1, 0.7]"), ["node 'b'", "sum to 1"]),
        (("hi: [0.1, 0.1, 0.8]", "hi: [-0.1, 0.3, 0.8]"), ["node 'b'", ">= 0"]),
        (("{lo: [0.8, 0.1, 0.1], hi:", "{lo: [0.8, 0.1, 0.1], mid:"), ["node 'b'", "'mid' is not a value of 'a'", "{lo, hi}"]),
        (("{linspace: [0, 1, 3]}", "{linspace: [1, 0, 3]}"), ["node 'b'", "stop > start"]),
        (("{linspace: [0, 1, 3]}", "{range: 3}"), ["node 'b'", "domain must be"]),
        (("params: {probs: [0.5, 0.5]}", "params: {probs: [0.5, 0.5], temperature: 2}"), ["node 'a'", "unknown parameter", "temperature"]),
    ],
)
def test_errors_name_file_node_and_what_is_valid(write_dag, edit, words):
    path = write_dag(CHAIN.replace(*edit))
    with pytest.raises(DagError) as e:
        build_scm(load_dag(path))
    message = str(e.value)
    assert message.startswith(str(path))
    for w in words:
        assert w in message, message


def test_cycle_is_named(write_dag):
    text = CHAIN.replace("    mechanism: categorical\n    domain: [lo, hi]", "    mechanism: categorical\n    parents: [b]\n    domain: [lo, hi]")
    with pytest.raises(DagError, match=r"cycle: (a -> b -> a|b -> a -> b)"):
        load_dag(write_dag(text))


def test_malformed_yaml_has_line_and_column(write_dag):
    path = write_dag("nodes:\n  a:\n    mechanism: [categorical\n    domain: x\n")
    with pytest.raises(DagError, match=rf"^{path}:\d+:\d+: malformed YAML"):
        load_dag(path)


def test_missing_file_and_missing_nodes(write_dag, tmp_path):
    with pytest.raises(DagError, match="no such DAG file"):
        load_dag(tmp_path / "absent.yaml")
    with pytest.raises(DagError, match="top-level 'nodes:'"):
        load_dag(write_dag("name: empty\n"))


def test_the_readme_example_is_a_complete_dag():
    readme = (ROOT / "README.md").read_text()
    text = readme.split("## DAG files\n\n```yaml\n", 1)[1].split("```", 1)[0]
    dag = parse_dag(text, "README.md")
    assert dag.order[-1] == "img" and set(dag.labels) == {"shape", "scale", "orientation", "x", "y"}
    build_scm(dag)
    from engine.worlds.dsprites.data import check_world

    check_world(dag)
