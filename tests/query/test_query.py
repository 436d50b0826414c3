"""Running .cq programs: name resolution, every user error with its place, batching, answers."""

import numpy as np
import pytest
import torch
from PIL import Image

from engine.worlds.dsprites import render as dsprites
from engine.causal import inference
from engine.model.dag import load_dag
from engine.errors import QueryError
from engine.lang import parse
from engine.query.runner import Runner
from engine.model.scm import build_scm
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def scm():
    """The default DAG with an untrained image mechanism: enough for names, shapes and errors."""
    torch.manual_seed(0)
    return build_scm(load_dag(ROOT / "dags" / "dsprites.yaml"))


def run(scm, text, path="q.cq", seed=0):
    inference.seed(seed)
    return Runner(scm, parse(text, path)).run()


def error(scm, text, path="q.cq"):
    with pytest.raises(QueryError) as e:
        run(scm, text, path)
    return str(e.value)


def test_counterfactual_answer_shape(scm):
    index = int(dsprites.to_index({"shape": np.array([2]), "scale": np.array([5]), "orientation": np.array([0]), "x": np.array([16]), "y": np.array([16])})[0])
    [answer] = run(scm, f"img = dsprites[{index}]\ngiven img, do(shape=square) samples 3\n")
    assert answer.kind == "counterfactual" and answer.line == 2
    assert answer.intervention == {"shape": "square"}
    assert answer.factual.labels["shape"] == "heart" and answer.factual.labels["scale"] == 1.0
    assert answer.evidence["unit"] == f"dsprites[{index}]"
    assert len(answer.samples) == 3
    for s in answer.samples:
        assert s.labels["shape"] == "square"
        assert s.image.shape == (64, 64) and set(np.unique(s.image)) <= {0, 1}
        assert s.mean.shape == (64, 64) and 0 <= s.mean.min() and s.mean.max() <= 1
    assert np.array_equal(answer.factual.image, dsprites.render_index(np.array([index]))[0])
    assert "U_shape" in answer.inferred and "exact" in answer.inferred["U_shape"]


def test_null_intervention_returns_the_unit_exactly(scm):
    [answer] = run(scm, "given dsprites[300000], do(shape=ellipse)")
    factual = dsprites.factors(np.array([300000]))
    assert dsprites.SHAPES[int(factual["shape"][0])] == "ellipse"  # do(shape=its own shape)
    assert answer.samples[0].labels == answer.factual.labels
    assert np.array_equal(answer.samples[0].image, answer.factual.image)


def test_snapping_and_degrees(scm):
    [answer] = run(scm, "given dsprites[0], do(scale=0.71, orientation=90deg)")
    labels = answer.samples[0].labels
    assert labels["scale"] == 0.7
    assert labels["orientation"] == pytest.approx(np.linspace(0, 2 * np.pi, 40)[10], abs=1e-6)  # nearest to pi/2
    assert answer.intervention["scale"] == 0.7


def test_interventional_and_observational(scm):
    do, given = run(scm, "do(shape=heart) samples 16; given shape=square, scale=0.5 samples 8")
    assert do.kind == "interventional" and len(do.samples) == 16
    assert all(s.labels["shape"] == "heart" for s in do.samples)
    assert given.kind == "observational" and given.evidence == {"shape": "square", "scale": 0.5}
    assert all(s.labels["shape"] == "square" and s.labels["scale"] == 0.5 for s in given.samples)
    assert "likelihood weighting" in given.inferred["labels"]


def test_statements_come_back_in_order_and_by_seed(scm):
    text = "a = dsprites[5]\ndo(x=0.5) samples 2\ngiven a, do(x=0.25)\ngiven a, do(shape=heart)\ngiven a, do(x=1)\n"
    one, two = run(scm, text, seed=4), run(scm, text, seed=4)
    assert [a.line for a in one] == [2, 3, 4, 5]
    for a, b in zip(one, two):
        assert all(np.array_equal(s.image, t.image) for s, t in zip(a.samples, b.samples))


def test_png_unit(scm, tmp_path):
    image = dsprites.render(2, 5, 0, 15, 15)[0]  # x=0.5 and y=0.5 snap to 15/31
    Image.fromarray(image * 255).save(tmp_path / "heart.png")
    text = 'pic = png("heart.png", shape=heart, scale=1.0, orientation=0, x=0.5, y=0.5)\ngiven pic, do(scale=0.5) samples 2'
    [answer] = run(scm, text, path=str(tmp_path / "q.cq"))
    assert np.array_equal(answer.factual.image, image)
    assert answer.factual.labels["x"] == pytest.approx(15 / 31, abs=1e-6)


