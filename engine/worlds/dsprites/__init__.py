"""The dSprites world: 737,280 rendered sprites, one per factor combination.

Unit ``i`` (``dsprites[i]``) is the image with canonical index ``i`` and its factors
(``render.factors``). Training units are drawn from the DAG and paired with the image of
their combination (``data.resample``), so the data follow the causal story; factors the DAG
leaves out are hidden, uniform roots, as in the dataset. The renderer is the truth of any
label tuple, and pseudo-oracles (``oracles.py``) read the factors off images.

Options: ``world: {dsprites: {npz: PATH}}`` reads the real dSprites npz instead of rendering
(``$DSPRITES_NPZ`` does the same); it is read without pickle.
"""

from __future__ import annotations

import numpy as np

from engine.worlds.dsprites import data, render
from engine.worlds.world import Family, Units, World, register_world

HIDDEN_FAMILY = ("x", "y")  # moved together, as one family (with shape: do(shape, x, y))


@register_world("dsprites", default=True)
class DSprites(World):
    """dSprites, resampled to be faithful to the DAG; the world of DAG files that name none."""

    has_renderer = True
    reverse = ("shape", "x", "y")

    def __init__(self, dag, options=None):
        super().__init__(dag, options)
        if options is not None and (not isinstance(options, dict) or set(options) - {"npz"}):
            raise self.error(f"options must be {{npz: PATH}} (the real dSprites file), got {options!r}")
        data.check_world(dag)
        self.npz = render.npz_path((options or {}).get("npz"))

    def __len__(self) -> int:
        return render.N_IMAGES

    def units(self, index) -> Units:
        index = np.asarray(index, dtype=np.int64)
        factors = render.factors(index)
        return Units(index, {f: factors[f] for f in render.FACTORS[1:]})

    def images(self, units: Units) -> np.ndarray:
        return data.images(units.index, self.npz)

    def sample(self, n: int, seed: int) -> Units:
        return _units(data.resample(self.dag, n, seed))

    def train_units(self, n: int, seed: int) -> Units:
        labels = data.resample(self.dag, n, seed)
        return _units(labels.subset(~self.is_test(labels.index)))

    def test_units(self, n: int, seed: int) -> Units:
        """n units drawn from the DAG whose canonical indices are in the test split."""
        picked, drawn = [], 0
        while drawn < n:
            labels = data.resample(self.dag, max(20 * n, 10_000), seed + len(picked))
            test = labels.subset(self.is_test(labels.index))
            picked.append(test)
            drawn += len(test)
        merged = {k: np.concatenate([p.labels[k] for p in picked])[:n] for k in render.FACTORS}
        return _units(data.LabelSet(merged, self.dag.hash, seed))

    def hidden_values(self) -> dict[str, np.ndarray]:
        """Each factor the DAG leaves out, with every value it takes (class indices, in grid order).

        The evaluation renders each of them for every held-out unit (``engine.evaluate.bound``).
        The 40 turns lie 360/39 = 9.23 degrees apart, 0 and 2pi both in the grid, so no two are a
        quarter or a half turn apart: a square's turns about 90 degrees apart differ by 2.3 to 6.9
        degrees modulo 90, a few pixels, and are pixel-identical only now and then (small
        sprites, or turns mirrored about an axis of the pixel grid).
        """
        return {f: np.arange(render.SIZES[f]) for f in render.FACTORS[1:] if f not in self.dag.labels}

    def render(self, labels, like: Units) -> np.ndarray:
        factors = {k: like.labels[k] for k in render.FACTORS[1:]} | {k: np.asarray(v) for k, v in labels.items()}
        return render.render(**factors)

    def families(self) -> list:
        """null, do(shape=each value), do(each other label), do(x, y) and do(shape, x, y) where the DAG has them;
        then do(label, rare) for those other labels (values the declared mechanism makes rarest, see
        ``engine.evaluate.RARE``) and do(shape, label) over the whole grid, for per-cell fidelity tables."""
        labels = self.dag.labels
        out, others = [Family("null", ())], []
        for node in labels:
            domain = self.dag.nodes[node].domain
            if domain.kind == "names":
                out += [Family(f"do({node}={v})", (node,), v) for v in domain.values]
            elif node not in HIDDEN_FAMILY:
                out.append(Family(f"do({node})", (node,)))
                others.append(node)
        if set(HIDDEN_FAMILY) <= set(labels):
            out.append(Family("do(x, y)", HIDDEN_FAMILY))
            if "shape" in labels:
                out.append(Family("do(shape, x, y)", ("shape", *HIDDEN_FAMILY)))
        out += [Family(f"do({node}, rare)", (node,), "<rare>") for node in others if self.dag.nodes[node].domain.is_discrete]
        if "shape" in labels:
            out += [Family(f"do(shape, {node})", ("shape", node), "<grid>") for node in others if self.dag.nodes[node].domain.is_discrete]
        return out

    def oracles(self, run_dir):
        from engine.worlds.dsprites.oracles import load_oracles

        return load_oracles(run_dir)


def _units(labels: data.LabelSet) -> Units:
    return Units(labels.index, {k: labels.labels[k] for k in render.FACTORS[1:]})
