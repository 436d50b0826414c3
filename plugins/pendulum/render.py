"""The CausalVAE pendulum world (Yang et al., CVPR 2021): its shadow geometry and a fast renderer.

Scene units and constants follow the CausalVAE generator (x right, y up). Angles are in
degrees: the generator loops over labels in units of pi/200 rad (pendulum -40..43, light
60..147, i.e. -36..39 and 54..132 degrees); ``RANGES`` takes pendulum -40..44 and light
60..130 degrees, the widest light range whose sun and shadow stay inside the frame. With
theta = pendulum in radians (from straight down, counter-clockwise) and phi = light in radians
(the light rays' angle from +x; 90 = overhead)::

    pivot  P = (10, 10.5),   ball centre  B = P + 9.5 (sin theta, -cos theta)
    proj(x, y) = x + (g - y) cot phi        the ray through (x, y) meets the ground y = g = -0.5
    shadow_x   = (proj(P) + proj(B)) / 2
    shadow_len = max(3, |proj(P) - proj(B)|) = max(3, 9.5 |cos(phi - theta)| / sin phi)
    sun centre S = (10 + 10 cot phi, 20.5)  where the ray through P meets y = 20.5

The rays are parallel (one phi for both ends), as in the generator. ``render`` draws 64x64 gray
images of the window x in [-1.2, 22.8], y in [-1.6, 22.4] (8/3 px per unit, square pixels):
the sun a disc of radius 1.5 (4 px, gray 96); the shadow the bar
[shadow_x -/+ shadow_len/2] x [g - 0.9, g] under the ground line (2.4 px thick, gray 160); the
pendulum a rod 0.75 wide (2 px) from P to B and a ball of radius 1 (2.7 px) at B (gray 255).
Edges are anti-aliased: coverage = clamp(0.5 - signed distance in px, 0, 1), value =
round(intensity * coverage). The objects live in disjoint bands of rows (``ZONES``: shadow
y < -0.25, pendulum below y = 15, sun above), so ``masks`` reads each off its band of rows as
the pixels at or above half its intensity. The bands hold for |pendulum| <= 90 (the ball stays
below y = 12) and 0 < light < 180; labels outside ``RANGES`` are drawn, clipped by the image edges.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike

UNIT = math.pi / 180  # radians per label unit: labels are degrees
PIVOT, ARM, BALL_R, ROD_W = (10.0, 10.5), 9.5, 1.0, 0.75
GROUND, SHADOW_H, MIN_SHADOW = -0.5, 0.9, 3.0
SUN_Y, SUN_R = 20.5, 1.5
SIZE, SCALE, X0, Y1 = 64, 8 / 3, -1.2, 22.4  # pixels, px per unit, left and top edges
INTENSITY = {"sun": 96, "shadow": 160, "pendulum": 255}
RANGES = {"pendulum": (-40.0, 44.0), "light": (60.0, 130.0),
          "shadow_x": (1.5, 21.0), "shadow_len": (3.0, 13.5)}  # shadows: geometry 2.7..19.7, 3..12.2

_X = X0 + (np.arange(SIZE) + 0.5) / SCALE  # column centres
_Y = Y1 - (np.arange(SIZE) + 0.5) / SCALE  # row centres (decreasing)


def _row(y: float) -> int:
    """The first row whose centre lies below y."""
    return int(np.searchsorted(-_Y, -y, side="right"))


ZONES = {"sun": slice(0, _row(15.0)), "pendulum": slice(_row(15.0), _row(-0.25)),
         "shadow": slice(_row(-0.25), SIZE)}
_STRIPS = {"sun": slice(0, _row(SUN_Y - SUN_R - 1 / SCALE)), "pendulum": slice(_row(12.0), _row(-0.25)),
           "shadow": ZONES["shadow"]}  # rows each object may touch, inside its zone


def _shadow(pendulum, light, xp):
    th, ph = pendulum * UNIT, light * UNIT
    cot = xp.cos(ph) / xp.sin(ph)
    bx, by = PIVOT[0] + ARM * xp.sin(th), PIVOT[1] - ARM * xp.cos(th)
    tip, base = PIVOT[0] + (GROUND - PIVOT[1]) * cot, bx + (GROUND - by) * cot
    return (tip + base) / 2, abs(tip - base).clip(min=MIN_SHADOW)


def shadow(pendulum: ArrayLike, light: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(shadow_x, shadow_len) in scene x units for angles in label units (float64, vectorised)."""
    return _shadow(np.asarray(pendulum, np.float64), np.asarray(light, np.float64), np)


