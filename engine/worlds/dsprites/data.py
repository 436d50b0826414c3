"""DAG-faithful resampling of dSprites, and the train/test split by canonical index.

dSprites holds every factor combination exactly once, so its factors are independent and
uniform. ``resample`` draws label tuples from the DAG's SCM instead and pairs each with the
dSprites image of that combination (by canonical index), so the data follow the causal story.
A dSprites factor that the DAG does not model (a hidden factor) is drawn uniformly, as an
independent root, exactly as the dataset itself has it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyro
import torch

from engine.worlds.dsprites import render as dsprites
from engine.model.dag import DagSpec
from engine.errors import DagError, DataError
from engine.files import read_npz, write_atomic
from engine.model.scm import build_scm

TEST_FRACTION = 0.1


@dataclass(frozen=True)
class LabelSet:
    """Class indices of every dSprites factor for N units, drawn from one DAG."""

    labels: dict[str, np.ndarray]  # factor name -> (N,) int64 class indices
    dag_hash: str
    seed: int

    @property
    def index(self) -> np.ndarray:
        """Canonical dSprites index of each unit."""
        return dsprites.to_index(self.labels)

    def __len__(self) -> int:
        return len(self.labels["shape"])

    def subset(self, mask: np.ndarray) -> "LabelSet":
        return LabelSet({k: v[mask] for k, v in self.labels.items()}, self.dag_hash, self.seed)


def check_world(dag: DagSpec) -> None:
    """Raise DagError unless every label node is a dSprites factor with the dataset's own grid."""
    for name in dag.labels:
        if name not in dsprites.FACTORS or name == "color":
            raise DagError(f"{dag.where(name)}: '{name}' is not a dSprites factor; label nodes must be among shape, scale, orientation, x, y")
        domain, truth = dag.nodes[name].domain, dsprites.VALUES[name]
        if domain.kind == "names":
            ok = domain.values == tuple(dsprites.SHAPES) if name == "shape" else False
        else:
            ok = domain.size == len(truth) and np.allclose(domain.values, truth, atol=1e-6)
        if not ok:
            raise DagError(f"{dag.where(name)}: the domain of '{name}' must match dSprites ({_describe(name)}), got {domain.describe()}")


def _describe(name: str) -> str:
    values = dsprites.VALUES[name]
    if name == "shape":
        return "[" + ", ".join(dsprites.SHAPES) + "]"
    return f"{{linspace: [{values[0]:g}, {values[-1]:g}, {len(values)}]}}"


def resample(dag: DagSpec, n: int, seed: int = 0) -> LabelSet:
    """Draw n label tuples from the DAG's SCM (hidden factors uniform); same seed, same output."""
    check_world(dag)
    scm = build_scm(dag, dag.labels, world=True)
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        drawn = scm(n)
    rng = np.random.default_rng(seed)
    labels = {}
    for name in dsprites.FACTORS:
        if name in drawn:
            labels[name] = drawn[name].cpu().numpy().astype(np.int64)
        else:
            labels[name] = rng.integers(0, dsprites.SIZES[name], n, dtype=np.int64)
    return LabelSet(labels, dag.hash, seed)


def is_test(index: np.ndarray) -> np.ndarray:
    """Whether each canonical index is held out for testing (a fixed hash: about 10% of dSprites)."""
    h = (np.asarray(index, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return (h % np.uint64(1000)) < np.uint64(int(TEST_FRACTION * 1000))


def save(labels: LabelSet, path: str | Path) -> None:
    """Write an npz atomically (temporary file, then rename)."""
    arrays = {f"label_{k}": v for k, v in labels.labels.items()}
    arrays.update(index=labels.index, dag_hash=np.array(labels.dag_hash), seed=np.array(labels.seed))
    write_atomic(path, lambda f: np.savez_compressed(f, **arrays))


def load(path: str | Path) -> LabelSet:
    """Read a resampled set written by ``save``; a missing, corrupt or foreign file is a DataError naming the array.

    Each factor's labels must be one whole-number class index per unit, within its grid:
    float labels are refused rather than truncated, as are 2-D arrays and arrays of another length.
    """
    foreign = f"{path}: not a resampled label set (an .npz written by 'cq data resample')"
    if not os.path.lexists(path):
        raise DataError(f"{path}: no such file; create it with 'cq data resample --out {path}'")
    arrays = read_npz(path, hint=f"it is not a resampled label set, which 'cq data resample --out {path}' writes")
    keys = [f"label_{f}" for f in dsprites.FACTORS]
    missing = [k for k in (*keys, "dag_hash", "seed") if k not in arrays]
    if missing:
        raise DataError(f"{foreign}: missing array(s) {', '.join(missing)}; present: {', '.join(arrays) or 'none'}")
    extra = sorted(k for k in arrays if k.startswith("label_") and k not in keys)
    if extra:
        raise DataError(f"{foreign}: array(s) {', '.join(extra)} are not dSprites factors ({', '.join(dsprites.FACTORS)})")
    dag_hash, seed = arrays["dag_hash"], arrays["seed"]
    if dag_hash.shape != () or dag_hash.dtype.kind != "U":
        raise DataError(f"{path}: the array 'dag_hash' has shape {dag_hash.shape} of {dag_hash.dtype}; it must be one string")
    if seed.shape != () or seed.dtype.kind not in "iu":
        raise DataError(f"{path}: the array 'seed' has shape {seed.shape} of {seed.dtype}; it must be one whole number")
    n = len(arrays[keys[0]]) if arrays[keys[0]].ndim else 0
    labels = {}
    for factor, key in zip(dsprites.FACTORS, keys):
        values, size = arrays[key], dsprites.SIZES[factor]
        if values.ndim != 1 or len(values) != n or n == 0:
            raise DataError(f"{path}: the array '{key}' has shape {values.shape}; every factor needs one label per unit, "
                            f"shape ({n},) like '{keys[0]}', with at least one unit")
        if values.dtype.kind not in "iu":
            raise DataError(f"{path}: the array '{key}' holds {values.dtype} values; '{factor}' labels are whole-number "
                            f"class indices 0 to {size - 1} (resample the file rather than round them)")
        outside = np.flatnonzero((values < 0) | (values >= size))
        if len(outside):
            i = int(outside[0])
            raise DataError(f"{path}: the array '{key}' holds {values[i]} at row {i}; '{factor}' takes class indices 0 to {size - 1}")
        labels[factor] = values.astype(np.int64)
    return LabelSet(labels, str(dag_hash), int(seed))


def images(index: np.ndarray, npz: str | None = None) -> np.ndarray:
    """The dSprites images of canonical indices: from the real npz when given (loaded once), else rendered."""
    return dsprites.images(np.asarray(index), npz)


def summary(labels: LabelSet, dag: DagSpec) -> str:
    """A short text summary: size, distinct combinations, test share, and each factor's marginal."""
    index = labels.index
    lines = [
        f"{len(labels):,} units drawn from '{dag.name}' (seed {labels.seed}); "
        f"{len(np.unique(index)):,} distinct of {dsprites.N_IMAGES:,} dSprites images; "
        f"{is_test(index).mean():.1%} held out for testing",
    ]
    for name in dsprites.FACTORS[1:]:
        counts = np.bincount(labels.labels[name], minlength=dsprites.SIZES[name]) / len(labels)
        source = "DAG" if name in dag.labels else "hidden, uniform"
        shown = " ".join(f"{c:.2f}" for c in counts[:12]) + (" ..." if len(counts) > 12 else "")
        lines.append(f"  {name:<12} ({source}) {shown}")
    return "\n".join(lines)
