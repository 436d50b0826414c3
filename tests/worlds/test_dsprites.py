"""The dSprites world: canonical indexing, the renderer against real frames, and the npz loader."""

from pathlib import Path

import numpy as np
import pytest

from engine.worlds.dsprites import render as dsprites
from engine.worlds.dsprites.render import FACTORS, N_IMAGES, SIZES
from engine.errors import DataError

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "dsprites-reference"


def reference_frames():
    path = REFERENCE / "gif_frames.npz"
    if not path.is_file():
        pytest.skip(f"real dSprites frames not found at {path}")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def brute_force(index: np.ndarray) -> np.ndarray:
    """The documented geometry on the whole canvas in float64: (N, 64, 64) uint8."""
    f = dsprites.factors(index)
    s = dsprites.VALUES["scale"][f["scale"]][:, None, None]
    th = dsprites.VALUES["orientation"][f["orientation"]][:, None, None]
    cx = 16 + 32 * dsprites.VALUES["x"][f["x"]][:, None, None]
    cy = 16 + 32 * dsprites.VALUES["y"][f["y"]][:, None, None]
    g = np.arange(64) + 0.5
    dx, dy = (g[None, None, :] - cx) / s, (cy - g[None, :, None]) / s
    u, v = np.cos(th) * dx + np.sin(th) * dy, -np.sin(th) * dx + np.cos(th) * dy
    square = np.maximum(abs(u), abs(v)) <= 19.196 / 2
    ellipse = (u / 12.766) ** 2 + (v / 7.2135) ** 2 <= 1
    t = np.linspace(0, 2 * np.pi, 100001)
    top = (13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)).max()
    X = np.abs(u) / (19.19 / 32)
    Y = (v + 0.245) / (19.155 / (top + 17)) + (top - 17) / 2
    c = np.sqrt(np.clip(1 - np.cbrt(np.minimum(X / 16, 1)) ** 2, 0, 1))  # cos t where x(t) = X
    heart = (X <= 16) & (np.abs(Y - (-8 * c**4 - 2 * c**2 + 4)) <= 19 * c - 8 * c**3)
    k = f["shape"][:, None, None]
    return np.where(k == 0, square, np.where(k == 1, ellipse, heart)).astype(np.uint8)


def test_grid_matches_the_real_file():
    assert N_IMAGES == np.prod(list(SIZES.values()))
    assert [SIZES[f] for f in FACTORS] == [1, 3, 6, 40, 32, 32]
    assert [dsprites.BASES[f] for f in FACTORS][1:] == [245760, 40960, 1024, 32, 1]
    assert all(len(dsprites.VALUES[f]) == SIZES[f] for f in FACTORS)
    assert dsprites.VALUES["orientation"][-1] == pytest.approx(2 * np.pi)
    assert dsprites.VALUES["shape"].tolist() == [1, 2, 3] and len(dsprites.SHAPES) == 3


def test_index_round_trip():
    index = np.r_[0, N_IMAGES - 1, np.random.default_rng(0).integers(0, N_IMAGES, 1000)]
    classes = dsprites.factors(index)
    assert set(classes) == set(FACTORS)
    assert np.array_equal(dsprites.to_index(classes), index)
    assert [classes[f][0] for f in FACTORS] == [0] * 6
    assert [classes[f][1] for f in FACTORS] == [SIZES[f] - 1 for f in FACTORS]
    no_color = {f: classes[f] for f in FACTORS[1:]}
    assert np.array_equal(dsprites.to_index(no_color), index)


def test_unit_classes_give_the_bases():
    for f in FACTORS[1:]:
        unit = {g: int(g == f) for g in FACTORS[1:]}
        assert dsprites.to_index(unit) == dsprites.BASES[f]


def test_bad_indices_are_refused():
    with pytest.raises(ValueError):
        dsprites.factors([N_IMAGES])
    with pytest.raises(ValueError):
        dsprites.to_index({"shape": 3, "scale": 0, "orientation": 0, "x": 0, "y": 0})
    with pytest.raises(ValueError, match="missing"):
        dsprites.to_index({"shape": 0})


def test_render_shapes_and_values():
    one = dsprites.render(0, 5, 0, 0, 0)
    assert one.shape == (1, 64, 64) and one.dtype == np.uint8
    many = dsprites.render(np.arange(3), 5, 0, x=np.array([[0], [31]]), y=16)
    assert many.shape == (6, 64, 64) and set(np.unique(many)) == {0, 1}
    index = np.random.default_rng(1).integers(0, N_IMAGES, 50)
    assert np.array_equal(dsprites.render(**dsprites.factors(index)), dsprites.render_index(index))
    keys = ("shape", "scale", "orientation", "x", "y")
    assert np.array_equal(dsprites.render(**{k: dsprites.factors(index)[k] for k in keys}), dsprites.render_index(index))
    assert dsprites.render(np.array([], int), 0, 0, 0, 0).shape == (0, 64, 64)


def test_windowed_renderer_equals_the_formula_on_the_whole_canvas():
    index = np.random.default_rng(2).integers(0, N_IMAGES, 600)
    assert np.array_equal(dsprites.render_index(index), brute_force(index))


