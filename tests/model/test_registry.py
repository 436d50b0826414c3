"""The mechanism registry: decorator, lookup errors, and the entry-point group."""

import sys
import textwrap

import pytest
import torch

from engine.model import registry
from engine.model.dag import load_dag
from engine.errors import DagError
from engine.model.scm import build_scm


def test_lookup_lists_valid_names():
    assert registry.get_mechanism("categorical").__name__ == "Categorical"
    with pytest.raises(DagError, match="registered mechanisms: .*categorical.*discretized_normal"):
        registry.get_mechanism("categorial", "dag.yaml:3: node 'a'")


def test_one_entry_may_be_the_default_for_no_name():
    plugins = registry.Registry("thing", "causal_query.none", ())
    with pytest.raises(DagError, match=r"dag.yaml:0: no thing is named and none is registered as the default; registered things: $"):
        plugins.get(None, "dag.yaml:0")
    plugins.register("a")(int)
    plugins.register("b", default=True)(str)
    assert plugins.get(None) is str and plugins.get("a") is int and plugins.default == "b"
    with pytest.raises(ValueError, match="things 'b' and 'c' both declare themselves the default"):
        plugins.register("c", default=True)(float)


def test_entry_point_package_adds_a_mechanism(tmp_path, monkeypatch, write_dag):
    """An installed distribution (simulated by its metadata on sys.path) feeds the same registry."""
    # a (constant, from the plugin) -> b
    (tmp_path / "constant_plugin.py").write_text(textwrap.dedent('''
        import pyro.distributions as dist
        import torch
        from engine.model.mechanism import Mechanism

        class Constant(Mechanism):
            """Always the grid index given as 'index'; its noise carries no information."""
            def __init__(self, node, parents, *, path="<dag>"):
                super().__init__(node, parents, path=path)
                self.index = int(self.param("index", required=True))
            def noise(self, n):
                return {self.site: dist.Uniform(torch.zeros(n), torch.ones(n))}
            def assign(self, parents, noise):
                return torch.full(noise[self.site].shape, self.index, dtype=torch.long)
            def abduct(self, value, parents):
                return {self.site: torch.rand(value.shape)}
            def log_prob(self, value, parents):
                return torch.where(value == self.index, 0.0, float("-inf"))
    '''))
    info = tmp_path / "constant_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: constant-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[causal_query.mechanisms]\nconstant = constant_plugin:Constant\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.load_plugins()  # the built-ins first, so the copy below holds them
    monkeypatch.setattr(registry.MECHANISMS, "loaded", False)
    monkeypatch.setattr(registry.MECHANISMS, "entries", dict(registry.MECHANISMS.entries))
    path = write_dag(textwrap.dedent("""
        nodes:
          a: {mechanism: constant, domain: {linspace: [0, 1, 4]}, params: {index: 2}}
          b:
            mechanism: categorical
            parents: [a]
            domain: [low, high]
            params: {probs: [[1, 0], [1, 0], [0, 1], [1, 0]]}
    """))
    values = build_scm(load_dag(path))(50)
    assert torch.equal(values["a"], torch.full((50,), 2))
    assert torch.equal(values["b"], torch.ones(50, dtype=torch.long))
    sys.modules.pop("constant_plugin", None)
