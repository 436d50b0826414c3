"""The dSprites world: its factor grid, canonical indexing, a faithful renderer and the real npz.

dSprites holds one 64x64 binary image for every combination of color (1) x shape (3) x
scale (6) x orientation (40) x x (32) x y (32), 737,280 in all, stored in canonical order::

    index = sum_f class_f * BASES[f]        (BASES = 737280, 245760, 40960, 1024, 32, 1; y fastest)

``render`` draws any combination with the conventions measured on real frames
(``shared/dsprites-reference``). With ``(dx, dy)`` a pixel centre relative to the sprite centre
(column ``16 + 32 x``, row ``16 + 32 y``; ``dy`` pointing up) and ``R(theta)`` the
counter-clockwise rotation as displayed, the pixel is on iff ``R(-theta) (dx, dy) / scale``
lies inside the canonical shape: a square of side 19.196, an ellipse of semi-axes
12.766 x 7.2135, or the heart ``(16 sin^3 t, 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t)``
stretched to a 19.19 x 19.155 box centred 0.245 below the sprite centre.

>>> render(shape=2, scale=5, orientation=0, x=0, y=0).shape
(1, 64, 64)
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
from numpy.typing import ArrayLike

from engine.errors import DataError

FACTORS = ("color", "shape", "scale", "orientation", "x", "y")
SIZES = {"color": 1, "shape": 3, "scale": 6, "orientation": 40, "x": 32, "y": 32}
BASES = {f: int(np.prod([SIZES[g] for g in FACTORS[i + 1:]])) for i, f in enumerate(FACTORS)}
N_IMAGES = 737_280
IMAGE_SIZE = 64
SHAPES = ("square", "ellipse", "heart")
#: factor values as in the real ``latents_values`` (shape coded 1, 2, 3 for SHAPES)
VALUES = {
    "color": np.array([1.0]),
    "shape": np.array([1.0, 2.0, 3.0]),
    "scale": np.linspace(0.5, 1.0, 6),
    "orientation": np.linspace(0.0, 2 * np.pi, 40),
    "x": np.linspace(0.0, 1.0, 32),
    "y": np.linspace(0.0, 1.0, 32),
}
NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
NPZ_KEYS = ("imgs", "latents_classes", "latents_values")

# Shapes at scale 1 in pixels, fitted to the reference frames.
_SQUARE_HALF = 19.196 / 2
_ELLIPSE_AXES = (12.766, 7.2135)
_HEART_BOX, _HEART_SHIFT = (19.19, 19.155), 0.245
# The heart's top edge y(c = cos t) = -8c^4 - 8c^3 - 2c^2 + 19c + 4 peaks where y'(c) = 0.
_HEART_TOP = max(np.polyval([-8, -8, -2, 19, 4], r.real) for r in np.roots([-32, -24, -4, 19]) if abs(r.imag) < 1e-9)
_HEART_SX, _HEART_SY = _HEART_BOX[0] / 32, _HEART_BOX[1] / (_HEART_TOP + 17)  # pixels per curve unit
_HEART_Y0 = _HEART_SHIFT / _HEART_SY + (_HEART_TOP - 17) / 2  # curve y at the sprite centre


def _heart_radius(n: int = 4096) -> float:
    """Farthest point of the heart from the sprite centre, in pixels at scale 1."""
    t = np.linspace(0, 2 * np.pi, n)
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return float(np.hypot(_HEART_SX * 16 * np.sin(t) ** 3, _HEART_SY * (y - _HEART_Y0)).max())


# (ku, kv, v0): each shape's inside test works on u / ku and v / kv + v0.
_NORMAL = ((_SQUARE_HALF, _SQUARE_HALF, 0.0), (*_ELLIPSE_AXES, 0.0), (16 * _HEART_SX, _HEART_SY, _HEART_Y0))
_RADIUS = (_SQUARE_HALF * 2**0.5, _ELLIPSE_AXES[0], _heart_radius() + 0.01)
_WIDTH = tuple(2 * int(np.ceil(r + 1)) for r in _RADIUS)  # a window of pixel centres within centre +- radius
_CHUNK = 8192


def _classes(name: str, value: ArrayLike) -> np.ndarray:
    """Class indices of one factor as int64, checked against the factor's size."""
    a = np.asarray(value)
    if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= SIZES[name]):
        raise ValueError(f"'{name}' needs integer class indices in 0..{SIZES[name] - 1}")
    return a.astype(np.int64)