@pytest.mark.parametrize(
    "text, place, words",
    [
        ("given pic, do(shape=square)", "q.cq:1:7:", ["unknown variable 'pic'"]),
        ("a = dsprites[1]\ngiven b, do(shape=square)", "q.cq:2:7:", ["unknown variable 'b'", "bound so far: a"]),
        ("given dsprites[1], do(color=red)", "q.cq:1:23:", ["'color' is not a node", "shape, orientation, scale, x, y"]),
        ("given dsprites[1], do(shape=circle)", "q.cq:1:23:", ["'circle' is not a value", "square, ellipse, heart"]),
        ("given dsprites[1], do(scale=2.0)", "q.cq:1:23:", ["outside the grid", "0.5 to 1"]),
        ("given dsprites[1], do(x=-0.1)", "q.cq:1:23:", ["outside the grid"]),
        ("given dsprites[1], do(scale=big)", "q.cq:1:23:", ["takes a number"]),
        ("given dsprites[737280], do(shape=heart)", "q.cq:1:7:", ["0..737,279"]),
        ("given dsprites[3], do(img=1)", "q.cq:1:23:", ["'img' is the image"]),
        ("given shape=heart, img=0", "q.cq:1:20:", ["'img' is the image"]),
        ('given png("absent.png", shape=heart, scale=1, orientation=0, x=0, y=0), do(x=1)', "q.cq:1:7:", ["absent.png", "no such image"]),
        ('p = png("h.png", shape=heart)', "q.cq:1:5:", ["no such image"]),
    ],
)
def test_errors_name_the_statement_and_what_is_valid(scm, tmp_path, monkeypatch, text, place, words):
    monkeypatch.chdir(tmp_path)
    message = error(scm, text)
    assert message.startswith(place), message
    assert "^" in message
    for w in words:
        assert w in message, message


def test_png_errors(scm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    labels = "shape=heart, scale=1, orientation=0, x=0, y=0"
    Image.fromarray(np.zeros((32, 48), np.uint8)).save("small.png")
    assert "48x32 pixels" in error(scm, f'given png("small.png", {labels}), do(x=1)')
    (tmp_path / "text.png").write_text("not an image")
    assert "not a PNG image" in error(scm, f'given png("text.png", {labels}), do(x=1)')
    Image.fromarray(np.zeros((64, 64), np.uint8)).save("blank.png")
    message = error(scm, 'given png("blank.png", shape=heart), do(x=1)')
    assert "missing: orientation, scale, x, y" in message and "cq train-oracles" in message


class TruthOracles:
    """Stands in for trained pseudo-oracles: reads the labels of rendered images off a lookup table."""

    def __init__(self, indices):
        self.table = {dsprites.render_index(np.array([i]))[0].tobytes(): dsprites.factors(np.array([i])) for i in indices}

    def predict(self, images):
        found = [self.table[image.astype(np.uint8).tobytes()] for image in images]
        return {k: np.concatenate([f[k] for f in found]) for k in dsprites.FACTORS}


def test_labels_inferred_from_pixels_become_evidence(scm, tmp_path):
    index = 400_000
    Image.fromarray(dsprites.render_index(np.array([index]))[0] * 255).save(tmp_path / "raw.png")
    program = parse('raw = png("raw.png")\ngiven raw, do(x=0)', str(tmp_path / "q.cq"))
    inference.seed(0)
    [answer] = Runner(scm, program, oracles=TruthOracles([index])).run()
    truth = {n: v[0] for n, v in dsprites.factors(np.array([index])).items()}
    inferred = answer.evidence["inferred from pixels"]
    assert inferred["shape"] == dsprites.SHAPES[truth["shape"]]
    assert inferred["x"] == pytest.approx(truth["x"] / 31, abs=1e-6)
    assert answer.factual.labels == inferred
    assert answer.samples[0].labels["x"] == 0.0
    assert answer.samples[0].labels["shape"] == inferred["shape"]  # not a descendant of x


def test_partial_labels_are_completed_from_pixels(scm, tmp_path):
    index = 650_000
    Image.fromarray(dsprites.render_index(np.array([index]))[0] * 255).save(tmp_path / "raw.png")
    program = parse('given png("raw.png", shape=heart), do(x=0)', str(tmp_path / "q.cq"))
    [answer] = Runner(scm, program, oracles=TruthOracles([index])).run()
    assert set(answer.evidence["inferred from pixels"]) == {"orientation", "scale", "x", "y"}


def test_an_image_with_no_sprite_gets_no_labels_invented(scm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save("blank.png")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save("full.png")
    runner = lambda text: Runner(scm, parse(text, "q.cq"), oracles=TruthOracles(np.array([0]))).run()  # noqa: E731
    for name, what in (("blank", "nothing on"), ("full", "everything on")):
        with pytest.raises(QueryError, match=what):
            runner(f'given png("{name}.png"), do(x=1)')
