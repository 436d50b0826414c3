"""Checkpoints: one self-describing file, safe to load, atomic to write, bound to its DAG."""

# shape ─┐
# turn ──┼─► img
# x, y ──┘

import pickle

import pyro
import pytest
import torch

from engine.learn import checkpoint
from engine.errors import CheckpointError
from engine.model.scm import build_scm
from tests.plugins.test_vae_decoder import tiny_dag


def save_tiny(path, seed=0, epoch=1):
    pyro.set_rng_seed(seed)
    dag = tiny_dag()
    scm = build_scm(dag)
    state = {"dag": checkpoint.dag_record(dag), "mechanisms": checkpoint.mechanism_records(scm), "optimizer": {},
             "config": {"seed": seed}, "epoch": epoch, "step": 10 * epoch, "metrics": {"epochs": [{"epoch": epoch, "loss": 1.5}]}}
    checkpoint.save_checkpoint(state, path)
    return dag, scm


def test_save_then_load_gives_the_same_outputs_bit_for_bit(tmp_path):
    dag, scm = save_tiny(tmp_path / "model.pt")
    loaded_dag, loaded = checkpoint.load_model(tmp_path)  # a run folder: model.pt inside
    assert loaded_dag.hash == dag.hash and loaded_dag.text == dag.text
    values = scm(16)
    parents = scm.parents("img", values)
    z = torch.randn(16, 2)
    with torch.no_grad():
        assert torch.equal(loaded.mechanisms["img"].probs(parents, z), scm.mechanisms["img"].probs(parents, z))
        assert torch.equal(loaded.mechanisms["img"].posterior(values["img"], parents)[0], scm.mechanisms["img"].posterior(values["img"], parents)[0])
    assert not loaded.mechanisms["img"].training


def test_file_holds_only_tensors_and_plain_values(tmp_path):
    save_tiny(tmp_path / "model.pt")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["format"] == checkpoint.FORMAT and state["epoch"] == 1
    assert state["mechanisms"]["img"]["config"]["decoder"] == "affine"
    assert set(state["dag"]) == {"name", "path", "text", "hash"}


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_tiny(tmp_path / "model.pt", epoch=1)

    def crash(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_tiny(tmp_path / "model.pt", epoch=2)
    monkeypatch.undo()
    assert checkpoint.read_checkpoint(tmp_path / "model.pt")["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_truncated_file_is_a_checkpoint_error(tmp_path):
    save_tiny(tmp_path / "model.pt")
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable checkpoint \(truncated") as error:
        checkpoint.load_model(tmp_path / "cut.pt")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("content", ["plain text", "a torch dict", "a pickled object"])
def test_foreign_file_is_a_checkpoint_error(tmp_path, content):
    path = tmp_path / "other.pt"
    if content == "plain text":
        path.write_text("hello")
    elif content == "a torch dict":
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes(pickle.dumps(Exception("not weights")))
    with pytest.raises(CheckpointError, match=r"other\.pt: not a") as error:
        checkpoint.load_model(path)
    assert "\n" not in str(error.value)


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(CheckpointError, match=r"no such checkpoint; train one with 'cq train"):
        checkpoint.load_model(tmp_path / "nothing" / "model.pt")


def test_loading_against_another_dag_names_both(tmp_path, write_dag):
    save_tiny(tmp_path / "model.pt")
    other = write_dag(tiny_dag().text.replace("[0.3, 0.3, 0.4]", "[0.2, 0.4, 0.4]", 1), "other.yaml")
    with pytest.raises(CheckpointError, match=r"trained on DAG 'tiny' \(tiny\.yaml, .*differs from .*other\.yaml"):
        checkpoint.load_model(tmp_path, dag=other)
    same = write_dag(tiny_dag().text, "same.yaml")
    checkpoint.load_model(tmp_path, dag=same)  # the same text loads


def test_load_model_places_the_model_on_the_device(tmp_path):
    save_tiny(tmp_path / "model.pt")
    _, scm = checkpoint.load_model(tmp_path, device="cpu")
    assert {p.device.type for p in scm.mechanisms["img"].parameters()} == {"cpu"}
    if torch.cuda.is_available():
        _, scm = checkpoint.load_model(tmp_path, device="cuda")
        assert {p.device.type for p in scm.mechanisms["img"].parameters()} == {"cuda"}
