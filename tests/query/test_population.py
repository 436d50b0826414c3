"""Counterfactuals over a selection: one archive of every unit, streamed in blocks, the same from N ranks as from one."""

import numpy as np
import pytest
import torch

from engine import distributed
from engine.causal import inference
from engine.errors import QueryError
from engine.files import read_npz
from engine.lang import parse
from engine.model.dag import load_dag
from engine.model.scm import build_scm
from engine.query import population, report
from engine.query.answers import PopulationAnswer
from engine.query.runner import Runner
from engine.worlds.dsprites import render as dsprites
from tests.conftest import ROOT, torchrun

HEARTS = "dsprites[shape=heart, scale=1.0, x=0.0, y<0.2]"  # 40 turns x 7 heights: 280 units


def model():
    torch.manual_seed(0)  # the same untrained image mechanism in every process
    scm = build_scm(load_dag(ROOT / "dags" / "dsprites.yaml"))
    scm.mechanisms["img"].eval()
    return scm


@pytest.fixture(scope="module")
def scm():
    return model()


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(population, "BLOCK", 64)  # 280 units: five blocks, the last one short


def ask(scm, text, scratch, ranks=None, seed=0):
    inference.seed(seed)
    return Runner(scm, parse(text, "q.cq"), ranks=ranks, scratch=scratch).run()


def test_the_archive_holds_every_selected_unit_in_index_order(scm, tmp_path, small_blocks):
    [answer] = ask(scm, f"given {HEARTS}, do(shape=square)", tmp_path)
    assert isinstance(answer, PopulationAnswer) and answer.summary["units"] == 280
    arrays = answer.arrays()
    factors = dsprites.factors(arrays["index"])
    assert np.all(np.diff(arrays["index"]) > 0)
    assert np.all(factors["shape"] == 2) and np.all(factors["scale"] == 5) and np.all(factors["x"] == 0) and np.all(factors["y"] < 7)
    assert len(arrays["index"]) == 280 and set(arrays["shape"]) == {"heart"} and set(arrays["cf_shape"]) == {"square"}
    assert np.allclose(arrays["orientation"], load_dag(ROOT / "dags" / "dsprites.yaml").nodes["orientation"].domain.values_of(torch.as_tensor(factors["orientation"])).numpy())
    assert arrays["images"].shape == (280, 64, 8) and arrays["images"].dtype == np.uint8
    assert list(arrays["image_shape"]) == [64, 64] and arrays["iou"].shape == (280,)
    assert answer.summary["labels"]["shape"] == {"changed": 1.0, "counterfactual": {"square": 1.0}}
    assert answer.summary["fidelity"]["iou"] == pytest.approx(arrays["iou"].mean())
    assert answer.examples["factual"].shape == (population.EXAMPLES, 64, 64)


def test_the_null_intervention_packs_every_image_back_bit_for_bit(scm, tmp_path, small_blocks):
    [answer] = ask(scm, f"given {HEARTS}, do(shape=heart)", tmp_path)  # every unit keeps its own shape
    arrays = answer.arrays()
    images = population.unpack(arrays["images"], tuple(arrays["image_shape"]))
    assert np.array_equal(images, dsprites.render_index(arrays["index"]))
    assert np.all(arrays["iou"] == 1.0) and answer.summary["fidelity"]["worst"]["iou"] == 1.0
    assert all(arrays[f"cf_{n}"].tolist() == arrays[n].tolist() for n in ("shape", "orientation", "scale", "x", "y"))


def test_blocks_draw_their_own_noise_and_leave_the_programs_draws_alone(scm, tmp_path, small_blocks):
    number = "P(scale@do(shape=square) = 1.0 | shape=heart, scale=1.0) draws 2000"
    alone = ask(scm, number, tmp_path)[0].value
    [first, after] = ask(scm, f"given {HEARTS}, do(shape=square)\n{number}", tmp_path)
    assert after.value == alone  # the selection's blocks drew from their own generators
    [again, _] = ask(scm, f"given {HEARTS}, do(shape=square)\n{number}", tmp_path)
    assert read_npz(first.path).keys() == read_npz(again.path).keys()
    assert np.array_equal(read_npz(first.path)["cf_scale"], read_npz(again.path)["cf_scale"])  # seeds reproduce
    [other] = ask(scm, f"given {HEARTS}, do(shape=square)", tmp_path, seed=1)
    assert not np.array_equal(read_npz(first.path)["cf_scale"], read_npz(other.path)["cf_scale"])


def test_a_bound_selection_is_answered_and_written_beside_the_other_answers(scm, tmp_path, small_blocks):
    answers = ask(scm, f"hearts = {HEARTS}\ngiven hearts, do(scale=0.5)\ngiven dsprites[3], do(shape=heart)", tmp_path)
    records = report.write(answers, tmp_path / "out")
    assert [r["kind"] for r in records] == ["population", "counterfactual"]
    assert records[0]["npz"].endswith("01_population.npz") and records[0]["summary"].endswith("01_summary.json")
    assert records[0]["examples"].endswith("01_examples.png") and read_npz(records[0]["npz"])["cf_scale"].tolist() == [0.5] * 280
    assert not list(tmp_path.glob(".cq-population-*"))  # the scratch archive was moved, not copied
    assert "280 units" in report.population_line(answers[0])


def test_samples_over_a_selection_is_a_mistake(scm, tmp_path):
    with pytest.raises(QueryError, match="answers each of its 280 units once"):
        ask(scm, f"given {HEARTS}, do(shape=square) samples 3", tmp_path)


def sharded(scratch: str) -> bytes | None:
    torch.set_num_threads(1)
    population.BLOCK = 64
    ranks, _ = distributed.join(torch.device("cpu"), seconds=60)
    [answer] = ask(model(), f"given {HEARTS}, do(shape=square)", scratch, ranks=ranks)
    ranks.leave()
    return answer.path.read_bytes() if answer.path else None


def test_two_ranks_write_the_bytes_one_process_writes(tmp_path, small_blocks):
    one = sharded(str(tmp_path))
    two = torchrun(sharded, str(tmp_path))
    assert two[1] is None and two[0] == one
