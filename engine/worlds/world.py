"""A World: where a DAG's units, their images and the truth come from.

A world knows one data set and nothing about queries. It names its factors, fetches unit
``i`` (what ``NAME[i]`` and ``data[i]`` mean in a ``.cq`` file), holds out a fixed share of
units for testing, draws the training units, and optionally gives the truth: a renderer
from labels to the true image, and pseudo-oracles that read labels off images.

Worlds are plugins as mechanisms are: ``@register_world("name")`` fills a dict, and other
packages add theirs through the entry-point group ``causal_query.worlds``::

    [project.entry-points."causal_query.worlds"]
    my_world = "my_package.world:MyWorld"

A DAG names its world at the top (``world: pendulum``, or ``world: {files: data.npz}`` with
options); when absent, the world registered with ``default=True`` (``dsprites``).

The split: unit ``i`` is held out for testing iff ``(i * 0x9E3779B97F4A7C15 mod 2^64) >> 40``
is below ``TEST_FRACTION * 1000`` modulo 1000, a fixed hash of the index (about 10% of units,
the same on every machine, whatever the data's order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import DagError
from engine.model.dag import DagSpec
from engine.model.registry import Registry

ENTRY_POINT_GROUP = "causal_query.worlds"
BUILTIN_WORLDS = ("engine.worlds.dsprites", "engine.worlds.files", "plugins.pendulum")
TEST_FRACTION = 0.1



@dataclass(frozen=True)
class Units:
    """A batch of units: each one's index in its world and its encoded label values."""

    index: np.ndarray  # (N,) int64: what NAME[i] names
    labels: dict[str, np.ndarray]  # node or hidden factor -> (N,) encoded values

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, rows) -> "Units":
        return Units(self.index[rows], {k: v[rows] for k, v in self.labels.items()})


@dataclass(frozen=True)
class Family:
    """An intervention family of the evaluation: which nodes get a new value, and optionally a fixed one."""

    name: str
    nodes: tuple[str, ...]
    value: str | None = None  # a fixed target (do(shape=square)); else a random value, different from the unit's


def held_out(index: np.ndarray) -> np.ndarray:
    """Whether each unit index is in the test split (a fixed hash; see the module docstring)."""
    h = (np.asarray(index, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return (h % np.uint64(1000)) < np.uint64(int(TEST_FRACTION * 1000))


class World:
    """Base class: a subclass sets ``name`` and implements ``__len__``, ``units`` and ``images``."""

    name = ""
    #: whether ``render`` gives the true image of any label tuple
    has_renderer = False
    #: the nodes the reversibility check moves away and back (empty: every label node)
    reverse: tuple[str, ...] = ()

    def __init__(self, dag: DagSpec, options: Any = None):
        self.dag = dag
        self.options = options

    def error(self, message: str) -> DagError:
        """A DagError naming the DAG file and its world line."""
        return DagError(f"{self.dag.path}:{self.dag.world.line}: world '{self.name}': {message}")

    def __len__(self) -> int:
        raise NotImplementedError

    def units(self, index: np.ndarray) -> Units:
        """The units with these indices (0 <= index < len(self))."""
        raise NotImplementedError

    def images(self, units: Units) -> np.ndarray:
        """(N, H, W) uint8 images of the units: 0/1 for binary worlds, 0..255 for gray ones."""
        raise NotImplementedError

    def is_test(self, index: np.ndarray) -> np.ndarray:
        return held_out(index)

    def sample(self, n: int, seed: int) -> Units:
        """n units as the world's data hold them (default: the first n; worlds that resample draw them from the DAG)."""
        return self.units(np.arange(min(n, len(self))))

    def train_units(self, n: int, seed: int) -> Units:
        """Up to n units to train on, none of them held out (default: the first n of the split)."""
        index = np.arange(len(self))
        return self.units(index[~self.is_test(index)][:n])

    def test_units(self, n: int, seed: int) -> Units:
        """n held-out units (default: n drawn without replacement by ``seed``, in index order)."""
        index = np.arange(len(self))
        test = index[self.is_test(index)]
        pick = np.random.default_rng(seed).permutation(len(test))[:n]
        return self.units(np.sort(test[pick]))

    def held_out_units(self) -> Units:
        """Every unit of the test split, once each, in index order."""
        index = np.arange(len(self))
        return self.units(index[self.is_test(index)])

    def render(self, labels: dict[str, np.ndarray], like: Units) -> np.ndarray:
        """The true images of label values (hidden factors taken from ``like``); worlds with a renderer only."""
        raise NotImplementedError(f"the world '{self.name}' has no renderer")

    def fidelity(self, images: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        """Counterfactual images against the true ones: IoU for binary pixels; PSNR and MAE on 0..255 for gray."""
        a, b = images.reshape(len(images), -1).astype(np.float64), truth.reshape(len(truth), -1).astype(np.float64)
        if self.dag.nodes[self.dag.images[0]].domain.levels() == 2:
            a, b = a > 0.5, b > 0.5
            union = (a | b).sum(1)
            scores = np.where(union > 0, (a & b).sum(1) / np.maximum(union, 1), 1.0)
            return {"iou": float(scores.mean()), "above_0.9": float((scores > 0.9).mean()), "mae_255": float(255 * np.abs(a ^ b).mean())}
        mse = ((a - b) ** 2).mean(1)
        psnr = 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))
        return {"psnr": float(np.minimum(psnr, 100).mean()), "mae_255": float(np.abs(a - b).mean())}

    def hidden_values(self) -> dict[str, np.ndarray]:
        """Each factor of the renderer that the DAG leaves out, with every value it takes (for the identifiability bound)."""
        return {}

    def families(self) -> list | None:
        """The evaluation's intervention families, when the world has its own (None: from the DAG)."""
        return None

    def oracles(self, run_dir) -> Any:
        """Pseudo-oracles beside a trained model, if the world has them and they were trained."""
        return None


WORLDS = Registry("world", ENTRY_POINT_GROUP, BUILTIN_WORLDS)


def register_world(name: str, *, default: bool = False):
    """Class decorator: make a world available to DAG files under ``name`` (with ``default``, to those naming none)."""

    def decorate(cls):
        cls.name = name
        return WORLDS.register(name, default=default)(cls)

    return decorate


def build_world(dag: DagSpec) -> World:
    """The world a DAG names (or the default world), checked against the DAG; an unknown name lists the registered ones."""
    spec = dag.world
    return WORLDS.get(spec.name, f"{dag.path}:{spec.line}")(dag, spec.options)
