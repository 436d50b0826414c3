"""How well a counterfactual can do when the DAG hides a factor that the picture shows only up to a symmetry.

A factor the DAG leaves out (say, an orientation that no node names) must be read off the
factual image, which may show it only up to a symmetry of the picture (a square's turn modulo
90 degrees, an ellipse's modulo 180). A best guess picks uniformly among the hidden values
consistent with the unit's image, so a family's bound is the mean over units of the mean over
consistent h' of IoU(render(cf labels, h'), render(cf labels, h)).
``consistent`` counts what the image tells from the truth no better than the hidden factor's
own grid resolution (``bound``); pixel-identical renderings alone give ``bound_exact``. A model
that resolves finer differences than a grid step lies between the two.

Both assume the renderer's own tie between a unit's hidden value and its counterfactual one
(the same turn, as the renderer means it, for a square and a heart). Data cannot teach that
tie when the hidden factor is uniform and independent of the labels: relabelling its values
separately for each value of the labels (another zero turn for hearts) fits the observational
and interventional distributions equally well and changes every counterfactual that moves a
label. ``bound_uncoupled`` is the score of a guess that knows nothing of the tie, a uniform
pick among all hidden values: what the data alone guarantee, and what a model beats only by
an assumption built into it (a decoder that applies the labels as geometry). Worlds opt in
through ``World.hidden_values``; ``engine.evaluate`` reports the three bounds beside each
family's IoU.
"""

from __future__ import annotations

import math

import numpy as np

from engine.images import iou
from engine.worlds.world import Units, World

MAX_COMBINATIONS = 4096  # the most combinations of hidden values rendered per unit
BOUND_IMAGES = 16_384  # the most candidate images rendered at once


def hidden_values(world: World) -> dict[str, np.ndarray]:
    """The factors the DAG hides, each with its values in grid order, from the world (empty: none, or too many to enumerate)."""
    values = world.hidden_values() if world.has_renderer else {}
    return values if values and math.prod(len(v) for v in values.values()) <= MAX_COMBINATIONS else {}


def combinations(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every combination of the hidden values, K = prod of their counts, one (K,) array per factor (the last fastest)."""
    grid = np.meshgrid(*values.values(), indexing="ij")
    return {name: g.ravel() for name, g in zip(values, grid)}


def distances(world: World, units: Units, images: np.ndarray, values: dict[str, np.ndarray], labels: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels by which each combination of hidden values misses each factual image, (N, K); the same for the
    unit's own combination, (N,); and the fewest for a grid neighbour of it (one hidden factor one step away), (N,)."""
    every, sizes = combinations(values), [len(v) for v in values.values()]
    k = math.prod(sizes)
    position = np.stack([np.searchsorted(v, units.labels[h]) for h, v in values.items()], 1)
    d, near = np.zeros((len(units), k), dtype=np.int64), np.full(len(units), np.iinfo(np.int64).max)
    chunk = max(1, BOUND_IMAGES // k)
    for start in range(0, len(units), chunk):
        rows = np.arange(start, min(start + chunk, len(units)))
        like = _with_hidden(units.subset(np.repeat(rows, k)), {h: np.tile(v, len(rows)) for h, v in every.items()})
        drawn = world.render({n: like.labels[n] for n in labels}, like).reshape(len(rows), k, -1)
        d[rows] = (drawn != images[rows].reshape(len(rows), 1, -1)).sum(-1)
    every_unit = np.arange(len(units))
    for axis, size in enumerate(sizes):
        for step in (-1, 1):
            moved = position.copy()
            moved[:, axis] += step
            inside = (moved[:, axis] >= 0) & (moved[:, axis] < size)
            index = np.ravel_multi_index(np.clip(moved, 0, np.array(sizes) - 1).T, sizes)
            near = np.where(inside, np.minimum(near, d[every_unit, index]), near)
    return d, d[every_unit, np.ravel_multi_index(position.T, sizes)], near


def consistent(d: np.ndarray, own: np.ndarray, near: np.ndarray) -> np.ndarray:
    """(N, K): the combinations of hidden values that each unit's factual image cannot tell from its own.

    A combination ``c`` is consistent when its rendering, with the unit's labels, matches the
    factual image as well as the unit's own combination does (``d(c) <= d(own)``, 0 for a
    faithful renderer) or misses it by fewer pixels than any grid neighbour of the unit's own
    combination does: the image tells ``c`` from the truth less well than the grid's own
    resolution. Exact equality alone (``bound_exact``) is too strict where a symmetry of the
    picture does not map the grid onto itself: two values that the symmetry nearly exchanges
    then differ by a few pixels, fewer than two neighbours on the grid differ by.
    """
    return (d <= own[:, None]) | (d < near[:, None])


def uncoupled(d: np.ndarray) -> np.ndarray:
    """(N, K): every combination of hidden values, for each unit (the counterfactual's not tied to the factual one)."""
    return np.ones_like(d, dtype=bool)


def bound(world: World, units: Units, cf: dict[str, np.ndarray], truth: np.ndarray, values: dict[str, np.ndarray], allowed: np.ndarray) -> float:
    """Expected IoU of a counterfactual whose hidden values are a uniform pick among the consistent ones.

    ``units`` are the family's units, ``cf`` their counterfactual labels, ``truth`` their true
    counterfactual images and ``allowed`` (N, K) the consistent combinations of each::

        bound = mean_units mean_{h' consistent} IoU(render(cf, h'), render(cf, h))

    It is the score of a clean guess, not a ceiling on IoU: a hedged image (the candidates'
    mixture, thresholded low) can score higher.
    """
    unit, pick = allowed.nonzero()
    like = _with_hidden(units.subset(unit), {h: v[pick] for h, v in combinations(values).items()})
    scores = iou(world.render({n: v[unit] for n, v in cf.items()}, like), truth[unit])
    return float((np.bincount(unit, scores, len(units)) / np.bincount(unit, minlength=len(units))).mean())


def _with_hidden(units: Units, values: dict[str, np.ndarray]) -> Units:
    return Units(units.index, units.labels | values)
