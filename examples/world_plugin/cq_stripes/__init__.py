"""A world from another package: a horizontal stripe across a 16x16 binary image.

Two factors: ``thickness`` (names: thin, thick) and ``height`` (a real number in [0, 1], the
stripe's centre from the top row to the bottom one). The renderer draws any label tuple, so
every counterfactual can be checked; unit ``i`` is unit i of one seeded draw of ``N_UNITS``
from the DAG's declared SCM.
"""

from __future__ import annotations

import numpy as np
import pyro
import torch

from engine.worlds.world import Units, World, register_world

SIZE = 16
N_UNITS = 4000
ROWS = {"thin": 1, "thick": 3}


@register_world("stripes")
class Stripes(World):
    """A stripe of a thickness at a height; images rendered from the labels."""

    has_renderer = True

    def __init__(self, dag, options=None):
        super().__init__(dag, options)
        if sorted(dag.labels) != ["height", "thickness"]:
            raise self.error(f"label nodes must be height and thickness, got {', '.join(dag.labels)}")
        self.names = dag.nodes["thickness"].domain.values
        self._labels = None

    def __len__(self) -> int:
        return N_UNITS

    def units(self, index) -> Units:
        if self._labels is None:
            from engine.model.scm import build_scm

            scm = build_scm(self.dag, self.dag.labels, world=True)
            pyro.set_rng_seed(0)
            with torch.no_grad():
                self._labels = {k: v.numpy() for k, v in scm(N_UNITS).items()}
        index = np.asarray(index, dtype=np.int64)
        return Units(index, {k: v[index] for k, v in self._labels.items()})

    def images(self, units: Units) -> np.ndarray:
        return self.render(units.labels, units)

    def render(self, labels, like: Units) -> np.ndarray:
        height = np.asarray(labels.get("height", like.labels["height"]), dtype=np.float64)
        thickness = np.asarray(labels.get("thickness", like.labels["thickness"]))
        rows = np.array([ROWS[n] for n in self.names])[thickness]
        centre = np.rint(np.clip(height, 0, 1) * (SIZE - 1))
        r = np.arange(SIZE)
        on = np.abs(r[None, :] - centre[:, None]) <= (rows[:, None] - 1) / 2
        return np.repeat(on[:, :, None], SIZE, axis=2).astype(np.uint8)
