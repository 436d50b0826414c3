"""Checkpoints: one self-describing file, safe to load, atomic to write, bound to its DAG."""

# shape ─┐
# turn ──┼─► img
# x, y ──┘

import pickle

import pyro
import pytest
import torch

from engine.learn import checkpoint
from engine.errors import CheckpointError, DagError
from engine.model.dag import parse_dag
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


def tamper(path, change):
    """Load the file's dict, let ``change`` edit it, save it back with the format marker intact."""
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(dag="tiny.yaml"), r"'dag' must be a dict of name, path, text and hash, got 'tiny\.yaml'"),
    (lambda s: s["dag"].pop("hash"), r"'dag\.hash' must be a string, got None"),
    (lambda s: s["mechanisms"]["img"].pop("state_dict"), r"'mechanisms\.img\.state_dict' must be a dict of tensors"),
    (lambda s: s["mechanisms"]["img"]["state_dict"].update({"decoder.0.weight": "zeros"}), r"'mechanisms\.img\.state_dict\.decoder\.0\.weight' must be a tensor"),
    (lambda s: s["mechanisms"].update(img=[1, 2]), r"'mechanisms\.img' must be a dict"),
    (lambda s: s.update(config="fast"), r"'config' must be a dict"),
    (lambda s: s["config"].update(batch_size=10**9), r"'config\.batch_size' must be a whole number from 1 to 65,536, got 1000000000"),
    (lambda s: s["config"].update(seed=-1), r"'config\.seed' must be a whole number from 0"),
    (lambda s: s["config"].update(lr=float("nan")), r"'config\.lr' must be a finite number > 0"),
    (lambda s: s.update(epoch="3"), r"'epoch' must be a whole number >= 0, got '3'"),
])
def test_wrong_inner_types_are_a_checkpoint_error(tmp_path, change, message):
    save_tiny(tmp_path / "model.pt")
    tamper(tmp_path / "model.pt", change)
    with pytest.raises(CheckpointError, match=rf"model\.pt: {message}"):
        checkpoint.load_model(tmp_path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_name_the_tensor(tmp_path, bad):
    save_tiny(tmp_path / "model.pt")
    name = next(k for k, v in torch.load(tmp_path / "model.pt", weights_only=True)["mechanisms"]["img"]["state_dict"].items()
                if v.is_floating_point() and v.numel())
    tamper(tmp_path / "model.pt", lambda s: s["mechanisms"]["img"]["state_dict"][name].view(-1).__setitem__(0, bad))
    with pytest.raises(CheckpointError, match=rf"the tensor 'mechanisms\.img\.state_dict\.{name}' holds (NaN|infinite) values"):
        checkpoint.read_checkpoint(tmp_path)


def test_a_dag_asking_for_a_huge_network_is_refused_before_it_is_built(tmp_path):
    # the checkpoint's own DAG text now asks for latent_dim 16,000 (within the cap): compared on the meta device, never built
    save_tiny(tmp_path / "model.pt")
    text = tiny_dag().text.replace("latent_dim: 2", "latent_dim: 16000")
    huge = parse_dag(text, "tiny.yaml")

    def change(state):
        state["dag"].update(text=text, hash=huge.hash)

    tamper(tmp_path / "model.pt", change)
    with pytest.raises(CheckpointError, match=r"weights for node 'img' do not fit its network \('.*' is \[.*\] in the file, \[\d+, 160\d\d\] in the DAG\)"):
        checkpoint.load_model(tmp_path)
    # beyond the cap the DAG itself is refused, before anything is sized
    with pytest.raises(DagError, match="latent_dim must be a whole number from 0 to 16,384"):
        build_scm(parse_dag(tiny_dag().text.replace("latent_dim: 2", "latent_dim: 1000000000"), "tiny.yaml"))