def test_real_frames():
    ref = reference_frames()
    assert np.array_equal(dsprites.to_index({f: ref["latents_classes"][:, i] for i, f in enumerate(FACTORS)}), ref["dataset_index"])
    values = np.stack([dsprites.VALUES[f][ref["latents_classes"][:, i]] for i, f in enumerate(FACTORS)], axis=1)
    assert np.allclose(values, ref["latents_values"])
    drawn, real = dsprites.render_index(ref["dataset_index"]).astype(bool), ref["imgs"].astype(bool)
    iou = (drawn & real).sum((1, 2)) / (drawn | real).sum((1, 2))
    assert iou.mean() >= 0.99 and iou.min() >= 0.98
    assert (drawn == real).all((1, 2)).mean() >= 0.95  # pixel-exact frames


def test_orientation_ends_coincide():
    f = np.meshgrid(np.arange(3), np.arange(6), [0, 13, 31], [0, 20], indexing="ij")
    shape, scale, x, y = (a.ravel() for a in f)
    assert np.array_equal(dsprites.render(shape, scale, 0, x, y), dsprites.render(shape, scale, 39, x, y))


def test_sprites_never_touch_the_border():
    f = np.meshgrid(np.arange(3), np.arange(40), [0, 31], [0, 31], indexing="ij")
    shape, orientation, x, y = (a.ravel() for a in f)
    imgs = dsprites.render(shape, 5, orientation, x, y)
    assert imgs.sum((1, 2)).min() > 100
    assert not imgs[:, [0, -1], :].any() and not imgs[:, :, [0, -1]].any()


def test_iter_batches_and_images_without_npz():
    index = np.arange(1000, 1100)
    got = np.concatenate([imgs for _, imgs in dsprites.iter_batches(index, batch_size=32)])
    assert np.array_equal(got, dsprites.render_index(index))
    assert np.array_equal(dsprites.images(index), got)


def write_npz(path: Path, index: np.ndarray, **override) -> Path:
    """A small npz in the real file's format, with its pickled metadata."""
    classes = np.stack([dsprites.factors(index)[f] for f in FACTORS], axis=1).astype(np.int64)
    values = np.stack([dsprites.VALUES[f][classes[:, i]] for i, f in enumerate(FACTORS)], axis=1)
    arrays = dict(imgs=dsprites.render_index(index), latents_classes=classes, latents_values=values,
                  metadata=np.array({"date": "April 2017"}, dtype=object))
    arrays.update(override)
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_load_npz(tmp_path):
    index = np.array([0, 5, 70000, N_IMAGES - 1])
    arrays = dsprites.load_npz(write_npz(tmp_path / "small.npz", index))
    assert arrays.imgs.shape == (4, 64, 64) and arrays.imgs.dtype == np.uint8
    assert arrays.latents_classes.dtype == np.int64 and arrays.latents_values.dtype == np.float64
    assert np.array_equal(arrays.imgs, dsprites.render_index(index))
    assert arrays.latents_values[:, 1].tolist() == [1, 1, 1, 3]


@pytest.mark.parametrize("case, match", [
    ("missing", "no such file"),
    ("text", "not an npz"),
    ("no_imgs", "missing array"),
    ("small_imgs", "'imgs' has shape"),
    ("float_imgs", "'imgs' has shape"),
    ("short_classes", "'latents_classes' has shape"),
    ("pickled_values", "unreadable"),
    ("grey", "above 1"),
    ("bad_class", "column 'scale'"),
])
def test_load_npz_errors(tmp_path, case, match):
    path, index = tmp_path / f"{case}.npz", np.arange(3)
    imgs = dsprites.render_index(index)
    if case == "text":
        path.write_text("not an archive\n")
    elif case != "missing":
        write_npz(path, index, **{
            "no_imgs": dict(imgs=None), "small_imgs": dict(imgs=imgs[:, :32, :32]),
            "float_imgs": dict(imgs=imgs.astype(float)), "short_classes": dict(latents_classes=np.zeros((2, 6), int)),
            "pickled_values": dict(latents_values=np.array([None] * 3, dtype=object)), "grey": dict(imgs=imgs * 255),
            "bad_class": dict(latents_classes=np.full((3, 6), [0, 0, 9, 0, 0, 0])),
        }[case])
    with pytest.raises(DataError, match=match) as e:
        dsprites.load_npz(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_images_from_a_full_file():
    # dsprites[i] is imgs[i]; a broadcast view stands in for the 3 GB image array
    classes = np.stack([dsprites.factors(np.arange(N_IMAGES))[f] for f in FACTORS], axis=1)
    picture = dsprites.render_index([123])
    full = dsprites.DSpritesArrays("full.npz", np.broadcast_to(picture, (N_IMAGES, 64, 64)), classes, classes.astype(float))
    assert np.array_equal(dsprites.images([7, 8], full), np.repeat(picture, 2, axis=0))
    shuffled = classes.copy()
    shuffled[[7, 8]] = shuffled[[8, 7]]
    with pytest.raises(DataError, match="full.npz: row 7 .* not in canonical order"):
        dsprites.images([7, 8], dsprites.DSpritesArrays("full.npz", full.imgs, shuffled, full.latents_values))
    with pytest.raises(DataError, match="needs all 737280"):
        dsprites.images([0], dsprites.DSpritesArrays("part.npz", full.imgs[:10], classes[:10], classes[:10]))


def test_npz_path(monkeypatch):
    monkeypatch.delenv("DSPRITES_NPZ", raising=False)
    assert dsprites.npz_path() is None
    monkeypatch.setenv("DSPRITES_NPZ", "/data/d.npz")
    assert dsprites.npz_path() == "/data/d.npz"
    assert dsprites.npz_path("given.npz") == "given.npz"