def factors(index: ArrayLike) -> dict[str, np.ndarray]:
    """Class indices of every factor for canonical indices: ``index // BASES[f] % SIZES[f]``."""
    i = np.asarray(index)
    if i.size and (not np.issubdtype(i.dtype, np.integer) or i.min() < 0 or i.max() >= N_IMAGES):
        raise ValueError(f"canonical indices must be integers in 0..{N_IMAGES - 1}")
    i = i.astype(np.int64)
    return {f: i // BASES[f] % SIZES[f] for f in FACTORS}


def to_index(classes: Mapping[str, ArrayLike]) -> np.ndarray:
    """Canonical indices of class-index arrays keyed by factor (color optional; other keys ignored)."""
    missing = [f for f in FACTORS[1:] if f not in classes]
    if missing:
        raise ValueError(f"missing factor(s) {missing}; dSprites factors are {list(FACTORS)}")
    parts = np.broadcast_arrays(*(_classes(f, classes.get(f, 0)) for f in FACTORS))
    return sum(p * BASES[f] for f, p in zip(FACTORS, parts))


def render(shape: ArrayLike, scale: ArrayLike, orientation: ArrayLike, x: ArrayLike, y: ArrayLike,
           *, color: ArrayLike = 0) -> np.ndarray:
    """Draw the images of broadcastable class-index arrays: (N, 64, 64) uint8 in {0, 1}.

    ``color`` (always 0) is accepted so that ``render(**factors(index))`` works.
    """
    _classes("color", color)
    parts = np.broadcast_arrays(*(_classes(f, v) for f, v in zip(FACTORS[1:], (shape, scale, orientation, x, y))))
    shape, scale, orientation, x, y = (p.ravel() for p in parts)
    out = np.zeros((shape.size, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    order = np.argsort(shape * 1024 + x * 32 + y, kind="stable")  # runs of one shape and position
    for start in range(0, shape.size, _CHUNK):
        part = order[start:start + _CHUNK]
        for kind in np.unique(shape[part]):
            rows = part[shape[part] == kind]
            _draw(out, rows, int(kind), VALUES["scale"][scale[rows]], VALUES["orientation"][orientation[rows]],
                  16 + 32 * VALUES["x"][x[rows]], 16 + 32 * VALUES["y"][y[rows]])
    return out


def _draw(out: np.ndarray, rows: np.ndarray, kind: int, s, theta, cx, cy) -> None:
    """Test the pixel centres of a window around each sprite, then paste the windows into ``out[rows]``.

    ``rows`` come in runs of one position, so each run's windows share one place on the canvas.
    """
    w = _WIDTH[kind]
    c0, r0 = np.rint(cx).astype(np.int64) - w // 2, np.rint(cy).astype(np.int64) - w // 2
    j = np.arange(w) + 0.5
    dx = (c0[:, None] + j - cx[:, None]) / s[:, None]  # per column, pointing right
    dy = (cy[:, None] - r0[:, None] - j) / s[:, None]  # per row, pointing up
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    ku, kv, v0 = _NORMAL[kind]
    t = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    u = t(sin * dy / ku)[:, :, None] + t(cos * dx / ku)[:, None, :]
    v = t(cos * dy / kv + v0)[:, :, None] + t(-sin * dx / kv)[:, None, :]
    if kind == 0:  # square: max(u^2, v^2) <= 1
        inside = torch.maximum(u.square_(), v.square_()) <= 1
    elif kind == 1:  # ellipse: u^2 + v^2 <= 1
        inside = u.square_().add_(v.square_()) <= 1
    else:  # heart: with q = cos^2 t = 1 - u^(2/3), |v - E(q)| <= sqrt(q) (19 - 8q), E = 4 - 2q - 8q^2
        q = u.square_().log_().div_(3).exp_().neg_().add_(1)
        v.sub_(q.mul(-8).sub_(2).mul_(q).add_(4)).square_()
        inside = v <= q.mul(-8).add_(19).square_().mul_(q)
    windows = inside.numpy().view(np.uint8)
    starts = np.flatnonzero(np.r_[True, np.diff(r0 * IMAGE_SIZE + c0) != 0])
    for a, b in zip(starts, np.r_[starts[1:], len(rows)]):
        r, c = r0[a], c0[a]
        out[rows[a:b], r:r + w, c:c + w] = windows[a:b]


def render_index(index: ArrayLike) -> np.ndarray:
    """Draw the images of canonical indices: (N, 64, 64) uint8."""
    f = factors(np.ravel(index))
    return render(f["shape"], f["scale"], f["orientation"], f["x"], f["y"])


def iter_batches(index: ArrayLike | None = None, batch_size: int = _CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(index, images)`` batches over canonical indices (default: all), never all at once."""
    index = np.arange(N_IMAGES) if index is None else np.ravel(index)
    for start in range(0, len(index), batch_size):
        part = index[start:start + batch_size]
        yield part, render_index(part)


def render_all_packed(batch_size: int = 4 * _CHUNK) -> np.ndarray:
    """All 737,280 images, bit-packed per image: (N, 512) uint8 (``np.unpackbits(p, axis=-1)``)."""
    packed = np.empty((N_IMAGES, IMAGE_SIZE * IMAGE_SIZE // 8), np.uint8)
    for index, imgs in iter_batches(batch_size=batch_size):
        packed[index] = np.packbits(imgs.reshape(len(index), -1), axis=-1)
    return packed


@dataclass(frozen=True, eq=False)
class DSpritesArrays:
    """The arrays of a dSprites npz file (its pickled ``metadata`` is never read)."""

    path: str
    imgs: np.ndarray  # (N, 64, 64) uint8 in {0, 1}
    latents_classes: np.ndarray  # (N, 6) int64 class indices, FACTORS order
    latents_values: np.ndarray  # (N, 6) float64 values, shape coded 1, 2, 3


def npz_path(cli_value: str | None = None) -> str | None:
    """The real npz path: the command-line value, else ``$DSPRITES_NPZ``, else None (render)."""
    return cli_value or os.environ.get("DSPRITES_NPZ") or None


def load_npz(path: str | Path) -> DSpritesArrays:
    """Read and check a dSprites npz (any number of rows) without unpickling anything."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file; expected the dSprites archive {NPZ_NAME}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {missing}; a dSprites npz holds {list(NPZ_KEYS)}")
            imgs, classes, values = (npz[k] for k in NPZ_KEYS)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: unreadable npz ({' '.join(str(e).split())})") from None
    if imgs.ndim != 3 or imgs.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or imgs.dtype not in (np.uint8, np.bool_):
        raise DataError(f"{path}: 'imgs' has shape {imgs.shape} and dtype {imgs.dtype}; expected (N, 64, 64) uint8")
    n = len(imgs)
    for key, a, kind in (("latents_classes", classes, np.integer), ("latents_values", values, np.floating)):
        if a.shape != (n, 6) or not np.issubdtype(a.dtype, kind):
            raise DataError(f"{path}: '{key}' has shape {a.shape} and dtype {a.dtype}; expected ({n}, 6) {kind.__name__}")
    if n and imgs.max() > 1:
        raise DataError(f"{path}: 'imgs' holds values above 1; expected binary pixels in {{0, 1}}")
    for f, column in zip(FACTORS, classes.T):
        if n and (column.min() < 0 or column.max() >= SIZES[f]):
            raise DataError(f"{path}: 'latents_classes' column '{f}' leaves 0..{SIZES[f] - 1}")
    return DSpritesArrays(str(path), imgs.astype(np.uint8, copy=False), classes.astype(np.int64), values.astype(np.float64))


@lru_cache(maxsize=1)
def _load_cached(path: str, mtime: float) -> DSpritesArrays:
    return load_npz(path)


def images(index: ArrayLike, npz: str | Path | DSpritesArrays | None = None) -> np.ndarray:
    """Images of canonical indices, (N, 64, 64) uint8: rows of the real npz when given, else rendered.

    Canonical indexing needs the full file (737,280 rows in canonical order); the rows used are
    checked against ``factors(index)``. A path is loaded once and kept while the file is unchanged.
    """
    index = np.ravel(index)
    if npz is None:
        return render_index(index)
    if not isinstance(npz, DSpritesArrays):
        npz = _load_cached(str(npz), Path(npz).stat().st_mtime if Path(npz).is_file() else 0.0)
    if len(npz.imgs) != N_IMAGES:
        raise DataError(f"{npz.path}: holds {len(npz.imgs)} images; indexing by canonical index needs all {N_IMAGES}")
    f = factors(index)
    expected = np.stack([f[k] for k in FACTORS], axis=-1)
    bad = np.flatnonzero((npz.latents_classes[index] != expected).any(axis=-1))
    if bad.size:
        i = index[bad[0]]
        raise DataError(f"{npz.path}: row {i} has latents_classes {npz.latents_classes[i].tolist()}, "
                        f"expected {expected[bad[0]].tolist()}; the file is not in canonical order")
    return npz.imgs[index]
