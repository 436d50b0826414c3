"""The pendulum world's renderer: geometry in closed form, numpy vs torch, and the drawn images
against a naive full-frame float64 evaluation of the documented signed distances."""

import math

import numpy as np
import pytest
import torch

from plugins.pendulum import render as R

GRID = np.meshgrid(np.linspace(*R.RANGES["pendulum"], 15), np.linspace(*R.RANGES["light"], 15))
P, L = (g.ravel() for g in GRID)
SX, SL = R.shadow(P, L)
RNG = np.random.default_rng(0)
# counterfactual tuples: the shadow drawn independently of the angles
CF = [RNG.uniform(*R.RANGES[k], 100) for k in ("pendulum", "light", "shadow_x", "shadow_len")]


def reference(p, l, sx, sl) -> dict[str, np.ndarray]:
    """Coverage clamp(0.5 - signed distance in px) of each object over the whole frame, in float64."""
    p, l, sx, sl = (np.asarray(a, float).reshape(-1, 1, 1) for a in np.broadcast_arrays(p, l, sx, sl))
    x, y = R._X[None, None, :], R._Y[None, :, None]
    cov = lambda d: np.clip(0.5 - d * R.SCALE, 0, 1)  # noqa: E731
    sun = cov(np.hypot(x - R.sun_x(l), y - R.SUN_Y) - R.SUN_R)
    bar = cov(np.maximum(np.abs(x - sx) - sl / 2, np.abs(y - (R.GROUND - R.SHADOW_H / 2)) - R.SHADOW_H / 2))
    th = p * R.UNIT
    ux, uy = np.sin(th), -np.cos(th)
    dx, dy = x - R.PIVOT[0], y - R.PIVOT[1]
    t, perp = dx * ux + dy * uy, np.abs(dx * -uy + dy * ux)
    rod = cov(np.maximum(np.maximum(perp - R.ROD_W / 2, -t), t - R.ARM))
    ball = cov(np.hypot(dx - R.ARM * ux, dy - R.ARM * uy) - R.BALL_R)
    return {"sun": sun, "shadow": bar, "pendulum": np.maximum(rod, ball)}


def test_shape_dtype_broadcast_and_determinism():
    img = R.render(P, L, SX, SL)
    assert img.shape == (len(P), 64, 64) and img.dtype == np.uint8
    assert R.render(0, 100, 10, 3).shape == (1, 64, 64)
    assert R.render([0, 20], 100, 10, 3).shape == (2, 64, 64)
    assert np.array_equal(img, R.render(P, L, SX, SL, chunk=7))


def test_pendulum_angle_changes_image():
    a, b, c = R.render([-30, 0, 30], 100, 10, 3)
    assert (a != b).sum() > 20 and (b != c).sum() > 20


@pytest.mark.parametrize("labels", [(P, L, SX, SL), CF], ids=["factual", "counterfactual"])
def test_matches_reference_with_exact_interiors(labels):
    img, ref = R.render(*labels).astype(int), reference(*labels)
    expect = sum(np.floor(ref[k] * R.INTENSITY[k] + 0.5) for k in ref)
    assert np.abs(img - expect).max() <= 1
    for k, cov in ref.items():
        inside = cov == 1
        assert inside.any(axis=(1, 2)).all(), k
        assert (img[inside] == R.INTENSITY[k]).all(), k
    assert set(np.unique(img)) >= {0, 96, 160, 255}


@pytest.mark.parametrize("labels", [(P, L, SX, SL), CF], ids=["factual", "counterfactual"])
def test_objects_disjoint_and_inside_their_zones(labels):
    ref = reference(*labels)
    on = {k: c > 0 for k, c in ref.items()}
    assert not (on["sun"] & on["shadow"]).any()
    assert not (on["sun"] & on["pendulum"]).any()
    assert not (on["shadow"] & on["pendulum"]).any()
    for k, zone in R.ZONES.items():
        outside = on[k].copy()
        outside[:, zone, :] = False
        assert not outside.any(), k


def test_masks_recover_objects():
    for labels in [(P, L, SX, SL), CF]:
        got, want = R.masks(R.render(*labels)), R.true_masks(*labels)
        for k in ("pendulum", "shadow", "sun"):
            iou = (got[k] & want[k]).sum() / (got[k] | want[k]).sum()
            assert iou > 0.99, (k, iou)
    single = R.masks(R.render(0, 100, 10, 3)[0])
    assert single["pendulum"].shape == (64, 64) and single["shadow"].sum() > 10


def test_shadow_numpy_matches_torch_and_is_differentiable():
    p, l = torch.tensor(P, requires_grad=True), torch.tensor(L, requires_grad=True)
    x, n = R.shadow_torch(p, l)
    assert x.dtype == torch.float64
    np.testing.assert_allclose(x.detach().numpy(), SX, rtol=0, atol=1e-12)
    np.testing.assert_allclose(n.detach().numpy(), SL, rtol=0, atol=1e-12)
    (x.sum() + n.sum()).backward()
    assert torch.isfinite(p.grad).all() and torch.isfinite(l.grad).all() and l.grad.abs().sum() > 0


def test_shadow_closed_form():
    th = np.linspace(-40, 44, 29) * R.UNIT
    x, n = R.shadow(np.linspace(-40, 44, 29), 90)  # light overhead: the shadow lies straight below
    np.testing.assert_allclose(x, 10 + 4.75 * np.sin(th), atol=1e-12)
    np.testing.assert_allclose(n, np.maximum(3, 9.5 * np.abs(np.sin(th))), atol=1e-12)
    # rays at 45 deg through P = (10, 10.5) and B = (10, 1) reach y = -0.5 at x = -1 and 8.5
    x, n = R.shadow(0, 45)
    assert x == pytest.approx(3.75, abs=1e-12) and n == pytest.approx(9.5, abs=1e-12)
    th, ph = P * R.UNIT, L * R.UNIT
    np.testing.assert_allclose(SL, np.maximum(3, 9.5 * np.abs(np.cos(ph - th)) / np.sin(ph)), atol=1e-12)


def test_shadow_and_sun_inside_image_over_ranges():
    fine = np.meshgrid(np.linspace(*R.RANGES["pendulum"], 85), np.linspace(*R.RANGES["light"], 89))
    x, n = R.shadow(*fine)
    for key, v in (("shadow_x", x), ("shadow_len", n)):
        lo, hi = R.RANGES[key]
        assert lo <= v.min() and v.max() <= hi, key
    bleed, right = 0.5 / R.SCALE, R.X0 + R.SIZE / R.SCALE
    assert R.X0 < (x - n / 2).min() - bleed and (x + n / 2).max() + bleed < right
    sun = R.sun_x(fine[1])
    assert R.X0 < sun.min() - R.SUN_R - bleed and sun.max() + R.SUN_R + bleed < right
    assert R.Y1 > R.SUN_Y + R.SUN_R + bleed and R.Y1 - R.SIZE / R.SCALE < R.GROUND - R.SHADOW_H - bleed
