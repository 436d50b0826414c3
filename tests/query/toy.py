"""A small discrete DAG with a real-valued leaf, and a world of 600 units for it.

    # a -> b -> c -> r,  a -> c      (a in {lo, hi}, b on the grid 0, 0.5, 1, c in {calm, alarm}, r real)

Unit i of the world has a = i % 2, b = i % 3, c = (i // 6) % 2 and r = i / 100.
"""

import numpy as np

from engine.lang import parse
from engine.model.dag import parse_dag
from engine.model.scm import build_scm
from engine.query.runner import Runner
from engine.worlds.world import Units, World

TOY = """
name: toy
nodes:
  a: {mechanism: categorical, domain: [lo, hi], params: {probs: [0.4, 0.6]}}
  b:
    mechanism: categorical
    parents: [a]
    domain: {linspace: [0, 1, 3]}
    params: {probs: {lo: [0.5, 0.3, 0.2], hi: [0.1, 0.3, 0.6]}}
  c:
    mechanism: categorical
    parents: [a, b]
    domain: [calm, alarm]
    params:
      probs:
        lo: [[1.0, 0.0], [0.7, 0.3], [0.2, 0.8]]
        hi: [[1.0, 0.0], [0.5, 0.5], [0.1, 0.9]]
  r: {mechanism: normal, parents: [c], domain: real, params: {loc: {c: {calm: 0, alarm: 1}}, sigma: 1}}
"""


class ToyWorld(World):
    name = "toy"

    def __len__(self):
        return 600

    def units(self, index):
        i = np.asarray(index, dtype=np.int64)
        return Units(i, {"a": i % 2, "b": i % 3, "c": (i // 6) % 2, "r": i / 100})


def toy_scm():
    return build_scm(parse_dag(TOY, "toy.yaml"))


def ask(scm, text, world=None, path="q.cq"):
    """The answers of a program, on the toy world unless another is given."""
    world = world if world is not None else ToyWorld(scm.dag)
    return Runner(scm, parse(text, path), world=world).run()
