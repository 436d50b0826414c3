"""Pseudo-oracles: training writes oracles.pt, the file round-trips, and score is exact on known answers."""

import math

import numpy as np
import pytest
import torch

from engine.worlds.dsprites import render as dsprites
from engine.worlds.dsprites import oracles
from engine.errors import CheckpointError
from engine.worlds.dsprites.oracles import OracleConfig, Oracles

SQUARE, ELLIPSE, HEART = range(3)
TINY = OracleConfig(n=256, epochs=3, minutes=None, batch_size=32, lr=3e-3, width=4, eval_n=64, threads=1)


def with_predictions(predicted: dict[str, np.ndarray]) -> Oracles:
    """Oracles whose predict returns fixed class indices (score tested apart from training)."""
    model = Oracles(OracleConfig(width=4))
    model.predict = lambda images, shape=None: {k: np.asarray(v) for k, v in predicted.items()}
    return model


def blank(n: int) -> np.ndarray:
    return np.zeros((n, 64, 64), np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("oracles")
    threads = torch.get_num_threads()
    result = oracles.train_oracles(run, TINY)
    assert torch.get_num_threads() == threads  # restored after training
    return run, result


def test_a_tiny_run_lowers_the_loss_and_writes_oracles_pt(trained):
    run, result = trained
    first, last = result["history"][0], result["history"][-1]
    assert len(result["history"]) == TINY.epochs
    assert sum(last[f"loss_{f}"] for f in oracles.FACTORS) < sum(first[f"loss_{f}"] for f in oracles.FACTORS)
    state = torch.load(run / "oracles.pt", weights_only=True)
    assert state["format"] == oracles.FORMAT and state["config"]["n"] == TINY.n
    assert {"shape_accuracy", "scale_mae", "orientation_mae", "x_mae", "y_mae"} <= set(state["metrics"])


def test_the_saved_oracles_predict_as_the_trained_ones(trained, tmp_path):
    run, _ = trained
    model = oracles.load_oracles(run)
    images, _ = oracles.draw(50, seed=7)
    oracles.save_oracles(model, tmp_path)
    again = oracles.load_oracles(tmp_path / "model.pt")  # the oracles beside a model checkpoint
    first, second = model.predict(images), again.predict(torch.from_numpy(images))
    assert all(np.array_equal(first[f], second[f]) for f in oracles.FACTORS)
    assert again.config == model.config and again.metrics == model.metrics


def test_absent_file_is_none_and_a_bad_one_a_checkpoint_error(tmp_path):
    assert oracles.load_oracles(tmp_path) is None and oracles.load_oracles(tmp_path / "model.pt") is None
    (tmp_path / "oracles.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="oracles.pt"):
        oracles.load_oracles(tmp_path)
    torch.save({"format": "something-else"}, tmp_path / "oracles.pt")
    with pytest.raises(CheckpointError, match="format marker"):
        oracles.load_oracles(tmp_path / "oracles.pt")
    oracles.save_oracles(Oracles(OracleConfig(width=4)), tmp_path)
    state = torch.load(tmp_path / "oracles.pt", weights_only=True)
    torch.save({**state, "config": {**state["config"], "width": 8}}, tmp_path / "oracles.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        oracles.load_oracles(tmp_path)


def test_perfect_predictions_score_accuracy_one_and_no_error():
    rng = np.random.default_rng(0)
    labels = {f: rng.integers(0, dsprites.SIZES[f], 100) for f in oracles.FACTORS}
    scores = with_predictions(labels).score(blank(100), labels)
    assert scores == {"shape_accuracy": 1.0, "scale_mae": 0.0, "orientation_mae": 0.0, "x_mae": 0.0, "y_mae": 0.0}


def test_errors_are_counted_in_grid_steps():
    labels = {"shape": np.array([0, 1]), "scale": np.array([0, 5]), "x": np.array([3, 3]), "y": np.array([0, 31])}
    predicted = {"shape": np.array([0, 2]), "scale": np.array([1, 2]), "x": np.array([3, 3]), "y": np.array([31, 31])}
    scores = with_predictions(predicted).score(blank(2), labels)
    assert scores == {"shape_accuracy": 0.5, "scale_mae": 2.0, "x_mae": 0.0, "y_mae": 15.5}


def test_orientation_error_is_taken_modulo_the_shapes_symmetry():
    shapes = np.array([SQUARE, ELLIPSE, HEART])
    assert np.allclose(oracles.orientation_error(math.pi / 2, 0.0, shapes), [0, 9.75, 9.75])  # 39 steps / 4
    assert np.allclose(oracles.orientation_error(math.pi, 0.0, shapes), [0, 0, 19.5])
    assert np.allclose(oracles.orientation_error(0.1, 2 * math.pi - 0.1, shapes), 0.2 / oracles.STEP)


def test_a_square_a_quarter_turn_off_scores_almost_nothing_a_heart_almost_ten_steps():
    """Class 10 is 92.3 degrees: 2.3 degrees (0.25 steps) from class 0 modulo a square's quarter turn."""
    shapes = np.array([SQUARE, ELLIPSE, HEART])
    model = with_predictions({"shape": shapes, "orientation": np.full(3, 10)})
    for shape, steps in ((SQUARE, 0.25), (ELLIPSE, 9.5), (HEART, 10.0)):  # the labelled shape's symmetry
        assert model.score(blank(3), {"shape": np.full(3, shape), "orientation": np.zeros(3, int)})["orientation_mae"] == pytest.approx(steps)
    unlabelled = model.score(blank(3), {"orientation": np.zeros(3, int)})  # else the predicted shape's
    assert unlabelled["orientation_mae"] == pytest.approx((0.25 + 9.5 + 10) / 3)
    model = with_predictions({"shape": shapes, "orientation": np.full(3, 39)})  # 2*pi: the same image as 0
    assert model.score(blank(3), {"shape": shapes, "orientation": np.zeros(3, int)})["orientation_mae"] == pytest.approx(0)


def test_absent_factors_are_skipped():
    model = with_predictions({f: np.zeros(4, np.int64) for f in oracles.FACTORS})
    assert set(model.score(blank(4), {"x": np.zeros(4), "orientation": np.zeros(4)})) == {"x_mae", "orientation_mae"}
    assert set(model.score(blank(4), {"scale": np.zeros(4), "img": np.zeros(4)})) == {"scale_mae"}


def test_orientation_is_decoded_to_the_class_with_that_angle_modulo_symmetry():
    """Force the orientation net's output to (cos k*theta_c, sin k*theta_c): predict returns c for every shape."""
    model = Oracles(OracleConfig(width=4))
    theta = dsprites.VALUES["orientation"][7]
    last = model.nets["orientation"].net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([[math.cos(k * theta), math.sin(k * theta)] for k in oracles.ORDERS]).flatten())
    for shape in (SQUARE, ELLIPSE, HEART):
        assert model.predict(blank(2), shape=np.full(2, shape))["orientation"].tolist() == [7, 7]


def test_the_window_is_centred_on_the_sprite():
    images = torch.zeros(2, 64, 64)
    images[0, 40:43, 10:13] = 1  # centre of mass (row 41.5, column 11.5): rows 26..57, columns 0..31 (clamped)
    windows, top, left = oracles.centred(images)
    assert windows.shape == (2, 32, 32) and top.tolist() == [26, 16] and left.tolist() == [0, 16]
    assert windows[0].sum() == 9 and windows[0, 14:17, 10:13].all()
    assert not windows[1].any()  # a blank image gives the middle window