def shadow_torch(pendulum: torch.Tensor, light: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same geometry on tensors (differentiable almost everywhere; keeps their dtype)."""
    return _shadow(pendulum, light, torch)


def sun_x(light: ArrayLike) -> np.ndarray:
    """The sun's centre x (its y is SUN_Y)."""
    ph = np.asarray(light, np.float64) * UNIT
    return PIVOT[0] + (SUN_Y - PIVOT[1]) * np.cos(ph) / np.sin(ph)


def _cols(lo: float, hi: float) -> slice:
    """Columns whose centres may lie within [lo, hi] (scene x)."""
    a = math.ceil((lo - X0) * SCALE - 0.5)
    return slice(min(max(a, 0), SIZE), min(max(math.floor((hi - X0) * SCALE - 0.5) + 1, 0), SIZE))


def _coverage(p, l, sx, sl):
    """Per object: (rows, cols, coverage (n, h, w) float32) for 1-D float64 label arrays."""
    f32, pad, out = np.float32, 1 / SCALE, {}
    # the sun: a disc at (sun_x, SUN_Y)
    cx = sun_x(l)
    rows, cols = _STRIPS["sun"], _cols(cx.min() - SUN_R - pad, cx.max() + SUN_R + pad)
    d = np.square((_X[cols] - cx[:, None]) * SCALE, dtype=f32)[:, None, :] + \
        np.square((_Y[rows] - SUN_Y) * SCALE, dtype=f32)[None, :, None]
    out["sun"] = rows, cols, _clip(np.subtract(SUN_R * SCALE + 0.5, np.sqrt(d, out=d), out=d))
    # the shadow: a box, separable
    rows, cols = _STRIPS["shadow"], _cols((sx - sl / 2).min() - pad, (sx + sl / 2).max() + pad)
    cy = 0.5 + SCALE * (SHADOW_H / 2 - np.abs(_Y[rows] - (GROUND - SHADOW_H / 2)))
    cxs = 0.5 + SCALE * (sl[:, None] / 2 - np.abs(_X[cols][None, :] - sx[:, None]))
    out["shadow"] = rows, cols, _clip(np.minimum(cxs.astype(f32)[:, None, :], cy.astype(f32)[None, :, None]))
    # the pendulum: the box |perp| <= w/2, 0 <= t <= ARM along the rod, and the ball at its end
    ux, uy = np.sin(p * UNIT)[:, None], -np.cos(p * UNIT)[:, None]
    bx, L = PIVOT[0] + ARM * ux, ARM * SCALE
    rows = _STRIPS["pendulum"]
    cols = _cols(min(PIVOT[0], bx.min()) - BALL_R - pad, max(PIVOT[0], bx.max()) + BALL_R + pad)
    dx, dy = (_X[cols] - PIVOT[0]) * SCALE, (_Y[rows] - PIVOT[1]) * SCALE
    X = lambda a: a.astype(f32)[:, None, :]  # noqa: E731  (n, 1, w)
    Y = lambda a: a.astype(f32)[:, :, None]  # noqa: E731  (n, h, 1)
    rod = np.add(X(dx * -uy), Y(dy * ux))
    np.subtract(ROD_W / 2 * SCALE + 0.5, np.abs(rod, out=rod), out=rod)
    t = np.add(X(dx * ux + 0.5), Y(dy * uy))  # 0.5 + distance along the rod
    np.minimum(rod, t, out=rod)
    np.minimum(rod, np.subtract(L + 1, t, out=t), out=rod)
    ball = np.add(X((dx - L * ux) ** 2), Y((dy - L * uy) ** 2), out=t)
    np.subtract(BALL_R * SCALE + 0.5, np.sqrt(ball, out=ball), out=ball)
    out["pendulum"] = rows, cols, _clip(np.maximum(rod, ball, out=rod))
    return out


def _clip(a: np.ndarray) -> np.ndarray:
    return np.clip(a, 0, 1, out=a)


def _labels(*labels: ArrayLike) -> list[np.ndarray]:
    return [a.ravel() for a in np.broadcast_arrays(*(np.asarray(v, np.float64) for v in labels))]


def render(pendulum: ArrayLike, light: ArrayLike, shadow_x: ArrayLike, shadow_len: ArrayLike,
           chunk: int = 512) -> np.ndarray:
    """(N, 64, 64) uint8 images of the broadcast labels; the shadow is drawn as given.

    Single-threaded numpy, ``chunk`` images at a time, each object only over its rows and the
    columns the chunk's objects reach."""
    labels = _labels(pendulum, light, shadow_x, shadow_len)
    out = np.zeros((len(labels[0]), SIZE, SIZE), np.uint8)
    for s in range(0, len(out), chunk):
        for name, (rows, cols, cov) in _coverage(*(a[s:s + chunk] for a in labels)).items():
            out[s:s + chunk, rows, cols] = np.multiply(cov, INTENSITY[name], out=cov) + 0.5
    return out


def true_masks(pendulum: ArrayLike, light: ArrayLike, shadow_x: ArrayLike,
               shadow_len: ArrayLike) -> dict[str, np.ndarray]:
    """Per object, the (N, 64, 64) pixels whose centres lie inside it (coverage >= 1/2)."""
    labels = _labels(pendulum, light, shadow_x, shadow_len)
    out = {name: np.zeros((len(labels[0]), SIZE, SIZE), bool) for name in INTENSITY}
    for s in range(0, len(labels[0]), 512):
        for name, (rows, cols, cov) in _coverage(*(a[s:s + 512] for a in labels)).items():
            out[name][s:s + 512, rows, cols] = cov >= 0.5
    return out


def masks(image: ArrayLike) -> dict[str, np.ndarray]:
    """Per object ("pendulum", "shadow", "sun"), its pixels in gray image(s) (..., 64, 64):
    those in its zone of rows at or above half its intensity (the midpoint with the background)."""
    image = np.asarray(image)
    out = {}
    for name, zone in ZONES.items():
        m = np.zeros(image.shape, bool)
        m[..., zone, :] = image[..., zone, :] >= INTENSITY[name] / 2
        out[name] = m
    return out
